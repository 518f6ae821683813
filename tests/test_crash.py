"""A build killed at any write step leaves the previous index usable, or says to rebuild; never a wrong index.

The build runs in a forked child that counts its file-system write steps (creating, writing,
syncing, renaming, deleting) and SIGKILLs itself just before step N, for every N the build has.
Forking from a process that has already loaded jieba's dictionary keeps each run to a fraction of
a second, and every run starts from the same copy of the index, so step N is the same step each time.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embeddings.engine import IndexState, index_status, rebuild
from embeddings.errors import IndexError_
from embeddings.index.store import open_stored
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import DenseSettings, EngineSettings, FusionSettings
from tests.conftest import LEAD_GOOSE, SPEECHES, UNION, make_config
from tests.fakes import FakeEmbedder

# (module, attribute) of every function through which a build writes to the file system.
WRITE_STEPS = (
    ("embeddings.index.build", "new_generation"),
    ("embeddings.index.build", "write_passages"),
    ("embeddings.index.build", "write_speeches"),
    ("embeddings.index.build", "write_query_dictionary"),
    ("embeddings.index.densebuild", "save_vector_index"),
    ("embeddings.index.build", "successor"),
    ("embeddings.index.wordsbuild", "assemble"),
    ("embeddings.index.wordsbuild", "write_strings"),
    ("embeddings.index.wordsbuild", "write_meta"),
    ("embeddings.index.bm25build", "Spill.add"),
    ("embeddings.index.forward", "ForwardWriter.add"),
    ("embeddings.index.forward", "ForwardWriter.close"),
    ("embeddings.index.atomic", "_create_temporary"),
    ("pathlib", "Path.replace"),
    ("shutil", "rmtree"),
)


def _settings(corpus: Path, index: Path) -> EngineSettings:
    engine = make_config(corpus, index).engine
    # A set weight: calibrated, the fake model might earn 0 and its vectors would go unread.
    return replace(engine, dense=DenseSettings(mode="auto", model=FakeEmbedder().name), fusion=FusionSettings(0.5))


def _add_speech(corpus: Path, name: str) -> None:
    """The title and first paragraphs of a shipped speech: a build of a few passages keeps each run short."""
    lines = (SPEECHES / name).read_text("utf-8").splitlines()[:8]
    (corpus / name).write_text("\n".join(lines) + "\n", "utf-8")


def _count_steps(kill_at: int, log: list[str]) -> None:
    """Wrap every write step (in this forked child only) to log it and die just before step `kill_at`."""
    import importlib

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            paths = " ".join(Path(a).name for a in args if isinstance(a, str | pathlib.PurePath))
            log.append(f"{name} {paths}")
            if len(log) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        return step

    for module_name, attribute in WRITE_STEPS:
        owner: Any = importlib.import_module(module_name)
        *path, leaf = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, leaf, wrap(attribute, getattr(owner, leaf)))


def _build_in_child(kill_at: int, corpus: Path, index: Path, log_file: Path) -> int:
    """Fork, build with the step counter armed, and return the child's exit code (-9 when it was killed)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            log: list[str] = []
            _count_steps(kill_at, log)
            rebuild(corpus, index, _settings(corpus, index), embedder=FakeEmbedder(), note="", progress=False)
            log_file.write_text(json.dumps(log), "utf-8")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _check_whole(index: Path, corpus: Path) -> tuple[str, int]:
    """The live index loads and its parts agree; returns its (corpus hash, passage count)."""
    stored = open_stored(index)
    embedder = FakeEmbedder()
    retriever = Retriever(stored, _settings(corpus, index), embedder)  # refuses parts that disagree
    assert retriever.mode == "hybrid" and retriever.sentences is not None
    assert retriever.sentences.count == len(retriever.units)
    unit = len(retriever.units) // 2
    expected = embedder.embed_passages([retriever.unit_text(unit).strip()])[0]
    assert np.allclose(retriever.sentences.vector(unit), expected)  # row u of FAISS is sentence unit u
    return stored.manifest["corpus_hash"], stored.manifest["counts"]["passages"]


def _kill_at_every_step(tmp_path: Path, corpus: Path, index: Path, check: Callable[[], str]) -> list[str]:
    """Run the build once to list its steps, then kill it before each; `check` judges each aftermath."""
    pristine = tmp_path / "pristine"
    if index.exists():
        shutil.copytree(index, pristine)

    def restore() -> None:
        shutil.rmtree(index, ignore_errors=True)
        if pristine.exists():
            shutil.copytree(pristine, index)

    log_file = tmp_path / "steps.json"
    assert _build_in_child(0, corpus, index, log_file) == 0
    steps = json.loads(log_file.read_text("utf-8"))
    outcomes = []
    for kill_at in range(1, len(steps) + 1):
        restore()
        assert _build_in_child(kill_at, corpus, index, log_file) == -signal.SIGKILL, steps[kill_at - 1]
        outcomes.append(check())
    # What the last kill left behind (a half-pruned generation) does not stop the next build.
    report = rebuild(corpus, index, _settings(corpus, index), embedder=FakeEmbedder(), note="", progress=False)
    assert report.embedded + report.reused == report.units
    _check_whole(index, corpus)
    return outcomes


def _switch_step(tmp_path: Path) -> int:
    """Where (from 0) in the logged steps CURRENT is renamed into place."""
    steps = json.loads((tmp_path / "steps.json").read_text("utf-8"))
    return next(i for i, step in enumerate(steps) if step.startswith("Path.replace") and step.endswith(" CURRENT"))


def test_sigkill_at_every_write_step_of_a_rebuild_leaves_the_old_or_the_new_index(tmp_path: Path):
    corpus, index = tmp_path / "speeches", tmp_path / "index"
    corpus.mkdir()
    _add_speech(corpus, LEAD_GOOSE)
    for _ in range(2):  # two generations, so the new build also prunes one
        rebuild(corpus, index, _settings(corpus, index), embedder=FakeEmbedder(), note="", progress=False)
    old = _check_whole(index, corpus)
    _add_speech(corpus, UNION)

    new: set[tuple[str, int]] = set()

    def check() -> str:
        live = _check_whole(index, corpus)  # never raises: the CURRENT switch is atomic
        state = index_status(corpus, index, _settings(corpus, index), FakeEmbedder().name).state
        if live == old:
            assert state is IndexState.STALE  # the engine will rebuild it for the added speech
            return "old"
        new.add(live)
        assert state is IndexState.FRESH and live[1] > old[1]
        return "new"

    outcomes = _kill_at_every_step(tmp_path, corpus, index, check)
    written = (tmp_path / "steps.json").read_text("utf-8")
    for expected in ("embeddings.npz", "dense.faiss", "manifest.json", "CURRENT", "rmtree"):
        assert expected in written  # the cache, the vectors, the seal, the switch and the pruning
    # Up to the switch the old index serves; from the switch on, the whole new one.
    switch = _switch_step(tmp_path)
    assert outcomes == ["old"] * (switch + 1) + ["new"] * (len(outcomes) - switch - 1)
    assert len(new) == 1


def test_sigkill_at_every_write_step_of_a_first_build_leaves_no_index_or_a_whole_one(tmp_path: Path):
    corpus, index = tmp_path / "speeches", tmp_path / "index"
    corpus.mkdir()
    for name in (LEAD_GOOSE, UNION):
        _add_speech(corpus, name)

    def check() -> str:
        state = index_status(corpus, index, _settings(corpus, index), FakeEmbedder().name).state
        try:
            _check_whole(index, corpus)
        except IndexError_ as error:
            assert "speechqa index" in error.hint and state is IndexState.MISSING
            return "none"
        assert state is IndexState.FRESH
        return "whole"

    outcomes = _kill_at_every_step(tmp_path, corpus, index, check)
    switch = _switch_step(tmp_path)
    assert outcomes == ["none"] * (switch + 1) + ["whole"] * (len(outcomes) - switch - 1)


def test_failure_before_the_switch_keeps_the_previous_generation(config_factory, monkeypatch: pytest.MonkeyPatch):
    from embeddings.index import generations, store

    config = config_factory()
    rebuild(config.corpus_path, config.index_path, config.engine, embedder=None, note="", progress=False)
    before = open_stored(config.index_path).directory

    real_write = generations.atomic_write_text

    def fail_on_pointer(path: Path, text: str) -> None:
        if path.name == store.CURRENT:
            raise OSError("disk full")
        real_write(path, text)

    monkeypatch.setattr(generations, "atomic_write_text", fail_on_pointer)
    with pytest.raises(OSError):
        rebuild(config.corpus_path, config.index_path, config.engine, embedder=None, note="", progress=False)
    assert open_stored(config.index_path).directory == before
    assert before.is_dir()
