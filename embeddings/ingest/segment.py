"""Paragraphs → passages: whole sentences packed up to a size bound, with sentence overlap.

The paragraph is the unit of citation; a long paragraph becomes several passages that share a
sentence at each seam, so an answer that sits on a seam is still whole in one passage. The front
matter (paragraph 0) has lines, not sentences: each line is a passage, and a sentence, of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from embeddings.passage import FRONT_MATTER, Passage, Speech
from embeddings.settings import SegmentSettings

# A sentence ends at 。！？； (or their half-width forms) or an ellipsis, plus any closing quotes.
_SENTENCE_END = re.compile(r"(?:[。！？；!?;]+|…{1,2}|\.{3,6})[”’」』）)》]*")
_CLAUSE_END = re.compile(r"[，,：:、][”’」』]*")
_CLOSERS = "”’」』）)》】\"' "


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence boundaries of `text` as (start, end) offsets; the spans cover `text` exactly."""
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


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


def lines(text: str) -> list[tuple[int, int]]:
    """The non-blank lines of `text` as (start, end) offsets, without the whitespace at their edges."""
    spans = []
    start = 0
    for line in text.split("\n"):
        if trimmed := _trim(text, start, start + len(line)):
            spans.append(trimmed)
        start += len(line) + 1
    return spans


def paragraph_statements(text: str, number: int) -> list[tuple[int, int]]:
    """The sentences of paragraph `number`: `statements`, but the front matter's lines.

    A subtitle, date or speaker line has no full stop; cut at sentence ends, the front matter would
    be one "sentence" running across its line breaks, and an answer quoting it would break lines.
    """
    return lines(text) if number == FRONT_MATTER else statements(text)


def _bounded_units(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Sentences, except that a sentence longer than the bound is cut at clause ends, then by length."""
    units = []
    for start, end in sentence_spans(text):
        if end - start <= max_chars:
            units.append((start, end))
            continue
        bounds = [match.end() for match in _CLAUSE_END.finditer(text, start, end)] + [end]
        piece_start = last = start
        for bound in bounds:
            if bound - piece_start > max_chars:
                if last > piece_start:
                    units.append((piece_start, last))
                    piece_start = last
                while bound - piece_start > max_chars:
                    units.append((piece_start, piece_start + max_chars))
                    piece_start += max_chars
            last = bound
        if piece_start < end:
            units.append((piece_start, end))
    return [trimmed for start, end in units if (trimmed := _trim(text, start, end))]


def _line_units(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Each line of the front matter, a passage of its own: a passage of several would quote line breaks."""
    return [(a + start, a + end) for a, b in lines(text) for start, end in _bounded_units(text[a:b], max_chars)]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """`(start, end)` without the whitespace at its edges (`! Next` starts a sentence with a space)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _windows(units: list[tuple[int, int]], max_chars: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Greedy windows of consecutive units, each sharing up to `overlap` units with the previous one.

    The overlap shrinks where it would leave no room for the next unit: a window that held only
    overlap would repeat a piece of the previous passage and add nothing.
    """
    first = 0
    while first < len(units):
        last = first
        while last + 1 < len(units) and units[last + 1][1] - units[first][0] <= max_chars:
            last += 1
        yield units[first][0], units[last][1]
        if last == len(units) - 1:
            return
        first = max(first + 1, last + 1 - overlap)
        while units[last + 1][1] - units[first][0] > max_chars:
            first += 1


def segment_speech(speech: Speech, settings: SegmentSettings) -> list[Passage]:
    """Cut every paragraph of `speech` into passages; `speech.text[p.start:p.end] == p.text` for each."""
    return passages_at(speech, passage_spans(speech, settings))


# Where a passage lies: its paragraph's number, its part there, its start and end in the speech. Plain
# numbers, so that a process reading files in parallel sends back little and an index can keep them.
Span = tuple[int, int, int, int]


def passage_spans(speech: Speech, settings: SegmentSettings) -> list[Span]:
    spans = []
    for paragraph in speech.indexed_paragraphs:
        body = speech.text[paragraph.start : paragraph.end]
        if paragraph.number == FRONT_MATTER:
            windows: Iterable[tuple[int, int]] = _line_units(body, settings.max_chars)
        else:
            windows = _windows(_bounded_units(body, settings.max_chars), settings.max_chars, settings.overlap_sentences)
        spans += [
            (paragraph.number, part, paragraph.start + start, paragraph.start + end)
            for part, (start, end) in enumerate(windows, 1)
        ]
    return spans


def passages_at(speech: Speech, spans: list[Span]) -> list[Passage]:
    paragraphs = {paragraph.number: paragraph for paragraph in speech.indexed_paragraphs}
    return [
        Passage(
            passage_id=f"{speech.speech_id}:{number}.{part}",
            speech_id=speech.speech_id,
            title=speech.title,
            section_path=paragraphs[number].section_path,
            paragraph_no=number,
            part=part,
            start=start,
            end=end,
            text=speech.text[start:end],
            source=speech.source,
            aliases=speech.aliases,
        )
        for number, part, start, end in spans
    ]
