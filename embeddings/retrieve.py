"""Hybrid retrieval over a loaded index: ranked hits and a confidence that they answer the question."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.dense import Embedder
from embeddings.errors import BadQuestion, IndexError_
from embeddings.fusion import fuse
from embeddings.lexical import LexicalIndex
from embeddings.passage import Hit, Passage, SearchResult, Speech
from embeddings.rerank import Reranker, rerank_order
from embeddings.settings import EngineSettings
from embeddings.store import REBUILD_HINT, StoredIndex
from embeddings.textnorm import has_searchable_text
from embeddings.tokenize import BIGRAM_PREFIX, load_stopwords, query_tokenizer

MAX_QUERY_CHARS = 2000
CONFIDENCE_FROM_TOP = 3


def validate_question(question: str, max_chars: int = MAX_QUERY_CHARS) -> str:
    """The stripped question, or `BadQuestion` saying why it cannot be searched."""
    question = question.strip()
    if not question:
        raise BadQuestion("the question is empty", "type a question in Chinese, e.g. 工匠日是怎么设立的？")
    if len(question) > max_chars:
        limit = f"the question is {len(question)} characters; the limit is {max_chars}"
        raise BadQuestion(limit, "ask a shorter question")
    if not has_searchable_text(question):
        raise BadQuestion(
            "the question has no words to search for (only punctuation, symbols or emoji)", "ask in words"
        )
    return question


class Retriever:
    """Searches one index generation; row *i* of every part is passage *i*."""

    def __init__(
        self,
        stored: StoredIndex,
        settings: EngineSettings,
        embedder: Embedder | None = None,
        notice: str = "",
        reranker: Reranker | None = None,
    ) -> None:
        self.stored = stored
        self.reranker = reranker
        self.settings = settings
        self.notice = notice
        self.passages: list[Passage] = stored.read_passages()
        self.lexical = LexicalIndex.load(stored.directory / "lexical")
        lexical = settings.lexical
        self.tokenize = query_tokenizer(stored.directory / "query_dict.txt", Path(lexical.stopwords), lexical.bigrams)
        self.question_frames = load_stopwords(Path(lexical.question_frames))
        dense: dict[str, Any] = stored.manifest.get("dense") or {}
        weight = float(dense.get("weight") or 0.0)
        # A calibrated weight of 0 means the model cannot improve this index's ranking: skip its per-question cost.
        usable = embedder is not None and dense.get("model") == embedder.name and weight > 0
        self.embedder = embedder if usable else None
        self.dense_weight = weight if usable else 0.0
        self.vectors: Any = None
        if self.embedder is not None:
            from embeddings.vectors import load_vector_index

            self.vectors = load_vector_index(stored.directory / "dense.faiss")
        counts = {len(self.passages), self.lexical.num_docs} | (
            {self.vectors.ntotal} if self.vectors is not None else set()
        )
        if len(counts) != 1:
            raise IndexError_(
                f"the index in {stored.directory} is inconsistent (row counts {sorted(counts)})", REBUILD_HINT
            )

    @property
    def mode(self) -> str:
        return "hybrid" if self.vectors is not None else "lexical"

    @cached_property
    def speeches(self) -> dict[str, Speech]:
        return self.stored.read_speeches()

    def search(self, question: str, top_k: int = 5) -> SearchResult:
        """Rank passages for `question`; raises `BadQuestion` when there is nothing to search for."""
        question = validate_question(question)
        tokens = self.tokenize(question)
        lexical = self.lexical.scores(tokens)
        candidates = self.settings.fusion.candidates
        pool = np.argsort(-lexical, kind="stable")[:candidates]
        dense_scores: dict[int, float] = {}
        if self.vectors is not None and self.embedder is not None:
            from embeddings.vectors import search_vectors

            query_vector = self.embedder.embed_queries([question])[0]
            scores, rows = search_vectors(self.vectors, query_vector, candidates)
            dense_scores = {int(r): float(s) for r, s in zip(rows, scores, strict=True)}
            pool = np.union1d(pool, rows.astype(np.int64))
            floor = float(scores.min()) if len(scores) else 0.0
            dense = np.array([dense_scores.get(int(r), floor) for r in pool], dtype=np.float32)
            fused = fuse(lexical[pool], dense, self.dense_weight)
        else:
            fused = lexical[pool]
        order = self._one_per_paragraph(pool[np.argsort(-fused, kind="stable")])
        if self.reranker is not None:
            head = order[: self.settings.rerank.candidates].tolist()
            scores = self.reranker.score(question, [self.passages[row].search_text for row in head])
            order = np.array(rerank_order(head, scores) + order[len(head) :].tolist(), dtype=np.int64)
        order = order[:top_k]
        fused_by_row = dict(zip(pool.tolist(), fused.tolist(), strict=True))
        hits = tuple(
            Hit(
                rank=rank,
                passage=self.passages[row],
                score=float(fused_by_row[row]),
                lexical_score=float(lexical[row]),
                dense_score=dense_scores.get(row),
                source="hybrid" if self.vectors is not None else "lexical",
            )
            for rank, row in enumerate(order.tolist(), 1)
            if lexical[row] > 0 or row in dense_scores
        )
        # The speeches answer the question when one of the leading passages covers it; the direct
        # answer then draws on all of them, not only on the first.
        confidence = max((self.confidence(tokens, int(row)) for row in order[:CONFIDENCE_FROM_TOP]), default=0.0)
        return SearchResult(
            query=question,
            hits=hits,
            confidence=confidence,
            answerable=bool(hits) and confidence >= self.settings.fusion.min_confidence,
            mode="hybrid" if self.vectors is not None else "lexical",
            notice=self.notice,
            terms=self._terms(tokens),
        )

    def _one_per_paragraph(self, rows: np.ndarray) -> np.ndarray:
        """Citations name paragraphs, so a paragraph is shown once: by its best-ranked passage."""
        seen: set[tuple[str, int]] = set()
        kept = []
        for row in rows.tolist():
            passage = self.passages[row]
            key = (passage.speech_id, passage.paragraph_no)
            if key not in seen:
                seen.add(key)
                kept.append(row)
        return np.array(kept, dtype=np.int64)

    def _terms(self, tokens: list[str]) -> tuple[tuple[str, float, bool], ...]:
        terms: dict[str, tuple[float, bool]] = {}
        for token in tokens:
            is_word = not token.startswith(BIGRAM_PREFIX)
            text = token.removeprefix(BIGRAM_PREFIX)
            weight, was_word = terms.get(text, (0.0, False))
            terms[text] = (max(weight, self.lexical.idf(token)), was_word or is_word)
        return tuple((text, weight, is_word) for text, (weight, is_word) in terms.items())

    def confidence(self, tokens: list[str], row: int) -> float:
        """How much of the question passage `row` covers, rare words weighing more than common ones.

        Words, not bigrams: a bigram across two words of the question ("交多") says nothing about
        whether the passage answers it, and would make every question look half-unanswered.
        """
        words = [t for t in tokens if not t.startswith(BIGRAM_PREFIX)] or tokens
        return self.lexical.coverage(words, row, self.question_frames)
