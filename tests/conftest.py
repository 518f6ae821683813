"""Shared fixtures: a private copy of the shipped corpus, configs pointing into tmp, and no network."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from bot.config import Config, CorpusSettings
from embeddings.engine import open_retriever
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import DenseSettings, LexicalSettings

REPO = Path(__file__).resolve().parents[1]
SPEECHES = REPO / "data" / "speeches"
SHARED = REPO.parent / "shared"
DEV_QUESTIONS = SHARED / "eval" / "speeches-dev.jsonl"
UNION = "union-building-campaign-speech.txt"
LEAD_GOOSE = "lead-goose-annual-review-speech.txt"

# The same examples on every run and machine, and no example database left in the tree.
settings.register_profile("speechqa", derandomize=True, database=None, deadline=None)
settings.load_profile("speechqa")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests may talk to loopback servers they start themselves, and to nothing else."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access disallowed in tests ({host})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SPEECHQA_CONFIG", raising=False)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    target = tmp_path / "speeches"
    shutil.copytree(SPEECHES, target)
    return target


def write_config_file(folder: Path, corpus: Path, *, dense_mode: str = "off", telegram: str = "") -> Path:
    """`folder/config.toml` on the repo's dictionaries, its index and feedback log inside `folder`.

    `telegram` holds extra lines for the `[telegram]` table, e.g. `admin_ids = [1]`.
    """
    jieba = REPO / "data" / "jieba"
    lines = [
        "[corpus]",
        f'path = "{corpus}"',
        f'index_dir = "{folder / "index"}"',
        "[lexical]",
        f'user_dict = "{jieba / "userdict.txt"}"',
        f'stopwords = "{jieba / "stopwords.txt"}"',
        f'question_frames = "{jieba / "question_frames.txt"}"',
        "[dense]",
        f'mode = "{dense_mode}"',
        "[telegram]",
        f'feedback_db = "{folder / "log.sqlite3"}"',
        telegram,
    ]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def make_config(corpus: Path, index: Path, **sections: Any) -> Config:
    """A config on the repo's dictionaries with dense retrieval off unless a test turns it on."""
    lexical = LexicalSettings(
        user_dict=str(REPO / "data/jieba/userdict.txt"),
        stopwords=str(REPO / "data/jieba/stopwords.txt"),
        question_frames=str(REPO / "data/jieba/question_frames.txt"),
    )
    config = Config(
        corpus=CorpusSettings(path=str(corpus), index_dir=str(index)), lexical=lexical, dense=DenseSettings(mode="off")
    )
    return replace(config, **sections)


@pytest.fixture
def config_factory(tmp_path: Path, corpus_dir: Path) -> Callable[..., Config]:
    def factory(**sections: Any) -> Config:
        return make_config(corpus_dir, tmp_path / "index", **sections)

    return factory


@pytest.fixture(scope="session")
def shipped_retriever(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    """A lexical retriever over the shipped speeches, built once per test session (read-only use)."""
    root = tmp_path_factory.mktemp("shipped")
    corpus = root / "speeches"
    shutil.copytree(SPEECHES, corpus)
    config = make_config(corpus, root / "index")
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    yield retriever


def _tiny_model_text() -> str:
    return "".join(p.read_text("utf-8") for p in SPEECHES.glob("*.txt")) + "问答工会是什么为何"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 32-dimension sentence-transformers model over the shipped speeches' characters."""
    from tests.fakes import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("model"), _tiny_model_text())


@pytest.fixture(scope="session")
def wide_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `tiny_model` but 48 dimensions wide: another model that could be copied over the first."""
    from tests.fakes import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("wide-model"), _tiny_model_text(), dimension=48)
