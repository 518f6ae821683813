"""Ranked hits → an answer: a direct answer in the speakers' own sentences, and numbered citations.

Every front-end (terminal, JSON, Telegram) renders this one object. Nothing is paraphrased: the
direct answer is the one to three sentences of the top passages that best cover the question,
each tagged with the number of the citation it came from.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from embeddings.expect import Expectation
from embeddings.passage import Hit, Passage, SearchResult
from embeddings.segment import sentence_spans
from embeddings.structure import heading_level
from embeddings.textnorm import to_simplified

from .config import AnswerSettings

DIRECT_FROM_TOP = 3
# A further sentence joins the direct answer only when it is nearly as good as the best one.
ALSO_SHOWN_SHARE = 0.7
SHAPE_BONUS = 0.15
# A best sentence this short ("第四要好共事。") names the point; the sentences after it make it.
LEAD_IN_CHARS = 30
MAX_LABEL_CHARS = 16
LEAD_IN_LEVEL = 4
_CLOSERS = "”’」』）)》】\"' "
_CLAUSE_START = re.compile(r"[，,、；;：:。！？!?][”’」』]*")


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
    # Single characters (a question's "X" would light up every "xx") are too common to mark.
    words = [text for text, _, is_word in result.terms if is_word and len(text) > 1]
    citations = tuple(
        Citation(n, hit.passage, hit.score, *_snippet(hit.passage.text, weights, words, settings.snippet_chars))
        for n, hit in enumerate(page, 1)
    )
    direct = (
        _direct_sentences(citations, weights, settings.direct_sentences, result.expectation)
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


def _coverage(sentence: str, weights: dict[str, float]) -> float:
    folded = fold(sentence)
    total = sum(weights.values())
    return sum(w for term, w in weights.items() if term in folded) / total if total else 0.0


def statements(text: str) -> list[tuple[int, int]]:
    """Sentences ending at 。！？ (a run of clauses joined by ；, as in "一是…；二是…。", stays whole)."""
    merged: list[tuple[int, int]] = []
    joined = False
    for start, end in sentence_spans(text):
        if joined and merged:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
        joined = text[start:end].rstrip(_CLOSERS).endswith(("；", ";"))
    return merged


def _direct_sentences(
    citations: tuple[Citation, ...], weights: dict[str, float], limit: int, expectation: Expectation | None
) -> tuple[DirectSentence, ...]:
    """The sentences that best answer: the best one, what it announces, and any as good as it.

    A sentence scores by the question's words it holds, plus a bonus when it has the number or
    date the question asks for. A best sentence that ends in a colon ("主要有三个方面：") or only
    names the point ("第四要好共事。") announces what follows, which then joins the answer.
    """
    scored = []
    for citation in citations[:DIRECT_FROM_TOP]:
        text = citation.passage.text
        spans = statements(text)
        for index, (start, end) in enumerate(spans):
            sentence = text[start:end].strip()
            if len(sentence) < 4 or _is_label(sentence):
                continue
            score = _coverage(sentence, weights) + (SHAPE_BONUS if expectation and expectation.met_by(sentence) else 0)
            # An earlier-ranked passage wins a tie: the ranking already weighed the whole passage.
            scored.append(_Scored(score - 0.02 * citation.number, citation.number, index, sentence, spans, text))
    if not scored:
        return ()
    scored.sort(key=lambda item: (-item.score, item.citation, item.index))
    best = scored[0]
    chosen = [best]
    if best.sentence.rstrip(_CLOSERS).endswith(("：", ":")) or len(best.sentence) < LEAD_IN_CHARS:
        following = best.spans[best.index + 1 : best.index + limit]
        chosen += [
            _Scored(best.score, best.citation, best.index + 1 + i, best.text[a:b].strip(), best.spans, best.text)
            for i, (a, b) in enumerate(following)
        ]
    for item in scored[1:]:
        if len(chosen) >= limit or item.score < best.score * ALSO_SHOWN_SHARE:
            break
        if all((item.citation, item.index) != (c.citation, c.index) for c in chosen):
            chosen.append(item)
    chosen.sort(key=lambda item: (item.citation, item.index))  # read in the speech's own order
    return tuple(DirectSentence(item.sentence, item.citation) for item in chosen[:limit])


def _is_label(sentence: str) -> bool:
    """A run-in heading such as "（三）创品牌。": it names the section, it answers nothing.

    Lead-ins ("第四要好共事。", level 4) are points of the speech, not labels, and may answer.
    """
    level = heading_level(sentence)
    return len(sentence) <= MAX_LABEL_CHARS and level is not None and level < LEAD_IN_LEVEL


@dataclass(frozen=True, slots=True)
class _Scored:
    score: float
    citation: int
    index: int
    sentence: str
    spans: list[tuple[int, int]]
    text: str


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
