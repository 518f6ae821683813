"""Chaos test of the Telegram bot: the real `speechqa bot` process SIGKILLed while it answers, then restarted.

    python -m benchmarks.bench_bot --chaos-kills 3 --users 60 --seed 1
    python -m benchmarks.bench_chaos --kills 3 --users 60 --seed 1

Once the bot polls, `users` simulated users each ask one question at the same moment, through
the fake Bot API on loopback (which, like Telegram, delivers an update again until a getUpdates
confirms it). The bot is killed `kills` times at random moments while it answers, each restarted
at once: a seeded number of further answers after the previous start, then a seeded pause of up
to 50 ms, so kills land in every phase of a reply (being composed, on its way, delivered but not
yet journaled). Then it answers what is left and is stopped with SIGTERM.

Prints JSON: questions, answered, lost (no answer, or only an apology), duplicated (answered more
than once) in all, per kill (a duplicate belongs to the first kill after its first answer) and
without a kill (a bug), the number of answers at each kill, the replays the restarted bot
logged, and the bot token's appearances in the logs (must be none).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.replies import SORRY
from tests.conftest import write_config_file
from tests.fakebotapi import BotProcess, FakeBotApi

REPO = Path(__file__).resolve().parents[1]
TOKEN = "123456:CHAOS-TOKEN-abcdef"
QUESTIONS = (
    "工匠日是怎么设立的？",
    "“春风行动”坚持了多少年？",
    "好干部的标准是什么？",
    "工会领导干部需要具备哪些能力？",
)
KILL_JITTER = 0.05  # seconds, at most, between the chosen answer and the kill
FINISH_WITHIN = 120.0  # seconds for the last run to answer everything left
LATE_DUPLICATE = 1.0  # seconds to wait, once all is answered, for a duplicate still on its way


def run(users: int = 60, kills: int = 3, seed: int = 0) -> dict[str, Any]:
    """Run the chaos test and return its figures (see the module docstring)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as folder:
        root = Path(folder)
        shutil.copytree(REPO / "data" / "speeches", root / "speeches")
        api = FakeBotApi(TOKEN, seed=seed).start()
        bot = BotProcess(api, root, write_config_file(root, root / "speeches"), verbose=False)
        kill_times: list[float] = []
        at_kill: list[int] = []
        started = time.perf_counter()
        try:
            bot.start()
            bot.wait(lambda: api.count("getUpdates") > 0)
            asked = [api.send_text(2_000_000 + user, QUESTIONS[user % len(QUESTIONS)]) for user in range(users)]

            def answered() -> int:  # each user has a chat of their own and asks once
                return len({sent.chat_id for sent in api.sent if sent.reply_to is not None})

            def until_answered(count: int) -> None:
                bot.wait(lambda: answered() >= count, within=FINISH_WITHIN, every=0.005)

            for kill in range(kills):
                left = users - answered()
                if left <= 1:
                    break  # nothing left to kill it while answering
                until_answered(users - left + rng.randint(1, max(1, (left - 1) // (kills - kill))))
                time.sleep(rng.uniform(0, KILL_JITTER))
                bot.kill()
                kill_times.append(time.perf_counter())
                at_kill.append(answered())
                bot.start()
            until_answered(users)
            time.sleep(LATE_DUPLICATE)
            stopped = bot.stop()
        finally:
            bot.cleanup()
            api.stop()
        logs = "\n".join(path.read_text("utf-8", errors="replace") for path in sorted(root.glob("run*.log")))
    wall = time.perf_counter() - started
    replies = [api.replies_to(question) for question in asked]
    duplicated_per_kill, without_kill = [0] * len(kill_times), 0
    for sent in replies:
        if len(sent) > 1:
            first = min(reply.at for reply in sent)
            culprit = next((k for k, at in enumerate(kill_times) if at > first), None)
            if culprit is None:
                without_kill += 1  # answered twice within one run: a bug, not a crash window
            else:
                duplicated_per_kill[culprit] += 1
    answered_ok = sum(1 for sent in replies if any(reply.text != SORRY for reply in sent))
    return {
        "users": users,
        "kills": len(kill_times),
        "seed": seed,
        "questions": len(asked),
        "answered": answered_ok,
        "lost": users - answered_ok,
        "duplicated": sum(1 for sent in replies if len(sent) > 1),
        "duplicated_per_kill": duplicated_per_kill,
        "duplicated_without_kill": without_kill,
        "answers_at_each_kill": at_kill,
        "replayed_from_journal": [int(n) for n in re.findall(r"answering (\d+) question\(s\) left unanswered", logs)],
        "stopped_cleanly": stopped == 0,
        "wall_seconds": round(wall, 2),
        "token_in_logs": logs.count(TOKEN) + logs.count(TOKEN.split(":")[1]),
        "problems": api.problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(run(args.users, args.kills, args.seed), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
