"""A rebuild cuts only new and changed speeches into words, and writes what a build from scratch writes."""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from embeddings.engine import open_retriever, rebuild
from embeddings.index import bm25build, wordsbuild
from embeddings.index import build as build_module
from embeddings.index.forward import FORWARD, RUNS
from embeddings.index.knownfiles import known_files
from embeddings.index.store import MANIFEST, open_live
from embeddings.ingest import corpus as corpus_module
from embeddings.ingest.corpus import load_corpus
from embeddings.settings import EngineSettings
from tests.conftest import LEAD_GOOSE, SHARED, SPEECHES, UNION, make_config

REPORTS = ("cpc-congress-01-beijing-report.txt", "cpc-congress-03-chen-duxiu-report.txt", "cpc-congress-09-report.txt")


def _corpus(folder: Path) -> Path:
    folder.mkdir()
    for path in [SPEECHES / UNION, SPEECHES / LEAD_GOOSE, *(SHARED / "corpus-reports" / name for name in REPORTS)]:
        shutil.copy(path, folder / path.name)
    return folder


def _build(corpus: Path, index: Path, settings: EngineSettings | None = None) -> tuple[int, dict[str, bytes]]:
    """(passages cut into words, every file of the generation but its manifest)."""
    engine = settings or make_config(corpus, index).engine
    report = rebuild(corpus, index, engine, embedder=None, note="", progress=False)
    files = {
        path.relative_to(report.directory).as_posix(): path.read_bytes()
        for path in report.directory.rglob("*")
        if path.is_file() and path.name != MANIFEST
    }
    return report.cut, files


def _passages_of(corpus: Path, *speech_ids: str) -> int:
    passages = load_corpus(corpus, make_config(corpus, corpus).engine.segment).passages
    return sum(passage.speech_id in speech_ids for passage in passages)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rebuild_after_adding_changing_and_removing_speeches_equals_a_build_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # Chunks of 7 passages on `workers` processes: reused stretches and cut ones meet inside and across chunks.
    monkeypatch.setattr(bm25build, "CHUNK_PASSAGES", 7)
    monkeypatch.setattr(wordsbuild, "CHUNK_PASSAGES", 7)
    monkeypatch.setattr(bm25build.os, "cpu_count", lambda: workers)
    corpus, index = _corpus(tmp_path / "speeches"), tmp_path / "index"
    first, _ = _build(corpus, index)
    assert first == _passages_of(corpus, *(name.removesuffix(".txt") for name in (UNION, LEAD_GOOSE, *REPORTS)))

    # A speech added between two others, one changed, one removed.
    (corpus / "cpc-congress-02-new-report.txt").write_text(
        "新增的报告\n\n工匠节定在每年三月，由市人大作出决定。\n\n职工书屋建在车间旁边。\n", "utf-8"
    )
    changed = corpus / LEAD_GOOSE
    changed.write_text(changed.read_text("utf-8") + "\n\n新增的一段：头雁要飞在前面。\n", "utf-8")
    (corpus / REPORTS[1]).unlink()
    cut, incremental = _build(corpus, index)

    assert cut == _passages_of(corpus, "cpc-congress-02-new-report", LEAD_GOOSE.removesuffix(".txt"))
    _, from_scratch = _build(corpus, tmp_path / "fresh")
    assert incremental.keys() == from_scratch.keys() and f"{FORWARD}/{RUNS}" in incremental
    assert [name for name in incremental if incremental[name] != from_scratch[name]] == []


def test_nothing_is_reused_when_the_settings_that_cut_words_change(tmp_path: Path) -> None:
    corpus, index = _corpus(tmp_path / "speeches"), tmp_path / "index"
    everything, _ = _build(corpus, index)
    engine = make_config(corpus, index).engine
    assert _build(corpus, index, engine)[0] == 0  # unchanged: nothing to cut
    other_bigrams = replace(engine, lexical=replace(engine.lexical, bigrams=not engine.lexical.bigrams))
    assert _build(corpus, index, other_bigrams)[0] == everything


def test_a_forced_rebuild_cuts_every_passage_again(tmp_path: Path) -> None:
    corpus, index = _corpus(tmp_path / "speeches"), tmp_path / "index"
    everything, _ = _build(corpus, index)
    _, report = open_retriever(corpus, index, make_config(corpus, index).engine, force=True)
    assert report is not None and report.cut == everything


def test_unreadable_tokens_of_the_live_index_mean_cutting_again_not_failing(tmp_path: Path) -> None:
    corpus, index = _corpus(tmp_path / "speeches"), tmp_path / "index"
    everything, built = _build(corpus, index)
    live = index / (index / "CURRENT").read_text("utf-8").strip()
    (live / FORWARD / RUNS).write_text(json.dumps([["a-key", 10**6]]), "utf-8")  # rows the index does not have
    cut, rebuilt = _build(corpus, index)
    assert cut == everything and rebuilt == built


def test_a_large_corpus_is_read_on_every_core_into_the_same_speeches_and_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path / "speeches")
    shutil.copy(SPEECHES / UNION, corpus / "a-copy-of-the-union-speech.txt")  # cited under both names
    (corpus / "broken.txt").write_bytes(b"\xff\xfe\x00garbage\x00" * 10)
    (corpus / "broken.docx").write_bytes(b"not a zip")
    segment = make_config(corpus, tmp_path).engine.segment
    one_process = load_corpus(corpus, segment)
    monkeypatch.setattr(corpus_module, "PARALLEL_FROM_FILES", 1)
    monkeypatch.setattr(corpus_module.os, "cpu_count", lambda: 2)
    pooled = corpus_module._pooled
    pools: list[int] = []

    def counted(read: Any, files: Any, workers: int) -> Any:
        pools.append(workers)
        return pooled(read, files, workers)

    monkeypatch.setattr(corpus_module, "_pooled", counted)
    every_core = load_corpus(corpus, segment)
    assert pools == [2] and every_core == one_process
    assert any(speech.aliases for speech in every_core.speeches)
    assert {problem.path for problem in every_core.problems} >= {"broken.docx"}


def test_only_new_and_changed_files_are_read_again_into_the_same_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, index = _corpus(tmp_path / "speeches"), tmp_path / "index"
    shutil.copy(SPEECHES / UNION, corpus / "a-copy-of-the-union-speech.txt")  # cited under both names
    engine = make_config(corpus, index).engine
    _build(corpus, index)
    (corpus / "cpc-congress-02-new-report.txt").write_text("新增的报告\n\n职工书屋建在车间旁边。\n", "utf-8")
    changed = corpus / LEAD_GOOSE
    changed.write_text(changed.read_text("utf-8").replace("头雁", "领头雁", 1), "utf-8")

    read: list[str] = []
    real_read = corpus_module.read_document

    def counted(path: Path) -> Any:
        read.append(path.name)
        return real_read(path)

    monkeypatch.setattr(corpus_module, "read_document", counted)
    again = load_corpus(corpus, engine.segment, known_files(open_live(index), engine))
    # And the second name of the duplicate: the index keeps the speech under its first name only.
    assert sorted(read) == sorted(["cpc-congress-02-new-report.txt", LEAD_GOOSE, UNION])
    assert again == load_corpus(corpus, engine.segment)  # duplicates and their aliases found as before
    assert any(speech.aliases for speech in again.speeches)


@pytest.mark.parametrize("how", ["thread", "process"])
def test_corpus_files_written_beside_the_words_are_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    corpus = _corpus(tmp_path / "speeches")
    _, inline = _build(corpus, tmp_path / "inline")
    monkeypatch.setattr(build_module, "_how_to_write", lambda passages, cut: how)
    writer = tmp_path / "writer"
    write_passages = build_module.write_passages

    def noting_the_writer(directory: Path, passages: Any) -> int:
        writer.write_text(f"{os.getpid()} {threading.current_thread().name}", "utf-8")
        return write_passages(directory, passages)

    monkeypatch.setattr(build_module, "write_passages", noting_the_writer)
    _, beside = _build(corpus, tmp_path / "beside")
    pid, thread = writer.read_text("utf-8").split()
    assert (int(pid) != os.getpid()) if how == "process" else thread.startswith("corpus-files")
    assert beside == inline


def test_which_way_the_corpus_files_are_written() -> None:
    assert build_module._how_to_write(100, 100) == "inline"  # small: forking or a thread costs more
    assert build_module._how_to_write(100_000, 100_000) == "thread"  # workers busy cutting
    assert build_module._how_to_write(100_000, 24) == "process"  # a core idle


@pytest.mark.parametrize("how", ["thread", "process"])
def test_a_failure_writing_the_corpus_files_fails_the_build_and_keeps_the_live_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(build_module, "_how_to_write", lambda passages, cut: how)
    corpus, index = _corpus(tmp_path / "speeches"), tmp_path / "index"
    _build(corpus, index)
    live = (index / "CURRENT").read_text("utf-8")
    (corpus / REPORTS[0]).unlink()

    def disk_full(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build_module, "write_passages", disk_full)  # in a forked process too
    with pytest.raises(OSError, match="No space left"):
        _build(corpus, index)
    assert (index / "CURRENT").read_text("utf-8") == live
