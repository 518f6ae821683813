"""Faults Telegram really produces — 429 with retry_after, 403 from a blocked user, dropped connections,
5xx while polling, responses slower than the read timeout — the index folder vanishing under a running
bot, and a graceful SIGTERM of the real `speechqa bot` process. (SIGKILL: test_telegram_restart.py.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from bot.access import protect_handlers
from bot.config import Config, TelegramSettings
from bot.journal import Journal
from bot.replies import SORRY
from bot.session import Conversation
from bot.telegram import ledger as telegram_ledger
from bot.telegram import send as telegram_send
from bot.telegram.admin import REINDEX_FAILED, UPLOAD_FAILED
from bot.telegram.send import Backoff
from tests.conftest import REPO, write_config_file
from tests.fakebotapi import FakeBotApi, drive, everything_said

TOKEN = "123456:TEST-TOKEN-abcdef"
ALICE, BOB, CAROL = 1001, 1002, 1003
SPRING = "“春风行动”坚持了多少年？"


@pytest.fixture
def api(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[FakeBotApi]:
    caplog.set_level(logging.DEBUG)
    protect_handlers(TOKEN, [caplog.handler])
    fake = FakeBotApi(TOKEN).start()
    yield fake
    fake.stop()
    assert fake.problems == []
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err, *everything_said(fake)):
        assert "TEST-TOKEN" not in text


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path) -> Config:
    return config_factory(telegram=TelegramSettings(feedback_db=str(tmp_path / "log.sqlite3")))


def statuses(api: FakeBotApi, method: str) -> list[int]:
    return [status for name, _, status in api.calls if name == method]


def ledger(config: Config) -> list[tuple[int, bool]]:
    """(update id, answered) of every journaled question."""
    with sqlite3.connect(config.telegram.feedback_db) as db:
        found = db.execute("SELECT update_id, answered_at FROM updates WHERE at > 0 ORDER BY update_id").fetchall()
    return [(update_id, answered_at is not None) for update_id, answered_at in found]


def test_429_retry_after_is_waited_out_and_answered_once(api: FakeBotApi, config: Config) -> None:
    async def scenario(app: Any) -> None:
        api.rate_limit("sendMessage", retry_after=1)
        started = time.monotonic()
        question = api.send_text(ALICE, SPRING)
        reply = await api.reply_for(question)
        assert "一吹就是20年" in reply.text and time.monotonic() - started >= 1.0
        await asyncio.sleep(0.2)
        assert len(api.replies_to(question)) == 1

    drive(api, config, scenario)
    assert statuses(api, "sendMessage") == [429, 200]


def test_a_user_who_blocked_the_bot_does_not_stop_it(
    api: FakeBotApi, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(app: Any) -> None:
        api.blocked.add(CAROL)
        blocked = api.send_text(CAROL, SPRING)
        await api.until(lambda: 403 in statuses(api, "sendMessage"))
        assert not api.replies_to(blocked)
        answer = await api.reply_for(api.send_text(ALICE, SPRING))
        assert "一吹就是20年" in answer.text
        api.blocked.add(ALICE)  # blocked right after pressing a button: the page cannot be edited
        api.press(answer, next(b["callback_data"] for b in answer.buttons() if b["text"] == "更多结果 »"), ALICE)
        await api.until(lambda: 403 in statuses(api, "editMessageText"))
        assert "工匠" in (await api.reply_for(api.send_text(BOB, "工匠日是怎么设立的？"))).text

    drive(api, config, scenario)
    assert "Forbidden: bot was blocked by the user" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("bot")]


def test_dropped_and_slow_connections_still_answer_exactly_once(api: FakeBotApi, config: Config) -> None:
    async def scenario(app: Any) -> None:
        api.drop("sendMessage")
        first = api.send_text(ALICE, SPRING)
        assert "一吹就是20年" in (await api.reply_for(first)).text
        api.delay("sendMessage", 0.5)
        second = api.send_text(ALICE, "工匠日是怎么设立的？")
        await api.reply_for(second)
        await asyncio.sleep(0.2)
        assert len(api.replies_to(first)) == 1 and len(api.replies_to(second)) == 1

    drive(api, config, scenario)
    assert statuses(api, "sendMessage")[:2] == [0, 200]  # 0: the connection closed without an answer


def test_a_reply_whose_response_times_out_is_not_sent_again(api: FakeBotApi, config: Config) -> None:
    """Telegram executed the sendMessage; only its response outlived the read timeout."""
    api.slow_seconds = 1.3  # the client below gives up after 1 s

    async def scenario(app: Any) -> None:
        api.slow("sendMessage")
        question = api.send_text(ALICE, SPRING)
        assert "一吹就是20年" in (await api.reply_for(question)).text
        await api.until(lambda: len(statuses(api, "sendMessage")) >= 1)
        await asyncio.sleep(1.6)  # past the timeout: a retry would have been sent by now
        assert len(api.replies_to(question)) == 1
        second = api.send_text(ALICE, "工匠日是怎么设立的？")  # and the bot is fine afterwards
        await api.reply_for(second)

    drive(api, config, scenario, timeout=1.0)
    assert statuses(api, "sendMessage") == [200, 200]


def test_a_timed_out_poll_gets_its_updates_again(api: FakeBotApi, config: Config) -> None:
    """getUpdates executed but answered too late: the same offset fetches the same questions again."""
    api.slow_seconds = 1.3

    async def scenario(app: Any) -> None:
        await api.until(lambda: api.count("getUpdates") >= 1)
        api.slow("getUpdates")
        question = api.send_text(ALICE, SPRING)
        assert "一吹就是20年" in (await api.reply_for(question, within=15)).text
        await asyncio.sleep(0.3)
        assert len(api.replies_to(question)) == 1

    drive(api, config, scenario, timeout=1.0)
    delivered = [n for name, params, _ in api.calls if name == "getUpdates" for n in [params.get("offset")]]
    assert len(delivered) >= 3


def test_index_folder_unreadable_mid_run(
    api: FakeBotApi, config_factory: Callable[..., Config], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Questions keep being answered from memory; admin actions fail politely until the folder is back."""
    cfg = config_factory(telegram=TelegramSettings(feedback_db=str(tmp_path / "log.sqlite3"), admin_ids=(ALICE,)))
    index, away = cfg.index_path, cfg.index_path.with_name("index-away")
    speech = "工会工作会议讲话\n\n同志们，今天我们在蓝海湾召开座谈会，研究渔港工会的建设。\n"

    async def scenario(app: Any) -> None:
        assert "一吹就是20年" in (await api.reply_for(api.send_text(ALICE, SPRING))).text
        index.rename(away)  # tests run as root, where chmod does not stop reads: take the folder away
        index.write_text("not a folder", "utf-8")
        assert "一吹就是20年" in (await api.reply_for(api.send_text(CAROL, SPRING))).text
        assert "当头雁" in (await api.reply_for(api.send_text(CAROL, "/docs"))).text
        assert "第12段" in (await api.reply_for(api.send_text(CAROL, "/source 1"))).text
        assert (await api.reply_for(api.send_text(ALICE, "/reindex"), number=2)).text == REINDEX_FAILED
        upload = api.send_document(ALICE, "蓝海湾座谈会讲话.txt", speech.encode())
        assert (await api.reply_for(upload, number=2, within=20)).text == UPLOAD_FAILED
        assert not (cfg.corpus_path / "蓝海湾座谈会讲话.txt").exists()  # withdrawn, not half-added
        assert "一吹就是20年" in (await api.reply_for(api.send_text(CAROL, SPRING))).text
        index.unlink()
        away.rename(index)
        assert "索引已重建" in (await api.reply_for(api.send_text(ALICE, "/reindex"), number=2, within=20)).text
        assert "一吹就是20年" in (await api.reply_for(api.send_text(ALICE, SPRING))).text

    drive(api, cfg, scenario)
    assert all(sent.text != SORRY for sent in api.sent)
    assert "rebuilding the index failed" in caplog.text


def test_polling_recovers_from_bad_gateway_and_a_dropped_connection(api: FakeBotApi, config: Config) -> None:
    async def scenario(app: Any) -> None:
        api.fail("getUpdates", 502, "Bad Gateway")
        api.drop("getUpdates")
        reply = await api.reply_for(api.send_text(ALICE, SPRING), within=15)
        assert "一吹就是20年" in reply.text

    drive(api, config, scenario)
    assert 502 in statuses(api, "getUpdates") and 0 in statuses(api, "getUpdates")


def test_errors_are_logged_and_the_user_told_without_details(
    api: FakeBotApi, config: Config, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Conversation, question: str) -> Any:
        raise RuntimeError("index shard 7 is corrupt")

    monkeypatch.setattr(Conversation, "ask", broken)

    async def scenario(app: Any) -> None:
        reply = await api.reply_for(api.send_text(ALICE, SPRING))
        assert reply.text == SORRY

    drive(api, config, scenario)
    assert "exception while handling update" in caplog.text and "index shard 7 is corrupt" in caplog.text
    assert all("shard" not in sent.text for sent in api.sent)


def test_an_update_delivered_twice_is_answered_once(api: FakeBotApi, config: Config) -> None:
    message = {
        "message_id": 50_000,
        "date": int(time.time()),
        "chat": {"id": ALICE, "type": "private", "first_name": "用户"},
        "from": api.user(ALICE),
        "text": SPRING,
    }

    async def scenario(app: Any) -> None:
        update = Update.de_json({"update_id": 90_000, "message": message}, app.bot)
        await app.update_queue.put(update)  # two copies in hand at once, as after a poll that timed out
        await app.update_queue.put(update)
        await api.reply_for(message)
        await app.update_queue.put(update)  # and one more after it was answered
        await app.update_queue.join()

    drive(api, config, scenario)
    assert len(api.replies_to(message)) == 1


def test_an_outage_longer_than_a_few_tries_is_ridden_out(
    api: FakeBotApi, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten 502s in a row: more than the five tries that used to lose the question for good."""
    monkeypatch.setattr(telegram_send, "SEND_BACKOFF", Backoff(first=0.01, cap=0.02, total=1.0))

    async def scenario(app: Any) -> None:
        api.fail("sendMessage", 502, "Bad Gateway", times=10)
        question = api.send_text(ALICE, SPRING)
        assert "一吹就是20年" in (await api.reply_for(question)).text
        await app.update_queue.join()

    drive(api, config, scenario)
    assert statuses(api, "sendMessage") == [502] * 10 + [200]
    assert ledger(config) == [(max(api.enqueued_at), True)]


def quick_give_up_and_requeue(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send gives up after a few hundredths of a second, and the journal is looked at again at once."""
    monkeypatch.setattr(telegram_send, "SEND_BACKOFF", Backoff(first=0.01, cap=0.01, total=0.05))
    monkeypatch.setattr(telegram_ledger, "REQUEUE_EVERY", 0.05)
    monkeypatch.setattr(telegram_ledger, "REQUEUE_AFTER", 0.0)


def test_a_reply_that_cannot_get_through_waits_in_the_journal_until_telegram_is_back(
    api: FakeBotApi, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each try gives up after 6 requests; 20 failures take four: the running bot tries again by itself."""
    quick_give_up_and_requeue(monkeypatch)
    looks = []
    stalled = Journal.stalled

    def counted(self: Journal, older_than: float) -> list[dict[str, Any]]:
        looks.append(older_than)
        return stalled(self, older_than)

    monkeypatch.setattr(Journal, "stalled", counted)

    async def scenario(app: Any) -> None:
        api.fail("sendMessage", 502, "Bad Gateway", times=20)
        question = api.send_text(ALICE, SPRING)
        await api.until(lambda: statuses(api, "sendMessage").count(502) >= 7)  # past the first try's six
        assert ledger(config) == [(max(api.enqueued_at), False)]  # given up once, not marked answered
        reply = await api.reply_for(question)
        assert "一吹就是20年" in reply.text
        seen = len(looks)
        await api.until(lambda: len(looks) >= seen + 3)  # the journal was looked at again: no second answer
        assert len(api.replies_to(question)) == 1

    drive(api, config, scenario)
    assert statuses(api, "sendMessage") == [502] * 20 + [200]  # nothing else was sent, no apology
    assert ledger(config) == [(max(api.enqueued_at), True)]


def test_a_button_press_tried_again_after_an_outage_still_opens_the_paragraph(
    api: FakeBotApi, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By then Telegram calls the press too old to acknowledge; the paragraph is what the user wants."""
    quick_give_up_and_requeue(monkeypatch)

    async def scenario(app: Any) -> None:
        answer = await api.reply_for(api.send_text(ALICE, SPRING))
        await app.update_queue.join()
        api.fail("sendMessage", 502, "Bad Gateway", times=6)  # the first try's every request
        api.press(answer, next(b["callback_data"] for b in answer.buttons() if b["text"] == "全文[1]"), ALICE)
        paragraph = await api.until(lambda: api.reply_to({"chat": {"id": ALICE}, "message_id": answer.message_id}))
        assert "一吹就是20年" in paragraph.text and "（上一段）" in paragraph.text
        await app.update_queue.join()

    drive(api, config, scenario)
    assert 400 in statuses(api, "answerCallbackQuery")  # the second acknowledgement came too late
    assert len(api.replies_to({"chat": {"id": ALICE}, "message_id": api.sent[0].message_id})) == 1
    assert all(answered for _, answered in ledger(config))


def test_a_reply_still_undelivered_at_shutdown_is_answered_after_the_restart(
    api: FakeBotApi, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram_send, "SEND_BACKOFF", Backoff(first=0.01, cap=0.01, total=0.05))
    question: dict[str, Any] = {}

    async def outage(app: Any) -> None:
        api.fail("sendMessage", 503, "Service Unavailable", times=6)
        question.update(api.send_text(ALICE, SPRING))
        await api.until(lambda: statuses(api, "sendMessage").count(503) == 6)
        await app.update_queue.join()

    async def back(app: Any) -> None:
        assert "一吹就是20年" in (await api.reply_for(question)).text
        await app.update_queue.join()

    drive(api, config, outage)
    assert not api.replies_to(question) and ledger(config) == [(max(api.enqueued_at), False)]
    assert api.pending_updates() == 0  # Telegram will not deliver it again: only the journal has it
    drive(api, config, back)
    assert len(api.replies_to(question)) == 1 and ledger(config) == [(max(api.enqueued_at), True)]


def test_speechqa_bot_answers_pending_questions_and_stops_cleanly_on_sigterm(api: FakeBotApi, tmp_path: Path) -> None:
    write_config_file(tmp_path, REPO / "data" / "speeches")
    waiting = api.send_text(ALICE, SPRING)  # asked while the bot was down: must not be dropped
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{api.port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(tmp_path / "config.toml"), "-v", "bot"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not api.reply_to(waiting) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        reply = api.reply_to(waiting)
        assert reply is not None and "一吹就是20年" in reply.text
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "ready" in err and "TEST-TOKEN" not in out + err
    assert api.pending_updates() == 0  # the last offset was confirmed on the way out
    assert all(not params.get("drop_pending_updates") for name, params, _ in api.calls if name == "deleteWebhook")
