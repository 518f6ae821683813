"""Opening the Milvus backend for an index generation: one client per process, the collections in step.

A front-end that starts while Milvus is down still starts: the collections are brought in step on
the first search that reaches Milvus, and until then every search raises `SearchUnavailable`.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from embeddings.errors import SearchUnavailable
from embeddings.milvus.client import Milvus
from embeddings.milvus.legs import Locator, MilvusSentences, MilvusWords
from embeddings.milvus.sync import InStep
from embeddings.settings import BackendSettings, EngineSettings

if TYPE_CHECKING:
    from embeddings.retrieval.retrieve import Retriever

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


def remote_legs(
    retriever: Retriever, settings: EngineSettings, progress: bool = False
) -> tuple[MilvusWords, MilvusSentences | None]:
    """The candidate searches of `retriever`'s passages and sentences, answered by its collections."""
    milvus = milvus_for(settings.backend)
    stored = retriever.stored
    ready = InStep(milvus, stored, settings)
    try:
        ready(progress)
    except SearchUnavailable as error:  # a server front-end starts anyway; the CLI says so at its search
        logger.info("%s; searches wait for it", error)
    locator = Locator(retriever.passages, retriever.speeches, retriever.units)
    sentences = MilvusSentences(milvus, locator, len(retriever.units), ready) if stored.manifest.get("dense") else None
    return MilvusWords(milvus, locator, len(retriever.passages), ready), sentences
