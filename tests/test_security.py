"""Claims of SECURITY.md that no other test file already proves."""

from __future__ import annotations

import ast
import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from bot.config import load_config
from bot.telegram_admin import safe_name
from embeddings.engine import open_retriever
from embeddings.errors import ConfigError, IndexError_
from embeddings.lexical import LexicalIndex
from embeddings.store import file_digest, open_stored
from tests.conftest import REPO

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "shelve", "marshal", "joblib"}


def _our_sources() -> list[Path]:
    return sorted([*REPO.glob("embeddings/*.py"), *REPO.glob("bot/*.py")])


def test_no_pickle_eval_or_exec_in_product_code():
    for path in _our_sources():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & FORBIDDEN_MODULES, path
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in FORBIDDEN_MODULES, path
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in FORBIDDEN_CALLS, (path, node.lineno)
            elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, (path, node.lineno)


def test_a_pickled_array_in_a_consistent_index_is_refused(config_factory):
    config = config_factory()
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    directory = retriever.stored.directory
    target = directory / "lexical" / "data.csc.index.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"payload": "object"}], dtype=object), allow_pickle=True)
    target.write_bytes(buffer.getvalue())
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text("utf-8"))
    entry = manifest["files"]["lexical/data.csc.index.npy"]
    entry.update(size=target.stat().st_size, sha256=file_digest(target))  # a forger who also fixed the manifest
    manifest_path.write_text(json.dumps(manifest), "utf-8")
    open_stored(config.index_path)  # digests match now, so only the loader stands in the way
    with pytest.raises(IndexError_):
        LexicalIndex.load(directory / "lexical")


def test_a_tampered_index_file_is_refused_by_its_digest(config_factory):
    config = config_factory()
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    target = retriever.stored.directory / "passages.jsonl"
    text = target.read_text("utf-8")
    target.write_text(text.replace("工会", "公司", 1), "utf-8")  # same length in characters, other bytes
    with pytest.raises(IndexError_, match="damaged"):
        open_stored(config.index_path)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/cron.d/evil.txt", "evil.txt"),
        ("..\\..\\speech.docx", "speech.docx"),
        ("/abs/path/讲话.md", "讲话.md"),
        (".hidden.txt", ""),
        ("~$lock.docx", "_lock.docx"),  # sanitised into a plain name, no longer a Word lock file
        ("run.sh", ""),
        ("slides.pdf", ""),
        ("", ""),
    ],
)
def test_upload_names_cannot_leave_the_corpus_folder_or_bring_other_types(sent, kept):
    assert safe_name(sent) == kept


def test_the_config_has_no_place_for_the_token(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text('[telegram]\ntoken = "123456:SECRET"\n', "utf-8")
    with pytest.raises(ConfigError, match="unknown key") as raised:
        load_config(str(config))
    assert "SECRET" not in str(raised.value)


def test_tests_cannot_reach_the_network():
    with socket.socket() as sock, pytest.raises(OSError, match="network access disallowed"):
        sock.connect(("192.0.2.1", 443))
