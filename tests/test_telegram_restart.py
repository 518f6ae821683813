"""The real `speechqa bot` process killed with SIGKILL at the worst moments, then restarted.

The fake Bot API re-delivers every update until a getUpdates confirms it, as Telegram does, and
can park requests (`hold`) so the kill lands exactly where it must: replies sent but updates not
confirmed; updates confirmed but not answered. Every question must be answered exactly once.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, write_config_file
from tests.fakebotapi import BotProcess, FakeBotApi

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
def bot(api: FakeBotApi, tmp_path: Path) -> Iterator[BotProcess]:
    """The bot under test; afterwards none of its runs' logs may show the token."""
    corpus = tmp_path / "speeches"
    shutil.copytree(REPO / "data" / "speeches", corpus)
    started = BotProcess(api, tmp_path, write_config_file(tmp_path, corpus, telegram=f"admin_ids = [{ADMIN}]"))
    yield started
    started.cleanup()
    logs = sorted(tmp_path.glob("run*.log"))
    assert logs and all("TEST-TOKEN" not in log.read_text("utf-8", errors="replace") for log in logs)


def failed_chats(api: FakeBotApi) -> set[int]:
    """Chats whose replies Telegram has failed at least once."""
    return {int(params["chat_id"]) for name, params, status in api.calls if name == "sendMessage" and status >= 500}


def test_sigkill_and_restart_answer_every_question_exactly_once(api: FakeBotApi, bot: BotProcess) -> None:
    asked = [api.send_text(3001 + n, question) for n, question in enumerate(QUESTIONS[:4])]
    update_ids = sorted(api.enqueued_at)
    # Run 1: q1, q2 answered; q3, q4 in flight (Telegram fails their replies, so the bot keeps
    # trying); the offset confirming all four never arrives.
    api.hold("getUpdates", when=lambda params: int(params.get("offset") or 0) > update_ids[-1])
    api.fail("sendMessage", 502, "Bad Gateway", times=10_000, when=lambda params: int(params["chat_id"]) > 3002)
    bot.start()
    bot.wait(lambda: bot.answered() >= set(update_ids[:2]) and failed_chats(api) == {3003, 3004})
    bot.kill()
    api.clear_faults()
    api.release(execute=False)  # the dead bot's parked requests never take effect
    assert [len(api.replies_to(q)) for q in asked] == [1, 1, 0, 0]
    assert api.pending_updates() == 4  # Telegram will deliver all four again

    # Run 2: q1, q2 are skipped, q3, q4 answered; then q5, q6 fetched and confirmed but killed in flight.
    bot.start()
    bot.wait(lambda: bot.answered() >= set(update_ids) and all(api.replies_to(q) for q in asked))
    api.hold("sendMessage", when=lambda params: int(params["chat_id"]) in (3005, 3006))
    asked += [api.send_text(3005 + n, question) for n, question in enumerate(QUESTIONS[4:])]
    # (waiting for the ledger too: a kill between a reply and its mark is the one window left open)
    bot.wait(lambda: api.pending_updates() == 0 and api.held == 1)
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


def test_an_upload_killed_while_indexing_is_finished_after_the_restart(api: FakeBotApi, bot: BotProcess) -> None:
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


def test_a_kill_finds_at_most_one_reply_delivered_but_not_yet_marked(api: FakeBotApi, bot: BotProcess) -> None:
    """Telegram executes every reply, but the bot never hears back: replies wait their turn behind it."""
    api.park("sendMessage")
    asked = [api.send_text(3101 + n, QUESTIONS[n % 4]) for n in range(8)]
    bot.start()
    bot.wait(lambda: api.held == 1)
    time.sleep(2.0)  # the other seven would have gone out by now, were they not waiting
    assert len(api.sent) == 1 and api.held == 1
    bot.kill()
    api.release(execute=False)  # the dead bot never hears that its reply arrived

    bot.start()
    bot.wait(lambda: all(api.replies_to(q) for q in asked))
    time.sleep(0.5)  # a further duplicate would arrive now
    assert bot.stop() == 0, bot.log()
    assert sorted(len(api.replies_to(q)) for q in asked) == [1] * 7 + [2]  # the one in doubt, and only it
