"""A build killed at any moment leaves the previous index usable, or says to rebuild; never a wrong index."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embeddings.engine import rebuild
from embeddings.errors import IndexError_
from embeddings.store import open_stored
from tests.conftest import LEAD_GOOSE, REPO, SPEECHES, UNION, make_config

LEAD_ID = "lead-goose-annual-review-speech"
KILL_AFTER_SECONDS = (0.05, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.2, 2.8)


def _write_config(folder: Path) -> Path:
    config = folder / "config.toml"
    config.write_text(
        f"""
[corpus]
path = "{folder / "speeches"}"
index_dir = "{folder / "index"}"
[lexical]
user_dict = "{REPO / "data/jieba/userdict.txt"}"
stopwords = "{REPO / "data/jieba/stopwords.txt"}"
question_frames = "{REPO / "data/jieba/question_frames.txt"}"
[dense]
mode = "off"
""",
        "utf-8",
    )
    return config


def _start_build(config: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bot.cli", "--config", str(config), "index", "--force"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_during_rebuild_leaves_old_or_new_index(tmp_path: Path):
    (tmp_path / "speeches").mkdir()
    shutil.copy(SPEECHES / LEAD_GOOSE, tmp_path / "speeches" / LEAD_GOOSE)
    config_file = _write_config(tmp_path)
    config = make_config(tmp_path / "speeches", tmp_path / "index")
    old = rebuild(config.corpus_path, config.index_path, config.engine, embedder=None, note="", progress=False)
    shutil.copy(SPEECHES / UNION, tmp_path / "speeches" / UNION)

    outcomes = set()
    for delay in KILL_AFTER_SECONDS:
        process = _start_build(config_file)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stored = open_stored(config.index_path)  # must never raise: the old index is always there
        passages = stored.read_passages()
        assert len(passages) == stored.manifest["counts"]["passages"]
        speeches = {p.speech_id for p in passages}
        assert speeches in ({LEAD_ID}, {LEAD_ID, "union-building-campaign-speech"})
        outcomes.add(len(speeches))
    assert old.passages > 0 and 1 in outcomes  # early kills saw the old index


def test_sigkill_of_a_first_build_leaves_no_index_or_a_whole_one(tmp_path: Path):
    shutil.copytree(SPEECHES, tmp_path / "speeches")
    config_file = _write_config(tmp_path)
    for delay in KILL_AFTER_SECONDS[::2]:
        shutil.rmtree(tmp_path / "index", ignore_errors=True)
        process = _start_build(config_file)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        try:
            stored = open_stored(tmp_path / "index")
        except IndexError_ as error:
            assert "speechqa index" in error.hint
        else:
            assert len(stored.read_passages()) == stored.manifest["counts"]["passages"]


def test_failure_before_the_switch_keeps_the_previous_generation(config_factory, monkeypatch: pytest.MonkeyPatch):
    from embeddings import store

    config = config_factory()
    rebuild(config.corpus_path, config.index_path, config.engine, embedder=None, note="", progress=False)
    before = open_stored(config.index_path).directory

    real_write = store.atomic_write_text

    def fail_on_pointer(path: Path, text: str) -> None:
        if path.name == store.CURRENT:
            raise OSError("disk full")
        real_write(path, text)

    monkeypatch.setattr(store, "atomic_write_text", fail_on_pointer)
    with pytest.raises(OSError):
        rebuild(config.corpus_path, config.index_path, config.engine, embedder=None, note="", progress=False)
    assert open_stored(config.index_path).directory == before
    assert before.is_dir()
