"""BM25 over jieba words and character bigrams, read from memory-mapped arrays.

The arrays are bm25s's Lucene BM25, eagerly scored (see `bm25build`), saved as plain `.npy` files
with the vocabulary as a sorted string table: opening the index maps the files and reads nothing
else, so a cold start costs the same for a hundred passages or a million. A question reads only
the columns of its tokens, with numpy alone.
"""

from __future__ import annotations

import bisect
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from embeddings.errors import REBUILD_HINT, IndexError_
from embeddings.index.bm25build import Spill, assemble, count_tokens
from embeddings.index.ondisk import StringTable, mapped, write_strings
from embeddings.index.store import LEXICAL_FILES

# Below this many entries the whole index is checked on load; above, each column when first read.
FULL_CHECK_ENTRIES = 8_000_000
DATA, INDICES, INDPTR, VOCAB, _, META = LEXICAL_FILES


class Vocabulary:
    """Token → column, over the sorted tokens (column *t* is the *t*-th token)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = tokens
        self._find = lru_cache(maxsize=1 << 16)(self._lookup)

    def _lookup(self, token: str) -> int | None:
        position = bisect.bisect_left(self._tokens, token)
        return position if position < len(self._tokens) and self._tokens[position] == token else None

    @property
    def tokens(self) -> Sequence[str]:
        return self._tokens

    def get(self, token: str) -> int | None:
        return self._find(token)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._find(token) is not None

    def __getitem__(self, token: str) -> int:
        column = self._find(token)
        if column is None:
            raise KeyError(token)
        return column

    def __len__(self) -> int:
        return len(self._tokens)


@dataclass(frozen=True)
class LexicalIndex:
    """Column *t* of the CSC arrays holds the BM25 contribution of token *t* to each passage containing it."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    vocab: Vocabulary
    num_docs: int
    _checked: set[int] = field(default_factory=set, compare=False, repr=False)  # columns known to be in range

    @classmethod
    def build(cls, token_lists: Sequence[list[str]], k1: float, b: float) -> LexicalIndex:
        """An in-memory index of `token_lists` (tests and small tools; a build streams through `bm25build`)."""
        with tempfile.TemporaryDirectory() as scratch:
            spill = Spill(Path(scratch))
            spill.add(count_tokens(token_lists, {}))
            names, documents = assemble(spill, Path(scratch), k1, b)
            arrays = (np.load(Path(scratch) / name, allow_pickle=False) for name in (DATA, INDICES, INDPTR))
            data, indices, indptr = arrays
        return cls(data, indices, indptr, Vocabulary(names), documents)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, array in ((DATA, self.data), (INDICES, self.indices), (INDPTR, self.indptr)):
            np.save(directory / name, array, allow_pickle=False)
        write_strings(directory / VOCAB, list(self.vocab.tokens))
        write_meta(directory, self.num_docs)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """The saved arrays, mapped; `IndexError_` when they cannot be read or do not fit together."""
        try:
            data, indices, indptr = (mapped(directory / name) for name in (DATA, INDICES, INDPTR))
            vocab = StringTable(directory / VOCAB)
            num_docs = json.loads((directory / META).read_text("utf-8"))["num_docs"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise IndexError_(f"the BM25 index in {directory} cannot be read ({error})", REBUILD_HINT) from error
        if not _consistent(data, indices, indptr, len(vocab), num_docs):
            raise IndexError_(f"the BM25 index in {directory} is inconsistent", REBUILD_HINT)
        index = cls(data, indices, indptr, Vocabulary(vocab), num_docs)
        if len(indices) <= FULL_CHECK_ENTRIES:
            index._checked.update(range(len(vocab)))
        return index

    def column(self, token_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(passage rows, scores) of one token; a row outside the index is damage, never a silent wrap-around."""
        start, end = int(self.indptr[token_id]), int(self.indptr[token_id + 1])
        rows = self.indices[start:end]
        if token_id not in self._checked:
            if len(rows) and not (int(rows.min()) >= 0 and int(rows.max()) < self.num_docs):
                raise IndexError_(f"the BM25 index names passages it does not have (token {token_id})", REBUILD_HINT)
            self._checked.add(token_id)
        return rows, self.data[start:end]

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.vocab[token] for token in tokens if token in self.vocab]

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for `tokens` (a repeated token counts again, as in BM25)."""
        scores = np.zeros(self.num_docs, dtype=np.float32)
        for token_id in self.token_ids(tokens):
            rows, values = self.column(token_id)
            scores[rows] += values
        return scores

    def idf(self, token: str) -> float:
        """Lucene IDF; a token the corpus never uses gets the highest IDF, as it is the most specific."""
        token_id = self.vocab.get(token)
        df = 0 if token_id is None else int(self.indptr[token_id + 1] - self.indptr[token_id])
        return math.log(1 + (self.num_docs - df + 0.5) / (df + 0.5))

    def coordination(self, tokens: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """For each of `rows`, the IDF-weighted share of the distinct `tokens` that passage contains."""
        # A column's rows are sorted: binary search finds `rows` in it without touching the others.
        held = np.zeros(len(rows), dtype=np.float32)
        total = 0.0
        for token in set(tokens):
            weight = self.idf(token)
            total += weight
            token_id = self.vocab.get(token)
            if token_id is not None:
                column = self.column(token_id)[0]
                found = np.searchsorted(column, rows)
                inside = found < len(column)
                inside[inside] = column[found[inside]] == rows[inside]
                held[inside] += weight
        return held / total if total > 0 else held


def write_meta(directory: Path, num_docs: int) -> None:
    (directory / META).write_text(json.dumps({"num_docs": num_docs}), "utf-8")


def _consistent(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, columns: int, num_docs: object) -> bool:
    """The columns lie inside the arrays (and, for an index small enough to check whole, the rows too)."""
    if not (isinstance(num_docs, int) and num_docs >= 0):
        return False
    arrays = (data, indices, indptr)
    if not all(a.ndim == 1 and np.issubdtype(a.dtype, np.number) for a in arrays):
        return False
    if len(data) != len(indices) or len(indptr) != columns + 1 or int(indptr[0]) != 0:
        return False
    if int(indptr[-1]) != len(data) or not bool(np.all(np.diff(indptr) >= 0)):
        return False
    small = len(indices) <= FULL_CHECK_ENTRIES
    return not (small and len(indices) and not (int(indices.min()) >= 0 and int(indices.max()) < num_docs))
