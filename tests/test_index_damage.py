"""A damaged or outdated index is refused with the rebuild command, and the engine rebuilds it; never a traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embeddings.engine import IndexState, index_status, open_retriever
from embeddings.errors import IndexError_
from embeddings.index.store import INDEX_FORMAT, MANIFEST, file_digest, open_stored
from embeddings.retrieval.retrieve import Retriever
from tests.conftest import SPEECHES, make_config


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One lexical index over the shipped speeches, built once; each test damages its own copy."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(SPEECHES, root / "speeches")
    config = make_config(root / "speeches", root / "index")
    open_retriever(config.corpus_path, config.index_path, config.engine)
    return root / "speeches", root / "index"


@pytest.fixture
def built(pristine: tuple[Path, Path], tmp_path: Path) -> tuple[Any, Path, Path, int]:
    """(config, index folder, live generation, passage count) of a private copy of the pristine index."""
    corpus, source = pristine
    shutil.copytree(source, tmp_path / "index")
    config = make_config(corpus, tmp_path / "index")
    stored = open_stored(config.index_path)
    return config, config.index_path, stored.directory, stored.manifest["counts"]["passages"]


def _rewrite_manifest(directory: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    path = directory / MANIFEST
    manifest = json.loads(path.read_text("utf-8"))
    changed = change(manifest)
    path.write_text(json.dumps(manifest if changed is None else changed), "utf-8")


def _first_file(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(iter(manifest["files"].values()))


MANIFEST_DAMAGE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "files-emptied": lambda m: m.update(files={}),
    "files-missing": lambda m: m.pop("files"),
    "files-a-list": lambda m: m.update(files=list(m["files"])),
    "file-entry-not-an-object": lambda m: m["files"].update({"passages.jsonl": "63"}),
    "size-a-string": lambda m: _first_file(m).update(size="12"),
    "digest-missing": lambda m: _first_file(m).pop("sha256"),
    "name-escapes": lambda m: m["files"].update({"../../etc/passwd": _first_file(m)}),
    "counts-missing": lambda m: m.pop("counts"),
    "count-a-string": lambda m: m["counts"].update(passages="63"),
    "dense-a-string": lambda m: m.update(dense="yes"),
    "dense-without-dimension": lambda m: m.update(dense={"model": "x", "fingerprint": "", "index": "flat"}),
    "format-missing": lambda m: m.pop("format"),
    "corpus-hash-missing": lambda m: m.pop("corpus_hash"),
    "not-an-object": lambda m: [m],
}


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE)
def test_a_damaged_manifest_is_refused_with_the_rebuild_hint(built, damage):
    config, index, directory, _ = built
    _rewrite_manifest(directory, MANIFEST_DAMAGE[damage])
    with pytest.raises(IndexError_) as raised:
        open_stored(index)
    assert "manifest" in str(raised.value) and raised.value.hint == "rebuild it with: speechqa index"
    assert index_status(config.corpus_path, index, config.engine, None).state is IndexState.DAMAGED


def test_an_emptied_file_list_is_rebuilt(built):
    config, index, directory, passages = built
    _rewrite_manifest(directory, MANIFEST_DAMAGE["files-emptied"])
    rebuilt, report = open_retriever(config.corpus_path, index, config.engine)
    assert report is not None and len(rebuilt.passages) == passages


def _forge(directory: Path, name: str, data: bytes) -> None:
    """Replace one part and fix its digest in the manifest: damage only the loader can catch."""
    (directory / name).write_bytes(data)
    path = directory / name

    def fix(manifest: dict[str, Any]) -> None:
        manifest["files"][name] = {"size": path.stat().st_size, "sha256": file_digest(path)}

    _rewrite_manifest(directory, fix)


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _lexical(directory: Path, name: str) -> np.ndarray:
    return np.load(directory / "lexical" / name, allow_pickle=False)


PART_DAMAGE: dict[str, Callable[[Path], tuple[str, bytes]]] = {
    "bm25-data-truncated": lambda d: (
        "lexical/data.csc.index.npy",
        (d / "lexical/data.csc.index.npy").read_bytes()[:200],
    ),
    "bm25-data-shorter": lambda d: ("lexical/data.csc.index.npy", _npy(_lexical(d, "data.csc.index.npy")[:-5])),
    "bm25-rows-out-of-range": lambda d: (
        "lexical/indices.csc.index.npy",
        _npy(_lexical(d, "indices.csc.index.npy") + 1000),
    ),
    "bm25-columns-decreasing": lambda d: (
        "lexical/indptr.csc.index.npy",
        _npy(_lexical(d, "indptr.csc.index.npy")[::-1].copy()),
    ),
    "bm25-without-counts": lambda d: ("lexical/meta.json", b'{"vocab": {}}'),
    "bm25-counts-not-json": lambda d: ("lexical/meta.json", b"\xff\xfe"),
    "bm25-vocabulary-shorter": lambda d: ("lexical/vocab.txt", (d / "lexical/vocab.txt").read_bytes()[:-40]),
    "passage-offsets-garbled": lambda d: ("passages.jsonl.offsets.npy", _npy(np.arange(3, dtype=np.int64))),
    "speech-ids-not-sorted": lambda d: ("speech_ids.txt", (d / "speech_ids.txt").read_bytes()[::-1]),
    "paragraphs-shorter": lambda d: ("paragraphs.npy", _npy(np.load(d / "paragraphs.npy")[:-1])),
    "passages-not-json": lambda d: ("passages.jsonl", b"{not json\n"),
    "passages-missing-fields": lambda d: ("passages.jsonl", b'{"passage_id": "x"}\n'),
    "speeches-missing-fields": lambda d: ("speeches.jsonl", b'{"speech_id": "x"}\n'),
    "query-dictionary-garbled": lambda d: ("query_dict.txt", "工会\n".encode()),
}


@pytest.mark.parametrize("damage", PART_DAMAGE)
def test_a_part_that_does_not_load_is_refused_with_the_rebuild_hint(built, damage):
    config, index, directory, _ = built
    _forge(directory, *PART_DAMAGE[damage](directory))
    stored = open_stored(index)  # the digests match: only the loaders stand in the way
    with pytest.raises(IndexError_) as raised:
        Retriever(stored, config.engine)
    assert raised.value.hint == "rebuild it with: speechqa index"


def test_truncated_bm25_arrays_are_rebuilt_automatically(built):
    config, index, directory, passages = built
    _forge(directory, *PART_DAMAGE["bm25-data-truncated"](directory))
    with pytest.raises(IndexError_) as raised:
        Retriever(open_stored(index), config.engine)
    reasons: list[str] = []
    rebuilt, report = open_retriever(config.corpus_path, index, config.engine, on_rebuild=reasons.append)
    assert report is not None and len(rebuilt.passages) == passages
    assert reasons == [str(raised.value)]
    assert rebuilt.search("工匠日是怎么设立的？").hits


def test_an_index_of_another_format_is_stale_and_rebuilt(built):
    config, index, directory, _ = built
    _rewrite_manifest(directory, lambda m: m.update(format=INDEX_FORMAT - 1))
    status = index_status(config.corpus_path, index, config.engine, None)
    assert status.state is IndexState.STALE
    assert f"index format {INDEX_FORMAT - 1}, this version uses {INDEX_FORMAT}" in status.reason
    _, report = open_retriever(config.corpus_path, index, config.engine)
    assert report is not None and open_stored(index).manifest["format"] == INDEX_FORMAT


def test_another_package_version_alone_does_not_force_a_rebuild(built):
    config, index, directory, _ = built
    _rewrite_manifest(directory, lambda m: m.update(package_version="0.0.1"))
    assert index_status(config.corpus_path, index, config.engine, None).state is IndexState.FRESH
