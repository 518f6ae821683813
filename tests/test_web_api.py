"""The HTTP API in-process: the same answers as `ask --json`, paging, paragraphs, errors, limits, token, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")

from fastapi.testclient import TestClient

from bot.cli import main
from bot.config import Config, WebSettings, load_config
from bot.web.app import STATIC, create_app
from bot.web.guard import RateLimiter
from bot.web.service import Busy, Service
from embeddings.engine import open_retriever
from embeddings.errors import CorpusError
from embeddings.retrieval.retrieve import Retriever
from tests.conftest import make_config, write_config_file

QUESTION = "工匠日是怎么设立的？"


def ready(client: TestClient) -> None:
    for _ in range(200):
        if client.get("/api/health").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("the index never became ready")


@pytest.fixture
def serve(shipped_retriever: Retriever, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """A started app over the shipped speeches; keyword arguments replace [web] settings."""
    clients: list[TestClient] = []

    def start(token: str = "", client: tuple[str, int] = ("testclient", 50000), **web: Any) -> TestClient:
        config = replace(make_config(tmp_path, tmp_path / "index"), web=replace(WebSettings(), **web))
        test_client = TestClient(create_app(config, lambda: shipped_retriever, token), client=client)
        clients.append(test_client.__enter__())
        ready(test_client)
        return test_client

    yield start
    for test_client in clients:
        test_client.__exit__(None, None, None)


def test_ask_is_exactly_ask_json(tmp_path: Path, corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = write_config_file(tmp_path, corpus_dir)
    assert main(["--config", str(config_file), "ask", QUESTION, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    config = load_config(str(config_file))
    opener = lambda: open_retriever(config.corpus_path, config.index_path, config.engine)[0]  # noqa: E731
    with TestClient(create_app(config, opener)) as client:
        ready(client)
        response = client.post("/api/ask", json={"question": QUESTION})
    assert response.status_code == 200
    assert response.json() == printed
    assert printed["found"] and printed["direct_answer"] and printed["hits"]


def test_more_continues_the_ranking(serve: Callable[..., TestClient], shipped_retriever: Retriever) -> None:
    client = serve()
    first = client.post("/api/ask", json={"question": "工会组建工作怎么做？"}).json()
    second = client.post("/api/more", json={"question": "工会组建工作怎么做？", "offset": len(first["hits"])}).json()
    ranks = [hit["rank"] for hit in first["hits"] + second["hits"]]
    assert ranks == list(range(1, len(ranks) + 1)) and len(second["hits"]) > 0
    expected = shipped_retriever.search("工会组建工作怎么做？", top_k=len(ranks)).hits
    assert [hit["passage_id"] for hit in first["hits"] + second["hits"]] == [h.passage.passage_id for h in expected]
    assert second["direct_answer"] == []  # a later page lists passages; the answer was given once
    beyond = client.post("/api/more", json={"question": "工会组建工作怎么做？", "offset": 49}).json()
    assert len(beyond["hits"]) <= 1


def test_paragraph_in_context(serve: Callable[..., TestClient], shipped_retriever: Retriever) -> None:
    client = serve()
    hit = client.post("/api/ask", json={"question": QUESTION}).json()["hits"][0]
    view = client.get(f"/api/paragraphs/{hit['passage_id']}").json()
    start, end = view["passage"]
    assert view["text"][start:end] == hit["text"] and view["citation"] == hit["citation"]
    speech = shipped_retriever.speeches[hit["speech_id"]]
    paragraphs = [speech.text[p.start : p.end] for p in speech.paragraphs]
    number = hit["paragraph_no"]
    assert view["text"] == paragraphs[number - 1]
    assert view["before"] == (paragraphs[number - 2] if number > 1 else "")
    assert view["after"] == (paragraphs[number] if number < len(paragraphs) else "")
    missing = client.get("/api/paragraphs/no-such-passage")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_speeches_and_health(serve: Callable[..., TestClient], shipped_retriever: Retriever) -> None:
    client = serve()
    listed = client.get("/api/speeches").json()["speeches"]
    assert {s["speech_id"] for s in listed} == set(shipped_retriever.speeches)
    assert sum(s["passages"] for s in listed) == len(shipped_retriever.passages)
    assert all(s["title"] and s["paragraphs"] > 0 for s in listed)
    health = client.get("/api/health").json()
    assert health["status"] == "ready" and health["mode"] == "lexical"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"question": "   "}, "empty_question"),
        ({"question": "问" * 501}, "question_too_long"),
        ({"question": "？！😀"}, "no_words"),
        ({"q": QUESTION}, "bad_request"),
        ({"question": 5}, "bad_request"),
    ],
)
def test_bad_questions_are_400(serve: Callable[..., TestClient], body: dict[str, Any], code: str) -> None:
    response = serve().post("/api/ask", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_errors_are_json_with_their_status(serve: Callable[..., TestClient]) -> None:
    client = serve(max_body_bytes=2048)
    assert client.get("/api/nothing-here").json()["error"]["code"] == "not_found"
    big = json.dumps({"question": "问" * 2000}).encode()
    declared = client.post("/api/ask", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"
    # Chunked, with no Content-Length to trust: counted as it arrives.
    chunked = client.post(
        "/api/ask", content=iter([big[:1000], big[1000:]]), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200


def test_rate_limit_per_client(serve: Callable[..., TestClient]) -> None:
    client = serve(rate_limit_per_minute=3)
    statuses = [client.post("/api/ask", json={"question": QUESTION}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.post("/api/ask", json={"question": QUESTION})
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["retry-after"]) >= 1
    assert client.get("/api/health").status_code == 200  # health checks are never limited
    other = serve(rate_limit_per_minute=3, client=("10.0.0.9", 1))
    assert other.post("/api/ask", json={"question": QUESTION}).status_code == 200


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.wait("a"), limiter.wait("a")] == [0.0, 0.0]
    assert limiter.wait("a") == pytest.approx(30.0)
    assert limiter.wait("b") == 0.0
    now[0] = 30.0
    assert limiter.wait("a") == 0.0 and limiter.wait("a") > 0


def test_503_while_the_index_is_built(shipped_retriever: Retriever, tmp_path: Path) -> None:
    built = threading.Event()

    def slow_open() -> Retriever:
        built.wait(10)
        return shipped_retriever

    with TestClient(create_app(make_config(tmp_path, tmp_path / "index"), slow_open)) as client:
        waiting = client.post("/api/ask", json={"question": QUESTION})
        assert waiting.status_code == 503 and waiting.json()["error"]["code"] == "unavailable"
        assert waiting.headers["retry-after"] == "5"
        assert client.get("/api/health").json()["status"] == "building"
        built.set()
        ready(client)
        assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        (CorpusError("the corpus folder does not exist", "set [corpus] path"), "the corpus folder does not exist"),
        (PermissionError(13, "Permission denied", "/srv/index"), "Permission denied (/srv/index)"),
        (RuntimeError("a bug"), "an unexpected error"),
    ],
)
def test_an_index_that_cannot_open_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, failure: Exception, logged: str
) -> None:
    def broken() -> Retriever:
        raise failure

    with TestClient(create_app(make_config(tmp_path, tmp_path / "index"), broken)) as client:
        for _ in range(100):
            if client.get("/api/health").json()["status"] == "failed":
                break
            time.sleep(0.02)
        response = client.post("/api/ask", json={"question": QUESTION})
    assert response.status_code == 503 and response.json()["error"]["message"] == "the index could not be opened"
    assert any(logged in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_waiting_questions_are_bounded(shipped_retriever: Retriever, tmp_path: Path) -> None:
    release = threading.Event()

    def blocked(retriever: Retriever) -> int:
        release.wait(10)
        return len(retriever.passages)

    config = replace(Config(), web=WebSettings(retrieval_threads=1, max_pending=2))
    service = Service(config, lambda: shipped_retriever)

    async def scenario() -> list[Any]:
        await service.load()
        first = [asyncio.ensure_future(service.run(blocked)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await service.run(blocked)
        release.set()
        return await asyncio.gather(*first)

    try:
        assert asyncio.run(scenario()) == [len(shipped_retriever.passages)] * 2
    finally:
        service.close()


def test_token_is_required_and_never_logged(serve: Callable[..., TestClient], caplog: pytest.LogCaptureFixture) -> None:
    token = "s3cret-token-value"
    client = serve(token=token)
    caplog.set_level(logging.DEBUG)
    assert client.post("/api/ask", json={"question": QUESTION}).status_code == 401
    wrong = client.post("/api/ask", json={"question": QUESTION}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    good = client.post("/api/ask", json={"question": QUESTION}, headers={"Authorization": f"Bearer {token}"})
    assert good.status_code == 200
    assert client.get("/").status_code == 200 and client.get("/api/health").status_code == 200
    assert all(token not in record.getMessage() for record in caplog.records)
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("path=/api/ask status=200" in line and "found=True hits=5" in line for line in info)
    assert all(QUESTION not in line for line in info)
    assert any(QUESTION in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)


def test_page_is_self_contained_and_inserts_text_only(serve: Callable[..., TestClient]) -> None:
    client = serve()
    page = client.get("/")
    assert page.status_code == 200 and "讲话问答" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC / name).read_text("utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        assert client.get(f"/static/{name}").status_code == 200
    script = (STATIC / "app.js").read_text("utf-8")
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    schema = client.get("/api/openapi.json").json()
    assert {"/api/ask", "/api/more", "/api/paragraphs/{passage_id}", "/api/speeches", "/api/health"} <= set(
        schema["paths"]
    )
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_a_request_is_one_log_line_even_with_a_newline_in_its_path(
    serve: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = serve()
    caplog.set_level(logging.INFO, logger="bot.web")
    assert client.get("/api/paragraphs/x%0Arequest%20method=GET%20status=200").status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    assert len(lines) == 1 and "\n" not in lines[0] and "status=404" in lines[0]


def test_guessing_the_token_is_rate_limited(serve: Callable[..., TestClient]) -> None:
    client = serve(token="right", rate_limit_per_minute=3)
    guesses = [client.get("/api/speeches", headers={"Authorization": f"Bearer guess{i}"}).status_code for i in range(4)]
    assert guesses == [401, 401, 401, 429]


def test_an_engine_failure_is_a_json_500(shipped_retriever: Retriever, tmp_path: Path, monkeypatch) -> None:
    def broken(*_: object) -> dict[str, Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr("bot.web.service.ask", broken)
    app = create_app(make_config(tmp_path, tmp_path / "index"), lambda: shipped_retriever)
    with TestClient(app, raise_server_exceptions=False) as client:
        ready(client)
        response = client.post("/api/ask", json={"question": QUESTION})
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal"
