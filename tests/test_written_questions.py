"""The questions written on the reports: answers copied exactly, training and benchmark kept apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.datasets import REPORTS, REWORDED_REPORT_QUESTIONS
from embeddings.retrieval.evaluate import scoring_form
from training.data import evaluation_questions

REPO = Path(__file__).resolve().parent.parent
TRAINING_QUESTIONS = REPO / "training" / "asked" / "reports-asked.jsonl"
pytestmark = pytest.mark.skipif(not REPORTS.is_dir(), reason="needs ../shared/corpus-reports")


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def test_every_answer_is_copied_from_one_paragraph_of_its_report() -> None:
    checked = 0
    for path, report_key, spans_of in (
        (TRAINING_QUESTIONS, "report", lambda row: [row["answer"]]),
        (REWORDED_REPORT_QUESTIONS, "doc", lambda row: row["gold"]),
    ):
        for row in _rows(path):
            paragraphs = [
                scoring_form(line) for line in (REPORTS / str(row[report_key])).read_text("utf-8").splitlines()
            ]
            for span in spans_of(row):
                assert any(scoring_form(span) in paragraph for paragraph in paragraphs), (path.name, row["question"])
                checked += 1
    assert checked > 1000


def test_training_and_benchmark_share_no_report_and_no_question() -> None:
    training, benchmark = _rows(TRAINING_QUESTIONS), _rows(REWORDED_REPORT_QUESTIONS)
    assert {row["report"] for row in training}.isdisjoint({row["doc"] for row in benchmark})
    # The benchmark's questions are among those training refuses to use.
    refused = evaluation_questions([REWORDED_REPORT_QUESTIONS])
    assert len(refused) == len(benchmark)
    assert not refused & {scoring_form(str(row["question"])) for row in training}


def test_the_benchmark_indexes_its_reports_and_each_gold_span_lies_in_one_passage() -> None:
    from benchmarks.datasets import load_dataset
    from embeddings.settings import SegmentSettings

    dataset = load_dataset("reports-reworded", SegmentSettings(), REPO / "data" / "speeches", quick=False)
    assert len(dataset.corpus.speeches) == 22
    passages = [scoring_form(p.text) for p in dataset.corpus.passages]
    answerable = [q for q in dataset.questions if q.answerable]
    assert len(answerable) == 342 and len(dataset.questions) - len(answerable) == 22
    assert all(any(span in passage for passage in passages for span in q.gold_spans) for q in answerable)
