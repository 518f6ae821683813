"""The meaning side of a question: each sentence's similarity to it, from the stored sentence vectors.

With the exact index (`flat`, below 100k sentences) one matrix product scores every sentence. With
an approximate one (`hnsw`, `ivf`) the index finds the nearest sentences, and only the sentences of
the paragraphs that can be ranked are scored, exactly, from the vectors the index stores: the
vectors sit in memory once, and a question costs no pass over every sentence of a large corpus.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embeddings.errors import IndexError_
from embeddings.index.store import DENSE_FILE, REBUILD_HINT, StoredIndex
from embeddings.index.vectors import all_vectors, load_vector_index, search_vectors, vector_index_kind
from embeddings.retrieval.fusion import top_rows

UNSCORED = -np.inf  # a sentence the approximate search did not need to score


class SentenceVectors:
    """The stored sentence vectors, searched the way their index was built."""

    def __init__(self, index: Any) -> None:
        self.kind = vector_index_kind(index)
        self.count = int(index.ntotal)
        self.dimension = int(index.d)
        self._matrix: np.ndarray | None = None
        self._index: Any = None
        if self.kind == "flat":
            # Read out as a plain matrix and the FAISS index let go: the vectors are held once.
            self._matrix = all_vectors(index)
        else:
            if self.kind == "ivf":
                index.make_direct_map()  # so that a sentence's vector can be read back by its number
            self._index = index

    @classmethod
    def load(cls, stored: StoredIndex, model: str, dimension: int, sentences: int) -> SentenceVectors:
        """The vectors of `stored`, checked against the model that will embed questions and the sentence count."""
        index = load_vector_index(stored.directory / DENSE_FILE)
        widths = {dimension, int(index.d), int(stored.manifest["dense"]["dimension"])}
        if len(widths) != 1:
            raise IndexError_(
                f"the vectors in {stored.directory} do not fit the embedding model {model} "
                f"(dimensions {sorted(widths)}): the model changed since the index was built",
                REBUILD_HINT,
            )
        if index.ntotal != sentences:
            raise IndexError_(
                f"the index in {stored.directory} is inconsistent ({index.ntotal} vectors for {sentences} sentences)",
                REBUILD_HINT,
            )
        return cls(index)

    def nearest(self, query: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Similarities by sentence (exact for all, or `UNSCORED` beyond those found) and the `count` nearest."""
        if self._matrix is not None:
            scores = self._matrix @ query
            return scores, top_rows(scores, count)
        found_scores, found = search_vectors(self._index, query, count)
        scores = np.full(self.count, UNSCORED, dtype=np.float32)
        scores[found] = found_scores
        return scores, found

    def score(self, scores: np.ndarray, query: np.ndarray, units: np.ndarray) -> None:
        """Fill in the exact similarity of `units` not yet scored (nothing to do for the exact index)."""
        if self._matrix is not None or not len(units):
            return
        missing = units[np.isneginf(scores[units])]
        if len(missing):
            scores[missing] = self._index.reconstruct_batch(missing.astype(np.int64)) @ query

    def vector(self, unit: int) -> np.ndarray:
        return self._matrix[unit] if self._matrix is not None else self._index.reconstruct(int(unit))
