"""`speechqa doctor`: what is installed, configured and built, and for each problem the fixing command."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from embeddings.errors import SpeechQAError
from embeddings.models.bundled import unsupported_reason
from embeddings.models.dense import locate_model, supply_hint
from embeddings.models.trainedfolder import is_trained_model
from embeddings.settings import EngineSettings

from .config import Config

PACKAGES = (
    ("jieba", True),
    ("bm25s", True),
    ("numpy", True),
    ("opencc-python-reimplemented", True),
    ("python-docx", True),
    ("faiss-cpu", False),
    ("sentence-transformers", False),
    ("torch", False),
    ("python-telegram-bot", False),
)


def _check(name: str, ok: bool, detail: str, fix: str = "", required: bool = True) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail, "fix": fix, "required": required}


def diagnose(config: Config) -> dict[str, Any]:
    checks = [_check("python", True, platform.python_version()), _check("config", True, config.source)]
    for package, required in PACKAGES:
        try:
            checks.append(_check(package, True, metadata.version(package), required=required))
        except metadata.PackageNotFoundError:
            extra = {"python-telegram-bot": "bot"}.get(package, "dense")
            fix = (
                "make install"
                if required
                else f'pip install -e ".[{extra}]" (CPU torch first: pip install torch==2.13.0)'
            )
            checks.append(_check(package, False, "not installed", fix, required))
    checks.append(_corpus_check(config))
    checks.append(_dictionaries_check(config))
    checks.append(_model_check(config.engine))
    checks.append(_index_check(config))
    token = bool(os.environ.get("TELEGRAM_BOT_TOKEN"))
    checks.append(
        _check(
            "telegram token",
            token,
            "TELEGRAM_BOT_TOKEN is set" if token else "TELEGRAM_BOT_TOKEN is not set",
            "export TELEGRAM_BOT_TOKEN=… (from @BotFather) before speechqa bot",
            required=False,
        )
    )
    return {"checks": checks}


def _corpus_check(config: Config) -> dict[str, Any]:
    from embeddings.ingest.corpus import load_corpus

    try:
        corpus = load_corpus(config.corpus_path, config.segment)
    except SpeechQAError as error:
        return _check("corpus", False, str(error), error.hint or f"put speeches in {config.corpus_path}")
    detail = f"{config.corpus_path}: {len(corpus.speeches)} speeches, {len(corpus.passages)} passages"
    if corpus.problems:
        skipped = "; ".join(f"{p.path}: {p.reason}" for p in corpus.problems)
        return _check("corpus", False, f"{detail}; skipped {skipped}", "convert or remove the skipped files")
    return _check("corpus", True, detail)


def _dictionaries_check(config: Config) -> dict[str, Any]:
    lexical = config.lexical
    files = {"user_dict": lexical.user_dict, "stopwords": lexical.stopwords, "question_frames": lexical.question_frames}
    missing = [f"{key} = {path}" for key, path in files.items() if not Path(path).is_file()]
    if missing:
        # Not fatal, but retrieval quietly gets worse: domain terms split, question words scored as topics.
        return _check("dictionaries", False, "missing: " + "; ".join(missing), f"fix [lexical] in {config.source}")
    return _check("dictionaries", True, ", ".join(Path(path).name for path in files.values()))


def _model_check(engine: EngineSettings) -> dict[str, Any]:
    dense = engine.dense
    if dense.mode == "off":
        return _check("embedding model", True, 'dense retrieval is off ([dense] mode = "off")', required=False)
    location = locate_model(dense.model, allow_network=True)
    trained = is_trained_model(Path(dense.model).expanduser())  # speechqa's own model: its own hints
    if not location.available:
        fallback = unsupported_reason() if dense.mode == "auto" and dense.fallback == "bundled" else "fallback off"
        uses = (
            "semantic search uses the bundled multilingual-e5-small (4-bit) instead"
            if not fallback
            else f"answers use lexical retrieval only ({fallback})"
        )
        return _check(
            "embedding model",
            False,
            f"{dense.model}: {location.reason}; {uses}",
            supply_hint(dense.model)
            if trained
            else f"set [dense] model to a local model folder; or HF_ENDPOINT=<mirror URL> speechqa index; or run "
            f"`huggingface-cli download {dense.model}` where there is network and copy ~/.cache/huggingface here",
            required=dense.mode == "required",
        )
    try:
        from embeddings.models.dense import load_embedder

        embedder = load_embedder(dense.model, dense.query_instruction, 1, dense.device, allow_network=True)
    except (SpeechQAError, ImportError) as error:
        return _check(
            "embedding model",
            False,
            f"{dense.model}: {error}",
            error.hint if trained and isinstance(error, SpeechQAError) else 'pip install -e ".[dense]"',
            required=dense.mode == "required",
        )
    return _check("embedding model", True, f"{dense.model} loads ({location.reason}, {embedder.dimension} dimensions)")


def _index_check(config: Config) -> dict[str, Any]:
    from embeddings.engine import IndexState, index_status, planned_dense_model
    from embeddings.index.store import open_stored

    try:
        planned = planned_dense_model(config.engine, allow_network=False)
        status = index_status(config.corpus_path, config.index_path, config.engine, planned)
    except SpeechQAError as error:
        return _check("index", False, str(error), error.hint)
    if status.state is IndexState.FRESH and status.stored is not None:
        try:
            # Every file's SHA-256: loading checks a large index's files by size only (SECURITY.md).
            open_stored(config.index_path, verify=True)
        except SpeechQAError as error:
            return _check("index", False, str(error), error.hint)
        manifest = status.stored.manifest
        dense = manifest.get("dense")
        mode = f"hybrid with {dense['model']} (weight {dense['weight']:.2f})" if dense else "lexical-only"
        return _check("index", True, f"fresh: {manifest['counts']['passages']} passages, {mode}")
    command = (
        "speechqa index"
        if config.source in ("(defaults)", "config.toml")
        else f"speechqa --config {config.source} index"
    )
    return _check("index", False, f"{status.state.value}: {status.reason}", command, required=False)
