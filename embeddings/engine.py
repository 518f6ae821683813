"""Opening the engine: check the index against corpus, config and model; rebuild when that is safe.

The front-ends call `open_retriever` and get a ready `Retriever` plus a one-line notice when the
dense side is off. Staleness is judged from file names, sizes and times first, and from content
only when those changed, so an unchanged corpus costs no re-reading. An index is also stale when
another version of speechqa wrote it, or when the embedding model's files or width changed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from embeddings.errors import IndexError_, ModelUnavailable
from embeddings.index.build import BuildReport, build_index
from embeddings.index.generations import build_running
from embeddings.index.knownfiles import known_files
from embeddings.index.store import OutdatedIndex, StoredIndex, open_live, open_stored
from embeddings.index.wordsbuild import dictionary_hash
from embeddings.ingest.corpus import Corpus, load_corpus, speech_files
from embeddings.models.bundled import BUNDLED_MODEL, BundledEmbedder, unsupported_reason
from embeddings.models.dense import Embedder, embedder_name, load_embedder, locate_model, model_fingerprint
from embeddings.models.rerank import Reranker, load_reranker
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import EngineSettings

if TYPE_CHECKING:
    from embeddings.retrieval.retrieve import RemoteLegs

logger = logging.getLogger(__name__)


class IndexState(Enum):
    FRESH = "fresh"
    STALE = "stale"
    MISSING = "missing"
    DAMAGED = "damaged"


@dataclass(frozen=True, slots=True)
class IndexStatus:
    state: IndexState
    reason: str
    stored: StoredIndex | None = None
    dense_pending: bool = False  # words only for now: a running build is embedding for the planned model
    # The corpus as read to find it changed, and its files' fingerprint taken before: a rebuild need not read it again.
    corpus: tuple[str, Corpus] | None = None


def corpus_fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for path in speech_files(root):
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def index_status(corpus_root: Path, index_root: Path, settings: EngineSettings, dense_model: str | None) -> IndexStatus:
    """Fresh, stale (with why), missing or damaged; never raises for a bad index."""
    try:
        stored = open_stored(index_root)
    except OutdatedIndex as error:
        return IndexStatus(IndexState.STALE, str(error))
    except IndexError_ as error:
        missing = "no index has been built" in str(error)
        return IndexStatus(IndexState.MISSING if missing else IndexState.DAMAGED, str(error))
    manifest = stored.manifest
    if manifest.get("config_hash") != settings.index_hash():
        return IndexStatus(IndexState.STALE, "the configuration that shapes the index changed", stored)
    if manifest.get("dictionary_hash") != dictionary_hash(settings):
        return IndexStatus(IndexState.STALE, "the jieba dictionary, stop words or question words changed", stored)
    built = manifest.get("dense") or {}
    built_model = built.get("model")
    # A words-only index sealed while a running build embeds for this model is what there is to use meanwhile.
    pending = built_model is None and pending_model(stored) == dense_model and build_running(index_root)
    if dense_model != built_model and not pending:
        return IndexStatus(IndexState.STALE, f"the embedding model changed ({built_model} → {dense_model})", stored)
    # An unknown fingerprint (a hub model not downloaded yet) proves nothing; the width is checked on loading.
    fingerprint = model_fingerprint(dense_model) if dense_model is not None and not pending else ""
    if fingerprint and fingerprint != built.get("fingerprint"):
        return IndexStatus(
            IndexState.STALE, f"the embedding model changed: the files of {dense_model} differ from the index's", stored
        )
    read = None
    if manifest.get("corpus_fingerprint") != (fingerprint := corpus_fingerprint(corpus_root)):
        read = fingerprint, load_corpus(corpus_root, settings.segment, known_files(stored, settings))
        if read[1].content_hash != manifest.get("corpus_hash"):
            return IndexStatus(IndexState.STALE, "the speeches changed since the index was built", stored, corpus=read)
    return IndexStatus(IndexState.FRESH, "up to date", stored, dense_pending=pending, corpus=read)


def pending_model(stored: StoredIndex) -> str | None:
    """The model a build was still embedding for when it sealed this words-only index, if any."""
    pending = stored.manifest.get("dense_pending")
    return str(pending.get("model")) if isinstance(pending, dict) and stored.manifest.get("dense") is None else None


def pending_notice(stored: StoredIndex) -> str:
    if pending_model(stored) is None:
        return ""
    sentences = int(stored.manifest["dense_pending"].get("sentences") or 0)
    return (
        f"semantic search is still being built ({sentences:,} sentences to embed): "
        "answers use words only until `speechqa index` finishes"
    )


def resolve_embedder(settings: EngineSettings, allow_network: bool) -> tuple[Embedder | None, str]:
    """The embedder to use and, unless it is the configured one, the one-line notice saying why and what to do."""
    dense = settings.dense
    if dense.mode == "off":
        return None, ""
    try:
        return load_embedder(dense.model, dense.query_instruction, dense.batch_size, dense.device, allow_network), ""
    except ModelUnavailable as error:
        if dense.mode == "required":
            raise
        if dense.fallback == "none":
            return None, f"lexical-only mode: {error}. To enable dense retrieval, {error.hint}."
        try:
            bundled = BundledEmbedder()
        except ModelUnavailable as why_not:
            return None, f"lexical-only mode: {error}; {why_not}. To enable dense retrieval, {error.hint}."
        return (
            bundled,
            f"semantic search uses the bundled multilingual-e5-small (4-bit), because {error}. "
            f"To use {dense.model} instead, {error.hint}.",
        )


def planned_dense_model(settings: EngineSettings, allow_network: bool) -> str | None:
    """Which model an index built now would carry, decided without loading it."""
    dense = settings.dense
    if dense.mode == "off":
        return None
    location = locate_model(dense.model, allow_network)
    if location.available or dense.mode == "required":
        return embedder_name(dense.model)
    if dense.fallback == "bundled" and not unsupported_reason():
        return BUNDLED_MODEL
    return None


def rebuild(
    corpus_root: Path,
    index_root: Path,
    settings: EngineSettings,
    *,
    embedder: Embedder | None,
    note: str,
    progress: bool,
    on_start: Callable[[], None] | None = None,
    read: tuple[str, Corpus] | None = None,
    reuse: bool = True,
) -> BuildReport:
    """Read the corpus (unless `read` holds it and its fingerprint) and build its index; `on_start` hears when
    the corpus has loaded and the build begins. Not `reuse`: every file is read and cut into words again,
    none taken from the live index."""
    if read is None:
        # Fingerprint before reading: a file edited during the build then shows up as changed next time.
        fingerprint = corpus_fingerprint(corpus_root)
        known = known_files(open_live(index_root), settings) if reuse else None
        read = fingerprint, load_corpus(corpus_root, settings.segment, known)
    fingerprint, corpus = read
    if on_start is not None:
        on_start()
    return build_index(
        corpus,
        settings,
        index_root,
        embedder=embedder,
        dense_note=note,
        progress=progress,
        extra_manifest={"corpus_fingerprint": fingerprint},
        reuse_words=reuse,
    )


def open_retriever(
    corpus_root: Path,
    index_root: Path,
    settings: EngineSettings,
    progress: bool = False,
    allow_network: bool = False,
    *,
    force: bool = False,
    on_rebuild: Callable[[str], None] | None = None,
) -> tuple[Retriever, BuildReport | None]:
    """A retriever over a fresh index, rebuilding first when the index is missing, stale or damaged.

    `allow_network` lets a build (never a plain question) fetch the model from the hub; `force`
    rebuilds even a fresh index; `on_rebuild` hears why a rebuild starts.
    """
    planned = planned_dense_model(settings, allow_network=allow_network and force)
    status = index_status(corpus_root, index_root, settings, planned)
    needs_build = force or status.state is not IndexState.FRESH
    if status.dense_pending and not needs_build:
        embedder, dense_notice = None, ""  # the vectors are not there yet: no need to load the model
    else:
        embedder, dense_notice = resolve_embedder(settings, allow_network=allow_network and needs_build)
    reason = status.reason if status.state is not IndexState.FRESH else "rebuild requested"
    if not needs_build and status.stored is not None and (changed := width_change(status.stored, embedder)):
        needs_build, reason = True, changed

    def build(why: str, read: tuple[str, Corpus] | None = None) -> BuildReport:
        def announce() -> None:  # only once the corpus has loaded: a missing corpus is an error, not a build
            logger.info("building the index: %s", why)
            if on_rebuild is not None:
                on_rebuild(why)

        return rebuild(
            corpus_root,
            index_root,
            settings,
            embedder=embedder,
            note=dense_notice,
            progress=progress,
            on_start=announce,
            read=read,
            reuse=not force,  # a forced build trusts nothing of the index it replaces
        )

    if needs_build and settings.backend.kind == "milvus":
        # Milvus loads the collections on another core while the local generation is built.
        from embeddings.milvus.backend import milvus_for

        milvus_for(settings.backend).load_meanwhile()
    report = build(reason, None if force else status.corpus) if needs_build else None
    stored = open_stored(index_root) if report is not None or status.stored is None else status.stored
    reranker, rerank_notice = resolve_reranker(settings, allow_network)
    notice = "; ".join(n for n in (pending_notice(stored), dense_notice, rerank_notice) if n)
    try:
        return Retriever(stored, settings, embedder, notice, reranker, remote=remote(settings, progress)), report
    except IndexError_ as error:
        if report is not None:
            raise  # freshly built and still unreadable: rebuilding again would not help
        # The manifest checked out but a part does not load: rebuild, as for any other damage.
        report = build(str(error))
        stored = open_stored(index_root)
        return Retriever(stored, settings, embedder, notice, reranker, remote=remote(settings, progress)), report


def remote(settings: EngineSettings, progress: bool) -> RemoteLegs | None:
    """With `[backend] kind = "milvus"`: what opens a retriever's searches in Milvus, its collections brought
    in step with the retriever's index generation first."""
    if settings.backend.kind != "milvus":
        return None
    from embeddings.milvus.backend import remote_legs

    return functools.partial(remote_legs, settings=settings, progress=progress)


def width_change(stored: StoredIndex, embedder: Embedder | None) -> str:
    """Why the index's vectors cannot be searched with `embedder`'s, or "" when they can."""
    dense = stored.manifest.get("dense")
    if embedder is None or dense is None or dense["model"] != embedder.name or dense["dimension"] == embedder.dimension:
        return ""
    return (
        f"the embedding model changed: {embedder.name} now gives {embedder.dimension}-dimension vectors, "
        f"the index holds {dense['dimension']}-dimension ones"
    )


def resolve_reranker(settings: EngineSettings, allow_network: bool) -> tuple[Reranker | None, str]:
    if not settings.rerank.enabled:
        return None, ""
    try:
        return load_reranker(settings.rerank.model, settings.dense.device, allow_network), ""
    except ModelUnavailable as error:
        return None, f"rerank off: {error}"
