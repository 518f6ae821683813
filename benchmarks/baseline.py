"""The tutorial baseline: rank_bm25's BM25Okapi over `jieba.lcut` tokens of ~300-character chunks.

This is what a first Chinese retrieval tutorial builds, and what speechqa has to beat. Chunks are
packed from whole sentences up to 300 characters (a sentence longer than that is cut), which is
kinder to the baseline than blind 300-character slices: a gold span is never cut in two by a
chunk boundary unless its sentence is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.measure import Ranking

CHUNK_CHARS = 300
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;\n])")


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Whole sentences packed greedily into chunks of at most `size` characters."""
    chunks: list[str] = []
    current = ""
    for sentence in _pieces(text, size):
        if current and len(current) + len(sentence) > size:
            chunks.append(current)
            current = ""
        current += sentence
    if current.strip():
        chunks.append(current)
    return [c for c in chunks if c.strip()]


def _pieces(text: str, size: int) -> list[str]:
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces.extend(sentence[i : i + size] for i in range(0, len(sentence), size))
    return pieces


def tokens(text: str) -> list[str]:
    """`jieba.lcut` as the tutorial calls it (default dictionary, HMM on); only blank tokens dropped."""
    import jieba

    return [t for t in jieba.lcut(text) if t.strip()]


@dataclass(frozen=True)
class BaselineIndex:
    bm25: Any  # rank_bm25.BM25Okapi, which ships no type hints
    chunks: list[str]
    chunk_doc: np.ndarray  # chunk row -> document row; a document's chunks are contiguous
    doc_starts: np.ndarray  # first chunk row of each document
    doc_ids: list[str]
    doc_texts: list[str]

    @classmethod
    def build(cls, documents: tuple[tuple[str, str], ...]) -> BaselineIndex:
        from rank_bm25 import BM25Okapi

        chunks: list[str] = []
        chunk_doc: list[int] = []
        starts: list[int] = []
        for row, (_, text) in enumerate(documents):
            starts.append(len(chunks))
            pieces = chunk_text(text) or [text]  # keep every document rankable, even an empty one
            chunks.extend(pieces)
            chunk_doc.extend([row] * len(pieces))
        bm25 = BM25Okapi([tokens(chunk) for chunk in chunks])
        return cls(
            bm25,
            chunks,
            np.array(chunk_doc, dtype=np.int64),
            np.array(starts, dtype=np.int64),
            [doc_id for doc_id, _ in documents],
            [text for _, text in documents],
        )

    def searcher(self, rank_chunks: bool, top_k: int = 10) -> Callable[[str], Ranking]:
        """`question -> Ranking`: the top chunks themselves, or documents ranked by their best chunk."""

        def search(question: str) -> Ranking:
            scores = np.asarray(self.bm25.get_scores(tokens(question)))
            if rank_chunks:
                rows = np.argsort(-scores, kind="stable")[:top_k]
                hits = [(self.doc_ids[self.chunk_doc[r]], self.chunks[r]) for r in rows.tolist()]
            else:
                best = np.maximum.reduceat(scores, self.doc_starts)
                rows = np.argsort(-best, kind="stable")[:top_k]
                hits = [(self.doc_ids[r], self.doc_texts[r]) for r in rows.tolist()]
            # A plain BM25 ranking has no notion of "not answered here": it never declines.
            return Ranking(tuple((rank, pid, text) for rank, (pid, text) in enumerate(hits, 1)), declined=False)

        return search
