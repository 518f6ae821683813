"""Index parts read on demand: rows of a JSONL file by offset, and sorted string tables.

A cold start must not parse the corpus to answer one question. Each JSONL file gets an offsets
array (`name.offsets.npy`, one more entry than lines) and is memory-mapped, so row *i* costs one
`json.loads` of one line. Strings looked up by value (the BM25 vocabulary, speech ids) are kept
sorted in one UTF-8 blob with offsets, and found by binary search instead of a dict built at load.
Memory maps keep the files' contents reachable after a rebuild deletes this generation, as the
fully read index used to.
"""

from __future__ import annotations

import bisect
import json
import mmap
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np

from embeddings.errors import REBUILD_HINT, IndexError_

T = TypeVar("T")
OFFSETS_SUFFIX = ".offsets.npy"
ROW_CACHE = 4096  # parsed rows kept: a question revisits the same few dozen passages many times


def offsets_path(path: Path) -> Path:
    return path.with_name(path.name + OFFSETS_SUFFIX)


def write_jsonl_with_offsets(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write `records` one per line and their byte offsets beside them; returns the count."""
    offsets = [0]
    with path.open("wb") as handle:
        for record in records:
            handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            offsets.append(handle.tell())
    np.save(offsets_path(path), np.array(offsets, dtype=np.int64), allow_pickle=False)
    return len(offsets) - 1


def write_strings(path: Path, strings: Sequence[str]) -> None:
    """`strings` (already sorted) as one UTF-8 blob and an offsets array."""
    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    path.write_bytes(b"".join(encoded))
    np.save(offsets_path(path), offsets, allow_pickle=False)


def map_file(path: Path) -> mmap.mmap | bytes:
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return b""  # mmap refuses empty files
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def mapped(path: Path) -> np.ndarray:
    """A `.npy` file memory-mapped read-only, as a plain array: `np.memmap` costs a Python call per slice."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


def load_offsets(path: Path, size: int) -> np.ndarray:
    """The offsets of `path`, checked to start at 0, never decrease and end at the file's size."""
    offsets = mapped(offsets_path(path))
    if offsets.ndim != 1 or offsets.dtype != np.int64 or len(offsets) == 0:
        raise ValueError(f"{offsets_path(path).name}: not a list of offsets")
    if int(offsets[0]) != 0 or int(offsets[-1]) != size or bool(np.any(np.diff(offsets) < 0)):
        raise ValueError(f"{offsets_path(path).name}: offsets do not fit {path.name}")
    return offsets


class JsonlRows(Sequence[T]):
    """Line *i* of a JSONL file, parsed by `parse` on first use (a few thousand are kept)."""

    def __init__(self, path: Path, parse: Callable[[dict[str, Any]], T]) -> None:
        self._path = path
        self._data = map_file(path)
        self._offsets = load_offsets(path, len(self._data))
        self._parse = parse
        self.row = lru_cache(maxsize=ROW_CACHE)(self._read)

    def _read(self, index: int) -> T:
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        try:
            return self._parse(json.loads(self._data[start:end]))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise IndexError_(f"line {index + 1} of {self._path} cannot be read ({error})", REBUILD_HINT) from error

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self.row(i) for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.row(index)

    def check_ends(self) -> None:
        """Parse the first and last rows: a file other than the offsets describe fails here, not mid-question."""
        for index in {0, len(self) - 1} if len(self) else ():
            self._read(index)

    def __iter__(self) -> Iterator[T]:
        # A full pass parses each line once, without churning the cache of recent rows.
        for index in range(len(self)):
            yield self._read(index)


class StringTable(Sequence[str]):
    """Sorted strings in one blob: `find(s)` is the position of `s`, or None."""

    def __init__(self, path: Path) -> None:
        self._data = map_file(path)
        self._offsets = load_offsets(path, len(self._data))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        return bytes(self._data[start:end]).decode("utf-8")

    def find(self, value: str) -> int | None:
        position = bisect.bisect_left(self, value)
        return position if position < len(self) and self[position] == value else None
