"""The bot's local log: questions asked, 👍/👎 feedback, refused users, and the update ledger, in one SQLite file.

Only allowed users' text is ever written: a refused update is recorded by ids alone. The bot
runs every call on the log's own single thread (`worker`), so the journal never waits behind
retrieval; the lock still guards the one connection for callers on other threads (tests, tools),
because sqlite3 connections must not be used from two threads at once.

The `updates` table is what lets a killed bot come back without losing or repeating answers.
python-telegram-bot confirms a batch of updates to Telegram (by the offset of its next
getUpdates) as soon as it has fetched it, long before the questions in it are answered, so
Telegram's own redelivery cannot be relied on: each allowed update is journaled (with its JSON)
before that confirmation, and marked answered (its text dropped) right after the reply is sent.
A restart replays what was journaled but never answered and skips what was already answered.
Every write commits on its own; with WAL a killed process loses none of them.

Nothing grows without bound (`prune`, at start and every `PRUNE_EVERY` writes): journal entries
go after `JOURNAL_KEEP_SECONDS`, questions, votes and refusals after `LOG_KEEP_SECONDS`, and each
table keeps at most its newest `*_KEEP_ROWS` rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    answer_id TEXT,
    user_id INTEGER,
    chat_id INTEGER,
    via TEXT NOT NULL,
    question TEXT NOT NULL,
    found INTEGER NOT NULL,
    top_citation TEXT,
    latency_ms REAL
);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    at REAL NOT NULL,
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    question TEXT,
    PRIMARY KEY (answer_id, user_id)
);
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    user_id INTEGER,
    chat_id INTEGER,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    update_id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    payload TEXT,
    answered_at REAL,
    replays INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS updates_at ON updates (at);
"""
# Telegram keeps an unconfirmed update for 24 hours, so an older id cannot come back and its
# entry (answered, or too old to replay) has no use; a day of margin for clocks and restarts.
JOURNAL_KEEP_SECONDS = 2 * 24 * 3600
JOURNAL_KEEP_ROWS = 100_000
# Questions, votes and refusals are for the operator's review of recent use, not an archive.
LOG_KEEP_SECONDS = 90 * 24 * 3600
QUESTIONS_KEEP_ROWS = 100_000
FEEDBACK_KEEP_ROWS = 100_000
REFUSED_KEEP_ROWS = 10_000  # a stranger sending a flood of messages fills this one: keep it smaller
PRUNE_EVERY = 1_000
REPLAY_WITHIN = 24 * 3600
MAX_REPLAYS = 3  # an update that was in flight at three crashes in a row is not tried a fourth time


class FeedbackLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="speechqa-log")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._writes = 0
        self.prune()

    def question(
        self,
        *,
        answer_id: str | None,
        user_id: int | None,
        chat_id: int | None,
        via: str,
        question: str,
        found: bool,
        top_citation: str | None,
        latency_ms: float,
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO questions (at, answer_id, user_id, chat_id, via, question, found, top_citation,"
                " latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), answer_id, user_id, chat_id, via, question, int(found), top_citation, latency_ms),
            )
        self._wrote()

    def vote(self, *, answer_id: str, user_id: int, vote: int, question: str | None) -> bool:
        """Record a vote; True when it replaced this user's earlier vote on the same answer."""
        with self._lock:
            earlier = self._db.execute(
                "SELECT 1 FROM feedback WHERE answer_id = ? AND user_id = ?", (answer_id, user_id)
            ).fetchone()
            self._db.execute(
                "INSERT OR REPLACE INTO feedback (answer_id, user_id, at, vote, question) VALUES (?, ?, ?, ?, ?)",
                (answer_id, user_id, time.time(), vote, question),
            )
        self._wrote()
        return earlier is not None

    def refused(self, *, user_id: int | None, chat_id: int | None, kind: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO refused (at, user_id, chat_id, kind) VALUES (?, ?, ?, ?)",
                (time.time(), user_id, chat_id, kind),
            )
        self._wrote()

    def journal(self, updates: Iterable[tuple[int, dict[str, Any] | None]]) -> None:
        """Note fetched updates before Telegram is told they arrived; `None` keeps only the id."""
        now = time.time()
        rows = [
            (update_id, now, None if payload is None else json.dumps(payload, ensure_ascii=False))
            for update_id, payload in updates
        ]
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO updates (update_id, at, payload) VALUES (?, ?, ?)", rows)

    def answered(self, update_id: int) -> bool:
        with self._lock:
            row = self._db.execute("SELECT answered_at FROM updates WHERE update_id = ?", (update_id,)).fetchone()
        return row is not None and row[0] is not None

    def mark_answered(self, update_id: int) -> None:
        """Record that `update_id` was answered, forgetting its text; prunes the ledger now and then."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO updates (update_id, at, answered_at) VALUES (?, ?, ?) ON CONFLICT (update_id)"
                " DO UPDATE SET answered_at = excluded.answered_at, payload = NULL",
                (update_id, now, now),
            )
        self._wrote()

    def unanswered(self) -> list[dict[str, Any]]:
        """Journaled updates never answered (the bot died with them in flight), oldest first.

        Each call counts as one more replay, so an update that kills the bot every time it is
        handled stops being replayed after `MAX_REPLAYS`.
        """
        since = time.time() - REPLAY_WITHIN
        with self._lock:
            found = self._db.execute(
                "SELECT update_id, payload FROM updates WHERE answered_at IS NULL AND payload IS NOT NULL"
                " AND at >= ? AND replays < ? ORDER BY update_id",
                (since, MAX_REPLAYS),
            ).fetchall()
            self._db.executemany(
                "UPDATE updates SET replays = replays + 1 WHERE update_id = ?", [(row[0],) for row in found]
            )
        return [json.loads(payload) for _, payload in found]

    def stalled(self, older_than: float) -> list[dict[str, Any]]:
        """Updates journaled over `older_than` seconds ago and still unanswered, oldest first.

        For the running bot to try again those whose reply could not be delivered; not counted
        as replays, which are about surviving crashes: one that crashed the bot `MAX_REPLAYS`
        times stays out here too.
        """
        now = time.time()
        with self._lock:
            found = self._db.execute(
                "SELECT payload FROM updates WHERE answered_at IS NULL AND payload IS NOT NULL"
                " AND at >= ? AND at <= ? AND replays < ? ORDER BY update_id",
                (now - REPLAY_WITHIN, now - older_than, MAX_REPLAYS),
            ).fetchall()
        return [json.loads(payload) for (payload,) in found]

    def _wrote(self) -> None:
        with self._lock:
            self._writes += 1
            due = self._writes % PRUNE_EVERY == 0
        if due:
            self.prune()

    def prune(self, now: float | None = None) -> None:
        """Drop what is past its retention, and all but the newest rows of each table (see the module doc)."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("DELETE FROM updates WHERE at < ?", (now - JOURNAL_KEEP_SECONDS,))
            self._db.execute(
                "DELETE FROM updates WHERE at < (SELECT at FROM updates ORDER BY at DESC LIMIT 1 OFFSET ?)",
                (JOURNAL_KEEP_ROWS - 1,),
            )
            for table, keep in (
                ("questions", QUESTIONS_KEEP_ROWS),
                ("feedback", FEEDBACK_KEEP_ROWS),
                ("refused", REFUSED_KEEP_ROWS),
            ):  # rowid grows with every insert (a replaced vote gets a new one), so it orders by age
                self._db.execute(f"DELETE FROM {table} WHERE at < ?", (now - LOG_KEEP_SECONDS,))
                newest = f"SELECT rowid FROM {table} ORDER BY rowid DESC LIMIT 1 OFFSET ?"
                self._db.execute(f"DELETE FROM {table} WHERE rowid <= ({newest})", (keep,))

    def rows(self, table: str) -> list[dict[str, object]]:
        """Every row of `table`, for tests and for operators poking at the file."""
        if table not in ("questions", "feedback", "refused", "updates"):
            raise ValueError(f"unknown table {table}")
        with self._lock:
            cursor = self._db.execute(f"SELECT * FROM {table}")  # the name was checked above
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        """Finish the writes already handed to `worker`, then close the file."""
        self.worker.shutdown(wait=True)
        with self._lock:
            self._db.close()
