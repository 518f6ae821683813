"""The update journal: which updates (messages) a chat bot received, and which it has answered.

Shared by the Telegram bot (`bot.telegram.ledger`) and the long-connection bots (`bot.inbox`,
for DingTalk and Feishu, whose messages are keyed by the platform's message id). What follows is
told in Telegram's terms, where it began.

A row is keyed by the bot's own id (from getMe), the update id, and the message the update
carried (`identity`: chat, message id and date, or the button press or inline query id). Update
ids are no identity on their own: Telegram starts them again at a random number after a week
without updates, and another bot pointed at the same `data/` folder has its own. So a fetched
update whose id the journal holds for a *different* message is a new question, journaled beside
the old one and answered; only the very same message counts as answered before.

Marks of "answered" go through their own connection and thread (`marker`), so a reply's mark
never waits behind the journaling of newly fetched updates on `worker`. Each write commits on
its own; with WAL a killed process loses none of them.

A file from before this schema (an `updates` table keyed by update id alone) is migrated when
opened: its answered entries cannot say which message they answered, so they are dropped (an
update Telegram redelivers across the upgrade may be answered again); questions it journaled but
never answered are kept, and replayed, as this bot's.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_TABLE = """CREATE TABLE IF NOT EXISTS updates (
    bot_id INTEGER NOT NULL,
    update_id INTEGER NOT NULL,
    identity TEXT NOT NULL,
    at REAL NOT NULL,
    payload TEXT,
    answered_at REAL,
    replays INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bot_id, update_id, identity)
)"""
_INDEX = "CREATE INDEX IF NOT EXISTS updates_at ON updates (at)"
# Telegram keeps an unconfirmed update for 24 hours, so an older id cannot come back and its
# entry (answered, or too old to replay) has no use; a day of margin for clocks and restarts.
JOURNAL_KEEP_SECONDS = 2 * 24 * 3600
JOURNAL_KEEP_ROWS = 100_000
PRUNE_EVERY = 1_000
REPLAY_WITHIN = 24 * 3600
MAX_REPLAYS = 3  # an update that was in flight at three crashes in a row is not tried a fourth time

Entry = tuple[int, str, dict[str, Any] | None]  # update id, identity, JSON (None: ids only)


def identity_of(payload: dict[str, Any]) -> str:
    """What makes an update (as Bot API JSON) the message it is, whatever its update id."""
    for kind in ("callback_query", "inline_query"):
        if kind in payload:
            return f"{kind}:{payload[kind]['id']}"
    for kind, value in payload.items():
        if isinstance(value, dict) and "message_id" in value and isinstance(value.get("chat"), dict):
            return f"{kind}:{value['chat'].get('id')}:{value['message_id']}:{value.get('date', 0)}"
    return f"other:{payload.get('update_id')}"


class Journal:
    def __init__(self, path: Path, bot_id: int) -> None:
        self.path, self.bot_id = path, bot_id
        path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="speechqa-journal")
        self.marker = ThreadPoolExecutor(1, thread_name_prefix="speechqa-marks")
        # a connection per thread; the locks keep callers on other threads (tests, tools) off them meanwhile
        self._lock, self._marks_lock = threading.Lock(), threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:  # commits, or rolls back on an error: a half-migrated file is never left
                self._db.execute("BEGIN IMMEDIATE")
                self._migrate()
                self._db.execute(_TABLE)
                self._db.execute(_INDEX)
        self._marks = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._marks.execute("PRAGMA synchronous=NORMAL")
        self._marked = 0
        self.prune()

    def _migrate(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(updates)")}
        if not columns or "bot_id" in columns:
            return
        kept = self._db.execute(
            "SELECT update_id, at, payload, replays FROM updates WHERE answered_at IS NULL AND payload IS NOT NULL"
        ).fetchall()
        self._db.execute("DROP TABLE updates")  # its index goes with it
        self._db.execute(_TABLE)
        rows = [(self.bot_id, uid, identity_of(json.loads(payload)), at, payload, n) for uid, at, payload, n in kept]
        self._db.executemany(
            "INSERT INTO updates (bot_id, update_id, identity, at, payload, replays) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        logger.info("update journal migrated: %d unanswered update(s) kept, answered ones dropped", len(rows))

    def journal(self, entries: Iterable[Entry]) -> list[int]:
        """Note fetched updates before Telegram is told they arrived; `None` JSON keeps ids only.

        Returns the update ids the journal already held for a different message.
        """
        now, reused = time.time(), []
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for update_id, identity, payload in entries:
                found = {
                    row[0]
                    for row in self._db.execute(
                        "SELECT identity FROM updates WHERE bot_id = ? AND update_id = ?", (self.bot_id, update_id)
                    )
                }
                if identity in found:
                    continue  # the same update again (Telegram redelivers until confirmed): the first copy stays
                if found:
                    reused.append(update_id)
                self._db.execute(
                    "INSERT INTO updates (bot_id, update_id, identity, at, payload) VALUES (?, ?, ?, ?, ?)",
                    (
                        self.bot_id,
                        update_id,
                        identity,
                        now,
                        None if payload is None else json.dumps(payload, ensure_ascii=False),
                    ),
                )
        return reused

    def answered(self, update_id: int, identity: str) -> bool:
        """Whether this very update (the same message under the same id) was answered already."""
        with self._lock:
            row = self._db.execute(
                "SELECT answered_at FROM updates WHERE bot_id = ? AND update_id = ? AND identity = ?",
                (self.bot_id, update_id, identity),
            ).fetchone()
        return row is not None and row[0] is not None

    def mark_answered(self, update_id: int, identity: str) -> None:
        """Record that the update was answered, forgetting its text (on `marker`, ahead of other writes)."""
        now = time.time()
        with self._marks_lock:
            self._marks.execute(
                "INSERT INTO updates (bot_id, update_id, identity, at, answered_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (bot_id, update_id, identity) DO UPDATE SET answered_at = excluded.answered_at,"
                " payload = NULL",
                (self.bot_id, update_id, identity, now, now),
            )
            self._marked += 1
            due = self._marked % PRUNE_EVERY == 0
        if due:
            self.prune()

    def unanswered(self) -> list[dict[str, Any]]:
        """This bot's journaled updates never answered (it died with them in flight), oldest first.

        Each call counts as one more replay, so an update that kills the bot every time it is
        handled stops being replayed after `MAX_REPLAYS`.
        """
        with self._lock:
            found = self._db.execute(
                "SELECT update_id, identity, payload FROM updates WHERE bot_id = ? AND answered_at IS NULL"
                " AND payload IS NOT NULL AND at >= ? AND replays < ? ORDER BY at, update_id",
                (self.bot_id, time.time() - REPLAY_WITHIN, MAX_REPLAYS),
            ).fetchall()
            self._db.executemany(
                "UPDATE updates SET replays = replays + 1 WHERE bot_id = ? AND update_id = ? AND identity = ?",
                [(self.bot_id, update_id, identity) for update_id, identity, _ in found],
            )
        return [json.loads(payload) for _, _, payload in found]

    def stalled(self, older_than: float) -> list[dict[str, Any]]:
        """Updates journaled over `older_than` seconds ago and still unanswered, oldest first.

        For the running bot to try again those whose reply could not be delivered; not counted
        as replays, which are about surviving crashes: one that crashed the bot `MAX_REPLAYS`
        times stays out here too.
        """
        now = time.time()
        with self._lock:
            found = self._db.execute(
                "SELECT payload FROM updates WHERE bot_id = ? AND answered_at IS NULL AND payload IS NOT NULL"
                " AND at >= ? AND at <= ? AND replays < ? ORDER BY at, update_id",
                (self.bot_id, now - REPLAY_WITHIN, now - older_than, MAX_REPLAYS),
            ).fetchall()
        return [json.loads(payload) for (payload,) in found]

    def prune(self, now: float | None = None) -> None:
        """Drop entries past `JOURNAL_KEEP_SECONDS`, and all but the newest `JOURNAL_KEEP_ROWS`."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("DELETE FROM updates WHERE at < ?", (now - JOURNAL_KEEP_SECONDS,))
            self._db.execute(
                "DELETE FROM updates WHERE at < (SELECT at FROM updates ORDER BY at DESC LIMIT 1 OFFSET ?)",
                (JOURNAL_KEEP_ROWS - 1,),
            )

    def rows(self) -> list[dict[str, object]]:
        """Every entry, for tests and for operators poking at the file."""
        with self._lock:
            cursor = self._db.execute("SELECT * FROM updates ORDER BY at, update_id")
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        """Finish the writes already handed to the threads, then close the file."""
        self.marker.shutdown(wait=True)
        self.worker.shutdown(wait=True)
        with self._lock, self._marks_lock:
            self._marks.close()
            self._db.close()
