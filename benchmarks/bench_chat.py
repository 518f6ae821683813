"""Floor benchmark of the DingTalk and Feishu bots: the real `speechqa dingtalk|feishu` process through a local fake.

    python -m benchmarks.bench_chat --platform dingtalk
    python -m benchmarks.bench_chat --platform feishu --users 50 --questions 4 --drops 2 --kills 1 --seed 0

`users` simulated users (each in a one-to-one chat) ask `questions` questions each, all starting
at the same moment; each waits for an answer and reads it for `think` seconds on average (half to
one and a half times that, seeded) before asking the next. With `--think 0` it is a stress test of
capacity, where the platform's send limit (`sends_per_second` in config.toml) sets the pace.
Meanwhile the fake drops the bot's
long connection `drops` times (without a closing handshake) and the bot process is SIGKILLed
`kills` times and restarted at once, at seeded moments spread over the run. The fake, like the
platform, delivers a message again until the bot acknowledges it.

Prints JSON: questions, answered, lost, duplicated (answered more than once) and how many a kill
allows (one per kill), latency from the frame's delivery to the reply's arrival at the fake (its
own clock: the last delivery before the first reply; a question answered from the journal after a
restart counts from its delivery before the kill), connections made, replays the restarted bot
logged, and the app secret's appearances in the bot's logs (must be none). The bot answers
lexical-only, as `bench_bot` does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_bot import dev_questions, percentile
from bot.replies import SORRY
from tests.conftest import write_config_file
from tests.fakechat import BotProcess, FakeDingTalk, FakeFeishu, FakePlatform
from tests.fakechat import dingtalk as fake_dingtalk
from tests.fakechat import feishu as fake_feishu

REPO = Path(__file__).resolve().parents[1]
FINISH_WITHIN = 180.0  # seconds for everything to be answered
LATE_DUPLICATE = 2.0  # seconds to wait, once all is answered, for a duplicate still on its way


def run(
    platform: str,
    *,
    users: int = 50,
    questions: int = 4,
    think: float = 2.0,
    drops: int = 2,
    kills: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    pool = dev_questions()
    plan = {f"u{user:03d}": [rng.choice(pool) for _ in range(questions)] for user in range(users)}
    total = users * questions
    # the moments, as shares of the answers, at which to drop the connection or kill the bot
    events = sorted(
        [(rng.uniform(0.1, 0.9), "drop") for _ in range(drops)]
        + [(rng.uniform(0.2, 0.8), "kill") for _ in range(kills)]
    )
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as folder:
        root = Path(folder)
        shutil.copytree(REPO / "data" / "speeches", root / "speeches")
        config = write_config_file(root, root / "speeches")
        with config.open("a", encoding="utf-8") as extra:
            extra.write(f'[{platform}]\nfeedback_db = "{root / "chat.sqlite3"}"\n')
            extra.write(f"rate_limit_per_minute = {max(12, questions)}\n")
        fake: FakePlatform = (
            FakeDingTalk() if platform == "dingtalk" else FakeFeishu(reconnect_interval=1, reconnect_nonce=1)
        ).start()
        bot = BotProcess(platform, fake, root, config)
        asked: dict[str, str] = {}  # message id → user
        progress = dict.fromkeys(plan, 0)
        waiting: dict[str, str] = {}  # user → the message id of their unanswered question
        ready_at = dict.fromkeys(plan, 0.0)  # user → when they have read their last answer
        done_events: list[tuple[str, int]] = []
        kill_times: list[float] = []
        started = time.perf_counter()
        try:
            bot.start()
            deadline = time.monotonic() + 60
            while fake.connections == 0:
                assert bot.alive() and time.monotonic() < deadline, bot.logs()
                time.sleep(0.05)
            started = time.perf_counter()
            deadline = time.monotonic() + FINISH_WITHIN
            answered_ids: set[str] = set()
            while time.monotonic() < deadline:
                answered_ids.update(reply.message_id for reply in fake.replies[len(answered_ids) :])
                now = time.monotonic()
                for user, message_id in list(waiting.items()):
                    if message_id in answered_ids:
                        del waiting[user]
                        ready_at[user] = now + think * rng.uniform(0.5, 1.5)
                for user, questions_of in plan.items():
                    if user not in waiting and progress[user] < len(questions_of) and ready_at[user] <= now:
                        ask_as = user if platform == "dingtalk" else f"ou_{user}"
                        message_id = fake.ask(ask_as, questions_of[progress[user]])  # type: ignore[attr-defined]
                        progress[user] += 1
                        waiting[user], asked[message_id] = message_id, user
                answered = len(answered_ids & set(asked))
                if events and answered >= events[0][0] * total:
                    _, what = events.pop(0)
                    if what == "drop":
                        fake.drop()
                    else:
                        bot.kill()
                        kill_times.append(time.perf_counter())
                        bot.start()
                    done_events.append((what, answered))
                if answered >= total:
                    break
                time.sleep(0.01)
            wall = time.perf_counter() - started
            time.sleep(LATE_DUPLICATE)
            stopped = bot.stop()
        finally:
            bot.cleanup()
            fake.stop()
        logs = bot.logs()
    children, own = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    bot_cpu, own_cpu = children.ru_utime + children.ru_stime, own.ru_utime + own.ru_stime
    secret = fake_dingtalk.CLIENT_SECRET if platform == "dingtalk" else fake_feishu.APP_SECRET
    replies = {message_id: fake.replies_to(message_id) for message_id in asked}
    answered_ok = sum(1 for sent in replies.values() if any(reply.text != SORRY for reply in sent))
    spans = fake.latencies()
    latencies = [(replied - delivered) * 1000 for delivered, replied in spans.values()]
    # in flight at a kill: delivered to the process that died, answered by the next one from the journal
    untouched = [
        (replied - delivered) * 1000
        for delivered, replied in spans.values()
        if not any(delivered < killed < replied for killed in kill_times)
    ]
    return {
        "platform": platform,
        "users": users,
        "questions_per_user": questions,
        "think_seconds": think,
        "seed": seed,
        "events": [f"{what} after {n} answers" for what, n in done_events],
        "questions": len(asked),
        "answered": answered_ok,
        "lost": total - answered_ok,
        "duplicated": sum(1 for sent in replies.values() if len(sent) > 1),
        "duplicates_allowed": len(kill_times),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p95": round(percentile(latencies, 0.95), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1) if latencies else 0.0,
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        },
        "latency_ms_not_in_flight_at_a_kill": {
            "answers": len(untouched),
            "p50": round(percentile(untouched, 0.50), 1),
            "p95": round(percentile(untouched, 0.95), 1),
            "p99": round(percentile(untouched, 0.99), 1),
        },
        "load_average_1min": round(os.getloadavg()[0], 2),
        "throughput_answers_per_s": round(answered_ok / wall, 2) if wall > 0 else 0.0,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": {"bot": round(bot_cpu, 2), "fake_and_users": round(own_cpu, 2)},
        "connections": fake.connections,
        "replayed_from_journal": [int(n) for n in re.findall(r"answering (\d+) question\(s\) left unanswered", logs)],
        "stopped_cleanly": stopped == 0,
        "secret_in_logs": logs.count(secret),
        "problems": fake.problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--platform", choices=("dingtalk", "feishu"), required=True)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--questions", type=int, default=4, help="questions per user")
    parser.add_argument("--think", type=float, default=2.0, help="mean seconds a user reads an answer")
    parser.add_argument("--drops", type=int, default=2, help="times the long connection is cut")
    parser.add_argument("--kills", type=int, default=1, help="times the bot process is SIGKILLed and restarted")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    figures = run(
        args.platform,
        users=args.users,
        questions=args.questions,
        think=args.think,
        drops=args.drops,
        kills=args.kills,
        seed=args.seed,
    )
    print(json.dumps(figures, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
