"""Hybrid retrieval over a loaded index: ranked hits and a confidence that they answer the question."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.errors import BadQuestion, IndexError_
from embeddings.index.lazycorpus import Speeches
from embeddings.index.lexical import LexicalIndex
from embeddings.index.store import REBUILD_HINT, StoredIndex
from embeddings.models.dense import Embedder
from embeddings.models.rerank import Reranker, rerank_order
from embeddings.passage import Hit, Passage, SearchResult, Speech
from embeddings.retrieval.coverage import Coverage, FormCache, question_words
from embeddings.retrieval.fusion import DEFAULT_SIMILARITY_GAIN, ModelProfile, fuse, model_profile, top_rows
from embeddings.retrieval.meaning import SentenceVectors
from embeddings.retrieval.paragraphs import ParagraphMap, paragraph_passage, shown_row, widened
from embeddings.settings import EngineSettings
from embeddings.text.expect import Expectation, asks_for_work, expected_answer
from embeddings.text.textnorm import has_searchable_text, matching_form
from embeddings.text.tokenize import BIGRAM_PREFIX, load_stopwords, query_tokenizer

if TYPE_CHECKING:
    from embeddings.milvus.legs import MilvusSentences, MilvusWords

    # Opens the Milvus searches over a retriever's own passages, speeches and units (`embeddings.milvus`).
    RemoteLegs = Callable[["Retriever"], tuple[MilvusWords, MilvusSentences | None]]

MAX_QUERY_CHARS = 2000
CONFIDENCE_FROM_TOP = 3
RELATED_FLOOR = 0.25
# What a hit shows: its part grown by whole sentences of its paragraph up to this many characters
# (parts are cut at 300 for scoring). Measured, hybrid: hit@1 on the paraphrase dev set 0.575 → 0.600,
# on the 69 documents 0.550 → 0.575, held-out 0.968 → 0.984; abstention unchanged (docs/experiments).
SHOWN_CHARS = 450
# Choosing the sentence a hit shows, meaning weighs half as much as in ranking: the words the
# asker chose are the better guide to which sentence of an already relevant paragraph answers.
SENTENCE_MEANING_SHARE = 0.5
# A sentence with the number, date or measure the question asks for is likelier the one that answers.
SHAPE_BONUS = 0.3


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
    """Searches one index generation; row *i* of every part is passage *i*, vector *u* is sentence unit *u*.

    The two candidate searches (BM25 over passages, nearest sentence vectors) run on the local
    files, or in Milvus when `remote` is given (`embeddings.milvus`); everything after them is the same.
    """

    def __init__(
        self,
        stored: StoredIndex,
        settings: EngineSettings,
        embedder: Embedder | None = None,
        notice: str = "",
        reranker: Reranker | None = None,
        *,
        remote: RemoteLegs | None = None,
    ) -> None:
        self.stored = stored
        self.reranker = reranker
        self.settings = settings
        self.notice = notice
        # Passages and speeches are read on demand from memory-mapped files: a cold start costs the
        # same for any corpus size, and the maps keep this generation's files readable after a rebuild.
        self.passages: Sequence[Passage] = stored.read_passages()
        self.speeches: Speeches = stored.read_speeches()
        self.units = stored.read_units()
        self.lexical = LexicalIndex.load(stored.directory / "lexical")
        lexical = settings.lexical
        self.tokenize = query_tokenizer(stored.directory / "query_dict.txt", Path(lexical.stopwords), lexical.bigrams)
        self.question_frames = load_stopwords(Path(lexical.question_frames))
        self.coverage = Coverage(self.lexical, self.passages, self.question_frames)
        self._unit_forms = FormCache(self.unit_text)
        dense: dict[str, Any] = stored.manifest.get("dense") or {}
        configured = settings.fusion.dense_weight
        # The configured weight applies as soon as it is set; "auto" takes the one calibrated at build time.
        weight = float(dense.get("weight") or 0.0) if configured == "auto" else float(configured)
        # A weight of 0 means the model cannot change the ranking: skip its per-question cost.
        usable = embedder is not None and dense.get("model") == embedder.name and weight > 0
        self.embedder = embedder if usable else None
        self.dense_weight = weight if usable else 0.0
        self.profile = _profile(settings, self.embedder)
        self.sentences: SentenceVectors | None = None
        self.remote_words: MilvusWords | None = None
        self.remote_sentences: MilvusSentences | None = None
        if self.embedder is not None and remote is None:
            self.sentences = SentenceVectors.load(stored, self.embedder.name, self.embedder.dimension, len(self.units))
        counts = {len(self.passages), self.lexical.num_docs, int(stored.manifest["counts"]["passages"])}
        of_row = stored.read_paragraphs()
        counts.add(len(of_row))
        held_by = self.units[:, 0]
        if len(counts) != 1 or (len(held_by) and not 0 <= int(held_by.min()) <= int(held_by.max()) < len(of_row)):
            raise IndexError_(
                f"the index in {stored.directory} is inconsistent (row counts {sorted(counts)})", REBUILD_HINT
            )
        self.paragraphs = ParagraphMap.build(of_row, self.units)
        if remote is not None:  # only once this generation is known whole: its rows are what Milvus is given
            self.remote_words, sentences = remote(self)
            self.remote_sentences = sentences if self.embedder is not None else None

    @property
    def mode(self) -> str:
        return "hybrid" if self.sentences is not None or self.remote_sentences is not None else "lexical"

    def passage(self, passage_id: str, *, shown: bool = False) -> Passage | None:
        """The passage with this id, reading only its own speech's passages (ids are `speech:paragraph.part`);
        `shown`: as a hit shows it, grown by whole sentences of its paragraph."""
        rows = self.speeches.passage_rows(passage_id.rpartition(":")[0])
        row = next((row for row in rows if self.passages[row].passage_id == passage_id), None)
        if row is None:
            return None
        if not shown:
            return self.passages[row]
        return self._as_shown(row, self.speeches.get(self.passages[row].speech_id))

    def _as_shown(self, row: int, speech: Speech | None) -> Passage:
        """Passage `row` grown by whole sentences of its paragraph (of `speech`) up to `SHOWN_CHARS`."""
        units = self.paragraphs.units[int(self.paragraphs.of_row[row])].tolist()
        sentences = [(int(self.units[unit, 1]), int(self.units[unit, 2])) for unit in units]
        return widened(self.passages[row], speech, sentences, SHOWN_CHARS)

    def search(self, question: str, top_k: int = 5) -> SearchResult:
        """Rank paragraphs for `question`; raises `BadQuestion` when there is nothing to search for."""
        question = validate_question(question)
        tokens = self.tokenize(question)
        candidates = self.settings.fusion.candidates
        if self.remote_words is None:
            lexical = self.lexical.scores(tokens)
        else:
            lexical = self.remote_words.scores(tokens, candidates)
        pool = self.paragraphs.of_row[top_rows(lexical, candidates)]
        unit_scores: np.ndarray | None = None
        meaning = self.remote_sentences or self.sentences
        if meaning is not None and self.embedder is not None:
            query = self.embedder.embed_queries([question])[0]
            unit_scores, nearest = meaning.nearest(query, 2 * candidates)
            pool = np.concatenate([pool, self.paragraphs.of_unit[nearest]])
        pool = np.unique(pool)
        if self.remote_words is not None:
            self.remote_words.complete(lexical, tokens, self.paragraphs.rows.of(pool)[0])
        words = question_words(tokens)
        by_words, row_scores = self.paragraphs.lexical(
            pool, lambda rows: self.coverage.coordinated(words, lexical, rows)
        )
        if unit_scores is not None and meaning is not None:
            meaning.score(unit_scores, query, self.paragraphs.units.of(pool)[0])
            by_meaning = self.paragraphs.dense(pool, unit_scores)
            fused = fuse(by_words, by_meaning, self.dense_weight)
            ranked = pool[np.argsort(-fused, kind="stable")]
        else:
            fused = by_words.astype(np.float64)
            keep = by_words > 0
            ranked = pool[keep][np.argsort(-fused[keep], kind="stable")]
            pool, fused = pool[keep], fused[keep]
        depth = max(top_k, self.settings.rerank.candidates if self.reranker is not None else 0)
        asked = matching_form(question)
        expectation = expected_answer(asked)
        weights = {word: self.lexical.idf(word) for word in set(words)}
        shown = [self._shown(int(p), weights, row_scores, unit_scores, expectation) for p in ranked[:depth]]
        if self.reranker is not None:
            head = shown[: self.settings.rerank.candidates]
            scores = self.reranker.score(question, [self.passages[row].search_text for row in head])
            shown = rerank_order(head, scores) + shown[len(head) :]
        order_rows = shown[:top_k]
        # The speeches answer the question when one of the leading paragraphs covers it, in words or
        # in meaning; the direct answer then draws on all of them, not only on the first.
        confidence = max(
            (self._confidence(tokens, row, expectation, unit_scores) for row in order_rows[:CONFIDENCE_FROM_TOP]),
            default=0.0,
        )
        answerable = bool(order_rows) and confidence >= self.settings.fusion.min_confidence and not asks_for_work(asked)
        if not answerable:
            # Offered only as "possibly related": a passage sharing little of the question is noise.
            order_rows = [row for row in order_rows if self.coverage.of_passage(tokens, row) >= RELATED_FLOOR]
        fused_by_paragraph = dict(zip(pool.tolist(), fused.tolist(), strict=True))
        hits = tuple(
            self._hit(rank, row, fused_by_paragraph, lexical, unit_scores) for rank, row in enumerate(order_rows, 1)
        )
        return SearchResult(
            query=question,
            hits=hits,
            confidence=confidence,
            answerable=answerable,
            mode="hybrid" if unit_scores is not None else "lexical",
            notice=self.notice,
            terms=self.coverage.terms(tokens),
            expectation=expectation,
            sentence_scores=self._sentence_scores(order_rows, unit_scores),
        )

    def _shown(
        self,
        paragraph: int,
        weights: dict[str, float],
        row_scores: dict[int, float],
        unit_scores: np.ndarray | None,
        expectation: Expectation | None,
    ) -> int:
        """The passage row of `paragraph` to show; `weights` are the question's words' IDFs, `row_scores`
        the passages' coordinated BM25 as ranking scored them."""
        rows = self.paragraphs.rows[paragraph]
        units = self.paragraphs.units[paragraph]
        total = sum(weights.values())
        similarity = None
        if unit_scores is not None and len(units):
            low, high = float(unit_scores[units].min()), float(unit_scores[units].max())
            similarity = (unit_scores[units] - low) / (high - low) if high - low > 1e-9 else np.zeros(len(units))
        position = {int(u): i for i, u in enumerate(units)}

        def rate(unit: int) -> float:
            text = self._unit_forms[unit]
            covered = (
                sum(w for word, w in weights.items() if word.removeprefix(BIGRAM_PREFIX) in text) / total
                if total
                else 0.0
            )
            shape = SHAPE_BONUS if expectation is not None and expectation.met_by(text) else 0.0
            if similarity is None:
                return covered + shape
            share = SENTENCE_MEANING_SHARE * self.dense_weight
            return (1 - share) * covered + share * float(similarity[position[unit]]) + shape

        return shown_row(
            rows,
            passages=self.passages,
            row_scores=np.array([row_scores[int(row)] for row in rows], dtype=np.float32),
            unit_table=self.units,
            units=units,
            unit_score=rate,
        )

    def unit_text(self, unit: int) -> str:
        row, start, end = (int(v) for v in self.units[unit])
        passage = self.passages[row]
        speech = self.speeches.get(passage.speech_id)
        if speech is None:  # a bare passage: its units are cut from its own text
            return passage.text[start - passage.start : end - passage.start]
        return speech.text[start:end]

    def _hit(
        self, rank: int, row: int, fused: dict[int, float], lexical: np.ndarray, unit_scores: np.ndarray | None
    ) -> Hit:
        passage = self.passages[row]
        paragraph = int(self.paragraphs.of_row[row])
        units = self.paragraphs.units[paragraph]
        dense = None if unit_scores is None or not len(units) else float(unit_scores[units].max())
        speech = self.speeches.get(passage.speech_id)
        return Hit(
            rank=rank,
            passage=self._as_shown(row, speech),
            score=float(fused.get(paragraph, 0.0)),
            lexical_score=float(lexical[row]),
            dense_score=dense,
            source="hybrid" if unit_scores is not None else "lexical",
            paragraph=paragraph_passage(speech, passage.paragraph_no, passage),
        )

    def _sentence_scores(self, rows: list[int], unit_scores: np.ndarray | None) -> tuple[tuple[str, int, float], ...]:
        """(speech id, start, similarity) of the sentences of the shown paragraphs, for choosing answer sentences."""
        if unit_scores is None:
            return ()
        scored = []
        for row in rows:
            speech_id = self.passages[row].speech_id
            for unit in self.paragraphs.units[int(self.paragraphs.of_row[row])].tolist():
                scored.append((speech_id, int(self.units[unit, 1]), float(unit_scores[unit])))
        return tuple(scored)

    def _confidence(
        self, tokens: list[str], row: int, expectation: Expectation | None, unit_scores: np.ndarray | None
    ) -> float:
        """Coverage in words, raised or lowered by how closely the paragraph's best sentence matches in meaning.

        The sentence counts only when it, or a neighbour, has the number or date the question asks
        for: a paragraph on the topic that lacks the asked-for figure does not answer the question.
        """
        by_words = self.coverage.of_passage(tokens, row, expectation)
        if unit_scores is None or self.profile is None:
            return by_words
        units = self.paragraphs.units[int(self.paragraphs.of_row[row])]
        if not len(units):
            return by_words
        best = int(np.argmax(unit_scores[units]))
        if expectation is not None:
            near = units[max(0, best - 1) : best + 2]
            if not expectation.met_by("".join(self.unit_text(int(u)) for u in near)):
                return by_words
        similarity = float(unit_scores[units[best]])
        shift = self.profile.similarity_gain * (similarity - self.profile.answer_similarity)
        return min(1.0, max(0.0, by_words + shift))


def _profile(settings: EngineSettings, embedder: Embedder | None) -> ModelProfile | None:
    """How far the model's similarity may move confidence: measured for the bundled model, or configured."""
    if embedder is None:
        return None
    profile = model_profile(embedder.name)
    configured = settings.fusion.answer_similarity
    if configured == "auto":
        return profile
    return ModelProfile(0.0, float(configured), profile.similarity_gain if profile else DEFAULT_SIMILARITY_GAIN)
