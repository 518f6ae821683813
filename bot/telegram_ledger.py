"""Surviving a kill and an outage: every question is answered once, even across SIGKILL and restart.

python-telegram-bot confirms fetched updates to Telegram with the offset of its very next
getUpdates, which it sends at once, while the updates still wait in its queue; a bot killed
then would lose them. So the queue the updater fills journals each update in the SQLite ledger
(`FeedbackLog.journal`) *before* it accepts it, and with it before the confirmation can go out.
The update processor then marks each update answered right after its reply is sent (`settle`,
called by `send_html`) or, for updates answered without a message, when handling ends.

An update whose reply could not be delivered (Telegram unreachable or failing for the whole
retry budget of `send_html`: 5xx, dropped connections) is *not* marked: it stays in the journal,
and the running bot queues it again once it has stalled for `REQUEUE_AFTER` seconds (`requeue`,
every `REQUEUE_EVERY` seconds), until a reply gets through. On start, `replay` queues again what
was journaled but never answered, and the gate skips what the ledger already calls answered
(Telegram redelivers what was fetched but not confirmed). A copy of an update is never handled
while another copy is queued or in hand (`InFlight`, `claim`).

What no bot can close: a reply Telegram delivered whose response the bot never saw before it
died is sent again after the restart. The window is one HTTP response plus one SQLite write.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from telegram import Update
from telegram.ext import Application, BaseUpdateProcessor

from .feedback import FeedbackLog
from .telegram_access import Access

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

REQUEUE_EVERY = 15.0  # seconds between looks for stalled updates
REQUEUE_AFTER = 60.0  # journaled this long ago, unanswered and not in hand: its reply did not get through


@dataclass
class InFlight:
    """The updates this run holds: copies queued or being handled, and the ids a handler has claimed."""

    copies: Counter[int] = field(default_factory=Counter)
    claimed: set[int] = field(default_factory=set)

    def add(self, update_id: int) -> None:
        self.copies[update_id] += 1

    def done(self, update_id: int) -> None:
        self.copies[update_id] -= 1
        if self.copies[update_id] <= 0:
            del self.copies[update_id]


@dataclass
class Handling:
    """The update this task is handling: `settled` once marked answered, `undelivered` if its reply did not get out."""

    update_id: int
    ledger: FeedbackLog
    inflight: InFlight
    settled: bool = False
    skip: bool = False
    owner: bool = False
    undelivered: bool = False


_handling: contextvars.ContextVar[Handling | None] = contextvars.ContextVar("speechqa_handling", default=None)


async def in_ledger(ledger: FeedbackLog, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a call of the log on its own thread, so it never waits behind retrieval (nor retrieval behind it)."""
    return await asyncio.get_running_loop().run_in_executor(ledger.worker, functools.partial(call, *args, **kwargs))


def claim() -> bool:
    """Whether this task may handle its update: not while another copy of it is in hand."""
    handling = _handling.get()
    if handling is None:
        return True
    if handling.update_id in handling.inflight.claimed:
        handling.skip = True  # the other copy decides whether the update was answered
        return False
    handling.inflight.claimed.add(handling.update_id)
    handling.owner = True
    return True


async def settle() -> None:
    """Mark the update being handled as answered; called right after its reply went out."""
    handling = _handling.get()
    if handling is None or handling.settled or handling.skip:
        return
    handling.settled = True
    handling.undelivered = False
    await in_ledger(handling.ledger, handling.ledger.mark_answered, handling.update_id)


def undelivered() -> None:
    """The reply to the update being handled did not get through: leave it unanswered, to be tried again."""
    handling = _handling.get()
    if handling is not None and not handling.settled:
        handling.undelivered = True


class JournalQueue(asyncio.Queue[object]):
    """The application's update queue: an update is journaled before the updater may confirm it.

    Only allowed users' updates are journaled with their content (the log never holds a
    refused user's text); others keep their id only, which is all the dedupe needs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ledger: FeedbackLog | None = None
        self.access: Access | None = None
        self.inflight: InFlight | None = None

    async def put(self, item: object) -> None:
        if self.ledger is not None and isinstance(item, Update):
            await in_ledger(self.ledger, self.ledger.journal, [(item.update_id, self._payload(item))])
        await super().put(item)

    def put_nowait(self, item: object) -> None:
        if self.inflight is not None and isinstance(item, Update):
            self.inflight.add(item.update_id)
        super().put_nowait(item)

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
        self.inflight = InFlight()
        self.requeuer: asyncio.Task[None] | None = None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if self.ledger is None or not isinstance(update, Update):
            await coroutine
            return
        handling = Handling(update.update_id, self.ledger, self.inflight)
        token = _handling.set(handling)
        try:
            await coroutine  # handler errors are caught inside and reach on_error, which replies
            if handling.undelivered:
                logger.warning("update %s stays unanswered: its reply could not be delivered", update.update_id)
            else:
                await settle()  # updates answered by a button edit, an inline answer, or nothing at all
        finally:
            _handling.reset(token)
            if handling.owner:
                self.inflight.claimed.discard(update.update_id)
            self.inflight.done(update.update_id)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        if self.requeuer is not None:
            self.requeuer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.requeuer


def attach(application: Application, ledger: FeedbackLog, access: Access) -> None:
    """Start journaling, marking and requeueing with `ledger`; before polling starts, so nothing slips past."""
    queue, processor = application.update_queue, application.update_processor
    if isinstance(queue, JournalQueue) and isinstance(processor, LedgerProcessor):
        queue.ledger, queue.access, queue.inflight = ledger, access, processor.inflight
        processor.ledger = ledger
        processor.requeuer = asyncio.create_task(requeue(application, ledger, processor.inflight))


async def replay(application: Application, ledger: FeedbackLog) -> int:
    """Queue the updates a previous run fetched but died before answering; how many there were."""
    payloads = await in_ledger(ledger, ledger.unanswered)
    for payload in payloads:
        # put_nowait skips the journal: these are already in it
        application.update_queue.put_nowait(Update.de_json(payload, application.bot))
    if payloads:
        logger.info("answering %d question(s) left unanswered by the previous run", len(payloads))
    return len(payloads)


async def requeue(application: Application, ledger: FeedbackLog, inflight: InFlight) -> None:
    """Every `REQUEUE_EVERY` seconds, queue again the stalled updates that no copy is holding."""
    while True:
        await asyncio.sleep(REQUEUE_EVERY)
        try:
            payloads = await in_ledger(ledger, ledger.stalled, REQUEUE_AFTER)
        except sqlite3.Error as error:  # a locked or vanished file: the next round tries again
            logger.warning("could not read the update journal: %s", error)
            continue
        stalled = [payload for payload in payloads if payload["update_id"] not in inflight.copies]
        for payload in stalled:
            application.update_queue.put_nowait(Update.de_json(payload, application.bot))
        if stalled:
            logger.info("trying again to answer %d update(s) whose replies did not get through", len(stalled))
