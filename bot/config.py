"""The configuration: one frozen dataclass tree read from `config.toml` with tomllib.

The file is found from `--config`, else `SPEECHQA_CONFIG`, else `./config.toml`; relative paths in
it are relative to the file, so one installation can serve several corpora. A wrong value names
its key and what is allowed. Secrets never live here: the bot token and the DingTalk and Feishu
apps' secrets come only from the environment.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from embeddings.errors import ConfigError
from embeddings.settings import (
    BackendSettings,
    DenseSettings,
    EngineSettings,
    FusionSettings,
    LexicalSettings,
    RerankSettings,
    SegmentSettings,
)

CONFIG_ENV = "SPEECHQA_CONFIG"


@dataclass(frozen=True, slots=True)
class CorpusSettings:
    path: str = "data/speeches"
    index_dir: str = "data/index"


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    top_k: int = 5
    max_question_chars: int = 500
    direct_sentences: int = 3
    snippet_chars: int = 160


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    api_base_url: str = ""
    allowed_user_ids: tuple[int, ...] = ()
    allowed_chat_ids: tuple[int, ...] = ()
    admin_ids: tuple[int, ...] = ()
    rate_limit_per_minute: int = 12
    feedback_db: str = "data/feedback.sqlite3"
    max_upload_bytes: int = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DingTalkSettings:
    """`speechqa dingtalk` (Stream mode); the app's key and secret come only from the environment."""

    endpoint: str = ""  # "" is https://api.dingtalk.com; DINGTALK_OPENAPI_ENDPOINT overrides
    allowed_user_ids: tuple[str, ...] = ()  # staff ids (senderStaffId)
    allowed_chat_ids: tuple[str, ...] = ()  # conversation ids (conversationId)
    rate_limit_per_minute: int = 12
    sends_per_second: int = 50
    sends_per_chat_per_minute: int = 20
    feedback_db: str = "data/dingtalk.sqlite3"


@dataclass(frozen=True, slots=True)
class FeishuSettings:
    """`speechqa feishu` (WebSocket events); the app's id and secret come only from the environment."""

    domain: str = "https://open.feishu.cn"  # https://open.larksuite.com for Lark; FEISHU_DOMAIN overrides
    allowed_user_ids: tuple[str, ...] = ()  # open ids (ou_…)
    allowed_chat_ids: tuple[str, ...] = ()  # chat ids (oc_…)
    rate_limit_per_minute: int = 12
    sends_per_second: int = 50
    sends_per_chat_per_minute: int = 300
    feedback_db: str = "data/feishu.sqlite3"


@dataclass(frozen=True, slots=True)
class WebSettings:
    """`speechqa serve`; the optional access token comes only from SPEECHQA_WEB_TOKEN."""

    host: str = "127.0.0.1"
    port: int = 8000
    retrieval_threads: int = 2
    max_pending: int = 100
    rate_limit_per_minute: int = 60
    max_body_bytes: int = 16384


@dataclass(frozen=True, slots=True)
class Config:
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    segment: SegmentSettings = field(default_factory=SegmentSettings)
    lexical: LexicalSettings = field(default_factory=LexicalSettings)
    dense: DenseSettings = field(default_factory=DenseSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    dingtalk: DingTalkSettings = field(default_factory=DingTalkSettings)
    feishu: FeishuSettings = field(default_factory=FeishuSettings)
    web: WebSettings = field(default_factory=WebSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    source: str = "(defaults)"

    @property
    def engine(self) -> EngineSettings:
        return EngineSettings(self.segment, self.lexical, self.dense, self.fusion, self.rerank, self.backend)

    @property
    def corpus_path(self) -> Path:
        return Path(self.corpus.path)

    @property
    def index_path(self) -> Path:
        return Path(self.corpus.index_dir)


_PATH_KEYS = {
    ("corpus", "path"),
    ("corpus", "index_dir"),
    ("lexical", "user_dict"),
    ("lexical", "stopwords"),
    ("lexical", "question_frames"),
    ("dense", "shipped_vectors"),
    ("telegram", "feedback_db"),
    ("dingtalk", "feedback_db"),
    ("feishu", "feedback_db"),
}


def config_path(explicit: str | None) -> Path | None:
    """The config file to read, or None to run on defaults (no file at the default place)."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    default = Path("config.toml")
    return default if default.is_file() else None


def load_config(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    if path is None:
        return Config()
    named_by = "--config" if explicit else f"${CONFIG_ENV}" if os.environ.get(CONFIG_ENV) else "the default"
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError as error:
        fix = f"set {CONFIG_ENV} to an existing file, or unset it" if named_by.startswith("$") else "pass --config FILE"
        raise ConfigError(f"config file {path} (from {named_by}) does not exist", fix) from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read ({error})", "save it as UTF-8 text") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}", f"fix that line of {path}") from error
    try:
        if "source" in raw:
            raise ConfigError(f"{path}: unknown key source; known keys: {', '.join(_SECTIONS)}")
        config = _build(Config, {**raw, "source": str(path)}, str(path), "")
        _check_ranges(config, str(path))
    except ConfigError as error:
        raise ConfigError(
            str(error), error.hint or f"edit {path} (config.toml in the repository shows every key)"
        ) from None
    return _resolve_paths(config, path.parent)


_SECTIONS = tuple(f.name for f in fields(Config) if f.name != "source")


_RANGES: tuple[tuple[str, str, float, float], ...] = (
    ("segment", "max_chars", 50, 4000),
    ("segment", "overlap_sentences", 0, 5),
    ("lexical", "k1", 0.0, 3.0),
    ("lexical", "b", 0.0, 1.0),
    ("dense", "batch_size", 1, 1024),
    ("fusion", "candidates", 5, 1000),
    ("fusion", "min_confidence", 0.0, 1.0),
    ("rerank", "candidates", 2, 200),
    ("answer", "top_k", 1, 50),
    ("answer", "max_question_chars", 10, 10000),
    ("answer", "direct_sentences", 1, 10),
    ("answer", "snippet_chars", 40, 2000),
    ("telegram", "rate_limit_per_minute", 1, 1000),
    ("dingtalk", "rate_limit_per_minute", 1, 1000),
    ("dingtalk", "sends_per_second", 1, 1000),
    ("dingtalk", "sends_per_chat_per_minute", 1, 10000),
    ("feishu", "rate_limit_per_minute", 1, 1000),
    ("feishu", "sends_per_second", 1, 1000),
    ("feishu", "sends_per_chat_per_minute", 1, 10000),
    ("web", "port", 1, 65535),
    ("web", "retrieval_threads", 1, 32),
    ("web", "max_pending", 1, 10000),
    ("web", "rate_limit_per_minute", 1, 100000),
    ("web", "max_body_bytes", 1024, 1048576),
    ("backend", "timeout_s", 0.5, 600.0),
)


def _check_ranges(config: Config, source: str) -> None:
    checks = [*_RANGES]
    if config.fusion.dense_weight != "auto":
        checks.append(("fusion", "dense_weight", 0.0, 1.0))
    if config.fusion.answer_similarity != "auto":
        checks.append(("fusion", "answer_similarity", -1.0, 1.0))
    for section, key, low, high in checks:
        value = getattr(getattr(config, section), key)
        if not low <= value <= high:
            raise ConfigError(f"{source}: [{section}] {key} = {value} is out of range; use {low} to {high}")


def _resolve_paths(config: Config, base: Path) -> Config:
    sections: dict[str, Any] = {}
    for section, key in _PATH_KEYS:
        current = sections.get(section, getattr(config, section))
        value = getattr(current, key)
        if value and not Path(value).expanduser().is_absolute() and not value.startswith("~"):
            value = str(base / value)
        sections[section] = replace(current, **{key: str(Path(value).expanduser()) if value else value})
    sections["dense"] = replace(sections["dense"], model=model_beside(base, sections["dense"].model))
    backend = config.backend
    if "://" not in backend.uri and not Path(backend.uri).expanduser().is_absolute():  # a Milvus Lite file
        sections["backend"] = replace(backend, uri=str(base / backend.uri))
    return replace(config, **sections)


def model_beside(base: Path, model: str) -> str:
    """A model folder named relative to the config file, like the paths above, made absolute; a hub name as it is."""
    beside = base / model
    if model and not Path(model).expanduser().is_absolute() and beside.is_dir():
        return str(beside.resolve())
    return model


def _build(cls: type, raw: dict[str, Any], source: str, prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            where = f"[{prefix}] " if prefix else ""
            listed = ", ".join(name for name in known if name != "source")
            raise ConfigError(f"{source}: unknown key {where}{key}; known keys: {listed}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{name}] must be a table of settings")
            values[name] = _build(typing.cast(type, hint), value, source, name)
        else:
            where = f"{source}: [{prefix}] {name}" if prefix else f"{source}: {name}"
            try:
                values[name] = _coerce(value, hint, where)
            except ConfigError as error:
                bounds = next(((low, high) for sec, key, low, high in _RANGES if (sec, key) == (prefix, name)), None)
                raise ConfigError(str(error) + (f" from {bounds[0]} to {bounds[1]}" if bounds else "")) from None
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against the field's type; the error lists what is allowed."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where} = {value!r} is not allowed; use one of: {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        allowed = " or ".join(_describe(option) for option in args)
        raise ConfigError(f"{where} = {value!r} is not allowed; use {allowed}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, e.g. [123, 456]")
        return tuple(_coerce(item, args[0], where) for item in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ConfigError(f"{where} = {value} must not be negative")
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where} = {value!r} has the wrong type; expected {_describe(hint)}")


def _describe(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return " or ".join(repr(a) for a in get_args(hint))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )
