"""The update journal: keyed by bot and update id, matched by message; replay, retry, migration, bounds."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bot import feedback
from bot import journal as telegram_journal
from bot.feedback import FeedbackLog
from bot.journal import Journal, identity_of

BOT, OTHER_BOT = 7_000_000_001, 7_000_000_002


def message(update_id: int, message_id: int, text: str = "问题", chat: int = 1001, date: int = 1_700_000_000) -> Any:
    """(update id, identity, JSON) of a user's message, as the bot journals it."""
    payload = {
        "update_id": update_id,
        "message": {"message_id": message_id, "date": date, "chat": {"id": chat, "type": "private"}, "text": text},
    }
    return update_id, identity_of(payload), payload


def test_journaled_updates_are_replayed_until_answered_and_lose_their_text(tmp_path: Path) -> None:
    log = Journal(tmp_path / "log.sqlite3", BOT)
    first, refused = message(10, 5, "问题甲"), message(11, 6)
    log.journal([first, (11, refused[1], None)])
    again = (10, first[1], {**first[2], "message": {**first[2]["message"], "text": "again"}})
    assert log.journal([again]) == []  # redelivered: the same message, the first copy stays
    assert [u["message"]["text"] for u in log.unanswered()] == ["问题甲"]  # 11 (ids only) cannot be replayed
    assert not log.answered(*first[:2])
    log.mark_answered(*first[:2])
    log.mark_answered(*message(12, 7)[:2])  # answered without ever being journaled (e.g. processed directly)
    assert log.answered(*first[:2]) and log.answered(*message(12, 7)[:2]) and not log.answered(*refused[:2])
    assert log.unanswered() == []
    assert all(row["payload"] is None for row in log.rows() if row["answered_at"])
    log.close()
    reopened = Journal(tmp_path / "log.sqlite3", BOT)  # what a restarted bot sees
    assert reopened.answered(*first[:2]) and not reopened.answered(*refused[:2])


def test_an_update_id_answered_before_but_carrying_another_message_is_new(tmp_path: Path) -> None:
    """Telegram started its update ids again: same id, another message; or the same message id another day."""
    log = Journal(tmp_path / "log.sqlite3", BOT)
    old = message(3, 100, "昨天的问题")
    log.journal([old])
    log.mark_answered(*old[:2])
    for new in (message(3, 200, "今天的问题"), message(3, 100, "今天的问题", date=1_700_600_000)):
        assert not log.answered(*new[:2])
        assert log.journal([new]) == [3]  # the id was reused, and said so (the bot logs it)
        assert not log.answered(*new[:2]) and [u["message"]["text"] for u in log.unanswered()] == ["今天的问题"]
        log.mark_answered(*new[:2])
        assert log.answered(*new[:2]) and log.answered(*old[:2])  # each message keeps its own record


def test_another_bot_on_the_same_file_has_its_own_journal(tmp_path: Path) -> None:
    mine, theirs = Journal(tmp_path / "log.sqlite3", BOT), Journal(tmp_path / "log.sqlite3", OTHER_BOT)
    same = message(3, 100)  # even the very same ids: the other bot's chat is not ours
    mine.journal([same])
    mine.mark_answered(*same[:2])
    assert not theirs.answered(*same[:2]) and theirs.journal([same]) == []
    assert [u["update_id"] for u in theirs.unanswered()] == [3] and mine.unanswered() == []


def test_identity_names_the_message_button_press_or_inline_query() -> None:
    assert identity_of(message(1, 9, chat=42, date=5)[2]) == "message:42:9:5"
    assert identity_of({"update_id": 1, "callback_query": {"id": "cq7", "message": {}}}) == "callback_query:cq7"
    assert identity_of({"update_id": 1, "inline_query": {"id": "iq8"}}) == "inline_query:iq8"
    assert identity_of({"update_id": 1}) == "other:1"


def old_journal(path: Path) -> None:
    """A file written by the bot before updates were keyed by bot: answered 1-3, 4 journaled, 5 refused."""
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE updates (update_id INTEGER PRIMARY KEY, at REAL NOT NULL, payload TEXT, answered_at REAL,"
            " replays INTEGER NOT NULL DEFAULT 0); CREATE INDEX updates_at ON updates (at);"
        )
        now = time.time()
        db.executemany("INSERT INTO updates VALUES (?, ?, NULL, ?, 0)", [(n, now, now) for n in (1, 2, 3)])
        db.execute("INSERT INTO updates VALUES (4, ?, ?, NULL, 1)", (now, json.dumps(message(4, 40, "没答的")[2])))
        db.execute("INSERT INTO updates VALUES (5, ?, NULL, NULL, 0)", (now,))


def test_an_old_journal_is_migrated_without_skipping_new_questions(tmp_path: Path) -> None:
    old_journal(tmp_path / "log.sqlite3")
    FeedbackLog(tmp_path / "log.sqlite3").close()  # the bot opens its log first: it must leave the journal be
    log = Journal(tmp_path / "log.sqlite3", BOT)
    assert not any(log.answered(*message(n, 100 + n)[:2]) for n in (1, 2, 3))  # new questions under old ids
    replayed = log.unanswered()
    assert [u["message"]["text"] for u in replayed] == ["没答的"]  # the question the old run never answered
    assert [row["replays"] for row in log.rows()] == [2]  # its earlier replay still counts
    log.close()
    assert [row["update_id"] for row in Journal(tmp_path / "log.sqlite3", BOT).rows()] == [4]  # migrated once


def test_an_update_that_keeps_killing_the_bot_is_replayed_only_a_few_times(tmp_path: Path) -> None:
    log = Journal(tmp_path / "log.sqlite3", BOT)
    log.journal([message(7, 70)])
    replays = [len(log.unanswered()) for _ in range(telegram_journal.MAX_REPLAYS + 2)]
    assert replays == [1] * telegram_journal.MAX_REPLAYS + [0, 0]
    assert log.stalled(older_than=0) == []  # nor does the running bot try it again


def test_stalled_updates_are_those_unanswered_for_a_while_and_looking_does_not_count(tmp_path: Path) -> None:
    log = Journal(tmp_path / "log.sqlite3", BOT)
    log.journal([message(1, 10), message(2, 20), (3, message(3, 30)[1], None)])
    log.mark_answered(*message(2, 20)[:2])
    assert log.stalled(older_than=3600) == []  # journaled just now: still in hand
    assert [u["update_id"] for u in log.stalled(older_than=0)] == [1]
    assert [u["update_id"] for u in log.stalled(older_than=0)] == [1]
    assert [u["update_id"] for u in log.unanswered()] == [1]  # a restart still gets all its replays


def test_the_journal_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_journal, "JOURNAL_KEEP_ROWS", 50)
    monkeypatch.setattr(telegram_journal, "PRUNE_EVERY", 10)
    log = Journal(tmp_path / "log.sqlite3", BOT)
    for update_id in range(1, 301):
        log.mark_answered(*message(update_id, update_id)[:2])
    kept = [int(str(row["update_id"])) for row in log.rows()]
    assert 50 <= len(kept) < 60 and max(kept) == 300  # pruned every 10 writes, oldest first
    log.journal([message(301, 301, "没答的问题")])
    log.prune(now=time.time() + telegram_journal.JOURNAL_KEEP_SECONDS + 1)
    assert log.rows() == []  # answered or not: past Telegram's redelivery, no entry is kept
    assert telegram_journal.JOURNAL_KEEP_SECONDS > telegram_journal.REPLAY_WITHIN  # …but not before a replay


def test_refusals_questions_and_votes_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REFUSED_KEEP_ROWS", "QUESTIONS_KEEP_ROWS", "FEEDBACK_KEEP_ROWS"):
        monkeypatch.setattr(feedback, name, 40)
    monkeypatch.setattr(feedback, "PRUNE_EVERY", 25)
    log = FeedbackLog(tmp_path / "log.sqlite3")
    for n in range(500):  # a stranger flooding the bot
        log.refused(user_id=666, chat_id=666, kind="message")
        log.question(
            answer_id=f"a{n}", user_id=1, chat_id=1, via="text", question=f"问题{n}", found=True, top_citation=None,
            latency_ms=1.0,
        )  # fmt: skip
        log.vote(answer_id=f"a{n}", user_id=1, vote=1, question=f"问题{n}")
    for table in ("refused", "questions", "feedback"):
        rows = log.rows(table)
        assert 40 <= len(rows) <= 40 + 25 * 3, table  # at most one prune interval (three writes a round) over
    assert log.rows("questions")[-1]["question"] == "问题499"  # the newest are the ones kept
    assert log.rows("feedback")[-1]["question"] == "问题499"
    log.prune(now=time.time() + feedback.LOG_KEEP_SECONDS + 1)
    assert log.rows("refused") == log.rows("questions") == log.rows("feedback") == []
