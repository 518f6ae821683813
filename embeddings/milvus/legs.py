"""The two candidate searches of a question, answered by Milvus instead of the local index files.

`MilvusWords` gives BM25 scores by passage row (the best `count`, then the rest of the paragraphs
being ranked), `MilvusSentences` the nearest sentence units and the exact similarity of the units
of the paragraphs being ranked. Both hand back arrays indexed like the local ones, so the
`Retriever` fuses, groups by paragraph, cites and abstains with the same code on either backend.
Milvus keys rows by passage id and units by `speech@start`, which no rebuild of other speeches
changes; they are mapped to this index generation's rows through its speech table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embeddings.index.lazycorpus import Speeches
from embeddings.milvus.client import Milvus
from embeddings.milvus.schema import filter_in
from embeddings.milvus.sync import InStep, in_row_order, unit_key, units_held
from embeddings.passage import Passage

UNSCORED = -np.inf  # as in `SentenceVectors`: a sentence the search did not need to score
SPEECHES_KEPT = 4_096  # speeches whose row and unit numbers are kept looked up


class Locator:
    """Passage id ↔ row and unit key ↔ unit number in one index generation, looked up one speech at a time."""

    def __init__(self, passages: Sequence[Passage], speeches: Speeches, units: np.ndarray) -> None:
        self.passages = passages
        self.speeches = speeches
        self.units = units
        self.in_order = in_row_order(units)
        self._rows: dict[str, dict[str, int]] = {}
        self._units: dict[str, dict[int, int]] = {}

    def _speech(self, speech_id: str) -> tuple[dict[str, int], dict[int, int]]:
        rows, units = self._rows.get(speech_id), self._units.get(speech_id)
        if rows is None or units is None:  # read into locals: another thread may clear the caches meanwhile
            if len(self._rows) >= SPEECHES_KEPT:
                self._rows.clear()
                self._units.clear()
            span = self.speeches.passage_rows(speech_id)
            rows = {self.passages[row].passage_id: row for row in span}
            held = units_held(self.units, span, self.in_order)
            units = {int(self.units[u, 1]): int(u) for u in held.tolist()}
            self._rows[speech_id], self._units[speech_id] = rows, units
        return rows, units

    def row(self, passage_id: str) -> int | None:
        return self._speech(passage_id.rpartition(":")[0])[0].get(passage_id)

    def unit(self, key: str) -> int | None:
        speech_id, _, start = key.rpartition("@")
        return self._speech(speech_id)[1].get(int(start)) if start.isdigit() else None

    def passage_id(self, row: int) -> str:
        return self.passages[row].passage_id

    def unit_key(self, unit: int) -> str:
        return unit_key(self.passages[int(self.units[unit, 0])].speech_id, int(self.units[unit, 1]))


class MilvusWords:
    """BM25 by passage row from the passages collection; rows it was not asked about stay 0."""

    def __init__(self, milvus: Milvus, locator: Locator, rows: int, ready: InStep) -> None:
        self.milvus = milvus
        self.locator = locator
        self.count = rows
        self.ready = ready  # brings the collections in step with this index before the first search

    def scores(self, tokens: list[str], count: int) -> np.ndarray:
        """The `count` best rows' BM25 for `tokens` (the same tokens the local index is asked with)."""
        self.ready()
        scores = np.zeros(self.count, dtype=np.float32)
        if tokens:
            self._fill(scores, self._search(tokens, count, ""))
        return scores

    def complete(self, scores: np.ndarray, tokens: list[str], rows: np.ndarray) -> None:
        """Fill in the BM25 of `rows` not among the best (the other passages of the paragraphs being ranked)."""
        missing = [int(row) for row in rows if scores[row] == 0]
        if tokens and missing:
            ids = [self.locator.passage_id(row) for row in missing]
            self._fill(scores, self._search(tokens, len(ids), filter_in("pid", ids)))

    def _search(self, tokens: list[str], limit: int, where: str) -> list[dict[str, Any]]:
        names, timeout = self.milvus.collections, self.milvus.timeout
        return self.milvus.call(
            lambda client: client.search(
                names.passages,
                data=[" ".join(tokens)],
                anns_field="sparse",
                limit=limit,
                filter=where,
                search_params={"metric_type": "BM25"},
                timeout=timeout,
            )
        )[0]

    def _fill(self, scores: np.ndarray, found: list[dict[str, Any]]) -> None:
        for hit in found:
            row = self.locator.row(str(hit["id"]))
            if row is not None:  # a row of a speech this generation does not have: Milvus is ahead of it
                scores[row] = float(hit["distance"])


class MilvusSentences:
    """Sentence similarities from the units collection, searched like the local approximate index."""

    kind = "milvus"

    def __init__(self, milvus: Milvus, locator: Locator, units: int, ready: InStep) -> None:
        self.milvus = milvus
        self.locator = locator
        self.count = units
        self.ready = ready

    def nearest(self, query: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Similarities by unit (`UNSCORED` beyond those found) and the `count` nearest units."""
        self.ready()
        names, timeout = self.milvus.collections, self.milvus.timeout
        vector = query.astype(np.float32).tolist()
        found = self.milvus.call(
            lambda client: client.search(
                names.units,
                data=[vector],
                anns_field="vector",
                limit=count,
                search_params={"metric_type": "IP"},
                timeout=timeout,
            )
        )[0]
        scores = np.full(self.count, UNSCORED, dtype=np.float32)
        nearest = []
        for hit in found:
            unit = self.locator.unit(str(hit["id"]))
            if unit is not None:
                scores[unit] = float(hit["distance"])
                nearest.append(unit)
        return scores, np.asarray(nearest, dtype=np.int64)

    def score(self, scores: np.ndarray, query: np.ndarray, units: np.ndarray) -> None:
        """The exact similarity of `units` not yet scored, from their vectors."""
        missing = [int(u) for u in units if np.isneginf(scores[u])]
        if not missing:
            return
        keys = {self.locator.unit_key(u): u for u in missing}
        names, timeout = self.milvus.collections, self.milvus.timeout
        rows = self.milvus.call(
            lambda client: client.get(names.units, ids=list(keys), output_fields=["vector"], timeout=timeout)
        )
        for row in rows:
            scores[keys[str(row["uid"])]] = float(np.dot(np.asarray(row["vector"], dtype=np.float32), query))
