"""Each passage's tokens, kept beside the BM25 columns, so that a rebuild cuts only new and changed speeches.

Cutting words with jieba is most of a words-only build: without this, adding one speech to 108k
passages cost as much as building them all. A generation keeps the same counts row by row (passage
→ BM25 column and count, as CSR) and a key for each run of one speech's passages, the SHA-256 of
their search texts. The next build under the same configuration and dictionaries takes every run
whose key it finds here instead of cutting it again; the Milvus sync writes a passage's words from
here instead of cutting them again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from embeddings.errors import REBUILD_HINT, IndexError_
from embeddings.index.ondisk import StringTable, mapped
from embeddings.passage import Passage

FORWARD = "tokens"
INDPTR, COLUMNS, COUNTS, RUNS = "indptr.npy", "columns.npy", "counts.npy", "runs.json"
FORWARD_FILES = tuple(f"{FORWARD}/{name}" for name in (INDPTR, COLUMNS, COUNTS, RUNS))
REUSED_SOURCE = -1  # the source number of reused chunks in a `Spill` (workers are numbered by pid)


@dataclass(frozen=True, slots=True)
class Reused:
    """Rows `start` … `end` - 1 of the previous generation, taken as they are."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def passage_runs(passages: Sequence[Passage]) -> list[tuple[str, int]]:
    """(key, passages) of each run of consecutive passages of one speech, in corpus order."""
    runs: list[tuple[str, int]] = []
    speech: str | None = None
    digest = hashlib.sha256()
    count = 0
    for passage in passages:
        if passage.speech_id != speech:
            if count:
                runs.append((digest.hexdigest(), count))
            speech, digest, count = passage.speech_id, hashlib.sha256(), 0
        digest.update(passage.search_text.encode("utf-8") + b"\0")
        count += 1
    if count:
        runs.append((digest.hexdigest(), count))
    return runs


class ForwardWriter:
    """Writes a generation's forward arrays chunk by chunk, in passage order, as the BM25 columns are written.

    Appended to plain files rather than filled through memory maps: a map's written pages count as
    the build's memory (1.6 GB at a million passages), a file's are the system's cache.
    """

    def __init__(self, directory: Path, passages: int, postings: int, runs: list[tuple[str, int]]) -> None:
        self.directory = directory / FORWARD
        self.directory.mkdir()
        self.runs = runs
        self.indptr = np.zeros(passages + 1, dtype=np.int64)
        self.files = [_npy_for_appending(self.directory / name, postings) for name in (COLUMNS, COUNTS)]
        self.expected = postings
        self.passages = 0
        self.postings = 0

    def add(self, rows: np.ndarray, columns: np.ndarray, counts: np.ndarray, passages: int) -> None:
        """One chunk: `rows` (ascending, relative to the chunk) hold `columns` `counts` times."""
        for handle, values in zip(self.files, (columns, counts), strict=True):
            handle.write(np.ascontiguousarray(values, dtype=np.int32).tobytes())
        sizes = np.bincount(rows, minlength=passages)
        np.cumsum(sizes, out=self.indptr[self.passages + 1 : self.passages + passages + 1])
        self.indptr[self.passages + 1 : self.passages + passages + 1] += self.postings
        self.passages += passages
        self.postings += len(columns)

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        if self.postings != self.expected:
            raise ValueError(f"{self.postings} token counts written for {self.expected}")
        np.save(self.directory / INDPTR, self.indptr, allow_pickle=False)
        (self.directory / RUNS).write_text(json.dumps(self.runs), "utf-8")


def _npy_for_appending(path: Path, length: int) -> BinaryIO:
    """`path` opened after the header of a .npy file of `length` int32 values, for them to be appended."""
    handle = path.open("wb")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)), "fortran_order": False, "shape": (length,)}
    np.lib.format.write_array_header_1_0(handle, header)
    return handle


class Forward:
    """A sealed generation's forward arrays: its runs by key, chunks of its rows, a passage's words."""

    def __init__(self, generation: Path) -> None:
        folder = generation / FORWARD
        try:
            self.indptr, self.columns, self.counts = (mapped(folder / name) for name in (INDPTR, COLUMNS, COUNTS))
            self.vocab = StringTable(generation / "lexical" / "vocab.txt")
            runs = json.loads((folder / RUNS).read_text("utf-8"))
            self.runs: dict[str, Reused] = {}
            start = 0
            for key, count in runs:
                self.runs.setdefault(str(key), Reused(start, start + int(count)))
                start += int(count)
        except (OSError, ValueError, TypeError) as error:
            raise IndexError_(f"the passage tokens in {folder} cannot be read ({error})", REBUILD_HINT) from error
        fits = len(self.columns) == len(self.counts) == int(self.indptr[-1]) and start == len(self.indptr) - 1
        if not fits or (len(self.columns) and int(self.columns.max()) >= len(self.vocab)):
            raise IndexError_(f"the passage tokens in {folder} do not fit the index", REBUILD_HINT)
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        """The BM25 vocabulary in column order, decoded once."""
        if self._names is None:
            self._names = self.vocab[:]
        return self._names

    def chunk(self, rows: Reused, first: bool) -> tuple[int, list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`rows` as a `Spill` chunk: their tokens are this generation's columns, named in the first chunk taken."""
        bounds = np.asarray(self.indptr[rows.start : rows.end + 1])
        sizes = np.diff(bounds)
        counts = np.asarray(self.counts[bounds[0] : bounds[-1]], dtype=np.float32)
        relative = np.repeat(np.arange(len(rows), dtype=np.int32), sizes)
        lengths = np.maximum(np.bincount(relative, weights=counts, minlength=len(rows)), 1).astype(np.int64)
        columns = np.asarray(self.columns[bounds[0] : bounds[-1]])
        return REUSED_SOURCE, self.names() if first else [], relative, columns, counts, lengths

    def words(self, row: int) -> list[str]:
        """Passage `row`'s tokens, each as often as the passage holds it (in column order, not text order)."""
        start, end = int(self.indptr[row]), int(self.indptr[row + 1])
        names = self.names()
        columns, counts = self.columns[start:end].tolist(), self.counts[start:end].tolist()
        return [names[column] for column, count in zip(columns, counts, strict=True) for _ in range(count)]
