"""The direct answer: the speakers' own sentences that best answer, drawn from the hits' whole paragraphs.

A sentence scores by the question's words it holds and, with a model, by how close it is in
meaning (the asker's words often are not the speech's), plus a bonus when it has the number or
date the question asks for. A best sentence that ends in a colon ("主要有三个方面：") or only names
the point ("第四要好共事。") announces what follows, which then joins the answer. A question asking
for a list ("哪几点", "哪些方面", "包括什么") gets the enumeration the paragraph gives ("一是…二是…
第三是…"), in the speech's order, even where it runs across several passages of the paragraph.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from embeddings.ingest.segment import paragraph_statements
from embeddings.ingest.structure import heading_level
from embeddings.passage import FRONT_MATTER, FRONT_MATTER_TOPICS, Passage
from embeddings.text.expect import Expectation
from embeddings.text.textnorm import to_simplified

DIRECT_FROM_TOP = 2
# A further sentence joins the direct answer only when it is nearly as good as the best one.
ALSO_SHOWN_SHARE = 0.7
SHAPE_BONUS = 0.15
# How much a sentence's closeness in meaning counts next to its share of the question's words (0–1 each).
MEANING_SHARE = 0.3
# A best sentence this short ("第四要好共事。") names the point; the sentences after it make it.
LEAD_IN_CHARS = 30
MAX_LABEL_CHARS = 16
LEAD_IN_LEVEL = 4
MAX_LIST_ITEMS = 8
_CLOSERS = "”’」』）)》】\"' "
LIST_QUESTION = re.compile(r"哪[几些两三四五六七八九十]|几[个点条项方大]|包括(?:什么|哪)|有什么(?:要求|措施|做法|办法)")
_ITEM = re.compile(
    r"^(?:[一二三四五六七八九十]+是|第[一二三四五六七八九十]+|首先|其次|再次|最后|"
    r"[（(][一二三四五六七八九十\d]+[)）]|[一二三四五六七八九十]+、|\d+[、.．])"
)


@dataclass(frozen=True, slots=True)
class DirectSentence:
    text: str
    citation: int


@dataclass(frozen=True, slots=True)
class Source:
    """One cited paragraph as the direct answer sees it: its number, text, and where it starts in its speech."""

    citation: int
    paragraph: Passage


# The same paragraphs' sentences come up question after question, and folding goes character by
# character (a third of the time a bot spends answering, measured); bounded, for a bot that stays up.
@functools.lru_cache(maxsize=8192)
def fold(text: str) -> str:
    """Character-by-character matching form, so positions in the folded text are positions in `text`."""
    folded = []
    for ch in text:
        normal = unicodedata.normalize("NFKC", ch).casefold()
        folded.append(normal if len(normal) == 1 else ch)
    return to_simplified("".join(folded))


def coverage(sentence: str, weights: dict[str, float]) -> float:
    folded = fold(sentence)
    total = sum(weights.values())
    return sum(w for term, w in weights.items() if term in folded) / total if total else 0.0


@dataclass(frozen=True, slots=True)
class _Scored:
    score: float
    citation: int
    index: int
    sentence: str
    spans: list[tuple[int, int]]
    text: str


def direct_sentences(
    sources: Sequence[Source],
    weights: dict[str, float],
    limit: int,
    *,
    expectation: Expectation | None,
    meaning: dict[tuple[str, int], float],
    question: str,
) -> tuple[DirectSentence, ...]:
    """The sentences that best answer: the best one, what it announces, and any as good as it.

    `meaning` gives, per (speech id, start offset), a sentence's similarity to the question,
    already scaled to 0–1 over the candidate sentences; it is empty without a model.
    """
    scored = []
    for source in sources[:DIRECT_FROM_TOP]:
        text, offset = source.paragraph.text, source.paragraph.start
        spans = paragraph_statements(text, source.paragraph.paragraph_no)  # the front matter's are its lines
        # The front matter's lines tell what its search line names (the occasion, the date), as in ranking.
        about = FRONT_MATTER_TOPICS + "\n" if source.paragraph.paragraph_no == FRONT_MATTER else ""
        for index, (start, end) in enumerate(spans):
            sentence = text[start:end].strip()
            if len(sentence) < 4 or _is_label(sentence):
                continue
            score = coverage(about + sentence, weights)
            if meaning:
                close = meaning.get((source.paragraph.speech_id, offset + start), 0.0)
                score = (1 - MEANING_SHARE) * score + MEANING_SHARE * close
            score += SHAPE_BONUS if expectation and expectation.met_by(sentence) else 0.0
            # An earlier-ranked paragraph wins a tie: the ranking already weighed the whole paragraph.
            scored.append(_Scored(score - 0.02 * source.citation, source.citation, index, sentence, spans, text))
    if not scored:
        return ()
    scored.sort(key=lambda item: (-item.score, item.citation, item.index))
    best = scored[0]
    if LIST_QUESTION.search(question) and (items := _enumeration(best)):
        return tuple(DirectSentence(item.sentence, item.citation) for item in items)
    chosen = [best]
    if best.sentence.rstrip(_CLOSERS).endswith(("：", ":")) or len(best.sentence) < LEAD_IN_CHARS:
        chosen += _following(best, limit - 1)
    for item in scored[1:]:
        if len(chosen) >= limit or item.score < best.score * ALSO_SHOWN_SHARE:
            break
        if all((item.citation, item.index) != (c.citation, c.index) for c in chosen):
            chosen.append(item)
    chosen.sort(key=lambda item: (item.citation, item.index))  # read in the speech's own order
    return tuple(DirectSentence(item.sentence, item.citation) for item in chosen[:limit])


def _following(best: _Scored, count: int) -> list[_Scored]:
    following = best.spans[best.index + 1 : best.index + 1 + count]
    return [
        _Scored(best.score, best.citation, best.index + 1 + i, best.text[a:b].strip(), best.spans, best.text)
        for i, (a, b) in enumerate(following)
    ]


def _enumeration(best: _Scored) -> list[_Scored]:
    """The numbered items of the best sentence's paragraph, with the sentence that announces them.

    Items are the paragraph's sentences that open with a marker (一是, 第二, 其次, （三）, 4、…);
    at least two are needed, else the paragraph holds no list and the usual answer stands. A best
    sentence further up the paragraph than the one announcing the items is about something else:
    the items would answer another question ("除了人民日报，还上了哪些报纸？" once got 二是依法推进…).
    """
    sentences = [best.text[a:b].strip() for a, b in best.spans]
    items = [i for i, sentence in enumerate(sentences) if _ITEM.match(sentence)]
    if len(items) < 2:
        return []
    first = items[0]
    if best.index < first - 1:
        return []
    announced = best.index == first - 1 or sentences[first - 1].rstrip(_CLOSERS).endswith(("：", ":"))
    keep = ([first - 1] if first > 0 and announced else []) + items[:MAX_LIST_ITEMS]
    return [_Scored(best.score, best.citation, i, sentences[i], best.spans, best.text) for i in keep]


def _is_label(sentence: str) -> bool:
    """A run-in heading such as "（三）创品牌。": it names the section, it answers nothing.

    Lead-ins ("第四要好共事。", level 4) are points of the speech, not labels, and may answer.
    """
    level = heading_level(sentence)
    return len(sentence) <= MAX_LABEL_CHARS and level is not None and level < LEAD_IN_LEVEL
