"""A restarted bot with yesterday's journal in place: update ids that start again, another bot, an old file.

Each test answers questions through the production application and the fake Bot API, then starts
the bot again on the same log file against a Bot API whose update ids reuse the old ones. Every
new question must be answered once, none skipped as "answered before the restart".
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.access import protect_handlers
from bot.config import Config, TelegramSettings
from tests.fakebotapi import BOT_ID, FakeBotApi, drive

TOKEN, OTHER_TOKEN = "123456:TEST-TOKEN-abcdef", "654321:TEST-TOKEN-fedcba"
QUESTIONS = ("“春风行动”坚持了多少年？", "工匠日是怎么设立的？", "好干部的标准是什么？")
USERS = (1001, 1002, 1003)
SKIPPED = "answered before the restart; skipped"


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Config:
    caplog.set_level(logging.INFO)
    protect_handlers(TOKEN, [caplog.handler])
    return config_factory(telegram=TelegramSettings(feedback_db=str(tmp_path / "log.sqlite3")))


def ask_everyone(config: Config, **fake: Any) -> tuple[FakeBotApi, list[dict[str, Any]]]:
    """Run the bot against a new fake Bot API until each user's question is answered and settled."""
    api = FakeBotApi(fake.pop("token", TOKEN), **fake).start()
    asked = [api.send_text(user, question) for user, question in zip(USERS, QUESTIONS, strict=True)]

    async def scenario(app: Any) -> None:
        for question in asked:
            await api.reply_for(question)
        await app.update_queue.join()

    try:
        drive(api, config, scenario)
    finally:
        api.stop()
    assert api.problems == []
    return api, asked


@pytest.mark.parametrize(
    "again",
    [
        pytest.param({"first_id": 10_000}, id="update-ids-start-again"),
        pytest.param({"token": OTHER_TOKEN, "bot_id": BOT_ID + 1}, id="another-bot-same-ids"),
    ],
)
def test_a_restart_against_reused_update_ids_answers_every_new_question(
    config: Config, caplog: pytest.LogCaptureFixture, again: dict[str, Any]
) -> None:
    before, _ = ask_everyone(config, update_ids_from=1)
    after, asked = ask_everyone(config, update_ids_from=1, **again)
    assert set(after.enqueued_at) == set(before.enqueued_at) == {1, 2, 3}  # the very same update ids
    assert [len(after.replies_to(question)) for question in asked] == [1, 1, 1]
    assert SKIPPED not in caplog.text
    reused = caplog.text.count("reuses the id of another message in the journal: a new question")
    assert reused == (3 if "first_id" in again else 0)  # another bot's journal is not ours to reuse
    with sqlite3.connect(config.telegram.feedback_db) as db:
        bots = {row[0] for row in db.execute("SELECT DISTINCT bot_id FROM updates")}
    assert bots == {BOT_ID, again.get("bot_id", BOT_ID)}  # keyed by the id getMe gave each bot


def test_an_old_journal_in_place_skips_nothing_and_its_unanswered_question_is_answered(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A log file from before the journal knew its bot: update ids 1-3 answered, one question left over."""
    now, left_over = time.time(), {"message_id": 500, "date": int(time.time()), "text": QUESTIONS[0]}
    left_over |= {"chat": {"id": 1009, "type": "private"}, "from": {"id": 1009, "is_bot": False, "first_name": "用"}}
    Path(config.telegram.feedback_db).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(config.telegram.feedback_db) as db:
        db.execute(
            "CREATE TABLE updates (update_id INTEGER PRIMARY KEY, at REAL NOT NULL, payload TEXT, answered_at REAL,"
            " replays INTEGER NOT NULL DEFAULT 0)"
        )
        db.executemany("INSERT INTO updates VALUES (?, ?, NULL, ?, 0)", [(n, now, now) for n in (1, 2, 3)])
        payload = json.dumps({"update_id": 99, "message": left_over}, ensure_ascii=False)
        db.execute("INSERT INTO updates VALUES (99, ?, ?, NULL, 0)", (now, payload))

    api, asked = ask_everyone(config, first_id=10_000, update_ids_from=1)
    assert [len(api.replies_to(question)) for question in asked] == [1, 1, 1]
    assert len(api.replies_to(left_over)) == 1  # replayed from the old journal
    assert SKIPPED not in caplog.text and "update journal migrated: 1 unanswered update(s) kept" in caplog.text
