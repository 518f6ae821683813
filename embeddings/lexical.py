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

_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json")


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
        np.save(directory / _FILES[0], self.data, allow_pickle=False)
        np.save(directory / _FILES[1], self.indices, allow_pickle=False)
        np.save(directory / _FILES[2], self.indptr, allow_pickle=False)
        vocab = {"num_docs": self.num_docs, "vocab": self.vocab}
        (directory / _FILES[3]).write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        try:
            arrays = [np.load(directory / name, allow_pickle=False) for name in _FILES[:3]]
            meta = json.loads((directory / _FILES[3]).read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise IndexError_(f"the BM25 index in {directory} cannot be read ({error})") from error
        data, indices, indptr = arrays
        if len(indptr) != len(meta["vocab"]) + 1 or len(data) != len(indices):
            raise IndexError_(f"the BM25 index in {directory} is inconsistent")
        return cls(data, indices, indptr, meta["vocab"], int(meta["num_docs"]))

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

    def contains(self, token: str, doc: int) -> bool:
        token_id = self.vocab.get(token)
        if token_id is None:
            return False
        column = self.indices[self.indptr[token_id] : self.indptr[token_id + 1]]
        return bool(np.any(column == doc))

    def coverage(self, tokens: Sequence[str], doc: int, optional: frozenset[str] = frozenset()) -> float:
        """IDF-weighted share of the question's distinct tokens that passage `doc` contains.

        An `optional` token counts only when present: it frames the question ("后果", "类型")
        and an answer need not repeat it.
        """
        matched = missed = 0.0
        for token in set(tokens):
            if self.contains(token, doc):
                matched += self.idf(token)
            elif token not in optional:
                missed += self.idf(token)
        return matched / (matched + missed) if matched + missed > 0 else 0.0
