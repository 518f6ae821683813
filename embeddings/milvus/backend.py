"""Opening the Milvus backend for an index generation: one client per process, the collections in step."""

from __future__ import annotations

import logging
import threading

from embeddings.index.store import StoredIndex
from embeddings.milvus.client import Milvus
from embeddings.milvus.legs import Locator, MilvusSentences, MilvusWords
from embeddings.milvus.sync import SyncReport, in_step, sync
from embeddings.settings import BackendSettings, EngineSettings

logger = logging.getLogger(__name__)
_clients: dict[tuple[str, str], Milvus] = {}
_clients_lock = threading.Lock()


def milvus_for(backend: BackendSettings) -> Milvus:
    """The process's client for this uri and collection (Milvus Lite allows one per file)."""
    key = (backend.uri, backend.collection)
    with _clients_lock:
        if key not in _clients or _clients[key].backend != backend:
            _clients[key] = Milvus(backend)
        return _clients[key]


def bring_in_step(stored: StoredIndex, settings: EngineSettings, *, progress: bool = False) -> SyncReport | None:
    """Write what differs between `stored` and the collections; None when they already hold it."""
    milvus = milvus_for(settings.backend)
    if in_step(milvus, stored):
        return None
    return sync(milvus, stored, settings, progress=progress)


def remote_legs(stored: StoredIndex, settings: EngineSettings) -> tuple[MilvusWords, MilvusSentences | None]:
    """The candidate searches of `stored`'s passages and sentences, answered by its collections."""
    milvus = milvus_for(settings.backend)
    passages = stored.read_passages()
    units = stored.read_units()
    locator = Locator(passages, stored.read_speeches(), units)
    sentences = MilvusSentences(milvus, locator, len(units)) if stored.manifest.get("dense") else None
    return MilvusWords(milvus, locator, len(passages)), sentences
