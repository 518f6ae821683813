"""`speechqa serve` as a process: it answers, stops cleanly on SIGTERM, and a taken port is a one-line error."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest

pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[web]')")

from bot.cli import main
from bot.web.app import create_app
from bot.web.serve import bind
from embeddings.retrieval.retrieve import Retriever
from tests.conftest import REPO, make_config, write_config_file
from tests.webtools import ThreadedServer


def test_serves_then_stops_on_sigterm(tmp_path: Path, corpus_dir: Path) -> None:
    config = write_config_file(tmp_path, corpus_dir)
    command = [sys.executable, "-m", "bot.cli", "--config", str(config), "serve", "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        port = re.search(r"serving http://127\.0\.0\.1:(\d+)/ \(access token off\)", first)
        assert port, first
        url = f"http://127.0.0.1:{port.group(1)}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/api/health") as response:
                    break
            except OSError:
                time.sleep(0.05)
        body = json.dumps({"question": "工匠日是怎么设立的？"}).encode()
        ask = urllib.request.Request(f"{url}/api/ask", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(ask) as response:
            assert json.load(response)["found"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        log = first + process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert "stopped" in log and "Traceback" not in log
    assert "工匠日" not in log  # questions stay out of the log at INFO
    assert "path=/api/ask status=200" in log


def test_port_in_use_is_one_line_and_the_next_step(tmp_path: Path, corpus_dir: Path, capsys) -> None:
    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        port = taken.getsockname()[1]
        config = write_config_file(tmp_path, corpus_dir)
        assert main(["--config", str(config), "serve", "--port", str(port)]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err and f"--port {port + 1}" in err
    assert "Traceback" not in err and len(err.splitlines()) == 2


@pytest.mark.parametrize(
    ("argument", "message"),
    [("--host=192.0.2.1", "cannot serve on 192.0.2.1"), ("--port=70000", "does not exist")],
)
def test_bad_address_is_one_line(tmp_path: Path, corpus_dir: Path, capsys, argument: str, message: str) -> None:
    config = write_config_file(tmp_path, corpus_dir)
    assert main(["--config", str(config), "serve", argument]) == 1
    err = capsys.readouterr().err
    assert message in err and "next:" in err and "Traceback" not in err


def test_requests_in_flight_finish_when_the_server_stops(shipped_retriever: Retriever, tmp_path: Path) -> None:
    release = threading.Event()

    class Slow:
        """The shipped retriever, with searches that wait for `release`."""

        def __getattr__(self, name: str) -> Any:
            return getattr(shipped_retriever, name)

        def search(self, *args: Any, **kwargs: Any) -> Any:
            release.wait(10)
            return shipped_retriever.search(*args, **kwargs)

    replies: list[dict[str, Any]] = []
    app = create_app(make_config(tmp_path, tmp_path / "index"), lambda: cast(Retriever, Slow()))
    with ThreadedServer(app) as server:
        for _ in range(200):
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{server.url}/api/health"):
                break
            time.sleep(0.02)
        body = json.dumps({"question": "工匠日是怎么设立的？"}).encode()
        request = urllib.request.Request(f"{server.url}/api/ask", body, {"Content-Type": "application/json"})
        asking = threading.Thread(target=lambda: replies.append(json.load(urllib.request.urlopen(request))))
        asking.start()
        time.sleep(0.3)  # the question is now waiting in the engine
        server.stop()
        time.sleep(0.5)
        with pytest.raises(OSError):  # no new connections once stopping
            urllib.request.urlopen(f"{server.url}/api/health", timeout=2)
        release.set()
        asking.join(10)
    assert replies and replies[0]["found"] is True
