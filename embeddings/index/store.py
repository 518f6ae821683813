"""The built index on disk: a plain directory with a manifest, switched into place atomically.

    INDEX_DIR/CURRENT            name of the live generation (replaced atomically)
    INDEX_DIR/gen-*/manifest.json   versions, model, counts, corpus and config hashes, file digests
    INDEX_DIR/gen-*/passages.jsonl  row i = BM25 document i (with byte offsets: rows are read on demand)
    INDEX_DIR/gen-*/units.npy       sentence units (passage row, start, end) = FAISS vector u
    INDEX_DIR/gen-*/paragraphs.npy  passage row → paragraph number in the index
    INDEX_DIR/gen-*/speeches.jsonl  cleaned speech texts, for whole paragraphs and offsets (ids sorted beside)
    INDEX_DIR/gen-*/lexical/, query_dict.txt, dense.faiss
    INDEX_DIR/gen-*/tokens/         each passage's tokens and counts, for the next build to reuse
    INDEX_DIR/gen-*/speech_files.json, spans.npy   what was read of each file, for the next build to reuse
    INDEX_DIR/cache/             embeddings by sentence content hash (survive rebuilds)

A build writes a new generation completely and only then points CURRENT at it (`generations`);
an open index maps its files, so it keeps reading them even after a later build deletes them.

Every file is checked against the manifest's size on load, and against its SHA-256 too while the
index is small (`DIGEST_ON_LOAD_BYTES` in all): hashing a large index on every cold start would
cost seconds, so a large one has its digests checked when it is built and by `speechqa doctor`,
and its loaders check the structure they read. The manifest's own fields are always checked
against what readers expect, so a truncated or altered index is refused with the command that
rebuilds it, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.errors import REBUILD_HINT, IndexError_
from embeddings.index.forward import FORWARD_FILES
from embeddings.index.ondisk import mapped

if TYPE_CHECKING:
    from embeddings.index.lazycorpus import Speeches
    from embeddings.index.ondisk import JsonlRows
    from embeddings.passage import Passage

# The contract between the code that writes an index and the code that reads it. Bump it whenever
# tokenisation, segmentation, the query dictionary or the file layout changes: an index of another
# format is then stale and rebuilt. The package version is recorded but not compared, on purpose:
# most releases change the bot, not the index, and each needless rebuild re-embeds the corpus.
# 4: offsets beside the JSONL files, sorted vocabulary, paragraphs.npy; 5: speech_passages.npy;
# 6: the front matter (subtitle, date, speaker) is paragraph 0, with passages and sentence units of its own;
# 7: each passage's tokens (tokens/), reused by the next build.
INDEX_FORMAT = 7
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
LEXICAL_FILES = (
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
    "vocab.txt",
    "vocab.txt.offsets.npy",
    "meta.json",
)
UNITS_FILE = "units.npy"
PARAGRAPHS_FILE = "paragraphs.npy"
SPEECH_FILES = "speech_files.json"  # what the build read: each speech's file name, size and time (`knownfiles`)
SPANS_FILE = "spans.npy"  # each passage's paragraph, part, start and end
REQUIRED_FILES = (
    "passages.jsonl",
    "passages.jsonl.offsets.npy",
    "speeches.jsonl",
    "speeches.jsonl.offsets.npy",
    "speech_ids.txt",
    "speech_ids.txt.offsets.npy",
    "speech_ids.lines.npy",
    "query_dict.txt",
    UNITS_FILE,
    PARAGRAPHS_FILE,
    SPEECH_FILES,
    SPANS_FILE,
    *(f"lexical/{n}" for n in LEXICAL_FILES),
    *FORWARD_FILES,
)
# An index whose files add up to less is hashed whole on every load (the shipped corpus: ~2 MB, a few ms).
DIGEST_ON_LOAD_BYTES = 64 * 1024 * 1024
DENSE_FILE = "dense.faiss"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class OutdatedIndex(IndexError_):
    """The index was written in another format, by another version of speechqa: stale, not damaged."""


@dataclass(frozen=True)
class StoredIndex:
    """A verified generation on disk; heavy parts are read by their own modules."""

    directory: Path
    manifest: dict[str, Any]

    def read_passages(self) -> JsonlRows[Passage]:
        from embeddings.index.lazycorpus import read_passages

        with self._reading("passages.jsonl"):
            passages = read_passages(self.directory)
            passages.check_ends()  # other rows are checked when first read
            return passages

    def read_units(self) -> np.ndarray:
        with self._reading(UNITS_FILE) as path:
            table = mapped(path)
            if table.ndim != 2 or table.shape[1] != 3 or table.dtype.kind != "i":
                raise ValueError(f"unexpected shape {table.shape} or type {table.dtype}")
            return table

    def read_paragraphs(self) -> np.ndarray:
        with self._reading(PARAGRAPHS_FILE) as path:
            of_row = mapped(path)
            if of_row.ndim != 1 or of_row.dtype.kind != "i":
                raise ValueError(f"unexpected shape {of_row.shape} or type {of_row.dtype}")
            return of_row

    def read_speeches(self) -> Speeches:
        from embeddings.index.lazycorpus import Speeches

        with self._reading("speeches.jsonl"):
            speeches = Speeches(self.directory)
            speeches.check_ends()
            return speeches

    @contextlib.contextmanager
    def _reading(self, name: str) -> Iterator[Path]:
        """Turn whatever a damaged or vanished file raises into `IndexError_` with the rebuild hint."""
        path = self.directory / name
        try:
            yield path
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise IndexError_(f"the index file {path} cannot be read ({error})", REBUILD_HINT) from error


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def live_name(root: Path) -> str | None:
    try:
        return (root / CURRENT).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def open_stored(root: Path, verify: bool | None = None) -> StoredIndex:
    """The live generation, checked against its manifest; `IndexError_` says what is wrong.

    Sizes are always checked; digests when `verify`, or (None) when the index is small enough.
    """
    pointer = root / CURRENT
    if not pointer.is_file():
        raise IndexError_(f"no index has been built in {root}", REBUILD_HINT)
    name = live_name(root) or ""
    if not name.startswith("gen-") or "/" in name:
        raise IndexError_(f"the index pointer {pointer} is damaged", REBUILD_HINT)
    directory = root / name
    try:
        manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise IndexError_(f"the index manifest in {directory} cannot be read ({error})", REBUILD_HINT) from error
    _check_manifest(directory, manifest)
    if verify is None:
        verify = sum(entry["size"] for entry in manifest["files"].values()) <= DIGEST_ON_LOAD_BYTES
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise IndexError_(f"the index file {path} is missing", REBUILD_HINT)
        if path.stat().st_size != expected["size"] or (verify and file_digest(path) != expected["sha256"]):
            raise IndexError_(f"the index file {path} is damaged (size or checksum differs)", REBUILD_HINT)
    return StoredIndex(directory, manifest)


def open_live(root: Path) -> StoredIndex | None:
    """The live generation for a build to reuse, or None when there is none or it does not check out
    (digests too while it is small: a damaged index is not reused)."""
    try:
        return open_stored(root)
    except IndexError_:
        return None


def _check_manifest(directory: Path, manifest: Any) -> None:
    """Refuse a manifest that readers could trip over: every field they use, with the type they expect."""

    def require(condition: bool, what: str) -> None:
        if not condition:
            raise IndexError_(f"the index manifest in {directory} is damaged ({what})", REBUILD_HINT)

    require(isinstance(manifest, dict), "not a JSON object")
    version = manifest.get("format")
    require(_is_int(version), "no format version")
    if version != INDEX_FORMAT:
        raise OutdatedIndex(
            f"the index in {directory} was built by another version of speechqa "
            f"(index format {version}, this version uses {INDEX_FORMAT})",
            REBUILD_HINT,
        )
    for key in ("corpus_hash", "config_hash", "dictionary_hash"):
        require(isinstance(manifest.get(key), str), f"{key} missing")
    counts = manifest.get("counts")
    require(isinstance(counts, dict), "counts missing")
    require(all(_is_int(counts.get(k)) for k in ("speeches", "passages", "vocabulary")), "counts are not numbers")
    dense = manifest.get("dense")
    require(dense is None or isinstance(dense, dict), "dense is neither null nor an object")
    if isinstance(dense, dict):
        require(isinstance(dense.get("model"), str) and isinstance(dense.get("fingerprint"), str), "dense model")
        require(_is_int(dense.get("dimension")) and dense["dimension"] > 0, "dense dimension")
        require(isinstance(dense.get("index"), str), "dense index type")
        weight = dense.get("weight")
        require(isinstance(weight, int | float) and not isinstance(weight, bool), "dense weight")
    files = manifest.get("files")
    require(isinstance(files, dict), "the file list is missing")
    for name, entry in files.items():
        require(not Path(name).is_absolute() and ".." not in Path(name).parts, f"file name {name!r}")
        require(isinstance(entry, dict) and _is_int(entry.get("size")), f"size of {name}")
        require(isinstance(entry.get("sha256"), str) and bool(_SHA256.fullmatch(entry["sha256"])), f"digest of {name}")
    needed = set(REQUIRED_FILES) | ({DENSE_FILE} if dense else set())
    require(needed <= set(files), "files missing from the file list: " + ", ".join(sorted(needed - set(files))))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
