"""Building an index generation from a corpus: tokens and BM25, the corpus files, the manifest.

The dense side (embeddings and FAISS) is `densebuild`; when it has much to embed, the words-only
index is sealed and served first, and the finished one replaces it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from embeddings.index.bm25build import CHUNK_PASSAGES, Spill, assemble, tokenised_chunks
from embeddings.index.densebuild import build_dense
from embeddings.index.generations import build_lock, commit_generation, new_generation, successor
from embeddings.index.lazycorpus import write_passages, write_speeches
from embeddings.index.lexical import write_meta
from embeddings.index.ondisk import write_strings
from embeddings.index.store import INDEX_FORMAT, LEXICAL_FILES, PARAGRAPHS_FILE, UNITS_FILE
from embeddings.index.units import Units, corpus_units
from embeddings.ingest.corpus import Corpus, Problem
from embeddings.models.dense import Embedder
from embeddings.passage import Passage
from embeddings.retrieval.paragraphs import paragraph_ids
from embeddings.settings import EngineSettings
from embeddings.text.tokenize import load_stopwords, passage_tokenizer, write_query_dictionary

logger = logging.getLogger(__name__)
T = TypeVar("T")
SCRATCH = ".scratch"  # the tokenised chunks, inside the generation being built; removed before it is sealed


@dataclass(frozen=True, slots=True)
class BuildReport:
    directory: Path
    passages: int
    embedded: int
    reused: int
    dense_weight: float | None
    problems: tuple[Problem, ...] = ()  # files of the corpus that could not be indexed, with why
    units: int = 0  # sentence units: what the dense side embeds


def dictionary_hash(settings: EngineSettings) -> str:
    digest = hashlib.sha256()
    for name in (settings.lexical.user_dict, settings.lexical.stopwords, settings.lexical.question_frames):
        path = Path(name)
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def build_index(
    corpus: Corpus,
    settings: EngineSettings,
    root: Path,
    *,
    embedder: Embedder | None,
    dense_note: str = "",
    progress: bool = False,
    extra_manifest: dict[str, Any] | None = None,
) -> BuildReport:
    """Write a complete new generation for `corpus` and switch it live; the old one serves until then."""
    lexical_settings = settings.lexical
    with build_lock(root):
        directory = new_generation(root)
        vocabulary, corpus_words, (units, unit_texts) = _build_lexical(
            corpus.passages,
            settings,
            directory / "lexical",
            progress,
            meanwhile=lambda: _write_corpus(corpus, directory, settings.segment.max_chars),
        )
        # Question words too, so "哪一天" is cut whole (and dropped as a stop word), not into 哪 + 一天.
        question_words = load_stopwords(Path(lexical_settings.stopwords)) | load_stopwords(
            Path(lexical_settings.question_frames)
        )
        write_query_dictionary(
            directory / "query_dict.txt", corpus_words | question_words, Path(lexical_settings.user_dict)
        )

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
                unit_texts=unit_texts,
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
    logger.info("index built in %s: %d passages, %d embedded, %d reused", directory, passages, embedded, reused)
    return BuildReport(directory, passages, embedded, reused, weight, corpus.problems, len(units))


def _write_corpus(corpus: Corpus, directory: Path, max_chars: int) -> tuple[Units, list[str]]:
    """Passages, speeches, paragraph numbers and sentence units: what readers need besides BM25."""
    write_passages(directory, corpus.passages)
    write_speeches(directory, corpus.speeches, corpus.passages)
    np.save(directory / PARAGRAPHS_FILE, paragraph_ids(corpus.passages), allow_pickle=False)
    units, unit_texts = corpus_units(corpus.passages, corpus.speeches, max_chars)
    np.save(directory / UNITS_FILE, units.table, allow_pickle=False)
    return units, unit_texts


def _build_lexical(
    passages: Sequence[Passage], settings: EngineSettings, out: Path, progress: bool, meanwhile: Callable[[], T]
) -> tuple[int, set[str], T]:
    """The BM25 arrays of `passages` in `out`, tokenised in chunks on every core.

    Returns the vocabulary's size, the jieba words of the corpus and what `meanwhile()` returned:
    it runs once the workers are busy, as this process would otherwise only wait for them.
    """
    lexical = settings.lexical
    paths = Path(lexical.user_dict), Path(lexical.stopwords)
    passage_tokenizer(*paths, lexical.bigrams, len(passages))  # loaded once here, inherited by the workers

    def tokenizer() -> Callable[[str], tuple[list[str], list[str]]]:
        return passage_tokenizer(*paths, lexical.bigrams, len(passages)).tokens_and_words

    def chunks() -> Iterator[list[str]]:
        for first in range(0, len(passages), CHUNK_PASSAGES):
            yield [p.search_text for p in passages[first : first + CHUNK_PASSAGES]]

    out.mkdir(parents=True)
    spill = Spill(out / SCRATCH)
    spill.directory.mkdir()
    done: list[T] = []
    with tqdm(total=len(passages), desc="tokenising", unit="passage", disable=not progress, leave=False) as bar:
        for chunk in tokenised_chunks(chunks(), tokenizer, len(passages)):
            spill.add(chunk)
            bar.update(len(chunk[5]))
            if not done:
                done.append(meanwhile())
    result = done[0] if done else meanwhile()
    names, _ = assemble(spill, out, lexical.k1, lexical.b)
    write_strings(out / LEXICAL_FILES[3], names)
    write_meta(out, len(passages))
    shutil.rmtree(spill.directory)
    return len(names), spill.words, result


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
