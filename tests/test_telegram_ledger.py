"""The bot's SQLite log: journal, answered marks, replay and retry, and the bounds of every table."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot import feedback
from bot.feedback import FeedbackLog


def test_journaled_updates_are_replayed_until_answered_and_lose_their_text(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "log.sqlite3")
    log.journal([(10, {"update_id": 10, "message": {"text": "问题甲"}}), (11, None)])
    log.journal([(10, {"update_id": 10, "message": {"text": "again"}})])  # redelivered: the first copy stays
    assert [u["message"]["text"] for u in log.unanswered()] == ["问题甲"]  # 11 (id only) cannot be replayed
    assert not log.answered(10)
    log.mark_answered(10)
    log.mark_answered(12)  # answered without ever being journaled (e.g. processed directly)
    assert log.answered(10) and log.answered(12) and not log.answered(11)
    assert log.unanswered() == []
    assert all(row["payload"] is None for row in log.rows("updates") if row["answered_at"])
    log.close()
    reopened = FeedbackLog(tmp_path / "log.sqlite3")  # what a restarted bot sees
    assert reopened.answered(10) and not reopened.answered(11)


def test_an_update_that_keeps_killing_the_bot_is_replayed_only_a_few_times(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "log.sqlite3")
    log.journal([(7, {"update_id": 7})])
    replays = [len(log.unanswered()) for _ in range(feedback.MAX_REPLAYS + 2)]
    assert replays == [1] * feedback.MAX_REPLAYS + [0, 0]
    assert log.stalled(older_than=0) == []  # nor does the running bot try it again


def test_stalled_updates_are_those_unanswered_for_a_while_and_looking_does_not_count(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "log.sqlite3")
    log.journal([(1, {"update_id": 1}), (2, {"update_id": 2}), (3, None)])
    log.mark_answered(2)
    assert log.stalled(older_than=3600) == []  # journaled just now: still in hand
    assert [u["update_id"] for u in log.stalled(older_than=0)] == [1]
    assert [u["update_id"] for u in log.stalled(older_than=0)] == [1]
    assert [u["update_id"] for u in log.unanswered()] == [1]  # a restart still gets all its replays


def test_the_journal_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feedback, "JOURNAL_KEEP_ROWS", 50)
    monkeypatch.setattr(feedback, "PRUNE_EVERY", 10)
    log = FeedbackLog(tmp_path / "log.sqlite3")
    for update_id in range(1, 301):
        log.mark_answered(update_id)
    kept = [int(str(row["update_id"])) for row in log.rows("updates")]
    assert 50 <= len(kept) < 60 and max(kept) == 300  # pruned every 10 writes, oldest first
    log.journal([(301, {"update_id": 301, "message": {"text": "没答的问题"}})])
    log.prune(now=time.time() + feedback.JOURNAL_KEEP_SECONDS + 1)
    assert log.rows("updates") == []  # answered or not: past Telegram's redelivery, no entry is kept
    assert feedback.JOURNAL_KEEP_SECONDS > feedback.REPLAY_WITHIN  # …but not before a restart could replay it


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
