"""Paragraph-level ranking: passages and sentence units grouped by the paragraph they belong to.

Citations name paragraphs, so paragraphs are what gets ranked: a paragraph scores by its best
passage on the lexical side and its best sentence on the dense side. The hit then shows the part
of the paragraph that answers: the passage holding the sentence that best matches the question
(by its words and, with a model, its meaning), not merely the passage with the highest BM25, which
for a long paragraph is often a neighbour of the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from embeddings.index.units import END, ROW, START
from embeddings.passage import Passage, Speech
from embeddings.retrieval.fusion import group_maxima

# A passage's own BM25 counts half as much as its best sentence when choosing which part to show.
PASSAGE_SHARE = 1.0


class Members:
    """Paragraph *p* → its passage rows (or units), in order: a slice of the owners sorted by paragraph."""

    def __init__(self, owner: np.ndarray) -> None:
        # Rows and units are written paragraph by paragraph, so owners are usually sorted already:
        # then a paragraph's members are found by binary search, with nothing computed at load.
        self._owner = owner
        self._order: np.ndarray | None = None
        if len(owner) > 1 and not bool(np.all(owner[1:] >= owner[:-1])):
            self._order = np.argsort(owner, kind="stable")
            self._owner = owner[self._order]

    def __getitem__(self, paragraph: int) -> np.ndarray:
        start, end = np.searchsorted(self._owner, (paragraph, paragraph + 1))
        if self._order is None:
            return np.arange(start, end, dtype=np.int64)
        return self._order[start:end]

    def of(self, paragraphs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The members of `paragraphs`, paragraph by paragraph, and for each the position of its paragraph."""
        parts = [self[int(p)] for p in paragraphs]
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(parts), np.repeat(np.arange(len(parts)), [len(part) for part in parts])


@dataclass(frozen=True, slots=True)
class ParagraphMap:
    """Which paragraph every passage row and every sentence unit belongs to, and back."""

    count: int  # paragraphs in the index
    of_row: np.ndarray  # passage row → paragraph id
    rows: Members  # paragraph id → its passage rows, in order
    of_unit: np.ndarray  # unit → paragraph id
    units: Members  # paragraph id → its units, in order

    @classmethod
    def build(cls, of_row: np.ndarray, unit_table: np.ndarray) -> ParagraphMap:
        """From `paragraph_ids` of the passages, as stored with the index."""
        of_unit = of_row[unit_table[:, ROW]] if len(unit_table) else np.zeros(0, dtype=np.int64)
        count = int(of_row.max()) + 1 if len(of_row) else 0
        return cls(count=count, of_row=of_row, rows=Members(of_row), of_unit=of_unit, units=Members(of_unit))

    def __len__(self) -> int:
        return self.count

    def lexical(
        self, paragraphs: np.ndarray, row_scores: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, dict[int, float]]:
        """Each paragraph's best passage score, and every passage row's own score (for choosing the part
        to show without scoring the rows again); `row_scores` scores an array of passage rows."""
        if not len(paragraphs):
            return np.zeros(0), {}
        rows, owner = self.rows.of(paragraphs)
        scores = row_scores(rows)
        return group_maxima(scores, owner, len(paragraphs)), dict(zip(rows.tolist(), scores.tolist(), strict=True))

    def dense(self, paragraphs: np.ndarray, unit_scores: np.ndarray) -> np.ndarray:
        """Each of `paragraphs`' best sentence similarity (the lowest of theirs where one has no sentence)."""
        units, owner = self.units.of(paragraphs)
        return group_maxima(unit_scores[units], owner, len(paragraphs))


def paragraph_ids(passages: Iterable[Passage]) -> np.ndarray:
    """Passage row → paragraph id, numbered in order of first appearance."""
    ids: dict[tuple[str, int], int] = {}
    return np.array([ids.setdefault((p.speech_id, p.paragraph_no), len(ids)) for p in passages], dtype=np.int64)


def paragraph_passage(speech: Speech | None, number: int, template: Passage) -> Passage:
    """The whole paragraph `number` of `speech`, as a passage citing it (part 0); `template` when unknown."""
    paragraph = None if speech is None else next((p for p in speech.indexed_paragraphs if p.number == number), None)
    if speech is None or paragraph is None:
        return template
    return Passage(
        passage_id=f"{speech.speech_id}:{number}",
        speech_id=speech.speech_id,
        title=template.title,
        section_path=template.section_path,
        paragraph_no=number,
        part=0,
        start=paragraph.start,
        end=paragraph.end,
        text=speech.text[paragraph.start : paragraph.end],
        source=template.source,
        aliases=template.aliases,
    )


def shown_row(
    rows: np.ndarray,
    *,
    passages: Sequence[Passage],
    row_scores: np.ndarray,
    unit_table: np.ndarray,
    units: np.ndarray,
    unit_score: Callable[[int], float],
) -> int:
    """The passage of a paragraph to show: its best sentence, plus half its own normalised passage score.

    `row_scores` are the lexical scores of `rows`; `unit_score(u)` rates unit `u` from 0 to about 1.
    """
    if len(rows) == 1:
        return int(rows[0])
    top = float(row_scores.max())
    best_row, best = int(rows[0]), -np.inf
    rated = [(int(unit_table[u, START]), int(unit_table[u, END]), unit_score(int(u))) for u in units]
    for row, lexical in zip(rows.tolist(), row_scores.tolist(), strict=True):
        passage = passages[row]
        inside = [score for start, end, score in rated if passage.start <= start and end <= passage.end]
        score = PASSAGE_SHARE * (lexical / top if top > 0 else 0.0) + max(inside, default=0.0)
        if score > best + 1e-9:
            best_row, best = row, score
    return best_row


def widened(passage: Passage, speech: Speech | None, sentences: list[tuple[int, int]], limit: int) -> Passage:
    """`passage` grown by whole sentences of its paragraph (`sentences`: their spans in the speech, in order),
    the following ones first, while it stays within `limit` characters.

    A long paragraph is cut into parts of at most `max_chars` for scoring, and the part shown is the
    one holding the best sentence; the sentence that answers is often the next one, which ranking
    cannot see (the asker's words are not the speech's). Showing more of the paragraph around the
    chosen part keeps scoring and abstention as measured while the answer is on screen more often.
    """
    if speech is None:  # a bare passage has no paragraph around it
        return passage
    start, end = passage.start, passage.end
    for first, last in sentences:
        if first >= end:
            if last - start > limit:
                break
            end = last
    for first, last in reversed(sentences):
        if last <= start:
            if end - first > limit:
                break
            start = first
    if (start, end) == (passage.start, passage.end):
        return passage
    return replace(passage, start=start, end=end, text=speech.text[start:end])
