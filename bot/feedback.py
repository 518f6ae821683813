"""The bot's local log: questions asked, 👍/👎 feedback and refused users, in one SQLite file.

Only allowed users' text is ever written: a refused update is recorded by ids alone. The bot
runs every call on the log's own single thread (`worker`), so the log never waits behind
retrieval; the lock still guards the one connection for callers on other threads (tests, tools),
because sqlite3 connections must not be used from two threads at once. The Telegram bot's update
journal shares the file, in its own table (`bot.journal`).

Nothing grows without bound (`prune`, at start and every `PRUNE_EVERY` writes): questions, votes
and refusals go after `LOG_KEEP_SECONDS`, and each table keeps at most its newest `*_KEEP_ROWS` rows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
"""
# Questions, votes and refusals are for the operator's review of recent use, not an archive.
LOG_KEEP_SECONDS = 90 * 24 * 3600
QUESTIONS_KEEP_ROWS = 100_000
FEEDBACK_KEEP_ROWS = 100_000
REFUSED_KEEP_ROWS = 10_000  # a stranger sending a flood of messages fills this one: keep it smaller
PRUNE_EVERY = 1_000


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
        user_id: int | str | None,  # Telegram's ids are numbers, DingTalk's and Feishu's strings
        chat_id: int | str | None,
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

    def refused(self, *, user_id: int | str | None, chat_id: int | str | None, kind: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO refused (at, user_id, chat_id, kind) VALUES (?, ?, ?, ?)",
                (time.time(), user_id, chat_id, kind),
            )
        self._wrote()

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
        if table not in ("questions", "feedback", "refused"):
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
