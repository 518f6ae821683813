"""Ranked hits → an answer: a direct answer in the speakers' own sentences, and numbered citations.

Every front-end (terminal, JSON, Telegram) renders this one object. Nothing is paraphrased: the
direct answer is the one to three sentences of the top passages that best cover the question,
each tagged with the number of the citation it came from.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from embeddings.passage import Hit, Passage, SearchResult
from embeddings.segment import sentence_spans
from embeddings.textnorm import to_simplified

from .config import AnswerSettings

DIRECT_FROM_TOP = 3
SECOND_SENTENCE_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class Citation:
    number: int
    passage: Passage
    score: float
    snippet: str
    highlights: tuple[tuple[int, int], ...]  # spans of `snippet` that hold the question's words

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "citation": self.passage.citation,
            "snippet": self.snippet,
            "highlights": [list(span) for span in self.highlights],
            "score": round(self.score, 6),
            **self.passage.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class DirectSentence:
    text: str
    citation: int


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


def fold(text: str) -> str:
    """Character-by-character matching form, so positions in the folded text are positions in `text`."""
    folded = []
    for ch in text:
        normal = unicodedata.normalize("NFKC", ch).casefold()
        folded.append(normal if len(normal) == 1 else ch)
    return to_simplified("".join(folded))


def compose(result: SearchResult, settings: AnswerSettings, hits: tuple[Hit, ...] | None = None) -> Answer:
    """Build the answer for `result` (or for a later page of its `hits`)."""
    page = result.hits[: settings.top_k] if hits is None else hits
    weights = {text: weight for text, weight, _ in result.terms}
    words = [text for text, _, is_word in result.terms if is_word and (len(text) > 1 or text.isascii())]
    citations = tuple(
        Citation(n, hit.passage, hit.score, *_snippet(hit.passage.text, weights, words, settings.snippet_chars))
        for n, hit in enumerate(page, 1)
    )
    direct = (
        _direct_sentences(citations, weights, settings.direct_sentences) if result.answerable and hits is None else ()
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


def _coverage(sentence: str, weights: dict[str, float]) -> float:
    folded = fold(sentence)
    total = sum(weights.values())
    return sum(w for term, w in weights.items() if term in folded) / total if total else 0.0


def _direct_sentences(
    citations: tuple[Citation, ...], weights: dict[str, float], limit: int
) -> tuple[DirectSentence, ...]:
    scored = []
    for citation in citations[:DIRECT_FROM_TOP]:
        text = citation.passage.text
        for start, end in sentence_spans(text):
            sentence = text[start:end].strip()
            if len(sentence) >= 4:
                # An earlier-ranked passage wins a tie: the ranking already weighed the whole passage.
                scored.append((_coverage(sentence, weights) - 0.02 * citation.number, start, sentence, citation.number))
    if not scored:
        return ()
    scored.sort(key=lambda item: (-item[0], item[3], item[1]))
    best = scored[0][0]
    chosen = [item for item in scored[:limit] if item[0] >= best * SECOND_SENTENCE_SHARE]
    chosen.sort(key=lambda item: (item[3], item[1]))  # read in the speech's own order
    return tuple(DirectSentence(sentence, number) for _, _, sentence, number in chosen)


def _snippet(
    text: str, weights: dict[str, float], words: list[str], limit: int
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Trim `text` to about `limit` characters around its best sentence, marking cuts with `…`."""
    if len(text) > limit:
        spans = sentence_spans(text)
        best = max(range(len(spans)), key=lambda i: (_coverage(text[spans[i][0] : spans[i][1]], weights), -i))
        first = last = best
        while True:
            grown = False
            if last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= limit:
                last, grown = last + 1, True
            if first > 0 and spans[last][1] - spans[first - 1][0] <= limit:
                first, grown = first - 1, True
            if not grown:
                break
        start, end = spans[first][0], spans[last][1]
        if end - start > limit:
            end = start + limit
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
