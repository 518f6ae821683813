"""Claims of SECURITY.md that no other test file already proves."""

from __future__ import annotations

import ast
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bot.config import load_config
from bot.session import Conversation
from bot.telegram.admin import MAX_NAME_BYTES, safe_name
from embeddings.engine import open_retriever
from embeddings.errors import ConfigError, IndexError_
from embeddings.index.atomic import atomic_write_bytes
from embeddings.index.lexical import LexicalIndex
from embeddings.index.store import file_digest, open_stored
from embeddings.settings import DenseSettings, FusionSettings
from tests.conftest import DEV_QUESTIONS, REPO, write_config_file
from tests.fakebotapi import FakeBotApi

TOKEN = "123456:TEST-TOKEN-abcdef"

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "shelve", "marshal", "joblib"}


def _our_sources() -> list[Path]:
    return sorted([*REPO.glob("embeddings/**/*.py"), *REPO.glob("bot/**/*.py")])  # packages too: bot/telegram/


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


def _unsafe_np_loads(source: str) -> list[int]:
    """Lines of `np.load` calls without an explicit `allow_pickle=False`, and of `from numpy import load`."""
    unsafe = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "numpy" and any(a.name == "load" for a in node.names):
            unsafe.append(node.lineno)  # a bare `load(…)` could not be told apart from other loads
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("np", "numpy")
        ):
            flags = [k.value for k in node.keywords if k.arg == "allow_pickle"]
            if not (len(flags) == 1 and isinstance(flags[0], ast.Constant) and flags[0].value is False):
                unsafe.append(node.lineno)
    return unsafe


def test_every_np_load_in_product_code_refuses_pickles_explicitly():
    checked = 0
    for path in _our_sources():
        source = path.read_text("utf-8")
        assert _unsafe_np_loads(source) == [], path
        checked += source.count("np.load(")
    assert checked >= 2  # the index's lexical matrices and its vectors are read this way
    # The check itself: a call that leaves the default (or passes anything but False) fails it.
    assert _unsafe_np_loads("import numpy as np\nnp.load(p)\nnp.load(p, allow_pickle=flag)\n") == [2, 3]
    assert _unsafe_np_loads("from numpy import load\n") == [1]
    assert _unsafe_np_loads("np.load(p, allow_pickle=False)\n") == []


def test_answering_never_touches_the_network(config_factory, tiny_model, monkeypatch):
    """With the index built, questions, pages and paragraphs need no socket, lexical or hybrid."""
    for dense in (DenseSettings(mode="off"), DenseSettings(mode="required", model=str(tiny_model))):
        config = config_factory(dense=dense, fusion=FusionSettings(dense_weight=0.5))
        open_retriever(config.corpus_path, config.index_path, config.engine)  # the build may fetch a model
        attempts: list[object] = []

        def refuse(*args, attempts=attempts):
            attempts.append(args)
            raise OSError("no network while answering")

        with monkeypatch.context() as guard:
            guard.delenv("HF_HUB_OFFLINE", raising=False)  # the code itself must stay offline, not the test's env
            guard.setattr(socket.socket, "connect", refuse)
            guard.setattr(socket, "getaddrinfo", refuse)
            retriever, report = open_retriever(config.corpus_path, config.index_path, config.engine)
            assert report is None and retriever.mode == ("lexical" if dense.mode == "off" else "hybrid")
            conversation = Conversation(retriever, config.answer)
            for question in [json.loads(line)["question"] for line in DEV_QUESTIONS.read_text("utf-8").splitlines()]:
                conversation.ask(question)
                conversation.more()
                conversation.open(1)
        assert attempts == []


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
        ("..", ""),
        ("a/..\\.txt", ""),
    ],
)
def test_upload_names_cannot_leave_the_corpus_folder_or_bring_other_types(sent, kept):
    assert safe_name(sent) == kept


@pytest.mark.parametrize("sent", ["讲" * 90 + ".txt", "x" * 400 + ".docx", "../" * 50 + "讲话" * 100 + ".md"])
def test_long_upload_names_are_shortened_to_a_name_that_can_be_written(sent, tmp_path):
    kept = safe_name(sent)
    assert len(kept.encode()) <= MAX_NAME_BYTES and Path(kept).suffix == Path(sent).suffix
    assert "/" not in kept and "\\" not in kept and not kept.startswith(".")
    suffix = Path(sent).suffix
    neighbour = sent.removesuffix(suffix) + "另" + suffix  # differs only past where the name is cut
    assert safe_name(sent) == kept != safe_name(neighbour)  # the same each time, and apart from its neighbours
    atomic_write_bytes(tmp_path / kept, b"x")  # the temporary name beside it fits too
    assert (tmp_path / kept).read_bytes() == b"x"


def test_the_token_never_reaches_the_log_of_the_real_entry_point(tmp_path: Path):
    """`speechqa -v bot` with httpx and python-telegram-bot at DEBUG: they log every request URL."""
    api = FakeBotApi(TOKEN).start()
    write_config_file(tmp_path, REPO / "data" / "speeches")
    # The entry point sets up logging; the libraries' own levels are raised only after it did.
    verbose = (
        "import logging, sys\n"
        "import bot.telegram.app\n"
        "run = bot.telegram.app.run_bot\n"
        "def noisy(config, token):\n"
        "    for name in ('httpx', 'httpcore', 'telegram'):\n"
        "        logging.getLogger(name).setLevel(logging.DEBUG)\n"
        "    run(config, token)\n"
        "bot.telegram.app.run_bot = noisy\n"
        "from bot.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{api.port}"}
    command = [sys.executable, "-c", verbose, "--config", str(tmp_path / "config.toml"), "-v", "bot"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        api.fail("getUpdates", 502, "Bad Gateway")  # errors and retries log too
        api.drop("sendMessage")
        question = api.send_text(1001, "“春风行动”坚持了多少年？")
        deadline = time.monotonic() + 60
        while not api.reply_to(question) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert api.reply_to(question) is not None
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        api.stop()
    assert process.returncode == 0, err
    assert "HTTP Request: POST" in err and "/bot<redacted>/getUpdates" in err  # URLs were logged, redacted
    assert "sendMessage" in err and "Bad Gateway" in err
    assert "TEST-TOKEN" not in out + err


def test_the_config_has_no_place_for_the_token(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text('[telegram]\ntoken = "123456:SECRET"\n', "utf-8")
    with pytest.raises(ConfigError, match="unknown key") as raised:
        load_config(str(config))
    assert "SECRET" not in str(raised.value)


def test_tests_cannot_reach_the_network():
    with socket.socket() as sock, pytest.raises(OSError, match="network access disallowed"):
        sock.connect(("192.0.2.1", 443))
