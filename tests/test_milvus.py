"""The Milvus backend on Milvus Lite: the same answers as the local index, incremental writes, faults, sharing.

Milvus Lite 2.5 runs the real Milvus core in a child process, in-process for a file `uri` and as a
gRPC server on a loopback port (`LiteServer`) for the tests that need a server to stop and share.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from embeddings.engine import open_retriever
from embeddings.errors import SearchUnavailable
from embeddings.index.build import build_index
from embeddings.index.store import open_stored
from embeddings.ingest.corpus import load_corpus
from embeddings.retrieval.evaluate import load_questions
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import BackendSettings, DenseSettings, EngineSettings
from tests.conftest import LEAD_GOOSE, REPO, UNION, make_config, write_config_file
from tests.fakes import FakeEmbedder

if sys.platform == "win32":
    pytest.skip("Milvus Lite has no Windows build; the local backend is unaffected", allow_module_level=True)
pytest.importorskip("milvus_lite", reason='Milvus Lite is not installed: pip install "speechqa[milvus]"')

from embeddings.milvus import sync as milvus_sync
from embeddings.milvus.backend import milvus_for
from embeddings.milvus.client import Milvus
from embeddings.milvus.schema import META_KEY

HELD_OUT = REPO / "benchmarks" / "questions" / "speeches-heldout.jsonl"
QUESTION = "工匠日是怎么设立的？"


def on_milvus(settings: EngineSettings, uri: str, collection: str = "t", timeout_s: float = 10.0) -> EngineSettings:
    return replace(settings, backend=BackendSettings("milvus", uri, collection, timeout_s=timeout_s))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiteServer:
    """Milvus Lite serving one file on a loopback port: a stand-in for a Milvus server that can be stopped.

    Run as milvus-lite's own `Server` runs it, but stopped at once (its `stop` waits two seconds
    for a process that, serving a port, never exits by itself).
    """

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from milvus_lite.server import BIN_PATH, Server

        command = Server(str(self.db), f"127.0.0.1:{self.port}").args
        env = {**os.environ, "LD_LIBRARY_PATH": BIN_PATH, "DYLD_LIBRARY_PATH": BIN_PATH}
        self._process = subprocess.Popen(command, env=env, cwd=self.db.parent)
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("Milvus Lite did not start listening")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


@pytest.fixture
def lite_server(tmp_path: Path) -> Iterator[LiteServer]:
    server = LiteServer(tmp_path / "server.db")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hybrid_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EngineSettings]:
    """The shipped speeches, built once with the fake embedder (words and sentence vectors)."""
    root = tmp_path_factory.mktemp("hybrid")
    config = make_config(REPO / "data" / "speeches", root / "index")
    settings = replace(config.engine, dense=DenseSettings(mode="auto", model="fake-bigram-embedder"))
    build_index(load_corpus(config.corpus_path, settings.segment), settings, root / "index", embedder=FakeEmbedder())
    return root, settings


def test_same_hits_citations_and_abstention_as_the_local_index(hybrid_index: tuple[Path, EngineSettings]) -> None:
    root, settings = hybrid_index
    stored = open_stored(root / "index")
    embedder = FakeEmbedder()
    local = Retriever(stored, settings, embedder)
    remote_settings = on_milvus(settings, str(root / "same.db"))
    from embeddings.engine import remote

    milvus = Retriever(stored, remote_settings, embedder, remote=remote(remote_settings, False))
    assert local.mode == milvus.mode == "hybrid"
    questions = [q.question for q in load_questions(HELD_OUT)] + ["火星上有工会吗？", "量子计算机的原理是什么？"]
    answered = declined = 0
    for question in questions:
        a, b = local.search(question, top_k=5), milvus.search(question, top_k=5)
        assert [asdict(h.passage) for h in a.hits] == [asdict(h.passage) for h in b.hits], question
        assert [h.paragraph for h in a.hits] == [h.paragraph for h in b.hits], question
        assert a.answerable == b.answerable, question
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5), question
        assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], abs=1e-4), question
        assert [s[:2] for s in a.sentence_scores] == [s[:2] for s in b.sentence_scores], question
        assert [s[2] for s in a.sentence_scores] == pytest.approx([s[2] for s in b.sentence_scores], abs=1e-5)
        answered += a.answerable
        declined += not a.answerable
    assert answered > 50 and declined >= 2  # both outcomes were compared, not only one


def _corpus_with_third_speech(tmp_path: Path) -> Path:
    corpus = tmp_path / "speeches"
    shutil.copytree(REPO / "data" / "speeches", corpus)
    text = (corpus / UNION).read_text("utf-8").replace("工匠日", "工匠节")
    (corpus / "third-speech.txt").write_text(text, "utf-8")
    return corpus


def _reopen(corpus: Path, index: Path, uri: str) -> tuple[Retriever, Any]:
    config = make_config(corpus, index)
    settings = on_milvus(config.engine, uri)
    retriever, _ = open_retriever(corpus, index, settings)
    assert retriever.remote_words is not None
    return retriever, retriever.remote_words.ready.report


def _count(uri: str, collection: str) -> int:
    milvus = milvus_for(BackendSettings("milvus", uri, "t"))
    return int(
        milvus.call(lambda client: client.query(collection, filter="", output_fields=["count(*)"]))[0]["count(*)"]
    )


def test_a_new_changed_or_removed_speech_writes_only_its_own_rows(tmp_path: Path) -> None:
    corpus, index, uri = _corpus_with_third_speech(tmp_path), tmp_path / "index", str(tmp_path / "inc.db")
    _, first = _reopen(corpus, index, uri)
    assert (first.written, first.deleted, first.kept, first.recreated) == (3, 0, 0, True)

    (corpus / "third-speech.txt").write_text(
        (corpus / "third-speech.txt").read_text("utf-8") + "\n\n新增的一段：工匠节定在每年三月。\n", "utf-8"
    )
    retriever, changed = _reopen(corpus, index, uri)
    assert (changed.written, changed.deleted, changed.kept, changed.recreated) == (1, 0, 2, False)
    assert _count(uri, "t_passages") == len(retriever.passages)
    hits = retriever.search("工匠节定在每年几月？").hits
    assert hits and hits[0].passage.speech_id == "third-speech"

    (corpus / LEAD_GOOSE).unlink()
    retriever, removed = _reopen(corpus, index, uri)
    assert (removed.written, removed.deleted, removed.kept) == (0, 1, 2)
    assert _count(uri, "t_passages") == len(retriever.passages)
    assert all(hit.passage.speech_id != LEAD_GOOSE.removesuffix(".txt") for hit in retriever.search("头雁").hits)

    _, unchanged = _reopen(corpus, index, uri)
    assert unchanged is None  # in step: nothing written, not even read speech by speech


def test_milvus_loads_the_collections_while_the_local_index_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, index, uri = _corpus_with_third_speech(tmp_path), tmp_path / "index", str(tmp_path / "load.db")
    _reopen(corpus, index, uri)
    loads: list[Any] = []
    real_load = Milvus.load_meanwhile

    def noted(self: Milvus) -> Any:
        loads.append(real_load(self))
        return loads[-1]

    monkeypatch.setattr(Milvus, "load_meanwhile", noted)
    _reopen(corpus, index, uri)
    assert loads == []  # in step: nothing to build, nothing to load in advance
    (corpus / LEAD_GOOSE).unlink()
    _, removed = _reopen(corpus, index, uri)
    assert len(loads) == 1 and removed.deleted == 1
    loads[0].join(timeout=30)
    state = milvus_for(BackendSettings("milvus", uri, "t")).call(lambda client: client.get_load_state("t_passages"))
    assert "Loaded" in str(state["state"])


def test_an_interrupted_write_resumes_with_the_speeches_it_had_not_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus_with_third_speech(tmp_path)
    config = make_config(corpus, tmp_path / "index")
    retriever, _ = open_retriever(corpus, tmp_path / "index", config.engine)  # the local index only
    settings = on_milvus(config.engine, str(tmp_path / "resume.db"))
    milvus = milvus_for(settings.backend)
    monkeypatch.setattr(milvus_sync, "BATCH_ROWS", 1)  # one speech per batch
    real_write = milvus_sync._Writer.write
    batches: list[list[str]] = []

    def dies_at_the_second_batch(self: Any, batch: list[str]) -> None:
        batches.append(batch)
        if len(batches) == 2:
            raise SearchUnavailable("Milvus went away")
        real_write(self, batch)

    monkeypatch.setattr(milvus_sync._Writer, "write", dies_at_the_second_batch)
    with pytest.raises(SearchUnavailable):
        milvus_sync.sync(milvus, retriever.stored, settings)
    assert not milvus_sync.in_step(milvus, retriever.stored)
    monkeypatch.setattr(milvus_sync._Writer, "write", real_write)
    resumed = milvus_sync.sync(milvus, retriever.stored, settings)
    assert (resumed.written, resumed.kept, resumed.recreated) == (2, 1, False)
    assert milvus_sync.in_step(milvus, retriever.stored)
    assert _count(settings.backend.uri, "t_passages") == len(retriever.passages)


def test_rows_written_before_a_crash_are_replaced_on_resuming_not_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymilvus import MilvusClient

    corpus = _corpus_with_third_speech(tmp_path)
    config = make_config(corpus, tmp_path / "index")
    retriever, _ = open_retriever(corpus, tmp_path / "index", config.engine)
    settings = on_milvus(config.engine, str(tmp_path / "crash.db"))
    milvus = milvus_for(settings.backend)
    monkeypatch.setattr(milvus_sync, "BATCH_ROWS", 1)  # one speech per batch
    real_upsert = MilvusClient.upsert
    finished: list[str] = []

    def dies_before_the_second_record(self: Any, collection: str, rows: list[dict[str, Any]], **kw: Any) -> Any:
        """The rows of the second speech are in, its finished record is not: a kill at the worst moment."""
        if collection == "t_speeches" and rows[0]["digest"] != milvus_sync.PENDING and rows[0]["speech"] != META_KEY:
            if finished:
                raise RuntimeError("killed")
            finished.append(rows[0]["speech"])
        return real_upsert(self, collection, rows, **kw)

    monkeypatch.setattr(MilvusClient, "upsert", dies_before_the_second_record)
    with pytest.raises(SearchUnavailable):
        milvus_sync.sync(milvus, retriever.stored, settings)
    assert _count(settings.backend.uri, "t_passages") > len(retriever.speeches.passage_rows(finished[0]))
    monkeypatch.setattr(MilvusClient, "upsert", real_upsert)
    resumed = milvus_sync.sync(milvus, retriever.stored, settings)
    assert (resumed.written, resumed.kept) == (2, 1)
    assert _count(settings.backend.uri, "t_passages") == len(retriever.passages)


def test_cli_says_search_is_unavailable_in_one_line_within_the_timeout(
    tmp_path: Path, corpus_dir: Path, capsys
) -> None:
    from bot.cli import main

    config = write_config_file(tmp_path, corpus_dir)
    assert main(["--config", str(config), "index"]) == 0  # the local index is there; Milvus is what is missing
    capsys.readouterr()
    unreachable = f'[backend]\nkind = "milvus"\nuri = "http://127.0.0.1:{free_port()}"\ntimeout_s = 1\n'
    config.write_text(config.read_text("utf-8") + unreachable, "utf-8")
    started = time.perf_counter()
    assert main(["--config", str(config), "ask", QUESTION]) == 1
    elapsed = time.perf_counter() - started
    error, hint, *rest = capsys.readouterr().err.splitlines()
    assert error.startswith("speechqa: error: search is unavailable: Milvus at http://127.0.0.1:")
    assert hint.startswith("  next: start Milvus") and rest == []
    assert elapsed < 10  # two tries of a second each (opening, asking), and the start of the CLI
    assert main(["--config", str(config), "index"]) == 1  # `index` cannot claim success without Milvus
    assert "search is unavailable" in capsys.readouterr().err


def test_front_ends_say_unavailable_and_recover_by_themselves(tmp_path: Path, corpus_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from bot.web.app import create_app
    from tests.test_web_api import ready

    server = LiteServer(tmp_path / "outage.db")
    server.start()
    try:
        config = make_config(corpus_dir, tmp_path / "index")
        config = replace(config, backend=BackendSettings("milvus", server.uri, "outage", timeout_s=2))
        retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
        with TestClient(create_app(config, lambda: retriever)) as client:
            ready(client)
            before = client.post("/api/ask", json={"question": QUESTION})
            assert before.status_code == 200 and before.json()["found"]
            server.stop()
            started = time.perf_counter()
            during = client.post("/api/ask", json={"question": QUESTION})
            assert time.perf_counter() - started < 15
            assert during.status_code == 503 and during.json()["error"]["code"] == "search_unavailable"
            assert during.headers["Retry-After"]
            server.start()
            after = client.post("/api/ask", json={"question": QUESTION})
            assert after.status_code == 200 and after.json() == before.json()
    finally:
        server.stop()


def serving(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """A `speechqa serve --port 0` process and its address, once it answers health checks."""
    process = subprocess.Popen([*command, "serve", "--port", "0"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first = process.stderr.readline()
    port = re.search(r"serving http://127\.0\.0\.1:(\d+)/", first)
    assert port, first
    url = f"http://127.0.0.1:{port.group(1)}"
    for _ in range(600):
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/api/health"):
            return process, url
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def asked(url: str, question: str) -> dict[str, Any]:
    body = json.dumps({"question": question}).encode()
    request = urllib.request.Request(f"{url}/api/ask", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.load(response))


def test_two_serve_processes_and_a_bot_on_one_collection_answer_identically(
    tmp_path: Path, corpus_dir: Path, lite_server: LiteServer
) -> None:
    from tests.fakebotapi import FakeBotApi, drive

    config_file = write_config_file(tmp_path, corpus_dir)
    shared = f'[backend]\nkind = "milvus"\nuri = "{lite_server.uri}"\ncollection = "shared"\n'
    config_file.write_text(config_file.read_text("utf-8") + shared, "utf-8")
    command = [sys.executable, "-m", "bot.cli", "--config", str(config_file)]
    subprocess.run([*command, "index"], cwd=REPO, check=True, capture_output=True)
    servers = [serving(command) for _ in range(2)]
    try:
        served = [asked(url, QUESTION) for _, url in servers]
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(15)
    assert served[0] == served[1]
    assert served[0]["found"] and served[0]["direct_answer"] and served[0]["hits"]

    api = FakeBotApi("123456:TEST-TOKEN-abcdef").start()
    replies = []

    async def scenario(app: Any) -> None:
        replies.append(await api.reply_for(api.send_text(1001, QUESTION)))

    try:
        drive(api, load_config(str(config_file)), scenario)
    finally:
        api.stop()
    said = replies[0].text
    assert all(sentence["text"] in said for sentence in served[0]["direct_answer"])
    assert served[0]["hits"][0]["title"] in said


def test_the_bot_holds_a_question_while_search_is_down_and_answers_it_when_back(
    tmp_path: Path, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.config import TelegramSettings
    from bot.replies import SEARCH_UNAVAILABLE
    from bot.telegram import ledger
    from tests.fakebotapi import FakeBotApi, drive

    monkeypatch.setattr(ledger, "REQUEUE_EVERY", 0.05)  # the journal is looked at again at once
    monkeypatch.setattr(ledger, "REQUEUE_AFTER", 0.0)
    server = LiteServer(tmp_path / "bot.db")
    server.start()
    config = make_config(
        corpus_dir,
        tmp_path / "index",
        telegram=TelegramSettings(feedback_db=str(tmp_path / "log.sqlite3")),
        backend=BackendSettings("milvus", server.uri, "bot", timeout_s=1),
    )
    api = FakeBotApi("123456:TEST-TOKEN-abcdef").start()

    async def scenario(app: Any) -> None:
        first = await api.reply_for(api.send_text(1001, QUESTION))
        assert "工匠日" in first.text
        server.stop()
        question = api.send_text(1001, "“春风行动”坚持了多少年？")
        notice = await api.reply_for(question)
        assert notice.text == SEARCH_UNAVAILABLE
        server.start()
        answer = await api.reply_for(question, within=30, number=2)
        assert "一吹就是20年" in answer.text
        assert len(api.replies_to(question)) == 2  # told once, however many tries it took

    try:
        drive(api, config, scenario)
    finally:
        api.stop()
        server.stop()
    assert api.problems == []
