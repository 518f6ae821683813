"""The update ledger in the bot's SQLite log: journal, answered marks, replay, and its bounds."""

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


def test_the_ledger_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feedback, "KEEP_ROWS", 50)
    monkeypatch.setattr(feedback, "PRUNE_EVERY", 10)
    log = FeedbackLog(tmp_path / "log.sqlite3")
    for update_id in range(1, 301):
        log.mark_answered(update_id)
    kept = [int(str(row["update_id"])) for row in log.rows("updates")]
    assert 50 <= len(kept) < 60 and max(kept) == 300  # pruned every 10 marks, oldest first
    log.prune(now=time.time() + feedback.KEEP_SECONDS + 1)  # a week later
    assert log.rows("updates") == []
