"""Ranked hits → an answer: a direct answer in the speakers' own sentences, and numbered citations.

Every front-end (terminal, JSON, Telegram) renders this one object. Nothing is paraphrased: the
direct answer is the one to three sentences of the top passages that best cover the question,
each tagged with the number of the citation it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from embeddings.ingest.segment import sentence_spans
from embeddings.passage import Hit, Passage, SearchResult

from .config import AnswerSettings
from .direct import DirectSentence, Source, coverage, direct_sentences, fold

_CLAUSE_START = re.compile(r"[，,、；;：:。！？!?][”’」』]*")


@dataclass(frozen=True, slots=True)
class Citation:
    number: int
    passage: Passage
    score: float
    snippet: str
    highlights: tuple[tuple[int, int], ...]  # spans of `snippet` that hold the question's words
    paragraph: Passage | None = None  # the whole paragraph `passage` is the answering part of

    def to_dict(self) -> dict[str, Any]:
        paragraph = self.paragraph or self.passage
        return {
            "number": self.number,
            "citation": self.passage.citation,
            "snippet": self.snippet,
            "highlights": [list(span) for span in self.highlights],
            "score": round(self.score, 6),
            **self.passage.to_dict(),
            "paragraph_start": paragraph.start,
            "paragraph_end": paragraph.end,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    found: bool
    direct: tuple[DirectSentence, ...]
    citations: tuple[Citation, ...]
    confidence: float
    mode: str
    notice: str = ""
    first_rank: int = 1  # rank of the first citation: a "more results" page starts further down

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "found": self.found,
            "confidence": round(self.confidence, 4),
            "mode": self.mode,
            "notice": self.notice,
            "direct_answer": [{"text": s.text, "citation": s.citation} for s in self.direct],
            "hits": [{"rank": self.first_rank + i, **citation.to_dict()} for i, citation in enumerate(self.citations)],
        }


def compose(result: SearchResult, settings: AnswerSettings, hits: tuple[Hit, ...] | None = None) -> Answer:
    """Build the answer for `result` (or for a later page of its `hits`)."""
    page = result.hits[: settings.top_k] if hits is None else hits
    weights = {text: weight for text, weight, _ in result.terms}
    # Single characters (a question's "X" would light up every "xx") are too common to mark.
    words = [text for text, _, is_word in result.terms if is_word and len(text) > 1]
    citations = tuple(
        Citation(
            n,
            hit.passage,
            hit.score,
            *_snippet(hit.passage.text, weights, words, settings.snippet_chars),
            paragraph=hit.paragraph,
        )
        for n, hit in enumerate(page, 1)
    )
    sources = [Source(n, hit.paragraph or hit.passage) for n, hit in enumerate(page, 1)]
    direct = (
        direct_sentences(
            sources,
            weights,
            settings.direct_sentences,
            expectation=result.expectation,
            meaning=_scaled(result.sentence_scores),
            question=result.query,
        )
        if result.answerable and hits is None
        else ()
    )
    return Answer(
        question=result.query,
        found=result.answerable,
        direct=direct,
        citations=citations,
        confidence=result.confidence,
        mode=result.mode,
        notice=result.notice,
        first_rank=page[0].rank if page else 1,
    )


def _scaled(scores: tuple[tuple[str, int, float], ...]) -> dict[tuple[str, int], float]:
    """Sentence similarities scaled to 0–1 over the candidates: what counts is closer than the rest."""
    if not scores:
        return {}
    values = [score for _, _, score in scores]
    low, high = min(values), max(values)
    spread = high - low if high - low > 1e-9 else 1.0
    return {(speech, start): (score - low) / spread for speech, start, score in scores}


def _snippet(
    text: str, weights: dict[str, float], words: list[str], limit: int
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Trim `text` to about `limit` characters around its best sentence, marking cuts with `…`.

    Whole sentences are added around the best one while they fit; what room is left is filled
    with the text that follows (then precedes) it, so long neighbours never shrink the snippet
    to one short sentence. Text before is taken from a clause start on: a snippet opening on the
    tail of a word ("…挥。") reads as a mistake, one trailing off ("人民日报第…") does not.
    """
    if len(text) > limit:
        spans = sentence_spans(text)
        best = max(range(len(spans)), key=lambda i: (coverage(text[spans[i][0] : spans[i][1]], weights), -i))
        first = last = best
        while True:
            grown = False
            if last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= limit:
                last, grown = last + 1, True
            if first > 0 and spans[last][1] - spans[first - 1][0] <= limit:
                first, grown = first - 1, True
            if not grown:
                break
        start, end = spans[first][0], min(spans[last][1], spans[first][0] + limit)
        end = min(len(text), end + limit - (end - start))
        core_start, start = start, max(0, start - (limit - (end - start)))
        if 0 < start < core_start:
            clause = _CLAUSE_START.search(text, start, core_start)
            start = clause.end() if clause else core_start
        text = ("…" if start > 0 else "") + text[start:end].strip() + ("…" if end < len(text) else "")
    return text, _highlights(text, words)


def _highlights(text: str, words: list[str]) -> tuple[tuple[int, int], ...]:
    folded = fold(text)
    marked = [False] * len(text)
    for word in words:
        start = folded.find(word)
        while start >= 0:
            for i in range(start, start + len(word)):
                marked[i] = True
            start = folded.find(word, start + len(word))
    spans = []
    i = 0
    while i < len(marked):
        if marked[i]:
            j = i
            while j < len(marked) and marked[j]:
                j += 1
            spans.append((i, j))
            i = j
        else:
            i += 1
    return tuple(spans)
