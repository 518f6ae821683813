"""One Milvus connection per process: every call bounded in time, every failure one `SearchUnavailable`.

The connection is opened on first use and dropped after a failure, so the next call connects
afresh: a front-end recovers by itself when Milvus comes back, without a restart. A file `uri` is
Milvus Lite (the real Milvus core, run by the `milvus-lite` package in a child process); an
`http://` one is a server or cluster, whose token comes only from the environment.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from embeddings.errors import SearchUnavailable
from embeddings.settings import BackendSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")
INSTALL_HINT = 'install Milvus support with: pip install "speechqa[milvus]" (or set [backend] kind = "local")'
MAX_TEXT = 65_535  # Milvus's longest VARCHAR


@dataclass(frozen=True, slots=True)
class Collections:
    """The three collections of one corpus: passages (BM25), sentence units (vectors), speeches (what is in)."""

    passages: str
    units: str
    speeches: str

    @classmethod
    def named(cls, base: str) -> Collections:
        return cls(f"{base}_passages", f"{base}_units", f"{base}_speeches")


def is_lite(uri: str) -> bool:
    return "://" not in uri


def unavailable(backend: BackendSettings, error: BaseException) -> SearchUnavailable:
    where = f"Milvus Lite ({backend.uri})" if is_lite(backend.uri) else f"Milvus at {backend.uri}"
    # MilvusException keeps the server's words in .message, a gRPC error in .details()
    details = getattr(error, "details", None)
    text = str(getattr(error, "message", "") or (details() if callable(details) else "") or error)
    detail = text.splitlines()[0][:200] if text else type(error).__name__
    step = (
        "check the file's folder is writable and no other process holds it"
        if is_lite(backend.uri)
        else f"start Milvus or check [backend] uri and ${backend.token_env}, then ask again"
    )
    return SearchUnavailable(f"search is unavailable: {where} did not answer ({detail})", step)


def _client_class() -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as error:
        raise SearchUnavailable(f"Milvus support is not installed ({error})", INSTALL_HINT) from error
    # pymilvus installs console handlers of its own on import, which would print its failures (a
    # traceback-like line per retry) beside ours: its records go the standard way, and its failures
    # reach the user once, as `SearchUnavailable`, which this module logs (at INFO) with the details.
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer"):
        quiet = logging.getLogger(name)
        quiet.handlers.clear()
        quiet.propagate = True
        quiet.setLevel(logging.CRITICAL)
    return MilvusClient


class Milvus:
    """A lazily (re)connected `MilvusClient` for one backend; safe to share between threads."""

    def __init__(self, backend: BackendSettings) -> None:
        self.backend = backend
        self.collections = Collections.named(backend.collection)
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def timeout(self) -> float:
        return self.backend.timeout_s

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                client_class = _client_class()
                uri = self.backend.uri
                if is_lite(uri):
                    Path(uri).parent.mkdir(parents=True, exist_ok=True)
                token = os.environ.get(self.backend.token_env, "")
                self._client = client_class(uri=uri, token=token, timeout=self.timeout)
            return self._client

    def call(self, operation: Callable[[Any], T]) -> T:
        """`operation(client)`; any failure of Milvus becomes `SearchUnavailable` and drops the connection."""
        try:
            return operation(self._connect())
        except SearchUnavailable:
            raise
        except Exception as error:  # pymilvus raises MilvusException, grpc errors and more: all mean "not now"
            logger.info("Milvus call failed", exc_info=True)
            self.close()
            raise unavailable(self.backend, error) from error

    def load_meanwhile(self) -> threading.Thread:
        """Have Milvus load the collections in the background, so that the first search or write finds them
        loaded: Milvus Lite loads a collection in each new process (~9 s at 108k passages). A failure here
        is left for the next call to meet and report."""

        def load() -> None:
            try:
                client = self._connect()
                for name in (self.collections.passages, self.collections.units):
                    if client.has_collection(name, timeout=self.timeout):
                        client.load_collection(name, timeout=self.timeout)
            except Exception:  # not `call`: a failure must not close the connection another thread is using
                logger.info("loading the Milvus collections in advance failed", exc_info=True)

        loading = threading.Thread(target=load, name="milvus-load", daemon=True)
        loading.start()
        return loading

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken connection may fail too; it is gone either way
                logger.debug("closing the Milvus client failed", exc_info=True)
