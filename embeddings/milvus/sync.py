"""Writing a built index into Milvus speech by speech: only new and changed speeches are written.

BM25's statistics (document count, average length, document frequencies) live in Milvus and are
kept up to date by it as rows come and go, so a new speech costs its own rows and nothing else.
A speech's record is written after its rows: a build cut short (killed, Milvus gone) resumes by
writing again only the speeches whose record is missing or different. A removed speech is deleted.

A new speech gets a pending record before its rows, so that rows without a record never exist:
only speeches that have a record can have rows to delete first. Deleting by filter makes Milvus
load the collection (~10 s for 113k passages in Milvus Lite), which a new speech then never costs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from tqdm import tqdm

from embeddings.index.forward import Forward
from embeddings.index.lazycorpus import speech_record
from embeddings.index.store import DENSE_FILE, StoredIndex
from embeddings.index.vectors import load_vector_index
from embeddings.milvus.client import MAX_TEXT, Milvus
from embeddings.milvus.schema import FORMAT, META_KEY, PLACEHOLDER, create, drop, filter_in, read_meta, write_meta
from embeddings.passage import Speech
from embeddings.settings import EngineSettings

logger = logging.getLogger(__name__)
BATCH_ROWS = 2_000  # passage and unit rows sent per insert (and speeches recorded after each)
DELETE_CHUNK = 200  # speeches named in one delete filter
PENDING = ""  # the digest of a speech whose rows are being written: never a SHA-256


@dataclass(frozen=True, slots=True)
class SyncReport:
    written: int  # speeches written: new, changed, or left unfinished by an interrupted build
    deleted: int  # speeches no longer in the corpus
    kept: int  # speeches already there, untouched
    rows: int  # passage and sentence rows written
    recreated: bool  # the collections were (re)made: first build, or the settings, dictionary or model changed
    seconds: float = 0.0  # wall time of the whole write


def speech_digest(speech: Speech) -> str:
    record = json.dumps(speech_record(speech), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(record.encode()).hexdigest()


def index_meta(stored: StoredIndex) -> dict[str, Any]:
    """What the rows depend on besides each speech's own text; a change rewrites every row."""
    manifest = stored.manifest
    dense = manifest.get("dense") or {}
    return {
        "format": FORMAT,
        "index_format": manifest["format"],
        "config_hash": manifest["config_hash"],
        "dictionary_hash": manifest["dictionary_hash"],
        "model": dense.get("model"),
        "fingerprint": dense.get("fingerprint"),
        "dimension": dense.get("dimension"),
    }


def in_step(milvus: Milvus, stored: StoredIndex) -> bool:
    """Whether the collections hold exactly this index (a finished sync of the same corpus and settings)."""
    meta = milvus.call(lambda client: read_meta(client, milvus.collections, milvus.timeout))
    return meta == {**index_meta(stored), "corpus_hash": stored.manifest["corpus_hash"]}


class InStep:
    """Brings the collections in step with one index generation, once, at the first call that reaches Milvus."""

    def __init__(self, milvus: Milvus, stored: StoredIndex, settings: EngineSettings) -> None:
        self.milvus = milvus
        self.stored = stored
        self.settings = settings
        self.report: SyncReport | None = None  # what the sync wrote; None when the collections were in step
        self.done = False
        self._lock = threading.Lock()

    def __call__(self, progress: bool = False) -> None:
        if self.done:
            return
        with self._lock:
            if not self.done:
                if not in_step(self.milvus, self.stored):
                    self.report = sync(self.milvus, self.stored, self.settings, progress=progress)
                self.done = True


def sync(milvus: Milvus, stored: StoredIndex, settings: EngineSettings, *, progress: bool = False) -> SyncReport:
    """Make the collections hold `stored`'s passages and sentences, writing only what differs."""
    started = time.perf_counter()
    names, timeout = milvus.collections, milvus.timeout
    meta = index_meta(stored)
    found = milvus.call(lambda client: read_meta(client, names, timeout))
    recreated = found is None or {k: v for k, v in found.items() if k != "corpus_hash"} != meta
    if recreated:
        lexical = settings.lexical
        milvus.call(lambda client: drop(client, names))
        milvus.call(lambda client: create(client, names, meta["dimension"], lexical.k1, lexical.b))
        milvus.call(lambda client: write_meta(client, names, {**meta, "corpus_hash": None}, timeout))
    present = _recorded(milvus)
    speeches = stored.read_speeches()
    wanted = {speech.speech_id: speech_digest(speech) for speech in speeches.in_order()}
    gone = [speech for speech in present if speech not in wanted]
    to_write = [speech for speech, digest in wanted.items() if present.get(speech) != digest]
    if (gone or to_write) and not recreated:
        # While rows change, the collections hold no finished index: no front-end takes them as in step.
        milvus.call(lambda client: write_meta(client, names, {**meta, "corpus_hash": None}, timeout))
    for first in range(0, len(gone), DELETE_CHUNK):
        chunk = gone[first : first + DELETE_CHUNK]
        milvus.call(partial(_delete, milvus=milvus, speeches=chunk, with_records=True))
    writer = _Writer(milvus, stored, wanted, present)
    with tqdm(total=len(to_write), desc="writing to Milvus", unit="speech", disable=not progress) as bar:
        for batch in writer.batches(to_write):
            writer.write(batch)
            bar.update(len(batch))
    finished = {**meta, "corpus_hash": stored.manifest["corpus_hash"]}
    milvus.call(lambda client: write_meta(client, names, finished, timeout))
    kept = len(wanted) - len(to_write)
    logger.info("Milvus: %d speeches written, %d deleted, %d kept", len(to_write), len(gone), kept)
    return SyncReport(len(to_write), len(gone), kept, writer.rows, recreated, time.perf_counter() - started)


def _recorded(milvus: Milvus) -> dict[str, str]:
    """Speech id → digest of every speech with a record: its rows were all written, or are being written
    (`PENDING`)."""
    names, timeout = milvus.collections, milvus.timeout

    def read(client: Any) -> dict[str, str]:
        found: dict[str, str] = {}
        rows = client.query_iterator(
            names.speeches, batch_size=1000, filter=f'speech != "{META_KEY}"', output_fields=["digest"], timeout=timeout
        )
        while batch := rows.next():
            found.update((row["speech"], row["digest"]) for row in batch)
        rows.close()
        return found

    return milvus.call(read)


def _delete(client: Any, milvus: Milvus, speeches: list[str], *, with_records: bool) -> None:
    names, timeout = milvus.collections, milvus.timeout
    where = filter_in("speech", speeches)
    client.delete(names.passages, filter=where, timeout=timeout)
    if client.has_collection(names.units, timeout=timeout):
        client.delete(names.units, filter=where, timeout=timeout)
    if with_records:
        client.delete(names.speeches, filter=where, timeout=timeout)


class _Writer:
    """Rows of the speeches to write, in batches: passages with their words, units with their vectors."""

    def __init__(self, milvus: Milvus, stored: StoredIndex, digests: dict[str, str], present: dict[str, str]) -> None:
        self.milvus = milvus
        self.digests = digests
        self.present = present  # speeches with a record: changed, or left unfinished, they may have rows
        self.speeches = stored.read_speeches()
        self.passages = stored.read_passages()
        self.units = stored.read_units()
        self.in_order = in_row_order(self.units)
        self.tokens = Forward(stored.directory)  # the words the build cut, not cut again
        self.vectors: Any = None
        if stored.manifest.get("dense"):
            self.vectors = load_vector_index(stored.directory / DENSE_FILE)
            if hasattr(self.vectors, "make_direct_map"):
                self.vectors.make_direct_map()  # an IVF index reads vectors back only through it
        self.rows = 0

    def batches(self, speeches: list[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        size = 0
        for speech in speeches:
            batch.append(speech)
            size += 2 * len(self.speeches.passage_rows(speech))  # about one unit per passage besides it
            if size >= BATCH_ROWS:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def write(self, batch: list[str]) -> None:
        passages, units = [], []
        for speech in batch:
            rows = self.speeches.passage_rows(speech)
            for row in rows:
                passage = self.passages[row]
                words = " ".join(t for t in self.tokens.words(row) if not any(c.isspace() for c in t))
                passages.append({"pid": passage.passage_id, "speech": speech, "words": _fit(words)})
            if self.vectors is not None and len(rows):
                held = units_held(self.units, rows, self.in_order)
                vectors = self.vectors.reconstruct_batch(held.astype(np.int64)) if len(held) else []
                for unit, vector in zip(held.tolist(), vectors, strict=True):
                    key = unit_key(speech, int(self.units[unit, 1]))
                    units.append({"uid": key, "speech": speech, "vector": vector})
        names, timeout = self.milvus.collections, self.milvus.timeout

        def send(client: Any) -> None:
            # Leftovers of a changed speech, or of a build cut short, go first: keys may differ now.
            if stale := [speech for speech in batch if speech in self.present]:
                _delete(client, self.milvus, stale, with_records=False)
            if new := [speech for speech in batch if speech not in self.present]:
                client.upsert(names.speeches, _records(new, lambda _: PENDING), timeout=timeout)
                self.present.update(dict.fromkeys(new, PENDING))
            for first in range(0, len(passages), BATCH_ROWS):
                client.insert(names.passages, passages[first : first + BATCH_ROWS], timeout=timeout)
            for first in range(0, len(units), BATCH_ROWS):
                client.insert(names.units, units[first : first + BATCH_ROWS], timeout=timeout)
            client.upsert(names.speeches, _records(batch, self.digests.__getitem__), timeout=timeout)
            self.present.update((speech, self.digests[speech]) for speech in batch)

        self.milvus.call(send)
        self.rows += len(passages) + len(units)


def _records(speeches: list[str], digest: Callable[[str], str]) -> list[dict[str, Any]]:
    return [{"speech": speech, "digest": digest(speech), "placeholder": PLACEHOLDER} for speech in speeches]


def unit_key(speech_id: str, start: int) -> str:
    """A sentence unit's key: where it starts in its speech, which no rebuild of other speeches changes."""
    return f"{speech_id}@{start}"


def units_held(units: np.ndarray, rows: range, in_order: bool) -> np.ndarray:
    """The units whose holding passage is one of `rows` (a speech's), by binary search when units are in row order."""
    if in_order:
        start, end = np.searchsorted(units[:, 0], (rows.start, rows.stop))
        return np.arange(start, end, dtype=np.int64)
    return np.flatnonzero((units[:, 0] >= rows.start) & (units[:, 0] < rows.stop))


def in_row_order(units: np.ndarray) -> bool:
    """Units are written paragraph by paragraph, so normally in row order: then a speech's are found by search."""
    held_by = units[:, 0]
    return len(held_by) < 2 or bool(np.all(held_by[1:] >= held_by[:-1]))


def _fit(words: str) -> str:
    """Within Milvus's longest text (bytes): a passage is ~300 characters, so only a pathological one is cut."""
    encoded = words.encode()
    return words if len(encoded) <= MAX_TEXT else encoded[:MAX_TEXT].decode(errors="ignore").rsplit(" ", 1)[0]
