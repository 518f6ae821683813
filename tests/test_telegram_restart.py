"""The real `speechqa bot` process killed with SIGKILL at the worst moments, then restarted.

The fake Bot API re-delivers every update until a getUpdates confirms it, as Telegram does, and
can park requests (`hold`) so the kill lands exactly where it must: replies sent but updates not
confirmed; updates confirmed but not answered. Every question must be answered exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, write_config_file
from tests.fakebotapi import FakeBotApi

TOKEN = "123456:TEST-TOKEN-abcdef"
ADMIN = 4001
QUESTIONS = (
    "“春风行动”坚持了多少年？",
    "工匠日是怎么设立的？",
    "好干部的标准是什么？",
    "工会领导干部需要具备哪些能力？",
    "“春风行动”坚持了多少年？",
    "工匠日是怎么设立的？",
)


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    fake = FakeBotApi(TOKEN).start()
    yield fake
    fake.release(execute=False)
    fake.stop()
    assert fake.problems == []


@pytest.fixture
def bot(api: FakeBotApi, tmp_path: Path) -> Iterator[Bot]:
    """The bot under test; afterwards none of its runs' logs may show the token."""
    corpus = tmp_path / "speeches"
    shutil.copytree(REPO / "data" / "speeches", corpus)
    started = Bot(api, tmp_path, corpus)
    yield started
    started.cleanup()
    logs = sorted(tmp_path.glob("run*.log"))
    assert logs and all("TEST-TOKEN" not in log.read_text("utf-8", errors="replace") for log in logs)


class Bot:
    """`python -m bot.cli … bot` as a child process, logging to a file (a full pipe would stall it)."""

    def __init__(self, api: FakeBotApi, folder: Path, corpus: Path) -> None:
        self.folder, self.db, self.runs = folder, folder / "log.sqlite3", 0
        self.config = write_config_file(folder, corpus, telegram=f"admin_ids = [{ADMIN}]")
        self.env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{api.port}"}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        log = (self.folder / f"run{self.runs}.log").open("wb")
        command = [sys.executable, "-m", "bot.cli", "--config", str(self.config), "-v", "bot"]
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self) -> str:
        return (self.folder / f"run{self.runs}.log").read_text("utf-8", errors="replace")

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)

    def answered(self) -> set[int]:
        """Update ids the bot's ledger calls answered (read from this process, as an operator would)."""
        if not self.db.exists():
            return set()
        with sqlite3.connect(self.db) as db:
            try:
                rows = db.execute("SELECT update_id FROM updates WHERE answered_at IS NOT NULL").fetchall()
            except sqlite3.OperationalError:  # the bot has not created the table yet
                return set()
        return {row[0] for row in rows}

    def wait(self, what: Callable[[], bool], within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while not what():
            assert self.process is not None and self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def replying_to(*messages: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    ids = {message["message_id"] for message in messages}
    return lambda params: (params.get("reply_parameters") or {}).get("message_id") in ids


def test_sigkill_and_restart_answer_every_question_exactly_once(api: FakeBotApi, bot: Bot) -> None:
    asked = [api.send_text(3001 + n, question) for n, question in enumerate(QUESTIONS[:4])]
    update_ids = sorted(api.enqueued_at)
    # Run 1: q1, q2 answered; q3, q4 in flight; the offset confirming all four never arrives.
    api.hold("getUpdates", when=lambda params: int(params.get("offset") or 0) > update_ids[-1])
    api.hold("sendMessage", when=replying_to(*asked[2:]))
    bot.start()
    bot.wait(lambda: bot.answered() >= set(update_ids[:2]) and api.held == 3)
    bot.kill()
    api.release(execute=False)  # the dead bot's parked requests never take effect
    assert [len(api.replies_to(q)) for q in asked] == [1, 1, 0, 0]
    assert api.pending_updates() == 4  # Telegram will deliver all four again

    # Run 2: q1, q2 are skipped, q3, q4 answered; q5, q6 fetched and confirmed but killed in flight.
    asked += [api.send_text(3005 + n, question) for n, question in enumerate(QUESTIONS[4:])]
    api.hold("sendMessage", when=replying_to(*asked[4:]))
    bot.start()
    # (waiting for the ledger too: a kill between a reply and its mark is the one window left open)
    bot.wait(lambda: bot.answered() >= set(update_ids) and api.pending_updates() == 0 and api.held == 2)
    bot.kill()
    api.release(execute=False)
    assert [len(api.replies_to(q)) for q in asked] == [1, 1, 1, 1, 0, 0]

    # Run 3: Telegram has nothing left to deliver; q5, q6 come back from the bot's own journal.
    bot.start()
    bot.wait(lambda: all(api.replies_to(q) for q in asked))
    time.sleep(0.5)  # a duplicate would arrive now
    assert bot.stop() == 0, bot.log()
    assert "answering 2 question(s) left unanswered by the previous run" in bot.log()
    assert [len(api.replies_to(q)) for q in asked] == [1] * 6
    assert all("一吹就是20年" in api.replies_to(q)[0].text for q in (asked[0], asked[4]))
    with sqlite3.connect(bot.db) as db:
        left = db.execute("SELECT count(*) FROM updates WHERE payload IS NOT NULL").fetchone()[0]
    assert left == 0  # answered updates keep their id only, not the question


def test_an_upload_killed_while_indexing_is_finished_after_the_restart(api: FakeBotApi, bot: Bot) -> None:
    speech = "蓝海湾论坛上的讲话\n\n同志们，蓝海湾计划的核心是建设三座珊瑚研究站，共投入九千万元。\n"
    searchable = "现在可以检索了"
    # The speech is saved and indexed, but the news that it is searchable never leaves: killed first.
    api.hold("sendMessage", when=lambda params: searchable in params.get("text", ""))
    bot.start()
    upload = api.send_document(ADMIN, "蓝海湾论坛讲话.txt", speech.encode())
    update_id = max(api.enqueued_at)
    bot.wait(lambda: api.held == 1)
    bot.kill()
    api.release(execute=False)
    assert update_id not in bot.answered() and not any(searchable in r.text for r in api.replies_to(upload))

    bot.start()
    bot.wait(lambda: any(searchable in r.text for r in api.replies_to(upload)))
    bot.wait(lambda: update_id in bot.answered())
    assert bot.stop() == 0, bot.log()
    assert [searchable in r.text for r in api.replies_to(upload)].count(True) == 1
    assert "蓝海湾计划" in (bot.folder / "speeches" / "蓝海湾论坛讲话.txt").read_text("utf-8")
