"""Load test of the Telegram bot: simulated users ask questions through the fake Bot API on loopback.

    python -m benchmarks.bench_bot --users 200 --questions 5 --fault-rate 0.1 --seed 7
    python -m benchmarks.bench_bot --rate 25 --users 750 --dense   # 25 new users a second, for 30 s
    python -m benchmarks.bench_bot --chaos-kills 3 --users 60 --seed 1   # SIGKILLs: see bench_chaos

Each user asks its questions one after another, waiting for each answer (as people do). With
`--rate`, the load is open instead: a new user arrives every 1/rate seconds and asks one question,
whether or not earlier ones have been answered. The bot answers lexical-only unless `--dense`
gives it the config's `[dense]` settings (the default config's model, with its shipped vectors).
The bot is the production application with its production rate limiter, so Telegram's ~30
messages per second overall limit is part of what is measured. With `--fault-rate`, that share of
sendMessage, sendChatAction and getUpdates calls fails at random: 429 (retry after 1 s), 500, a
dropped connection, or a response slower than the client's read timeout to a request that was
executed.

Prints JSON: the retrieval mode and model, questions answered, lost (never answered), duplicated
(answered more than once), throughput, update→first reply latency percentiles in milliseconds,
the faults actually injected, errors logged and whether the bot stopped polling (crashed), and
memory: RSS sampled every 0.5 s, its peak and the median of the first and last quarter of the run
(flat memory: the two are close). The RSS is this process's, which also runs the fake server and
the simulated users. The bot logs as `speechqa bot` does (its own lines from INFO, redacted);
`token_in_logs` counts lines that still show the bot token, which must be none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import bench_chaos
from bot.access import protect_handlers
from bot.config import load_config
from bot.replies import SORRY
from bot.telegram.state import STATE_KEY
from embeddings.settings import DenseSettings
from tests.fakebotapi import FakeBotApi, drive

REPO = Path(__file__).resolve().parents[1]
DEV_SET = REPO.parent / "shared" / "eval" / "speeches-dev.jsonl"
TOKEN = "123456:BENCH-TOKEN-abcdef"
FALLBACK = (
    "工匠日是怎么设立的？",
    "“春风行动”坚持了多少年？",
    "好干部的标准是什么？",
    "工会领导干部需要具备哪些能力？",
)
FAULTY_METHODS = ("sendMessage", "sendChatAction", "getUpdates")


def dev_questions() -> list[str]:
    if not DEV_SET.is_file():
        return list(FALLBACK)
    lines = DEV_SET.read_text("utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()] or list(FALLBACK)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class RssSampler:
    """Samples this process's resident memory every `every` seconds in a thread."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (perf_counter, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), rss_mb()))
            if self._stop.wait(self.every):
                return

    def quarters(self, start: float, end: float) -> tuple[float, float]:
        """Median RSS over the first and the last quarter of [start, end]."""
        span = max(end - start, 1e-9)
        first = [mb for at, mb in self.samples if start <= at <= start + span / 4]
        last = [mb for at, mb in self.samples if end - span / 4 <= at <= end]
        return (statistics.median(first) if first else 0.0, statistics.median(last) if last else 0.0)


def rss_mb() -> float:
    try:
        with Path("/proc/self/statm").open() as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
    except OSError:  # not Linux: the peak so far is the best available figure
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class LogCapture(logging.Handler):
    """Every line logged during the run, as the operator's log would hold it: (level, text)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, self.format(record)))


def run(
    users: int = 50,
    questions: int = 4,
    fault_rate: float = 0.0,
    seed: int = 0,
    timeout: float = 5.0,
    *,
    rate: float = 0.0,
    dense: bool = False,
) -> dict[str, Any]:
    """Run the load test and return its figures (see the module docstring); `timeout` is the client's.

    `rate` > 0: users arrive at that many a second, one question each (`questions` is then 1);
    `dense`: the config's `[dense]` settings instead of lexical-only retrieval."""
    questions = 1 if rate > 0 else questions
    pool, rng = dev_questions(), random.Random(seed)
    plan = {1_000_000 + user: [rng.choice(pool) for _ in range(questions)] for user in range(users)}
    with tempfile.TemporaryDirectory(prefix="bench-bot-") as folder:
        root = Path(folder)
        shutil.copytree(REPO / "data" / "speeches", root / "speeches")
        base = load_config(str(REPO / "config.toml"))
        config = replace(
            base,
            corpus=replace(base.corpus, path=str(root / "speeches"), index_dir=str(root / "index")),
            dense=base.dense if dense else DenseSettings(mode="off"),
            telegram=replace(
                base.telegram,
                feedback_db=str(root / "log.sqlite3"),
                rate_limit_per_minute=max(base.telegram.rate_limit_per_minute, questions),
            ),
        )
        api = FakeBotApi(TOKEN, seed=seed, slow_seconds=timeout + 0.5).start()
        # The fake server sends a response's headers and body in two writes; on a kept-alive loopback
        # connection Nagle's algorithm holds the body until the client's delayed ACK: ~40 ms a request,
        # so at most ~20 answers/s, whatever the bot does. Telegram's servers answer without it. Only
        # this server's own handler class is changed: the tests' timings stay as they were.
        handler: Any = api._server.RequestHandlerClass
        handler.disable_nagle_algorithm = True
        if fault_rate:
            api.random_faults(fault_rate, FAULTY_METHODS)
        asked: list[tuple[dict[str, Any], float]] = []
        latencies: list[float] = []
        clock: dict[str, float] = {}
        alive: dict[str, bool] = {}
        retrieval: dict[str, str] = {}
        log = LogCapture()
        protect_handlers(TOKEN, [log])  # as `speechqa bot` does for its log handlers
        crash = ""

        async def user(user_id: int) -> None:
            for question in plan[user_id]:
                sent_at = time.perf_counter()
                message = api.send_text(user_id, question)
                asked.append((message, sent_at))
                try:
                    reply = await api.reply_for(message, within=120)
                except AssertionError:  # counted as lost below unless it turns up later
                    continue
                latencies.append((reply.at - sent_at) * 1000)

        def all_answered() -> bool | None:
            replied = {(sent.chat_id, sent.reply_to) for sent in api.sent}
            return all((m["chat"]["id"], m["message_id"]) in replied for m, _ in asked) or None

        async def arrivals() -> None:
            """User i asks at start + i / rate, on time however far behind the answers are.

            One watcher waits for all the answers: a poller per waiting user, as `user` has, scans
            every message sent 100 times a second, and hundreds of them would take the CPU measured."""
            for i, user_id in enumerate(plan):
                await asyncio.sleep(max(0.0, clock["start"] + i / rate - time.perf_counter()))
                sent_at = time.perf_counter()
                asked.append((api.send_text(user_id, plan[user_id][0]), sent_at))
            clock["last_arrival"] = time.perf_counter()
            with contextlib.suppress(AssertionError):  # counted as lost below unless it turns up later
                await api.until(all_answered, within=120)

        async def scenario(app: Any) -> None:
            retriever = app.bot_data[STATE_KEY].retriever
            retrieval.update(mode=retriever.mode, model=retriever.embedder.name if retriever.embedder else "")
            clock["start"] = time.perf_counter()
            await (arrivals() if rate > 0 else asyncio.gather(*(user(user_id) for user_id in plan)))
            clock["end"] = time.perf_counter()
            # a duplicate comes after the first answer, at worst after a slow response and a retry
            await asyncio.sleep(timeout + 2.0)
            alive["polling"] = bool(app.updater.running and app.running)

        bot_logger = logging.getLogger("bot")
        bot_level = bot_logger.level
        bot_logger.setLevel(logging.INFO)  # as `speechqa bot` logs without -v
        logging.getLogger().addHandler(log)
        try:
            with RssSampler() as memory:
                drive(api, config, scenario, timeout=timeout)
        except Exception as error:  # the figures must still come out, saying the bot crashed
            crash = repr(error)
        finally:
            logging.getLogger().removeHandler(log)
            bot_logger.setLevel(bot_level)
            api.stop()
        replies = [len(api.replies_to(message)) for message, _ in asked]
        if rate > 0:  # update → first reply, from the server's own clock as `user` measures it
            first_replies = ((api.replies_to(message), sent_at) for message, sent_at in asked)
            latencies = [(found[0].at - sent_at) * 1000 for found, sent_at in first_replies if found]
        apologies = sum(1 for message, _ in asked if any(r.text == SORRY for r in api.replies_to(message)))
    start, end = clock.get("start", 0.0), clock.get("end", 0.0)
    first, last = memory.quarters(start, end)
    answered = sum(1 for n in replies if n >= 1) - apologies
    arrived_in = clock.get("last_arrival", 0.0) - start
    return {
        "users": users,
        "questions_per_user": questions,
        "rate_per_s": rate,  # 0: each user waits for its answer before asking again
        "arrivals_per_s": round((users - 1) / arrived_in, 2) if rate > 0 and arrived_in > 0 else None,
        "retrieval": retrieval,
        "fault_rate": fault_rate,
        "seed": seed,
        "questions": len(asked),
        "answered": answered,
        "apologised": apologies,  # "something went wrong" instead of an answer: counted as lost
        "lost": users * questions - answered,
        "duplicated": sum(1 for n in replies if n > 1),
        "throughput_answers_per_s": round(answered / (end - start), 2) if end > start else 0.0,
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p95": round(percentile(latencies, 0.95), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        },
        "wall_seconds": round(end - start, 2),
        "faults_injected": dict(sorted(api.injected.items())),
        "api_calls": len(api.calls),
        "api_calls_by_method": dict(sorted(Counter(method for method, _, _ in api.calls).items())),
        "errors_logged": sum(1 for level, _ in log.lines if level >= logging.ERROR),
        "log_lines": len(log.lines),
        "token_in_logs": sum(1 for _, line in log.lines if TOKEN in line or TOKEN.split(":")[1] in line),
        "crashed": bool(crash) or not alive.get("polling", False),
        "crash": crash,
        "memory_mb": {
            "peak_rss": round(
                max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, *(mb for _, mb in memory.samples)]), 1
            ),
            "first_quarter_median": round(first, 1),
            "last_quarter_median": round(last, 1),
            "samples": len(memory.samples),
        },
        "problems": api.problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--questions", type=int, default=4, help="questions per user")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of API calls that fail (0 to 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="the bot's HTTP timeouts, in seconds")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="instead: a new user every 1/RATE s, one question each (open load)"
    )
    parser.add_argument(
        "--dense", action="store_true", help="retrieve with the config's [dense] settings (default: lexical only)"
    )
    parser.add_argument(
        "--chaos-kills", type=int, default=0, help="instead: each user asks once, the bot process is killed N times"
    )
    args = parser.parse_args()
    if args.chaos_kills:
        figures = bench_chaos.run(args.users, args.chaos_kills, args.seed)
    else:
        figures = run(
            args.users, args.questions, args.fault_rate, args.seed, args.timeout, rate=args.rate, dense=args.dense
        )
    print(json.dumps(figures, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
