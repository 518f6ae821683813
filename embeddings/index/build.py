"""Building an index generation from a corpus: tokens and BM25, the corpus files, the manifest.

The dense side (embeddings and FAISS) is `densebuild`; when it has much to embed, the words-only
index is sealed and served first, and the finished one replaces it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embeddings.index.densebuild import build_dense
from embeddings.index.forward import passage_runs
from embeddings.index.generations import build_lock, commit_generation, new_generation, successor
from embeddings.index.knownfiles import write_known
from embeddings.index.lazycorpus import write_passages, write_speeches
from embeddings.index.store import INDEX_FORMAT, PARAGRAPHS_FILE, UNITS_FILE, open_live
from embeddings.index.units import Units, unit_table, unit_texts
from embeddings.index.wordsbuild import build_words, dictionary_hash, passages_to_cut, reusable
from embeddings.ingest.corpus import Corpus, Problem
from embeddings.models.dense import Embedder
from embeddings.retrieval.paragraphs import paragraph_ids
from embeddings.settings import EngineSettings
from embeddings.text.tokenize import BIGRAM_PREFIX, load_stopwords, write_query_dictionary

logger = logging.getLogger(__name__)
SEPARATE_FROM_PASSAGES = 20_000  # from this size the corpus files are written beside the words, not before
Writing = Literal["inline", "thread", "process"]


@dataclass(frozen=True, slots=True)
class BuildReport:
    directory: Path
    passages: int
    embedded: int
    reused: int
    dense_weight: float | None
    problems: tuple[Problem, ...] = ()  # files of the corpus that could not be indexed, with why
    units: int = 0  # sentence units: what the dense side embeds
    cut: int = 0  # passages cut into words; the others' tokens came from the previous generation


def build_index(
    corpus: Corpus,
    settings: EngineSettings,
    root: Path,
    *,
    embedder: Embedder | None,
    dense_note: str = "",
    progress: bool = False,
    extra_manifest: dict[str, Any] | None = None,
    reuse_words: bool = True,
) -> BuildReport:
    """Write a complete new generation for `corpus` and switch it live; the old one serves until then.

    Unless not `reuse_words`, speeches the live generation holds unchanged are not cut into words again.
    """
    lexical_settings = settings.lexical
    with build_lock(root):
        previous = reusable(open_live(root), settings) if reuse_words else None
        runs = passage_runs(corpus.passages)
        cut = passages_to_cut(runs, previous)
        directory = new_generation(root)
        write = functools.partial(_write_corpus, corpus, directory, settings.segment.max_chars)
        with alongside(write, _how_to_write(len(corpus.passages), cut)):
            names = build_words(
                corpus.passages, settings, directory / "lexical", progress, previous=previous, runs=runs
            )
        units = Units(np.load(directory / UNITS_FILE, allow_pickle=False))
        # The corpus's words are its tokens less the bigrams (stop words and punctuation are never
        # tokens); question words too, so "哪一天" is cut whole (and dropped as a stop word), not into 哪 + 一天.
        corpus_words = {name for name in names if not name.startswith(BIGRAM_PREFIX)}
        question_words = load_stopwords(Path(lexical_settings.stopwords)) | load_stopwords(
            Path(lexical_settings.question_frames)
        )
        write_query_dictionary(
            directory / "query_dict.txt", corpus_words | question_words, Path(lexical_settings.user_dict)
        )
        vocabulary = len(names)

        dense: dict[str, Any] | None = None
        embedded = reused = 0
        weight: float | None = None
        manifest = _manifest(
            corpus, settings, units=len(units), vocabulary=vocabulary, dense_note=dense_note, extra=extra_manifest
        )
        if embedder is not None:

            def provisional(missing: int) -> Path:
                """Serve words-only while a long embedding runs: seal what is built, carry on in a copy."""
                pending = {"model": embedder.name, "sentences": missing}
                commit_generation(root, directory, {**manifest, "dense": None, "dense_pending": pending})
                return successor(root, directory)

            dense, embedded, reused, directory = build_dense(
                settings,
                corpus.passages,
                units=units,
                unit_texts=unit_texts(units, corpus.passages, corpus.speeches),
                embedder=embedder,
                root=root,
                directory=directory,
                progress=progress,
                provisional=provisional,
            )
            configured = settings.fusion.dense_weight
            weight = dense["weight"] if configured == "auto" else float(configured)
        commit_generation(root, directory, {**manifest, "dense": dense})
    passages = len(corpus.passages)
    logger.info(
        "index built in %s: %d passages (%d cut into words), %d embedded, %d reused",
        *(directory, passages, cut, embedded, reused),
    )
    return BuildReport(directory, passages, embedded, reused, weight, corpus.problems, len(units), cut)


def _write_corpus(corpus: Corpus, directory: Path, max_chars: int) -> None:
    """Passages, speeches, paragraph numbers and sentence units: what readers need besides BM25."""
    write_passages(directory, corpus.passages)
    write_speeches(directory, corpus.speeches, corpus.passages)
    np.save(directory / PARAGRAPHS_FILE, paragraph_ids(corpus.passages), allow_pickle=False)
    units = unit_table(corpus.passages, corpus.speeches, max_chars)
    np.save(directory / UNITS_FILE, units.table, allow_pickle=False)
    write_known(directory, corpus.stamps, corpus.speeches, corpus.passages)


def _how_to_write(passages: int, cut: int) -> Writing:
    """Where the corpus files are written while the words are built.

    A large corpus's files take seconds to write. While worker processes cut most passages, a
    thread here writes them for free. When few are cut, the other core is idle and a forked
    process writes them: 2.4 s of 7.3 s saved at 108k passages, but the corpus it touches is copied
    into it page by page (+2.4 GB at a million passages), which a build cutting everything would
    pay for nothing.
    """
    if passages < SEPARATE_FROM_PASSAGES:
        return "inline"
    return "process" if cut < passages // 2 else "thread"


@contextlib.contextmanager
def alongside(job: Callable[[], None], how: Writing) -> Iterator[None]:
    """`job` run while the body runs, and waited for after it: before it (`inline`), in a thread, or in a
    forked process. The job's error is raised here; an error of the body stops a forked job."""
    if how == "inline":
        job()
        yield
        return
    if how == "thread":
        with ThreadPoolExecutor(1, thread_name_prefix="corpus-files") as threads:
            written = threads.submit(job)
            yield
            written.result()
        return
    gc.freeze()  # the child leaves the parent's objects alone, so their pages stay shared
    try:
        pool = multiprocessing.get_context("fork").Pool(1, initializer=_adopt, initargs=(job,))
    finally:
        gc.unfreeze()
    with pool:
        result = pool.apply_async(_run_adopted)
        yield
        result.get()


_adopted: Callable[[], None] | None = None  # the job of a process `alongside` forked


def _adopt(job: Callable[[], None]) -> None:
    global _adopted
    _adopted = job


def _run_adopted() -> None:
    assert _adopted is not None
    _adopted()


def _manifest(
    corpus: Corpus,
    settings: EngineSettings,
    *,
    units: int,
    vocabulary: int,
    dense_note: str,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "package_version": _version("speechqa"),
        "corpus_root": str(corpus.root),
        "corpus_hash": corpus.content_hash,
        "config_hash": settings.index_hash(),
        "dictionary_hash": dictionary_hash(settings),
        "counts": {
            "speeches": len(corpus.speeches),
            "passages": len(corpus.passages),
            "units": units,
            "vocabulary": vocabulary,
        },
        "dense": None,
        "dense_note": dense_note,
        **(extra or {}),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
