"""BM25 over jieba words and character bigrams.

bm25s builds the index (Lucene BM25, eagerly scored, saved as plain `.npy` arrays and JSON). At
query time we read those arrays with numpy alone: importing bm25s pulls in scipy and tqdm, a third
of a cold start, for a sum over a few sparse columns.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings.errors import IndexError_
from embeddings.store import LEXICAL_FILES, REBUILD_HINT


@dataclass(frozen=True)
class LexicalIndex:
    """Column *t* of the CSC arrays holds the BM25 contribution of token *t* to each passage containing it."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    vocab: dict[str, int]
    num_docs: int

    @classmethod
    def build(cls, token_lists: Sequence[list[str]], k1: float, b: float) -> LexicalIndex:
        import bm25s

        # bm25s sets its own logger to DEBUG on import; put it back so builds stay quiet.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index([tokens or [""] for tokens in token_lists], show_progress=False)
        scores = retriever.scores
        columns = len(scores["indptr"]) - 1  # bm25s adds an empty token to the vocabulary with no column
        return cls(
            data=np.asarray(scores["data"], dtype=np.float32),
            indices=np.asarray(scores["indices"], dtype=np.int32),
            indptr=np.asarray(scores["indptr"]),
            vocab={str(token): int(i) for token, i in retriever.vocab_dict.items() if int(i) < columns and token},
            num_docs=len(token_lists),
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / LEXICAL_FILES[0], self.data, allow_pickle=False)
        np.save(directory / LEXICAL_FILES[1], self.indices, allow_pickle=False)
        np.save(directory / LEXICAL_FILES[2], self.indptr, allow_pickle=False)
        vocab = {"num_docs": self.num_docs, "vocab": self.vocab}
        (directory / LEXICAL_FILES[3]).write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """The saved arrays, or `IndexError_` when they cannot be read or do not fit together."""
        try:
            data, indices, indptr = (np.load(directory / name, allow_pickle=False) for name in LEXICAL_FILES[:3])
            meta = json.loads((directory / LEXICAL_FILES[3]).read_text("utf-8"))
            vocab, num_docs = meta["vocab"], meta["num_docs"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise IndexError_(f"the BM25 index in {directory} cannot be read ({error})", REBUILD_HINT) from error
        if not _consistent(data, indices, indptr, vocab, num_docs):
            raise IndexError_(f"the BM25 index in {directory} is inconsistent", REBUILD_HINT)
        return cls(data, indices, indptr, vocab, num_docs)

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.vocab[token] for token in tokens if token in self.vocab]

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for `tokens` (a repeated token counts again, as in BM25)."""
        scores = np.zeros(self.num_docs, dtype=np.float32)
        for token_id in self.token_ids(tokens):
            start, end = self.indptr[token_id], self.indptr[token_id + 1]
            scores[self.indices[start:end]] += self.data[start:end]
        return scores

    def idf(self, token: str) -> float:
        """Lucene IDF; a token the corpus never uses gets the highest IDF, as it is the most specific."""
        token_id = self.vocab.get(token)
        df = 0 if token_id is None else int(self.indptr[token_id + 1] - self.indptr[token_id])
        return math.log(1 + (self.num_docs - df + 0.5) / (df + 0.5))

    def coordination(self, tokens: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """For each of `rows`, the IDF-weighted share of the distinct `tokens` that passage contains."""
        # Scattering into one array per question beats a set test per token (np.isin sorts every time).
        held = np.zeros(self.num_docs, dtype=np.float32)
        total = 0.0
        for token in set(tokens):
            weight = self.idf(token)
            total += weight
            token_id = self.vocab.get(token)
            if token_id is not None:
                held[self.indices[self.indptr[token_id] : self.indptr[token_id + 1]]] += weight
        return held[rows] / total if total > 0 else held[rows]


def _consistent(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, vocab: object, num_docs: object) -> bool:
    """Every column lies inside the arrays and every row number names a passage, so no lookup can fail."""
    if not (isinstance(vocab, dict) and isinstance(num_docs, int) and num_docs >= 0):
        return False
    arrays = (data, indices, indptr)
    if not all(a.ndim == 1 and np.issubdtype(a.dtype, np.number) for a in arrays):
        return False
    if len(data) != len(indices) or len(indptr) != len(vocab) + 1 or int(indptr[0]) != 0:
        return False
    if int(indptr[-1]) != len(data) or not bool(np.all(np.diff(indptr) >= 0)):
        return False
    if len(indices) and not (int(indices.min()) >= 0 and int(indices.max()) < num_docs):
        return False
    columns = len(indptr) - 1
    return all(isinstance(i, int) and 0 <= i < columns for i in vocab.values())
