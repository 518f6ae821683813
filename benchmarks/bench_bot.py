"""Load test of the Telegram bot: simulated users ask questions through the fake Bot API on loopback.

    python -m benchmarks.bench_bot --users 50 --questions 4 [--fault-rate 0.1] [--seed 7]

Each user asks its questions one after another, waiting for each answer (as people do). The bot
is the production application with its production rate limiter, so Telegram's ~30 messages per
second overall limit is part of what is measured. Prints JSON: questions answered, lost (no answer
in time) and duplicated (answered twice), update→reply latency percentiles in milliseconds, wall
time and peak RSS (of this process, which also runs the fake server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.config import load_config
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


def run(users: int = 50, questions: int = 4, fault_rate: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Run the load test and return its figures (see the module docstring)."""
    pool, rng = dev_questions(), random.Random(seed)
    plan = {1_000_000 + user: [rng.choice(pool) for _ in range(questions)] for user in range(users)}
    with tempfile.TemporaryDirectory(prefix="bench-bot-") as folder:
        root = Path(folder)
        shutil.copytree(REPO / "data" / "speeches", root / "speeches")
        base = load_config(str(REPO / "config.toml"))
        config = replace(
            base,
            corpus=replace(base.corpus, path=str(root / "speeches"), index_dir=str(root / "index")),
            dense=DenseSettings(mode="off"),
            telegram=replace(
                base.telegram,
                feedback_db=str(root / "log.sqlite3"),
                rate_limit_per_minute=max(base.telegram.rate_limit_per_minute, questions),
            ),
        )
        api = FakeBotApi(TOKEN, seed=seed).start()
        if fault_rate:
            api.random_faults(fault_rate, FAULTY_METHODS)
        asked: list[tuple[dict[str, Any], float]] = []
        latencies: list[float] = []
        lost = 0
        clock: dict[str, float] = {}

        async def user(user_id: int) -> None:
            nonlocal lost
            for question in plan[user_id]:
                sent_at = time.perf_counter()
                message = api.send_text(user_id, question)
                asked.append((message, sent_at))
                try:
                    reply = await api.reply_for(message, within=60)
                except AssertionError:
                    lost += 1
                    continue
                latencies.append((reply.at - sent_at) * 1000)

        async def scenario(app: Any) -> None:
            clock["start"] = time.perf_counter()
            await asyncio.gather(*(user(user_id) for user_id in plan))
            clock["end"] = time.perf_counter()
            await asyncio.sleep(1.0)  # a duplicate would arrive after the first answer

        try:
            drive(api, config, scenario, timeout=5.0)
        finally:
            api.stop()
        replies = [len(api.replies_to(message)) for message, _ in asked]
    return {
        "users": users,
        "questions_per_user": questions,
        "fault_rate": fault_rate,
        "seed": seed,
        "questions": len(asked),
        "answered": sum(1 for n in replies if n >= 1),
        "lost": lost,
        "duplicated": sum(1 for n in replies if n > 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p95": round(percentile(latencies, 0.95), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        },
        "wall_seconds": round(clock.get("end", 0.0) - clock.get("start", 0.0), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "problems": api.problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--questions", type=int, default=4, help="questions per user")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of API calls that fail (0 to 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(run(args.users, args.questions, args.fault_rate, args.seed), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
