"""The LangChain tutorial hybrid, reproduced in our own code (no langchain dependency).

The recipe, as the tutorials write it:

    splitter = RecursiveCharacterTextSplitter(chunk_size=300, chunk_overlap=50)
    bm25 = BM25Retriever.from_documents(chunks, preprocess_func=jieba.lcut)
    faiss = FAISS.from_documents(chunks, embeddings).as_retriever()
    EnsembleRetriever(retrievers=[bm25, faiss], weights=[0.5, 0.5])

- `split_text` is `RecursiveCharacterTextSplitter` with its defaults: separators
  `["\\n\\n", "\\n", " ", ""]`, the separator kept at the start of the piece that follows it,
  length = `len`, pieces stripped, overlap carried by whole pieces.
- The BM25 leg is rank_bm25's `BM25Okapi` over `jieba.lcut` tokens (punctuation and spaces
  included, as `preprocess_func=jieba.lcut` leaves them), top-k by `np.argsort(scores)[::-1]`.
- The dense leg is FAISS inner product over L2-normalised vectors (the same order as LangChain's
  default L2 distance on normalised vectors), with the embedder given to it.
- `EnsembleRetriever` is weighted Reciprocal Rank Fusion: each chunk scores Σ weight / (rank + 60)
  over the lists it appears in, chunks are de-duplicated by their text, ties keep first appearance.

Each retriever returns `k` chunks: LangChain's default is 4; 10 here, so that hit@5 and MRR@10
can be measured. It has no notion of "not answered here" and never declines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK_SIZE = 300
CHUNK_OVERLAP = 50
SEPARATORS = ("\n\n", "\n", " ", "")
WEIGHTS = (0.5, 0.5)
RRF_C = 60
K = 10


def split_text(
    text: str, chunk_size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP, separators: Sequence[str] = SEPARATORS
) -> list[str]:
    """`RecursiveCharacterTextSplitter(chunk_size, chunk_overlap).split_text(text)`."""
    separator, rest = separators[-1], list[str]()
    for i, candidate in enumerate(separators):
        if candidate == "":
            separator = candidate
            break
        if candidate in text:
            separator, rest = candidate, list(separators[i + 1 :])
            break
    chunks: list[str] = []
    good: list[str] = []
    for piece in _split_keeping_separator(text, separator):
        if len(piece) < chunk_size:
            good.append(piece)
            continue
        if good:
            chunks.extend(_merge(good, chunk_size, overlap))
            good = []
        chunks.extend(split_text(piece, chunk_size, overlap, rest) if rest else [piece])
    if good:
        chunks.extend(_merge(good, chunk_size, overlap))
    return chunks


def _split_keeping_separator(text: str, separator: str) -> list[str]:
    if not separator:
        return list(text)
    parts = re.split(f"({re.escape(separator)})", text)
    pieces = [parts[0]] + [parts[i] + parts[i + 1] for i in range(1, len(parts) - 1, 2)]
    return [p for p in pieces if p != ""]


def _merge(pieces: list[str], chunk_size: int, overlap: int) -> list[str]:
    """LangChain's `_merge_splits` with an empty join separator (the separator is kept in the pieces)."""
    chunks: list[str] = []
    current: list[str] = []
    total = 0
    for piece in pieces:
        if total + len(piece) > chunk_size and current:
            if joined := "".join(current).strip():
                chunks.append(joined)
            while total > overlap or (total + len(piece) > chunk_size and total > 0):
                total -= len(current[0])
                current = current[1:]
        current.append(piece)
        total += len(piece)
    if joined := "".join(current).strip():
        chunks.append(joined)
    return chunks


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[str]], weights: Sequence[float] = WEIGHTS, c: int = RRF_C
) -> list[str]:
    """`EnsembleRetriever.weighted_reciprocal_rank` over lists of chunk texts."""
    scores: dict[str, float] = {}
    for ranked, weight in zip(ranked_lists, weights, strict=True):
        for rank, text in enumerate(ranked, 1):
            scores[text] = scores.get(text, 0.0) + weight / (rank + c)
    unique = list(dict.fromkeys(text for ranked in ranked_lists for text in ranked))
    return sorted(unique, key=lambda text: scores[text], reverse=True)


@dataclass(frozen=True)
class TutorialHybrid:
    chunks: list[str]
    chunk_doc: list[str]  # document id of each chunk
    bm25: Any  # rank_bm25.BM25Okapi, which ships no type hints
    vectors: Any  # faiss.IndexFlatIP
    embedder: Any  # anything with `embed_queries(list[str]) -> np.ndarray`
    tokenize: Callable[[str], list[str]]

    @classmethod
    def build(
        cls,
        documents: Sequence[tuple[str, str]],
        embedder: Any,
        tokenize: Callable[[str], list[str]] | None = None,
        embed_chunks: Callable[[list[str]], np.ndarray] | None = None,
    ) -> TutorialHybrid:
        """Split, index both legs; `embed_chunks` (e.g. through a cache) defaults to `embedder.embed_passages`."""
        import faiss
        from rank_bm25 import BM25Okapi

        tokenize = tokenize or _jieba_lcut
        chunks: list[str] = []
        chunk_doc: list[str] = []
        for doc_id, text in documents:
            pieces = split_text(text)
            chunks.extend(pieces)
            chunk_doc.extend([doc_id] * len(pieces))
        matrix = np.asarray((embed_chunks or embedder.embed_passages)(chunks), dtype=np.float32)
        faiss.normalize_L2(matrix)
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(matrix)
        return cls(chunks, chunk_doc, BM25Okapi([tokenize(c) for c in chunks]), index, embedder, tokenize)

    def bm25_top(self, question: str, k: int = K) -> list[int]:
        scores = np.asarray(self.bm25.get_scores(self.tokenize(question)))
        return [int(i) for i in np.argsort(scores)[::-1][:k]]

    def dense_top(self, question: str, k: int = K) -> list[int]:
        query = np.asarray(self.embedder.embed_queries([question]), dtype=np.float32).reshape(1, -1)
        _, rows = self.vectors.search(query, min(k, len(self.chunks)))
        return [int(i) for i in rows[0] if i >= 0]

    def search(self, question: str, k: int = K) -> list[tuple[str, str]]:
        """(document id, chunk text) best first, as the ensemble returns them (up to 2k chunks)."""
        lists = [self.bm25_top(question, k), self.dense_top(question, k)]
        doc_of = {self.chunks[i]: self.chunk_doc[i] for rows in lists for i in rows}
        fused = reciprocal_rank_fusion([[self.chunks[i] for i in rows] for rows in lists])
        return [(doc_of[text], text) for text in fused]


def _jieba_lcut(text: str) -> list[str]:
    import jieba

    return list(jieba.lcut(text))
