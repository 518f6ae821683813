"""Load test of `speechqa serve` on loopback, and the page's first answer in headless Chromium.

    python -m benchmarks.bench_web --clients 50 --questions 20

The server is the production command in its own process, over the shipped speeches, lexical. Three
measurements, each a fixed number of requests:

- overhead: each held-out question asked alone through HTTP (after a warm-up) against the same
  question answered in this process by the engine (`Retriever.search`, and search plus composing the
  answer); the floor is HTTP p50 at most 15 ms above the search p50;
- load: `--clients` clients, each on its own connection and client address (X-Forwarded-For, which
  uvicorn trusts from loopback, so each meets its own rate limit), ask `--questions` questions one
  after another, all clients at once; the floor is every question answered (200 and the answer to
  that question) and p95 ≤ 300 ms. The clients speak HTTP/1.1 themselves (see `Connection`);
- page: `/?q=…` loaded `--page-loads` times in headless Chromium; the time from navigation start to
  the frame that shows the answer (a mark the page sets once it has painted); the floor is 1 s.

Prints JSON with the figures, the machine's load average before and after, and whether each floor
holds. `--screenshot PATH` also saves the page with its answer (docs/web.png in the README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bot.config import load_config
from bot.web.service import ask
from embeddings.engine import open_retriever

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "benchmarks" / "questions" / "speeches-heldout.jsonl"
OVERHEAD_FLOOR_MS, P95_FLOOR_MS, PAINT_FLOOR_MS = 15.0, 300.0, 1000.0
ROUNDS = 3
# Milliseconds from navigation start to the mark the page sets once the answer has painted.
PAINTED = "const m = performance.getEntriesByName('speechqa-answer-painted'); return m.length ? m[0].startTime : null"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def questions() -> list[str]:
    return [json.loads(line)["question"] for line in QUESTIONS.read_text("utf-8").splitlines() if line.strip()]


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    shutil.copytree(REPO / "data" / "speeches", root / "speeches")
    jieba = REPO / "data" / "jieba"
    config = root / "config.toml"
    config.write_text(
        f'[corpus]\npath = "{root / "speeches"}"\nindex_dir = "{root / "index"}"\n'
        f'[lexical]\nuser_dict = "{jieba / "userdict.txt"}"\nstopwords = "{jieba / "stopwords.txt"}"\n'
        f'question_frames = "{jieba / "question_frames.txt"}"\n[dense]\nmode = "off"\n',
        "utf-8",
    )
    log = root / "server.log"
    command = [sys.executable, "-m", "bot.cli", "--config", str(config), "serve", "--port", "0"]
    with log.open("wb") as sink:
        server = subprocess.Popen(command, cwd=REPO, stderr=sink)
    for _ in range(600):
        found = re.search(r"serving (http://127\.0\.0\.1:\d+)/", log.read_text("utf-8"))
        if found:
            break
        time.sleep(0.05)
    else:
        server.kill()
        raise SystemExit(f"the server did not start:\n{log.read_text('utf-8')}")
    url = found.group(1)
    for _ in range(600):
        if httpx.get(f"{url}/api/health").status_code == 200:
            return server, url, config
        time.sleep(0.1)
    server.kill()
    raise SystemExit("the index never became ready")


def overhead(url: str, config_file: Path, asked: list[str]) -> dict[str, float]:
    config = load_config(str(config_file))
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    search, answer, http = [], [], []
    # One connection; each timed question from its own client address, so none meets the rate limit.
    with httpx.Client(base_url=url) as client:
        for question in asked[:5]:  # warm-up, untimed
            client.post("/api/ask", json={"question": question}, headers={"X-Forwarded-For": "10.1.255.1"})
            ask(retriever, question, config.answer)
        for round_number in range(ROUNDS):
            for i, question in enumerate(asked):
                started = time.perf_counter()
                retriever.search(question, top_k=config.answer.top_k)
                search.append(time.perf_counter() - started)
                started = time.perf_counter()
                ask(retriever, question, config.answer)
                answer.append(time.perf_counter() - started)
                started = time.perf_counter()
                address = {"X-Forwarded-For": f"10.1.{round_number}.{i % 250 + 1}"}
                response = client.post("/api/ask", json={"question": question}, headers=address)
                http.append(time.perf_counter() - started)
                response.raise_for_status()
    ms = {
        name: statistics.median(values) * 1000
        for name, values in (("search", search), ("answer", answer), ("http", http))
    }
    return {
        "questions": len(http),
        "search_p50_ms": round(ms["search"], 2),
        "search_and_compose_p50_ms": round(ms["answer"], 2),
        "http_p50_ms": round(ms["http"], 2),
        "overhead_p50_ms": round(ms["http"] - ms["search"], 2),
    }


class Connection:
    """One client's keep-alive HTTP/1.1 connection, as lean as can be: on 2 cores the load generator
    competes with the server, and httpx costs about as much CPU per request as the server does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self._reader, self._writer, self._head = reader, writer, head

    @classmethod
    async def open(cls, url: str, client_address: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        head = f"POST /api/ask HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        return cls(reader, writer, f"{head}X-Forwarded-For: {client_address}\r\n".encode())

    async def ask(self, question: str) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"question": question}).encode()
        self._writer.write(self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status = int((await self._reader.readline()).split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, json.loads(await self._reader.readexactly(length))

    def close(self) -> None:
        self._writer.close()


async def load(url: str, asked: list[str], clients: int, per_client: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(number: int, connection: Connection) -> None:
        for i in range(per_client):
            question = asked[(number * per_client + i) % len(asked)]
            started = time.perf_counter()
            status, answer = await connection.ask(question)
            latencies.append(time.perf_counter() - started)
            answered = status == 200 and answer.get("question") == question and "hits" in answer
            statuses[status if answered else -status] = statuses.get(status if answered else -status, 0) + 1

    connections = [await Connection.open(url, f"10.2.{n // 250}.{n % 250 + 1}") for n in range(clients)]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(n, connection) for n, connection in enumerate(connections)))
    finally:
        for connection in connections:
            connection.close()
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "questions": clients * per_client,
        "answered": statuses.get(200, 0),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "answers_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def page(url: str, question: str, loads: int, profile: Path, screenshot: Path | None) -> dict[str, Any]:
    from tests.webtools import CHROMEDRIVER, CHROMIUM, chromium

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        return {"skipped": "needs Debian's chromium and chromium-driver"}

    painted, wall = [], []
    driver = chromium(profile, 880, 1040)
    try:
        for _ in range(loads + 1):  # the first load warms the browser's cache and is not counted
            started = time.perf_counter()
            driver.get(f"{url}/?q={quote(question)}")
            mark = None
            for _ in range(200):
                mark = driver.execute_script(PAINTED)
                if mark is not None:
                    break
                time.sleep(0.01)
            if mark is None:
                raise SystemExit("the page never showed an answer")
            painted.append(float(mark))
            wall.append((time.perf_counter() - started) * 1000)
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    painted, wall = painted[1:], wall[1:]
    return {
        "loads": loads,
        "answer_painted_median_ms": round(statistics.median(painted), 1),
        "answer_painted_max_ms": round(max(painted), 1),
        "driver_wall_median_ms": round(statistics.median(wall), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--questions", type=int, default=20, help="questions per client")
    parser.add_argument("--page-loads", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, help="save the page with its answer as a PNG here")
    args = parser.parse_args()
    asked = questions()
    # Other work on the machine slows the server (one Python process) and the clients alike.
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        server, url, config = start_server(Path(folder))
        try:
            report: dict[str, Any] = {"overhead": overhead(url, config, asked)}
            report["load"] = asyncio.run(load(url, asked, args.clients, args.questions))
            report["page"] = page(
                url, "工匠日是怎么设立的？", args.page_loads, Path(folder) / "profile", args.screenshot
            )
        finally:
            server.terminate()
            server.wait(30)
    report["machine"] = {"cpus": os.cpu_count(), "load_average_1min": [before, os.getloadavg()[0]]}
    page_ms = report["page"].get("answer_painted_max_ms")
    report["floors"] = {
        f"overhead p50 ≤ {OVERHEAD_FLOOR_MS:.0f} ms": report["overhead"]["overhead_p50_ms"] <= OVERHEAD_FLOOR_MS,
        "every question answered": report["load"]["answered"] == report["load"]["questions"],
        f"load p95 ≤ {P95_FLOOR_MS:.0f} ms": report["load"]["p95_ms"] <= P95_FLOOR_MS,
        f"answer painted ≤ {PAINT_FLOOR_MS:.0f} ms": page_ms is not None and page_ms <= PAINT_FLOOR_MS,
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
