"""The dense side at scale: embedding throughput on a sample, and how much the approximate indexes miss.

Throughput: the bundled model embeds an even sample of the corpus's sentence units on this
machine's cores; the full corpus would take `units / rate`. Recall@10 of HNSW and IVF (built as
`[dense] index = "auto"` builds them) against exact search, over real sentence vectors of the
bundled model (the largest cache an earlier `make bench` left, the 69-document corpus's) and
CMRC dev questions as queries.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import CACHE
from benchmarks.synthetic import POOL

SAMPLE_UNITS = 256
RECALL_QUERIES = 200
DEPTH = 10


def dense_figures(config: Path) -> dict[str, Any]:
    from bot.config import load_config
    from embeddings.engine import open_retriever
    from embeddings.models.bundled import BundledEmbedder

    settings = load_config(str(config))
    retriever, _ = open_retriever(settings.corpus_path, settings.index_path, settings.engine)
    units = len(retriever.units)
    step = max(1, units // SAMPLE_UNITS)
    texts = [retriever.unit_text(u).strip() for u in range(0, units, step)][:SAMPLE_UNITS]
    embedder = BundledEmbedder()
    embedder.embed_passages(texts[:8])  # the first batch pays for loading the model
    started = time.perf_counter()
    embedder.embed_passages(texts)
    rate = len(texts) / (time.perf_counter() - started)
    per_passage = units / max(1, len(retriever.passages))
    figures: dict[str, Any] = {
        "sentences_per_s": round(rate, 1),
        "passages_per_s": round(rate / per_passage, 1),
        "units": units,
        "hours_to_embed_all": round(units / rate / 3600, 1),
    }
    figures["recall_at_10"] = recall(embedder)
    return figures


def recall(embedder: Any) -> dict[str, Any]:
    """Recall@10 of each approximate kind against flat, on cached real sentence vectors."""
    from embeddings.index.vectors import build_vector_index, search_vectors

    caches = sorted(CACHE.glob("**/*bundled*/embeddings.npz"), key=lambda p: p.stat().st_size)
    if not caches:
        return {"skipped": "no cached sentence vectors of the bundled model (run `make bench` once)"}
    with np.load(caches[-1], allow_pickle=False) as stored:
        vectors = np.ascontiguousarray(stored["vectors"], dtype=np.float32)
    lines = (POOL.parent / "cmrc2018-dev" / "questions.jsonl").read_text("utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines[:: max(1, len(lines) // RECALL_QUERIES)]]
    queries = embedder.embed_queries(questions[:RECALL_QUERIES])
    exact = build_vector_index(vectors, "flat")
    truth = [set(search_vectors(exact, q, DEPTH)[1].tolist()) for q in queries]
    figures: dict[str, Any] = {"vectors": len(vectors), "queries": len(queries)}
    for kind in ("hnsw", "ivf"):
        index = build_vector_index(vectors, kind)
        started = time.perf_counter()
        found = [set(search_vectors(index, q, DEPTH)[1].tolist()) for q in queries]
        elapsed = (time.perf_counter() - started) * 1000 / len(queries)
        hits = sum(len(f & t) for f, t in zip(found, truth, strict=True))
        figures[kind] = {"recall": round(hits / (DEPTH * len(queries)), 4), "ms_per_query": round(elapsed, 2)}
    return figures
