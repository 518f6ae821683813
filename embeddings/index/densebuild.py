"""The dense side of a build: sentence embeddings (resumable), the vector index and the dense weight.

Embedding is slow on a CPU (the bundled model: tens of sentences a second), so vectors go into a
cache by sentence content, saved every `EMBED_CHUNK` sentences: a killed build keeps what it
embedded and the next one carries on. When more than `PROVISIONAL_FROM` sentences are missing, the
caller seals a words-only index first, so questions are answered while the embedding runs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embeddings.index.lexical import LexicalIndex
from embeddings.index.store import DENSE_FILE
from embeddings.index.units import Units
from embeddings.index.vectors import EmbeddingCache, build_vector_index, save_vector_index, vector_index_kind
from embeddings.models.dense import Embedder, model_fingerprint
from embeddings.passage import Passage
from embeddings.retrieval.fusion import calibration_queries, choose_dense_weight, group_maxima, model_profile
from embeddings.settings import EngineSettings
from embeddings.text.tokenize import passage_tokenizer, query_tokenizer

logger = logging.getLogger(__name__)
EMBED_CHUNK = 512  # sentences embedded between two saves of the cache
PROVISIONAL_FROM = 2000  # missing sentences (minutes of embedding) from which words-only is served meanwhile


def model_slug(model: str, fingerprint: str) -> str:
    """The cache folder of one version of a model: the same name with other files is another model."""
    name = hashlib.sha256(model.encode()).hexdigest()[:12]
    version = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]", "-", Path(model).name)[:40]
    return f"{name}-{version}-{readable}"


def build_dense(
    settings: EngineSettings,
    passages: Sequence[Passage],
    *,
    units: Units,
    unit_texts: list[str],
    embedder: Embedder,
    root: Path,
    directory: Path,
    progress: bool,
    provisional: Callable[[int], Path],
) -> tuple[dict[str, Any], int, int, Path]:
    """Embed, index and calibrate; returns the manifest's `dense`, the counts embedded and reused, and
    the directory the build continues in (another one when `provisional(missing)` sealed the first)."""
    fingerprint = model_fingerprint(embedder.name)
    shipped = Path(settings.dense.shipped_vectors) if settings.dense.shipped_vectors else None
    cache, keys, missing = _cached(unit_texts, embedder, root / "cache", fingerprint, shipped)
    if len(missing) >= PROVISIONAL_FROM:
        directory = provisional(len(missing))
    vectors = _embed(unit_texts, embedder, cache, keys, missing=missing, progress=progress)
    # Vectors of this model name's earlier files are no use to this index; kept, they would pile up with every update.
    slug = cache.path.parent.name
    for other in (root / "cache").glob(slug.split("-", 1)[0] + "-*"):
        if other.name != slug:
            shutil.rmtree(other, ignore_errors=True)
    vector_index = build_vector_index(vectors, settings.dense.index)
    save_vector_index(vector_index, directory / DENSE_FILE)
    dense = {
        "model": embedder.name,
        "fingerprint": fingerprint,
        "dimension": embedder.dimension,
        "index": vector_index_kind(vector_index),
        # Always the calibrated weight: a configured number is applied when questions are
        # asked, so that changing it, or going back to "auto", needs no rebuild.
        "weight": _calibrated_weight(
            settings, passages=passages, directory=directory, embedder=embedder, vectors=vectors, units=units
        ),
    }
    return dense, len(missing), len(keys) - len(missing), directory


def _cached(
    texts: list[str], embedder: Embedder, caches: Path, fingerprint: str, shipped: Path | None
) -> tuple[EmbeddingCache, list[str], list[int]]:
    """The model's cache (seeded from shipped vectors), each text's key, and the texts still to embed."""
    slug = model_slug(embedder.name, fingerprint)
    cache = EmbeddingCache(caches / slug, embedder.dimension)
    keys = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    if shipped is not None:
        seed = EmbeddingCache(shipped / slug, embedder.dimension)
        for key in keys:
            if cache.get(key) is None and (vector := seed.get(key)) is not None:
                cache.put(key, vector)
    missing = sorted({key: i for i, key in enumerate(keys) if cache.get(key) is None}.values())
    return cache, keys, missing


def _embed(
    texts: list[str], embedder: Embedder, cache: EmbeddingCache, keys: list[str], *, missing: list[int], progress: bool
) -> np.ndarray:
    """Vectors for every text, embedding the `missing` ones and saving the cache after every chunk."""
    bar = tqdm(total=len(missing), desc="embedding", unit="sentence", disable=not progress or not missing)
    in_use = set(keys)
    with bar:
        for first in range(0, len(missing), EMBED_CHUNK):
            chunk = missing[first : first + EMBED_CHUNK]
            for i, vector in zip(chunk, embedder.embed_passages([texts[i] for i in chunk]), strict=True):
                cache.put(keys[i], vector)
            cache.save(in_use)
            bar.update(len(chunk))
    if not keys:
        return np.zeros((0, embedder.dimension), np.float32)
    return np.stack([cache.require(key) for key in keys]).astype(np.float32)


def _calibrated_weight(
    settings: EngineSettings,
    *,
    passages: Sequence[Passage],
    directory: Path,
    embedder: Embedder,
    vectors: np.ndarray,
    units: Units,
) -> float:
    """The dense weight that finds held-out sentences of this corpus best (models without a measured profile)."""
    profile = model_profile(embedder.name)
    if profile is not None:
        return profile.dense_weight
    lexical_settings = settings.lexical
    tokenizer = passage_tokenizer(
        Path(lexical_settings.user_dict), Path(lexical_settings.stopwords), lexical_settings.bigrams
    )
    texts = [p.search_text for p in passages]
    lexical = LexicalIndex.load(directory / "lexical")
    queries = calibration_queries(texts, tokenizer.words)
    question_tokens = query_tokenizer(
        directory / "query_dict.txt", Path(settings.lexical.stopwords), settings.lexical.bigrams
    )
    query_vectors = embedder.embed_queries([q for q, _ in queries]) if queries else np.zeros((0, vectors.shape[1]))
    by_text = {q: query_vectors[i] for i, (q, _) in enumerate(queries)}
    weight = choose_dense_weight(
        queries,
        lambda q: lexical.scores(question_tokens(q)),
        lambda q: group_maxima(vectors @ by_text[q], units.rows(), len(texts)),
        settings.fusion.candidates,
    )
    logger.info("calibrated dense weight %.2f on %d held-out sentences", weight, len(queries))
    return weight
