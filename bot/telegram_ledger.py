"""Surviving a kill: every question is answered once, even across SIGKILL and restart.

python-telegram-bot confirms fetched updates to Telegram with the offset of its very next
getUpdates, which it sends at once, while the updates still wait in its queue; a bot killed
then would lose them. So the queue the updater fills journals each update in the SQLite ledger
(`FeedbackLog.journal`) *before* it accepts it, and with it before the confirmation can go out.
The update processor then marks each update answered right after its reply is sent (`settle`,
called by `send_html`) or, for updates answered without a message, when handling ends.

On start, `replay` queues again what was journaled but never answered, and the gate skips what
the ledger already calls answered (Telegram redelivers what was fetched but not confirmed).

What no bot can close: a reply Telegram delivered whose response the bot never saw before it
died is sent again after the restart. The window is one HTTP response plus one SQLite write.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.ext import Application, BaseUpdateProcessor

from .feedback import FeedbackLog
from .telegram_access import Access

logger = logging.getLogger(__name__)


@dataclass
class Handling:
    """The update this task is handling; `settled` once it is marked answered, `skip` for duplicates."""

    update_id: int
    ledger: FeedbackLog
    settled: bool = False
    skip: bool = False


_handling: contextvars.ContextVar[Handling | None] = contextvars.ContextVar("speechqa_handling", default=None)


async def settle() -> None:
    """Mark the update being handled as answered; called right after a reply went out."""
    handling = _handling.get()
    if handling is None or handling.settled or handling.skip:
        return
    handling.settled = True
    await asyncio.to_thread(handling.ledger.mark_answered, handling.update_id)


def skip_current() -> None:
    """This task holds a duplicate: the other copy decides whether the update was answered."""
    handling = _handling.get()
    if handling is not None:
        handling.skip = True


class JournalQueue(asyncio.Queue[object]):
    """The application's update queue: an update is journaled before the updater may confirm it.

    Only allowed users' updates are journaled with their content (the log never holds a
    refused user's text); others keep their id only, which is all the dedupe needs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ledger: FeedbackLog | None = None
        self.access: Access | None = None

    async def put(self, item: object) -> None:
        if self.ledger is not None and isinstance(item, Update):
            await asyncio.to_thread(self.ledger.journal, [(item.update_id, self._payload(item))])
        await super().put(item)

    def _payload(self, update: Update) -> dict[str, Any] | None:
        user, chat = update.effective_user, update.effective_chat
        if self.access is not None and not self.access.allows(user.id if user else None, chat.id if chat else None):
            return None
        return update.to_dict()


class LedgerProcessor(BaseUpdateProcessor):
    """Up to `max_concurrent_updates` updates at once; each is marked answered when handled."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self.ledger: FeedbackLog | None = None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if self.ledger is None or not isinstance(update, Update):
            await coroutine
            return
        handling = Handling(update.update_id, self.ledger)
        token = _handling.set(handling)
        try:
            await coroutine  # handler errors are caught inside and reach on_error, which replies
            await settle()  # updates answered by a button edit, an inline answer, or nothing at all
        finally:
            _handling.reset(token)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def attach(application: Application, ledger: FeedbackLog, access: Access) -> None:
    """Start journaling and marking with `ledger`; before polling starts, so nothing slips past."""
    queue, processor = application.update_queue, application.update_processor
    if isinstance(queue, JournalQueue):
        queue.ledger, queue.access = ledger, access
    if isinstance(processor, LedgerProcessor):
        processor.ledger = ledger


async def replay(application: Application, ledger: FeedbackLog) -> int:
    """Queue the updates a previous run fetched but died before answering; how many there were."""
    payloads = await asyncio.to_thread(ledger.unanswered)
    for payload in payloads:
        update = Update.de_json(payload, application.bot)
        # put_nowait skips the journal: these are already in it
        application.update_queue.put_nowait(update)
    if payloads:
        logger.info("answering %d question(s) left unanswered by the previous run", len(payloads))
    return len(payloads)
