"""Answers with citations, and the command line: ask, --json, errors, ingest, eval, doctor."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.answer import compose
from bot.cli import main
from bot.config import AnswerSettings
from bot.render import NOT_FOUND, render_answer
from embeddings.retrieval.evaluate import load_questions, scoring_form
from tests.conftest import DEV_QUESTIONS, REPO, write_config_file


@pytest.fixture
def config_file(tmp_path: Path, corpus_dir: Path) -> Path:
    return write_config_file(tmp_path, corpus_dir)


def test_direct_answers_cite_a_gold_passage(shipped_retriever):
    settings = AnswerSettings()
    good = 0
    questions = load_questions(DEV_QUESTIONS)
    for question in questions:
        answer = compose(shipped_retriever.search(question.question, top_k=settings.top_k), settings)
        if not question.answerable:
            assert not answer.found and not answer.direct
            assert NOT_FOUND in render_answer(answer)
            continue
        assert answer.found and answer.direct
        cited = answer.citations[answer.direct[0].citation - 1].passage.text
        good += any(scoring_form(g) in scoring_form(cited) for g in question.gold)
    assert good >= 15


def test_answer_sentences_are_verbatim_and_numbered(shipped_retriever):
    answer = compose(shipped_retriever.search("好干部的标准是什么？"), AnswerSettings())
    for sentence in answer.direct:
        assert sentence.text in answer.citations[sentence.citation - 1].passage.text
    assert any("忠诚、干净、担当" in s.text for s in answer.direct)
    text = render_answer(answer)
    assert text.startswith("答：") and "[1] 《当头雁 争一流 全力打造优秀工会组织》" in text
    for citation in answer.citations:
        assert len(citation.snippet) <= AnswerSettings().snippet_chars + 2
        for start, end in citation.highlights:
            assert 0 <= start < end <= len(citation.snippet)


def test_colour_only_when_asked(shipped_retriever):
    answer = compose(shipped_retriever.search("好干部的标准是什么？"), AnswerSettings())
    assert "\033[" not in render_answer(answer, colour=False)
    assert "\033[1;33m" in render_answer(answer, colour=True)


def test_ask_json_has_every_citation_field_and_true_offsets(config_file, capsys):
    assert main(["--config", str(config_file), "ask", "“春风行动”坚持了多少年？", "--json", "--top-k", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["found"] is True and len(data["hits"]) == 3
    speeches = {
        s["speech_id"]: s["text"]
        for s in map(json.loads, (Path(config_file).parent / "index").glob("gen-*/speeches.jsonl").__next__().open())
    }
    for rank, hit in enumerate(data["hits"], 1):
        for field in ("rank", "score", "text", "speech_id", "title", "section_path", "paragraph_no", "start", "end"):
            assert field in hit
        assert hit["rank"] == rank
        assert speeches[hit["speech_id"]][hit["start"] : hit["end"]] == hit["text"]
    assert "一吹就是20年" in data["hits"][0]["text"]


def test_ask_human_output(config_file, capsys):
    assert main(["--config", str(config_file), "ask", "工匠日是怎么设立的？"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("答：") and "出处：" in out
    assert "全票通过了设立“工匠日”的决定" in out  # the answer itself, in the speaker's words
    assert re.search(
        r"^\[1\] 《某市全市工会组建百日攻坚行动比学赶超活动讲话稿范文》 › 一、“工匠日”的设立及启示 · 第\d+段$",
        out,
        re.M,
    )


def test_unanswerable_question_says_so(config_file, capsys):
    assert main(["--config", str(config_file), "ask", "工会会员每个月要交多少会费？"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(NOT_FOUND) and "可能相关" in out


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "empty"),
        ("问" * 10000, "limit is 500"),
        ("？！。，", "no words"),
        ("😀🎉👍", "no words"),
    ],
)
def test_bad_questions_are_one_line_errors(config_file, capsys, question, message):
    assert main(["--config", str(config_file), "ask", question]) == 1
    err = capsys.readouterr().err
    assert err.startswith("speechqa: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) <= 2


def test_missing_corpus_folder(tmp_path: Path, capsys):
    config = write_config_file(tmp_path, tmp_path / "no-such-folder")
    assert main(["--config", str(config), "ask", "工匠日"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "next:" in err
    assert "building the index" not in err  # no build is announced for a corpus that is not there


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[dense]\nmode = "sometimes"\n', "[dense] mode = 'sometimes' is not allowed; use one of: off, auto, required"),
        ('[segment]\nmax_chars = "big"\n', "[segment] max_chars = 'big' has the wrong type; expected a whole number"),
        ("[answer]\ntop_k = 0\n", "[answer] top_k = 0 is out of range"),
        ("[fusion]\ndense_weight = 2\n", "[fusion] dense_weight = 2.0 is out of range"),
        ("[dense]\ncolour = 1\n", "unknown key [dense] colour"),
        ("[dense\n", "not valid TOML"),
        ("[lexical]\nk1 = -1\n", "[lexical] k1 = -1.0 is out of range; use 0.0 to 3.0"),
        ("[segment]\nmax_chars = 3.5\n", "expected a whole number from 50 to 4000"),
        ('source = "x"\n', "unknown key source; known keys: corpus, segment"),
    ],
)
def test_bad_config_names_the_key_and_the_allowed_values(tmp_path: Path, capsys, toml, expected):
    config = tmp_path / "bad.toml"
    config.write_text(toml, "utf-8")
    assert main(["--config", str(config), "ask", "工匠日"]) == 1
    assert expected in capsys.readouterr().err


def test_config_errors_say_what_to_edit(tmp_path: Path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[answer]\ntop_k = 0\n", "utf-8")
    assert main(["ask", "工匠日", "--config", str(config)]) == 1  # --config also after the command
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1] == f"  next: edit {config} (config.toml in the repository shows every key)"


def test_a_missing_config_named_by_the_environment_says_so(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("SPEECHQA_CONFIG", str(tmp_path / "gone.toml"))
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "(from $SPEECHQA_CONFIG) does not exist" in err and "unset it" in err


def test_file_system_errors_are_one_line(tmp_path: Path, corpus_dir: Path, capsys):
    config = write_config_file(tmp_path, corpus_dir)
    (tmp_path / "index").write_text("a file where the index folder should be", "utf-8")
    assert main(["--config", str(config), "ask", "工匠日是怎么设立的？"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("speechqa: error:")]
    assert len(errors) == 1 and str(tmp_path / "index") in errors[0]
    assert "Traceback" not in err and "next: check that path" in err


def test_the_lexical_only_notice_goes_to_stderr_once(tmp_path: Path, corpus_dir: Path, capsys):
    config = write_config_file(tmp_path, corpus_dir, dense_mode="auto")
    text = config.read_text("utf-8").replace(
        'mode = "auto"', f'mode = "auto"\nmodel = "{tmp_path / "no-model-here"}"\nfallback = "none"'
    )
    config.write_text(text, "utf-8")
    assert main(["--config", str(config), "ask", "好干部的标准是什么？"]) == 0
    captured = capsys.readouterr()
    assert "lexical-only" not in captured.out and captured.out.startswith("答：")
    notices = [line for line in captured.err.splitlines() if "lexical-only mode" in line]
    assert len(notices) == 1 and notices[0].startswith("note: lexical-only mode")


def test_config_from_environment(tmp_path: Path, corpus_dir: Path, monkeypatch, capsys):
    config = write_config_file(tmp_path, corpus_dir)
    monkeypatch.setenv("SPEECHQA_CONFIG", str(config))
    assert main(["ask", "好干部的标准是什么？", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["found"] is True
    assert (tmp_path / "index" / "CURRENT").exists()


def test_ingest_reports_titles_counts_and_rules(config_file, capsys):
    assert main(["--config", str(config_file), "ingest"]) == 0
    out = capsys.readouterr().out
    assert "《当头雁 争一流 全力打造优秀工会组织》" in out
    assert re.search(r"page_markers×20", out) and "boilerplate×1" in out
    assert re.search(r"2 speech\(es\), \d+ passages, 0 skipped", out)


def test_ingest_json_emits_the_passages(config_file, capsys):
    assert main(["--config", str(config_file), "ingest", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["speeches"]) == 2 and data["problems"] == []
    assert all({"passage_id", "text", "section_path", "start", "end"} <= set(p) for p in data["passages"])


def test_eval_command(config_file, capsys):
    assert main(["--config", str(config_file), "eval", str(DEV_QUESTIONS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["hit_at_5"] == 1.0 and report["declined_unanswerable"] == 2


def test_eval_reports_each_kind_of_question(config_file, capsys, tmp_path):
    questions = tmp_path / "kinds.jsonl"
    records = [
        {"id": "a", "question": "工匠日是怎么设立的？", "gold": ["全票通过"], "answerable": True, "kind": "paraphrase"},
        {"id": "b", "question": "高血压病人吃东西要注意什么？", "gold": [], "answerable": False, "kind": "offtopic"},
    ]
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), "utf-8")
    assert main(["--config", str(config_file), "eval", str(questions)]) == 0
    out = capsys.readouterr().out
    assert "  paraphrase (1): hit@1" in out and "  offtopic (1): declined 1/1" in out
    assert main(["--config", str(config_file), "eval", str(questions), "--json"]) == 0
    by_kind = json.loads(capsys.readouterr().out)["by_kind"]
    assert set(by_kind) == {"paraphrase", "offtopic"} and by_kind["offtopic"]["declined_unanswerable"] == 1


def test_index_command_builds_then_reports_fresh(config_file, capsys):
    assert main(["--config", str(config_file), "index"]) == 0
    assert "index ready" in capsys.readouterr().out
    assert main(["--config", str(config_file), "index"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_doctor_lists_problems_with_fixes(config_file, capsys):
    code = main(["--config", str(config_file), "doctor"])
    out = capsys.readouterr().out
    assert "jieba" in out and "corpus" in out and "index" in out
    assert f"fix: speechqa --config {config_file} index" in out  # nothing built yet, and for this config
    assert code == 0  # a missing index is not fatal: ask builds it


def test_no_traceback_from_a_real_process(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text('[dense]\nmode = "maybe"\n', "utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "ask", "工匠日"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "use one of: off, auto, required" in result.stderr
