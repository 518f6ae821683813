"""Building an index generation from a corpus: tokens and BM25, embeddings and FAISS, the manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embeddings.corpus import Corpus, Problem
from embeddings.dense import Embedder, model_fingerprint
from embeddings.fusion import calibration_queries, choose_dense_weight, model_profile, passage_maxima
from embeddings.lexical import LexicalIndex
from embeddings.settings import EngineSettings
from embeddings.store import (
    DENSE_FILE,
    INDEX_FORMAT,
    UNITS_FILE,
    build_lock,
    commit_generation,
    new_generation,
    speech_record,
)
from embeddings.tokenize import (
    Tokenizer,
    load_stopwords,
    passage_tokenizer,
    query_tokenizer,
    write_query_dictionary,
)
from embeddings.units import Units, corpus_units
from embeddings.vectors import EmbeddingCache, build_vector_index, save_vector_index, vector_index_kind

logger = logging.getLogger(__name__)
EMBED_CHUNK = 512  # sentences embedded between two saves of the cache


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


def model_slug(model: str, fingerprint: str) -> str:
    """The cache folder of one version of a model: the same name with other files is another model."""
    name = hashlib.sha256(model.encode()).hexdigest()[:12]
    version = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]", "-", Path(model).name)[:40]
    return f"{name}-{version}-{readable}"


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
    tokenizer = passage_tokenizer(
        Path(lexical_settings.user_dict), Path(lexical_settings.stopwords), lexical_settings.bigrams
    )
    texts = [p.search_text for p in corpus.passages]
    iterator = tqdm(texts, desc="tokenising", unit="passage", disable=not progress, leave=False)
    token_lists = [tokenizer(text) for text in iterator]
    lexical = LexicalIndex.build(token_lists, lexical_settings.k1, lexical_settings.b)

    with build_lock(root):
        directory = new_generation(root)
        lexical.save(directory / "lexical")
        corpus_words = {w for text in texts for w in tokenizer.words(text)}
        # Question words too, so "哪一天" is cut whole (and dropped as a stop word), not into 哪 + 一天.
        question_words = load_stopwords(Path(lexical_settings.stopwords)) | load_stopwords(
            Path(lexical_settings.question_frames)
        )
        write_query_dictionary(
            directory / "query_dict.txt", corpus_words | question_words, Path(lexical_settings.user_dict)
        )
        _write_jsonl(directory / "passages.jsonl", (p.to_dict() for p in corpus.passages))
        _write_jsonl(directory / "speeches.jsonl", (speech_record(s) for s in corpus.speeches))
        units, unit_texts = corpus_units(corpus.passages, corpus.speeches, settings.segment.max_chars)
        np.save(directory / UNITS_FILE, units.table, allow_pickle=False)

        dense: dict[str, Any] | None = None
        embedded = reused = 0
        weight: float | None = None
        if embedder is not None:
            fingerprint = model_fingerprint(embedder.name)
            shipped = Path(settings.dense.shipped_vectors) if settings.dense.shipped_vectors else None
            vectors, embedded, reused = _embed(
                unit_texts, embedder, root / "cache", fingerprint=fingerprint, progress=progress, shipped=shipped
            )
            vector_index = build_vector_index(vectors, settings.dense.index)
            save_vector_index(vector_index, directory / DENSE_FILE)
            calibrated = _calibrated_weight(
                settings,
                texts=texts,
                tokenizer=tokenizer,
                directory=directory,
                lexical=lexical,
                embedder=embedder,
                vectors=vectors,
                units=units,
            )
            configured = settings.fusion.dense_weight
            weight = calibrated if configured == "auto" else float(configured)
            dense = {
                "model": embedder.name,
                "fingerprint": fingerprint,
                "dimension": embedder.dimension,
                "index": vector_index_kind(vector_index),
                # Always the calibrated weight: a configured number is applied when questions are
                # asked, so that changing it, or going back to "auto", needs no rebuild.
                "weight": calibrated,
            }

        manifest = {
            "format": INDEX_FORMAT,
            "package_version": _version("speechqa"),
            "bm25s_version": _version("bm25s"),
            "corpus_root": str(corpus.root),
            "corpus_hash": corpus.content_hash,
            "config_hash": settings.index_hash(),
            "dictionary_hash": dictionary_hash(settings),
            "counts": {
                "speeches": len(corpus.speeches),
                "passages": len(corpus.passages),
                "units": len(units),
                "vocabulary": len(lexical.vocab),
            },
            "dense": dense,
            "dense_note": dense_note,
            **(extra_manifest or {}),
        }
        commit_generation(root, directory, manifest)
    logger.info("index built in %s: %d passages, %d embedded, %d reused", directory, len(texts), embedded, reused)
    return BuildReport(directory, len(texts), embedded, reused, weight, corpus.problems, len(units))


def _embed(
    texts: list[str], embedder: Embedder, caches: Path, *, fingerprint: str, progress: bool, shipped: Path | None = None
) -> tuple[np.ndarray, int, int]:
    """Vectors for every text, embedding only those the cache has not seen.

    The cache is saved after every chunk, so a build that is killed keeps what it embedded and the
    next one carries on from there instead of starting again.
    """
    slug = model_slug(embedder.name, fingerprint)
    cache = EmbeddingCache(caches / slug, embedder.dimension)
    keys = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    if shipped is not None:
        seed = EmbeddingCache(shipped / slug, embedder.dimension)
        for key in keys:
            if cache.get(key) is None and (vector := seed.get(key)) is not None:
                cache.put(key, vector)
    missing = sorted({key: i for i, key in enumerate(keys) if cache.get(key) is None}.values())
    bar = tqdm(total=len(missing), desc="embedding", unit="sentence", disable=not progress or not missing)
    with bar:
        for first in range(0, len(missing), EMBED_CHUNK):
            chunk = missing[first : first + EMBED_CHUNK]
            for i, vector in zip(chunk, embedder.embed_passages([texts[i] for i in chunk]), strict=True):
                cache.put(keys[i], vector)
            cache.save(set(keys))
            bar.update(len(chunk))
    # Vectors of this model name's earlier files are no use to this index; kept, they would pile up with every update.
    for other in caches.glob(slug.split("-", 1)[0] + "-*"):
        if other.name != slug:
            shutil.rmtree(other, ignore_errors=True)
    if not keys:
        return np.zeros((0, embedder.dimension), np.float32), 0, 0
    vectors = np.stack([cache.require(key) for key in keys]).astype(np.float32)
    return vectors, len(missing), len(keys) - len(missing)


def _calibrated_weight(
    settings: EngineSettings,
    *,
    texts: list[str],
    tokenizer: Tokenizer,
    directory: Path,
    lexical: LexicalIndex,
    embedder: Embedder,
    vectors: np.ndarray,
    units: Units,
) -> float:
    """The dense weight that finds held-out sentences of this corpus best (models without a measured profile)."""
    profile = model_profile(embedder.name)
    if profile is not None:
        return profile.dense_weight
    queries = calibration_queries(texts, tokenizer.words)
    question_tokens = query_tokenizer(
        directory / "query_dict.txt", Path(settings.lexical.stopwords), settings.lexical.bigrams
    )
    query_vectors = embedder.embed_queries([q for q, _ in queries]) if queries else np.zeros((0, vectors.shape[1]))
    by_text = {q: query_vectors[i] for i, (q, _) in enumerate(queries)}
    weight = choose_dense_weight(
        queries,
        lambda q: lexical.scores(question_tokens(q)),
        lambda q: passage_maxima(vectors @ by_text[q], units.rows(), len(texts)),
        settings.fusion.candidates,
    )
    logger.info("calibrated dense weight %.2f on %d held-out sentences", weight, len(queries))
    return weight


def _write_jsonl(path: Path, records: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
