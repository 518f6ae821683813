"""Sentence units: what the dense side embeds, and what hits and direct answers are chosen from.

A question in the asker's own words usually rewords one sentence of the speech, not a whole
300-character passage, and a passage vector averages that sentence away among its neighbours.
So the model embeds sentences (a run of clauses joined by ；stays one unit, as in "一是…；二是…。"),
each tied to its paragraph and to the passage that holds it. Measured on the paraphrase dev
questions, fused with BM25 at paragraph level: hit@1 0.53 with passage vectors, 0.60 with
sentence vectors, for the same embedding cost (the same characters are embedded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embeddings.ingest.segment import paragraph_statements, sentence_spans, statements
from embeddings.passage import Passage, Speech

ROW, START, END = 0, 1, 2
MIN_UNIT_CHARS = 2


@dataclass(frozen=True, slots=True)
class Units:
    """Unit *u* is `speech.text[table[u, START]:table[u, END]]`, held by passage row `table[u, ROW]`."""

    table: np.ndarray  # int64 (units, 3)

    def __len__(self) -> int:
        return len(self.table)

    def rows(self) -> np.ndarray:
        return self.table[:, ROW]


def corpus_units(passages: Sequence[Passage], speeches: Sequence[Speech], max_chars: int) -> tuple[Units, list[str]]:
    """Every sentence unit of every paragraph that has passages, in corpus order, with its text."""
    units = unit_table(passages, speeches, max_chars)
    return units, unit_texts(units, passages, speeches)


def unit_table(passages: Sequence[Passage], speeches: Sequence[Speech], max_chars: int) -> Units:
    """Every sentence unit of every paragraph that has passages, in corpus order.

    Passages with no speech behind them (an index of bare passages, as the benchmarks build) are
    cut into units of their own text.
    """
    rows_of: dict[tuple[str, int], list[int]] = {}
    for row, passage in enumerate(passages):
        rows_of.setdefault((passage.speech_id, passage.paragraph_no), []).append(row)
    entries: list[tuple[int, int, int]] = []
    known = {speech.speech_id for speech in speeches}
    for row, passage in enumerate(passages):
        if passage.speech_id not in known:
            for start, end in _unit_spans(passage.text, statements(passage.text), max_chars):
                entries.append((row, passage.start + start, passage.start + end))
    for speech in speeches:
        for paragraph in speech.indexed_paragraphs:  # the front matter's lines are sentences too
            rows = rows_of.get((speech.speech_id, paragraph.number))
            if not rows:
                continue
            body = speech.text[paragraph.start : paragraph.end]
            for start, end in _unit_spans(body, paragraph_statements(body, paragraph.number), max_chars):
                absolute = (paragraph.start + start, paragraph.start + end)
                entries.append((_holder(passages, rows, *absolute), *absolute))
    return Units(np.array(entries, dtype=np.int64).reshape(-1, 3))


def unit_texts(units: Units, passages: Sequence[Passage], speeches: Sequence[Speech]) -> list[str]:
    """The text of each unit: its stretch of the speech, or of the bare passage that holds it."""
    by_id = {speech.speech_id: speech for speech in speeches}
    texts = []
    for row, start, end in units.table.tolist():
        passage = passages[row]
        speech = by_id.get(passage.speech_id)
        # A bare passage's units are numbered as if it began at its `start` (where it sits in its document).
        text, shift = (passage.text, passage.start) if speech is None else (speech.text, 0)
        texts.append(text[start - shift : end - shift].strip())
    return texts


def _unit_spans(body: str, sentences: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """The units of `body`, one a sentence; one over the bound falls back to its parts between ；and 。."""
    spans = []
    for start, end in sentences:
        pieces = [(start, end)] if end - start <= max_chars else _sentences_within(body, start, end)
        spans += [(a, b) for a, b in pieces if len(body[a:b].strip()) >= MIN_UNIT_CHARS]
    return spans


def _sentences_within(body: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(start + a, start + b) for a, b in sentence_spans(body[start:end])]


def _holder(passages: Sequence[Passage], rows: list[int], start: int, end: int) -> int:
    """The first passage of the paragraph holding the whole unit, else the one where it starts."""
    for row in rows:
        if passages[row].start <= start and end <= passages[row].end:
            return row
    for row in rows:
        if passages[row].start <= start < passages[row].end:
            return row
    return rows[0]
