"""`speechqa eval` says what it measured (lexical-only or hybrid, and why) and times warm questions only."""

from __future__ import annotations

import json
from pathlib import Path

from bot.cli import main
from embeddings.passage import SearchResult
from embeddings.retrieval.evaluate import WARM_UP_QUESTIONS, evaluate, load_questions
from embeddings.retrieval.retrieve import Retriever
from tests.conftest import DEV_QUESTIONS, REPO


class CountingRetriever:
    """Passes searches through to a real retriever, remembering the questions."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.asked: list[str] = []
        self.mode = inner.mode
        self.notice = "a notice"

    def search(self, question: str, top_k: int = 5) -> SearchResult:
        self.asked.append(question)
        return self.inner.search(question, top_k)


def test_eval_warms_up_untimed_and_reports_its_mode(shipped_retriever):
    questions = load_questions(DEV_QUESTIONS)
    retriever = CountingRetriever(shipped_retriever)
    report = evaluate(retriever, questions)  # type: ignore[arg-type]
    asked = [q.question for q in questions]
    assert retriever.asked == asked[:WARM_UP_QUESTIONS] + asked
    assert len(report.rows) == len(questions)
    assert report.to_dict()["mode"] == "lexical" and report.to_dict()["notice"] == "a notice"


def test_eval_command_prints_the_mode_and_why_dense_is_off(tmp_path: Path, corpus_dir: Path, capsys):
    missing = tmp_path / "no-model"
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[corpus]
path = "{corpus_dir}"
index_dir = "{tmp_path / "index"}"
[lexical]
user_dict = "{REPO / "data/jieba/userdict.txt"}"
stopwords = "{REPO / "data/jieba/stopwords.txt"}"
question_frames = "{REPO / "data/jieba/question_frames.txt"}"
[dense]
mode = "auto"
model = "{missing}"
fallback = "none"
""",
        "utf-8",
    )
    assert main(["--config", str(config), "eval", str(DEV_QUESTIONS)]) == 0
    captured = capsys.readouterr()
    assert "mode lexical" in captured.out.splitlines()
    assert "lexical-only mode" in captured.err and str(missing) in captured.err

    assert main(["--config", str(config), "eval", str(DEV_QUESTIONS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "lexical" and str(missing) in report["notice"]
