"""The built index on disk: a plain directory with a manifest, switched into place atomically.

    INDEX_DIR/CURRENT            name of the live generation (replaced atomically)
    INDEX_DIR/gen-*/manifest.json   versions, model, counts, corpus and config hashes, file digests
    INDEX_DIR/gen-*/passages.jsonl  row i = BM25 document i = FAISS vector i
    INDEX_DIR/gen-*/speeches.jsonl  cleaned speech texts, for whole paragraphs and offsets
    INDEX_DIR/gen-*/lexical/, query_dict.txt, dense.faiss
    INDEX_DIR/cache/             embeddings by passage content hash (survive rebuilds)

A build writes a new generation completely, fsyncs it, and only then points CURRENT at it; a crash
at any moment leaves the previous generation live. Every file is checked against the manifest's
size and SHA-256 on load, so a truncated or altered index is refused, never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embeddings.atomic import atomic_write_text, fsync_dir
from embeddings.errors import IndexError_
from embeddings.passage import Paragraph, Passage, Speech

FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
REBUILD_HINT = "rebuild it with: speechqa index"


@dataclass(frozen=True)
class StoredIndex:
    """A verified generation on disk; heavy parts are read by their own modules."""

    directory: Path
    manifest: dict[str, Any]

    def read_passages(self) -> list[Passage]:
        lines = (self.directory / "passages.jsonl").read_text("utf-8").splitlines()
        return [Passage.from_dict(json.loads(line)) for line in lines]

    def read_speeches(self) -> dict[str, Speech]:
        speeches = {}
        for line in (self.directory / "speeches.jsonl").read_text("utf-8").splitlines():
            record = json.loads(line)
            record["paragraphs"] = tuple(
                Paragraph(p["number"], p["start"], p["end"], tuple(p["section_path"])) for p in record["paragraphs"]
            )
            record["sections"] = tuple(record["sections"])
            record["aliases"] = tuple(record["aliases"])
            speeches[record["speech_id"]] = Speech(**record)
        return speeches


def speech_record(speech: Speech) -> dict[str, Any]:
    return {
        "speech_id": speech.speech_id,
        "source": speech.source,
        "title": speech.title,
        "subtitle": speech.subtitle,
        "text": speech.text,
        "paragraphs": [
            {"number": p.number, "start": p.start, "end": p.end, "section_path": list(p.section_path)}
            for p in speech.paragraphs
        ],
        "sections": list(speech.sections),
        "rules_fired": speech.rules_fired,
        "encoding": speech.encoding,
        "aliases": list(speech.aliases),
    }


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One build at a time per index directory (a bot and a CLI may both try)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_generation(root: Path) -> Path:
    directory = root / f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    directory.mkdir(parents=True)
    return directory


def commit_generation(root: Path, directory: Path, manifest: dict[str, Any]) -> None:
    """Seal `directory` with its manifest and make it the live index; then drop older generations."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    manifest["files"] = {
        p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": file_digest(p)} for p in files
    }
    for path in files:
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2))
    for sub in {p.parent for p in files} | {directory}:
        fsync_dir(sub)
    atomic_write_text(root / CURRENT, directory.name + "\n")
    for stale in root.glob("gen-*"):
        if stale != directory:
            shutil.rmtree(stale, ignore_errors=True)


def open_stored(root: Path, verify: bool = True) -> StoredIndex:
    """The live generation, verified against its manifest; `IndexError_` says what is wrong."""
    pointer = root / CURRENT
    if not pointer.is_file():
        raise IndexError_(f"no index has been built in {root}", REBUILD_HINT)
    directory = root / pointer.read_text("utf-8").strip()
    try:
        manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise IndexError_(f"the index manifest in {directory} cannot be read ({error})", REBUILD_HINT) from error
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexError_(
            f"the index in {directory} has format {manifest.get('format')}, this version reads {FORMAT_VERSION}",
            REBUILD_HINT,
        )
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise IndexError_(f"the index file {path} is missing", REBUILD_HINT)
        if path.stat().st_size != expected["size"] or (verify and file_digest(path) != expected["sha256"]):
            raise IndexError_(f"the index file {path} is damaged (size or checksum differs)", REBUILD_HINT)
    return StoredIndex(directory, manifest)
