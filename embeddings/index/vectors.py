"""Passage vectors: a FAISS index over normalised embeddings, and a cache keyed by passage content.

"auto" (the default) builds the exact inner-product index (`flat`) while that is fast, and HNSW or
IVF for large corpora (`chosen_kind`); IVF needs enough vectors to train its lists, so a small
corpus gets the exact index instead, and the manifest records the kind actually built. The cache
lets a corpus change re-embed only the passages that changed: vectors are stored per content hash,
per model and model version.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.errors import IndexError_
from embeddings.index.atomic import atomic_write_bytes
from embeddings.index.store import REBUILD_HINT

_CACHE_FILE = "embeddings.npz"
# faiss warns below 39 training points per list; 64 vectors give at least one full list.
IVF_MIN_VECTORS = 64
AUTO_HNSW_FROM = 100_000
AUTO_IVF_FROM = 5_000_000


def chosen_kind(kind: str, count: int) -> str:
    """What "auto" means for `count` vectors: exact while a brute-force scan is cheap, then HNSW, then IVF.

    Exact search over 100k 384-wide vectors is ~40 M multiply-adds, a few ms; beyond that HNSW keeps
    recall@10 near 1 (docs/scale.md) at the price of ~260 bytes of graph per vector, and from
    5M vectors on (~8 GB of float32 already) IVF's lists cost less memory than HNSW's graph.
    """
    if kind != "auto":
        return kind
    return "flat" if count < AUTO_HNSW_FROM else "hnsw" if count < AUTO_IVF_FROM else "ivf"


def build_vector_index(vectors: np.ndarray, kind: str) -> Any:
    import faiss

    kind = chosen_kind(kind, len(vectors))
    dimension = vectors.shape[1]
    index: Any
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 512  # recall@10 against exact: 0.93 at 128, 0.97 at 256, 0.99 at 512 (docs/scale.md)
    elif kind == "ivf" and len(vectors) >= IVF_MIN_VECTORS:
        lists = max(1, min(int(4 * math.sqrt(len(vectors))), len(vectors) // 39))
        quantizer = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIVFFlat(quantizer, dimension, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, lists // 4)  # recall@10 against exact: 0.86 probing an eighth, 0.95 a quarter
    else:
        # Inner product equals cosine similarity on normalised vectors; position in the index is the passage row.
        index = faiss.IndexFlatIP(dimension)
    index.add(vectors)
    return index


def vector_index_kind(index: Any) -> str:
    """What `index` is, in the config's words: the manifest says what was built, not what was asked for."""
    import faiss

    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    return "flat"


def save_vector_index(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load_vector_index(path: Path) -> Any:
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise IndexError_(f"the vector index {path} cannot be read ({error})", REBUILD_HINT) from error


def all_vectors(index: Any) -> np.ndarray:
    """Every stored vector, row u = unit u: exact similarities for all sentences cost one matrix product."""
    import faiss

    if isinstance(index, faiss.IndexIVFFlat):
        index.make_direct_map()
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    return np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


def search_vectors(index: Any, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) for one normalised query vector; rows of -1 (none found) are dropped."""
    scores, rows = index.search(query.reshape(1, -1).astype(np.float32), min(k, index.ntotal))
    keep = rows[0] >= 0
    return scores[0][keep], rows[0][keep]


class EmbeddingCache:
    """Vectors by passage content hash for one model, in one `.npz` (keys and vectors side by side)."""

    def __init__(self, directory: Path, dimension: int) -> None:
        self.path = directory / _CACHE_FILE
        self._vectors: dict[str, np.ndarray] = {}
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                keys, matrix = stored["keys"], stored["vectors"]
        except (OSError, ValueError, KeyError):
            return  # no cache yet, or a damaged one: it is only a cache, so start afresh
        # Vectors of another width come from another model: mixing them in would fail to stack or to search.
        if matrix.ndim == 2 and matrix.shape[1] == dimension and len(keys) == len(matrix):
            self._vectors = {str(key): matrix[i] for i, key in enumerate(keys)}

    def get(self, key: str) -> np.ndarray | None:
        return self._vectors.get(key)

    def require(self, key: str) -> np.ndarray:
        return self._vectors[key]

    def put(self, key: str, vector: np.ndarray) -> None:
        self._vectors[key] = vector

    def __len__(self) -> int:
        return len(self._vectors)

    def save(self, keep: set[str]) -> None:
        """Write the vectors still in use in one atomic write: a crash leaves the old cache or the new one."""
        keys = sorted(key for key in self._vectors if key in keep)
        if not keys:
            return
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]).astype(np.float32))
        atomic_write_bytes(self.path, buffer.getvalue())
