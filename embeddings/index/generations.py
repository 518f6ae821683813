"""Index generations: one build at a time, each in a new directory, switched live atomically.

A build writes a new generation completely, fsyncs it, and only then points CURRENT at it; a crash
at any moment (even SIGKILL) leaves the previous generation live. The generation it replaces is
kept until the next build, so a process that was opening it meanwhile still finds its files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embeddings.index.atomic import atomic_write_text, fsync_dir
from embeddings.index.store import CURRENT, MANIFEST, file_digest, live_name


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


def successor(root: Path, directory: Path) -> Path:
    """A new generation holding hard links to `directory`'s files (sealed ones never change), to build on."""
    following = new_generation(root)
    for path in directory.rglob("*"):
        if path.is_file() and path.name != MANIFEST:
            target = following / path.relative_to(directory)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    return following


def build_running(root: Path) -> bool:
    """Whether a build holds the lock of `root` now (another process's, or this one's)."""
    try:
        with (root / ".lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def commit_generation(root: Path, directory: Path, manifest: dict[str, Any]) -> None:
    """Seal `directory` with its manifest and make it the live index; then drop all but it and its predecessor."""
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
    previous = live_name(root)
    atomic_write_text(root / CURRENT, directory.name + "\n")
    for stale in root.glob("gen-*"):
        if stale.name not in (directory.name, previous):
            shutil.rmtree(stale, ignore_errors=True)
