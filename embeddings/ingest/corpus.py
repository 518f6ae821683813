"""A folder of speeches → cleaned speeches and their passages, with a report of what could not be read.

One bad file never stops the rest: it becomes a `Problem` naming the file and the reason. The same
speech saved under two names is indexed once and cited under both names.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from embeddings.errors import CorpusError, UnreadableSpeech
from embeddings.ingest.load import SUPPORTED_SUFFIXES, UNSUPPORTED_FORMATS, read_document
from embeddings.ingest.segment import Span, passage_spans, passages_at, segment_speech
from embeddings.ingest.structure import build_speech
from embeddings.passage import Passage, Speech
from embeddings.settings import SegmentSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    reason: str


Stamp = tuple[int, int]  # a file's size and modification time (ns), taken before it was read
# What an index already holds of a file, asked with its speech id, name in the corpus and stamp: the
# speech and its passages' spans as read then, or None.
Known = Callable[[str, str, Stamp], tuple[Speech, list[Span]] | None]


@dataclass(frozen=True, slots=True)
class Corpus:
    root: Path
    speeches: tuple[Speech, ...]
    passages: tuple[Passage, ...]
    problems: tuple[Problem, ...]
    stamps: tuple[Stamp | None, ...] = field(default=(), compare=False)  # of each speech's own file

    @property
    def content_hash(self) -> str:
        """Changes when any speech's cleaned text, id or source name changes."""
        digest = hashlib.sha256()
        for speech in self.speeches:
            digest.update(f"{speech.speech_id}\0{speech.source}\0{speech.aliases}\0{speech.content_hash}\n".encode())
        return digest.hexdigest()


_LISTED_SUFFIXES = (*SUPPORTED_SUFFIXES, *UNSUPPORTED_FORMATS)
# Files per worker process from which a corpus is read on every core: a pool costs ~50 ms to start.
PARALLEL_FROM_FILES = 100


def walk_corpus(root: Path) -> Iterator[tuple[Path, str]]:
    """`(path, "")` for each file to read below `root`, in a stable order, and `(link, reason)` for a symlink loop.

    Speech files and the document formats we cannot read are listed (the latter for `read_document`
    to refuse with a reason); hidden files, Word's `~$` lock files and other files are not.
    """
    walked: dict[tuple[int, int], Path] = {}
    for directory, subdirs, files in os.walk(root, followlinks=True):
        folder = Path(directory)
        try:
            stat = folder.stat()
        except OSError:
            subdirs[:] = []
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in walked:
            subdirs[:] = []
            first = walked[key]
            if first in folder.parents:
                where = first.relative_to(root).as_posix() if first != root else "the corpus folder"
                yield folder, f"is a symlink loop back to {where}; its files are read once, from there"
            else:
                logger.info("%s is another way into %s; read once", folder, first)
            continue
        walked[key] = folder
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith((".", "~$")) and name.lower().endswith(_LISTED_SUFFIXES):
                yield folder / name, ""


def speech_files(root: Path) -> Iterator[Path]:
    """The files `load_corpus` reads below `root`, in its order."""
    return (path for path, loop in walk_corpus(root) if not loop)


def speech_id_for(relative: Path) -> str:
    """A stable id from the file's path inside the corpus: `sub/讲话 1.docx` → `sub/讲话-1`."""
    stem = relative.with_suffix("").as_posix()
    return re.sub(r"\s+", "-", stem.strip()) or "speech"


def load_corpus(root: Path, settings: SegmentSettings, known: Known | None = None) -> Corpus:
    """Load every speech below `root`; raise `CorpusError` only when none at all can be used.

    A file `known` holds as it is now (same name, id, size and time) is taken from there, not read again.
    """
    if not root.exists():
        raise CorpusError(f"corpus folder {root} does not exist", "put .txt, .md or .docx speeches there")
    if not root.is_dir():
        raise CorpusError(f"corpus path {root} is not a folder", "point [corpus] path at a folder")
    files = list(walk_corpus(root))
    readable = [path for path, loop in files if not loop]
    to_read: list[File] = [
        (path, speech_id, path.relative_to(root).as_posix())
        for path, speech_id in zip(readable, _speech_ids(root, readable), strict=True)
    ]
    stamps = [_stamp(path) for path in readable]
    held = [
        known(speech_id, source, stamp) if known is not None and stamp is not None else None
        for (_, speech_id, source), stamp in zip(to_read, stamps, strict=True)
    ]
    read = _read_all([file for file, was in zip(to_read, held, strict=True) if was is None], settings)
    outcomes = zip((next(read) if was is None else was for was in held), stamps, strict=True)
    speeches: list[Speech] = []
    kept_stamps: list[Stamp | None] = []
    passages: list[list[Passage]] = []
    problems: list[Problem] = []
    by_hash: dict[str, int] = {}
    for path, loop in files:
        relative = path.relative_to(root).as_posix()
        if loop:
            problems.append(Problem(relative, loop))
            continue
        outcome, stamp = next(outcomes)
        if isinstance(outcome, str):
            problems.append(Problem(relative, outcome))
            continue
        speech, spans = outcome
        if not speech.paragraphs:
            problems.append(Problem(relative, "has a title but no body text to index"))
            continue
        first = by_hash.get(speech.content_hash)
        if first is not None:
            kept = speeches[first] = replace(speeches[first], aliases=(*speeches[first].aliases, speech.source))
            passages[first] = segment_speech(kept, settings)  # passages carry the names they are cited under
            logger.info("%s duplicates %s; indexed once", speech.source, kept.source)
            continue
        by_hash[speech.content_hash] = len(speeches)
        speeches.append(speech)
        kept_stamps.append(stamp)
        passages.append(passages_at(speech, spans))
    for problem in problems:
        # INFO, not WARNING: front-ends show `Corpus.problems` themselves, and a warning would say it twice.
        logger.info("skipped %s: %s", problem.path, problem.reason)
    if not speeches:
        raise CorpusError(
            f"no readable speech in {root}" + (f" ({len(problems)} file(s) skipped)" if problems else ""),
            "add UTF-8 or GBK .txt/.md files or .docx files to the folder",
        )
    return Corpus(root, tuple(speeches), tuple(p for cut in passages for p in cut), tuple(problems), tuple(kept_stamps))


def _stamp(path: Path) -> Stamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None  # reading it says why
    return stat.st_size, stat.st_mtime_ns


def _speech_ids(root: Path, paths: list[Path]) -> list[str]:
    """Each file's speech id: `讲话 1.txt`, `讲话-1.txt` and `讲话-1.md` share a base id; passage ids must differ."""
    used: set[str] = set()
    ids = []
    for path in paths:
        speech_id = base_id = speech_id_for(path.relative_to(root))
        copy = 1
        while speech_id in used:
            copy += 1
            speech_id = f"{base_id}-{copy}"
        used.add(speech_id)
        ids.append(speech_id)
    return ids


Outcome = tuple[Speech, list[Span]] | str  # a speech and where its passages lie, or why the file cannot be used


File = tuple[Path, str, str]  # a file to read: its path, its speech id, its name inside the corpus


def _read_all(files: list[File], settings: SegmentSettings) -> Iterator[Outcome]:
    """Each file read, cleaned and cut into passages, in order; on every core for a large corpus."""
    read = partial(_read, settings=settings)
    workers = min(os.cpu_count() or 1, len(files) // PARALLEL_FROM_FILES)
    return map(read, files) if workers <= 1 else _pooled(read, files, workers)


def _pooled(read: Callable[[File], Outcome], files: list[File], workers: int) -> Iterator[Outcome]:
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(read, files, chunksize=16)


def _read(file: File, settings: SegmentSettings) -> Outcome:
    path, speech_id, source = file
    try:
        speech = build_speech(read_document(path), speech_id, source)
    except UnreadableSpeech as error:
        return str(error).removeprefix(f"{path}: ")
    return speech, passage_spans(speech, settings) if speech.paragraphs else []
