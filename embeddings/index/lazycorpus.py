"""The stored passages and speeches, as a sequence and a mapping that read records only when asked.

`Retriever.passages[row]` and `Retriever.speeches.get(speech_id)` behave as the list and dict they
replace; iterating the passages reads the whole file, which nothing a user does needs: a speech's
passages are found, and counted, from where they start (`SPEECH_PASSAGES`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.index.ondisk import (
    JsonlRows,
    StringTable,
    mapped,
    offsets_path,
    write_jsonl_with_offsets,
    write_strings,
)
from embeddings.passage import Paragraph, Passage, Speech

PASSAGES = "passages.jsonl"
SPEECHES = "speeches.jsonl"
SPEECH_IDS = "speech_ids.txt"  # sorted ids, and which line of speeches.jsonl each is on
SPEECH_LINES = "speech_ids.lines.npy"
# Where each speech's passages start in passages.jsonl (by line of speeches.jsonl, plus the end): a
# speech's passages are consecutive, so counting or finding them reads no other passage.
SPEECH_PASSAGES = "speech_passages.npy"
CORPUS_FILES = (
    PASSAGES,
    offsets_path(Path(PASSAGES)).name,
    SPEECHES,
    offsets_path(Path(SPEECHES)).name,
    SPEECH_IDS,
    offsets_path(Path(SPEECH_IDS)).name,
    SPEECH_LINES,
    SPEECH_PASSAGES,
)


def _paragraph_record(paragraph: Paragraph) -> dict[str, Any]:
    return {
        "number": paragraph.number,
        "start": paragraph.start,
        "end": paragraph.end,
        "section_path": list(paragraph.section_path),
    }


def _paragraph(record: dict[str, Any]) -> Paragraph:
    return Paragraph(record["number"], record["start"], record["end"], tuple(record["section_path"]))


def speech_record(speech: Speech) -> dict[str, Any]:
    return {
        "speech_id": speech.speech_id,
        "source": speech.source,
        "title": speech.title,
        "subtitle": speech.subtitle,
        "text": speech.text,
        "paragraphs": [_paragraph_record(p) for p in speech.paragraphs],
        "front_matter": None if speech.front_matter is None else _paragraph_record(speech.front_matter),
        "sections": list(speech.sections),
        "rules_fired": speech.rules_fired,
        "encoding": speech.encoding,
        "aliases": list(speech.aliases),
    }


def speech_from_record(record: dict[str, Any]) -> Speech:
    record = dict(record)
    record["paragraphs"] = tuple(_paragraph(p) for p in record["paragraphs"])
    front = record.get("front_matter")
    record["front_matter"] = None if front is None else _paragraph(front)
    record["sections"] = tuple(record["sections"])
    record["aliases"] = tuple(record["aliases"])
    return Speech(**record)


def write_passages(directory: Path, passages: Iterable[Passage]) -> int:
    return write_jsonl_with_offsets(directory / PASSAGES, (p.to_dict() for p in passages))


def write_speeches(directory: Path, speeches: Iterable[Speech], passages: Iterable[Passage]) -> int:
    """The speeches, in corpus order, and where each one's passages (in the same order) start."""
    ids: list[str] = []

    def records() -> Iterator[dict[str, Any]]:
        for speech in speeches:
            ids.append(speech.speech_id)
            yield speech_record(speech)

    count = write_jsonl_with_offsets(directory / SPEECHES, records())
    order = sorted(range(len(ids)), key=ids.__getitem__)
    write_strings(directory / SPEECH_IDS, [ids[i] for i in order])
    np.save(directory / SPEECH_LINES, np.array(order, dtype=np.int64), allow_pickle=False)
    counts = Counter(passage.speech_id for passage in passages)
    starts = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([counts[speech_id] for speech_id in ids], out=starts[1:])
    np.save(directory / SPEECH_PASSAGES, starts, allow_pickle=False)
    return count


def read_passages(directory: Path) -> JsonlRows[Passage]:
    return JsonlRows(directory / PASSAGES, Passage.from_dict)


class Speeches(Mapping[str, Speech]):
    """Speeches by id, in corpus order when iterated."""

    def __init__(self, directory: Path) -> None:
        self._rows = JsonlRows(directory / SPEECHES, speech_from_record)
        self._ids = StringTable(directory / SPEECH_IDS)
        self._lines = mapped(directory / SPEECH_LINES)
        self._starts = mapped(directory / SPEECH_PASSAGES)
        if len(self._ids) != len(self._rows) or len(self._lines) != len(self._rows):
            raise ValueError("the speech ids do not fit speeches.jsonl")
        if len(self._starts) != len(self._rows) + 1:
            raise ValueError(f"{SPEECH_PASSAGES} does not fit speeches.jsonl")

    def check_ends(self) -> None:
        """The first and last speeches parse and are found under their ids."""
        self._rows.check_ends()
        for line in {0, len(self) - 1} if len(self) else ():
            speech = self._rows[line]
            if self._ids.find(speech.speech_id) is None:
                raise ValueError(f"speech {speech.speech_id!r} is missing from {SPEECH_IDS}")

    def passage_rows(self, speech_id: str) -> range:
        """The rows of passages.jsonl that hold this speech's passages (empty for an unknown id)."""
        position = self._ids.find(speech_id)
        if position is None:
            return range(0)
        line = int(self._lines[position])
        return range(int(self._starts[line]), int(self._starts[line + 1]))

    def __getitem__(self, speech_id: str) -> Speech:
        position = self._ids.find(speech_id)
        if position is None:
            raise KeyError(speech_id)
        speech = self._rows[int(self._lines[position])]
        if speech.speech_id != speech_id:
            raise ValueError(f"speech_ids.txt names {speech_id!r} where speeches.jsonl has {speech.speech_id!r}")
        return speech

    def __contains__(self, speech_id: object) -> bool:
        return isinstance(speech_id, str) and self._ids.find(speech_id) is not None

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[str]:
        positions = np.argsort(self._lines)  # line → position in the sorted ids: corpus order
        return (self._ids[int(p)] for p in positions)

    def values(self) -> ValuesView[Speech]:
        return _Values(self)

    def items(self) -> ItemsView[str, Speech]:
        return _Items(self)

    def in_order(self) -> Iterator[Speech]:
        return iter(self._rows)


class _Values(ValuesView[Speech]):
    _mapping: Speeches

    def __iter__(self) -> Iterator[Speech]:
        return self._mapping.in_order()


class _Items(ItemsView[str, Speech]):
    _mapping: Speeches

    def __iter__(self) -> Iterator[tuple[str, Speech]]:
        return ((speech.speech_id, speech) for speech in self._mapping.in_order())
