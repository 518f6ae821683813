"""Surviving a kill and an outage: every question is answered, and at most one twice per kill.

python-telegram-bot confirms fetched updates to Telegram with the offset of its very next
getUpdates, which it sends at once, while the updates still wait in its queue; a bot killed
then would lose them. So the queue the updater fills journals each update (`Journal`) *before*
it accepts it, and with it before the confirmation can go out. The update processor then marks
each update answered right after its reply is confirmed (`settle`, called by `send_html`) or,
for updates answered without a message, when handling ends.

An update whose reply could not be delivered (Telegram unreachable or failing for the whole
retry budget of `send_html`: 5xx, dropped connections) is *not* marked: it stays in the journal,
and the running bot queues it again once it has stalled for `REQUEUE_AFTER` seconds (`requeue`,
every `REQUEUE_EVERY` seconds), until a reply gets through. On start, `replay` queues again what
was journaled but never answered, and the gate skips what the journal calls answered: the same
message under the same update id (Telegram redelivers what was fetched but not confirmed). A copy
of an update is never handled while another copy is queued or in hand (`InFlight`, `claim`).

What no bot can close: a reply Telegram executed whose response the bot never saw before it died
is sent again after the restart. To keep that to one reply per kill, replies go out one at a time
(`InFlight.in_doubt`): from the request that may deliver a reply until its mark is written, no
other reply is on its way. The mark skips the queue of other journal writes (`Journal.marker`).
Throughput is bounded by one round trip to Telegram per reply; Telegram allows about 30 a second.
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

from bot.access import Access
from bot.feedback import FeedbackLog
from bot.journal import Journal, identity_of

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Key = tuple[int, str]  # update id, identity: one update, whatever copy of it

REQUEUE_EVERY = 15.0  # seconds between looks for stalled updates
REQUEUE_AFTER = 60.0  # journaled this long ago, unanswered and not in hand: its reply did not get through


@dataclass
class InFlight:
    """The updates this run holds, by (update id, identity): copies queued or being handled, and those claimed."""

    copies: Counter[Key] = field(default_factory=Counter)
    claimed: set[Key] = field(default_factory=set)
    # held from a reply's first request until its mark is written: one reply in doubt at a kill
    in_doubt: asyncio.Lock = field(default_factory=asyncio.Lock)

    def add(self, key: Key) -> None:
        self.copies[key] += 1

    def done(self, key: Key) -> None:
        self.copies[key] -= 1
        if self.copies[key] <= 0:
            del self.copies[key]


@dataclass
class Handling:
    """The update this task is handling: `settled` once marked answered, `undelivered` if its reply did not get out."""

    update_id: int
    identity: str
    journal: Journal
    inflight: InFlight
    settled: bool = False
    skip: bool = False
    owner: bool = False
    undelivered: bool = False

    @property
    def key(self) -> Key:
        return self.update_id, self.identity


_handling: contextvars.ContextVar[Handling | None] = contextvars.ContextVar("speechqa_handling", default=None)


async def in_ledger(ledger: FeedbackLog | Journal, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a call of the log on its own thread, so it never waits behind retrieval (nor retrieval behind it)."""
    return await asyncio.get_running_loop().run_in_executor(ledger.worker, functools.partial(call, *args, **kwargs))


def identity(update: Update) -> str:
    return identity_of(update.to_dict())


async def answered_before(update: Update) -> bool:
    """Whether this update (the same message under the same id) was answered, by this run or one before."""
    handling = _handling.get()
    if handling is None:
        return False
    return await in_ledger(handling.journal, handling.journal.answered, handling.update_id, handling.identity)


def in_doubt() -> asyncio.Lock | None:
    """The lock a reply to the update being handled holds while it may be delivered but is not yet marked."""
    handling = _handling.get()
    return None if handling is None or handling.settled or handling.skip else handling.inflight.in_doubt


def claim() -> bool:
    """Whether this task may handle its update: not while another copy of it is in hand."""
    handling = _handling.get()
    if handling is None:
        return True
    if handling.key in handling.inflight.claimed:
        handling.skip = True  # the other copy decides whether the update was answered
        return False
    handling.inflight.claimed.add(handling.key)
    handling.owner = True
    return True


async def settle() -> None:
    """Mark the update being handled as answered; called right after its reply went out."""
    handling = _handling.get()
    if handling is None or handling.settled or handling.skip:
        return
    handling.settled = True
    handling.undelivered = False
    journal = handling.journal
    mark = functools.partial(journal.mark_answered, handling.update_id, handling.identity)
    await asyncio.get_running_loop().run_in_executor(journal.marker, mark)


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
        self.journal: Journal | None = None
        self.access: Access | None = None
        self.inflight: InFlight | None = None

    async def put(self, item: object) -> None:
        if self.journal is not None and isinstance(item, Update):
            entry = (item.update_id, identity(item), self._payload(item))
            if await in_ledger(self.journal, self.journal.journal, [entry]):
                logger.info("update %s reuses the id of another message in the journal: a new question", item.update_id)
        await super().put(item)

    def put_nowait(self, item: object) -> None:
        if self.inflight is not None and isinstance(item, Update):
            self.inflight.add((item.update_id, identity(item)))
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
        self.journal: Journal | None = None
        self.inflight = InFlight()
        self.requeuer: asyncio.Task[None] | None = None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if self.journal is None or not isinstance(update, Update):
            await coroutine
            return
        handling = Handling(update.update_id, identity(update), self.journal, self.inflight)
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
                self.inflight.claimed.discard(handling.key)
            self.inflight.done(handling.key)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        if self.requeuer is not None:
            self.requeuer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.requeuer


def attach(application: Application, journal: Journal, access: Access) -> None:
    """Start journaling, marking and requeueing with `journal`; before polling starts, so nothing slips past."""
    queue, processor = application.update_queue, application.update_processor
    if isinstance(queue, JournalQueue) and isinstance(processor, LedgerProcessor):
        queue.journal, queue.access, queue.inflight = journal, access, processor.inflight
        processor.journal = journal
        processor.requeuer = asyncio.create_task(requeue(application, journal, processor.inflight))


async def replay(application: Application, journal: Journal) -> int:
    """Queue the updates a previous run fetched but died before answering; how many there were."""
    payloads = await in_ledger(journal, journal.unanswered)
    for payload in payloads:
        # put_nowait skips the journal: these are already in it
        application.update_queue.put_nowait(Update.de_json(payload, application.bot))
    if payloads:
        logger.info("answering %d question(s) left unanswered by the previous run", len(payloads))
    return len(payloads)


async def requeue(application: Application, journal: Journal, inflight: InFlight) -> None:
    """Every `REQUEUE_EVERY` seconds, queue again the stalled updates that no copy is holding."""
    while True:
        await asyncio.sleep(REQUEUE_EVERY)
        try:
            payloads = await in_ledger(journal, journal.stalled, REQUEUE_AFTER)
        except sqlite3.Error as error:  # a locked or vanished file: the next round tries again
            logger.warning("could not read the update journal: %s", error)
            continue
        held = inflight.copies
        stalled = [payload for payload in payloads if (payload["update_id"], identity_of(payload)) not in held]
        for payload in stalled:
            application.update_queue.put_nowait(Update.de_json(payload, application.bot))
        if stalled:
            logger.info("trying again to answer %d update(s) whose replies did not get through", len(stalled))
