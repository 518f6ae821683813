"""Every message answered, and once: the delivery guarantees of the DingTalk and Feishu bots.

Both platforms push messages over an outbound long connection and deliver a message again when
the bot did not acknowledge it (a dropped connection, a missing ack). So a message is journaled
(`bot.journal`) before its ack goes out: killed before the ack, the bot gets it again from the
platform; killed after, it finds it in the journal on restart (`Inbox.start` replays it). A copy
delivered again is passed over when the journal says it was answered, or while another copy is in
hand (`inflight`).

What no bot can close: a reply the platform accepted whose mark the bot died before writing is
sent again after the restart. To keep that to one message per kill, replies go out one at a time
(`sending`): from the request that may deliver a reply until its mark is written, no other reply
is on its way. A reply that cannot get through for the whole backoff stays unanswered in the
journal and is tried again every `REQUEUE_EVERY` seconds, until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot.access import Access, Lru, RateLimiter
from bot.config import Config, DingTalkSettings, FeishuSettings
from bot.delivery import Backoff, Pacer
from bot.feedback import FeedbackLog
from bot.journal import Journal
from bot.markdown import Link
from bot.replies import SEARCH_UNAVAILABLE, SORRY, Incoming, Replies, load_retriever
from embeddings.errors import SearchUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
Decode = Callable[[dict[str, Any]], Incoming]

REQUEUE_EVERY = 15.0  # seconds between looks for replies that did not get through
REQUEUE_AFTER = 60.0  # journaled this long ago, unanswered and not in hand: try it again
HELD_NOTICE_PART = -1  # the "search unavailable" notice is not a part of the answer (Feishu dedupes by part)
SEND_BACKOFF = Backoff()


class Unreachable(Exception):
    """The reply did not reach the platform (refused or dropped connection, 5xx, a send limit): try again."""


class Refused(Exception):
    """The platform refused the reply for good (a bad request, an expired session): trying again cannot help."""


class Outbox(Protocol):
    """A platform's way of replying to a message with one markdown message."""

    async def send(self, incoming: Incoming, text: str, part: int) -> None: ...


class Inbox:
    """Journal, dedupe, answer and deliver the messages of one bot (`via`: "dingtalk" or "feishu")."""

    def __init__(
        self, via: str, journal: Journal, replies: Replies, *, outbox: Outbox, decode: Decode, pacer: Pacer
    ) -> None:
        self.via, self.journal, self.replies = via, journal, replies
        self.outbox, self.decode, self.pacer = outbox, decode, pacer
        self.inflight: set[str] = set()
        # answered by this run, noted on the loop with the mark: a copy whose journal lookup raced
        # with the first copy's mark is still passed over
        self.done: Lru[str, bool] = Lru(100_000)
        self.told: Lru[str, bool] = Lru(10_000)  # told that search is unavailable and the answer will come
        self.sending = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.requeuer: asyncio.Task[None] | None = None

    def key(self, incoming: Incoming) -> tuple[int, str]:
        """The journal's key of a message: a number and an identity made from the platform's message id."""
        identity = f"{self.via}:{incoming.message_id}"
        return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=7).digest(), "big"), identity

    async def start(self) -> None:
        """Queue what a previous run journaled but never answered, and start trying stalled replies again."""
        payloads = await self._in(self.journal.worker, self.journal.unanswered)
        for payload in payloads:
            if (incoming := self._decoded(payload)) is not None:
                self._schedule(incoming)
        if payloads:
            logger.info("answering %d question(s) left unanswered by the previous run", len(payloads))
        self.requeuer = asyncio.create_task(self._requeue())

    def admit(self, payload: dict[str, Any]) -> None:
        """Journal a message and queue it for an answer; on the event loop, before the ack (Feishu's sync handler)."""
        incoming = self._decoded(payload)
        if incoming is not None and not self._journal(incoming):
            self._schedule(incoming)

    async def receive(self, payload: dict[str, Any]) -> None:
        """`admit`, with the journal's write on its own thread (DingTalk's async handler)."""
        incoming = self._decoded(payload)
        if incoming is not None and not await self._in(self.journal.worker, self._journal, incoming):
            self._schedule(incoming)

    def _decoded(self, payload: dict[str, Any]) -> Incoming | None:
        try:
            return self.decode(payload)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            logger.warning("ignored a message that is not one (%s: %s)", type(error).__name__, error)
            return None

    def _journal(self, incoming: Incoming) -> bool:
        """Write the message down (a copy delivered again is not written twice); whether it was answered before."""
        key = self.key(incoming)
        if self.journal.answered(*key):
            logger.info("message %s was answered before; skipped", incoming.message_id)
            return True
        allowed = self.replies.access.allows(incoming.user_id, incoming.chat_id)
        # a refused user's text is never written down: the id is all the dedupe needs
        self.journal.journal([(*key, incoming.payload if allowed else None)])
        return False

    def _schedule(self, incoming: Incoming) -> None:
        identity = self.key(incoming)[1]
        if identity in self.inflight or identity in self.done:
            return  # another copy is in hand and decides, or was answered
        self.inflight.add(identity)
        task = asyncio.create_task(self._handle(incoming))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, incoming: Incoming) -> None:
        key = self.key(incoming)
        try:  # answered before? `_journal` asked, on the journal's thread; replays and requeues are not
            try:
                messages = await self.replies.reply(incoming, self.via)
            except SearchUnavailable as error:
                # Left unanswered in the journal, which `_requeue` asks again until search is back;
                # the asker hears once that the answer will come, not at every try.
                logger.warning("message %s held until search is back: %s", incoming.message_id, error)
                if self.told.get(key[1]) is None:
                    self.told.put(key[1], True)
                    with contextlib.suppress(Unreachable, Refused):
                        await self.outbox.send(incoming, SEARCH_UNAVAILABLE, HELD_NOTICE_PART)
                return
            except Exception:
                logger.exception("error while answering message %s", incoming.message_id)
                messages = [SORRY]
            if not messages:
                await self._mark(key)
            elif not await self._deliver(incoming, key, messages):
                logger.warning("message %s stays unanswered: its reply did not get through", incoming.message_id)
        except Exception:  # a failure on the way out: the journal still holds it, and `_requeue` tries again
            logger.exception("could not answer message %s; it stays in the journal", incoming.message_id)
        finally:
            self.inflight.discard(key[1])

    async def _deliver(self, incoming: Incoming, key: tuple[int, str], messages: list[str]) -> bool:
        """Send the messages in order and mark the message answered; False when the first never got through."""
        holding = False
        try:
            for part, text in enumerate(messages):
                await self.pacer.turn(incoming.chat_id)
                pauses = SEND_BACKOFF.pauses()
                while True:
                    if not holding:
                        await self.sending.acquire()
                        holding = True
                    try:
                        await self.outbox.send(incoming, text, part)
                        break
                    except Refused as error:
                        logger.warning("the platform refused the reply to %s: %s", incoming.message_id, error)
                        break  # trying again cannot help; the rest of the reply may still go
                    except Unreachable as error:
                        pause = next(pauses, None)
                        if part == 0:  # nothing of this reply is out: let other replies go meanwhile
                            self.sending.release()
                            holding = False
                        if pause is None and part == 0:
                            return False
                        if pause is None:  # part of it is out: sending it all again later would repeat that part
                            logger.warning("the rest of the reply to %s was lost: %s", incoming.message_id, error)
                            await self._mark(key)
                            return True
                        logger.warning(
                            "reply to %s failed (%s); trying again in %.2g s", incoming.message_id, error, pause
                        )
                        await asyncio.sleep(pause)
            await self._mark(key)
            return True
        finally:
            if holding:
                self.sending.release()

    async def _mark(self, key: tuple[int, str]) -> None:
        # On the loop itself: a WAL commit takes well under a millisecond, while a hop to the marker
        # thread and back waits for the loop's turn, and every other reply waits on `sending` meanwhile.
        self.journal.mark_answered(*key)
        self.done.put(key[1], True)

    async def _requeue(self) -> None:
        while True:
            await asyncio.sleep(REQUEUE_EVERY)
            try:
                payloads = await self._in(self.journal.worker, self.journal.stalled, REQUEUE_AFTER)
            except sqlite3.Error as error:  # a locked or vanished file: the next round tries again
                logger.warning("could not read the message journal: %s", error)
                continue
            for payload in payloads:
                incoming = self._decoded(payload)
                if incoming is not None:
                    self._schedule(incoming)

    async def close(self, within: float = 10.0) -> None:
        """Stop requeueing, let replies in hand finish for up to `within` seconds, then close the files."""
        if self.requeuer is not None:
            self.requeuer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.requeuer
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=within)
        self.replies.close()
        self.journal.close()
        self.replies.feedback.close()

    @staticmethod
    async def _in(executor: Any, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(call, *args))


def new_loop() -> asyncio.AbstractEventLoop:
    """An event loop for a bot: uvloop's where it is installed (with the web extra), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def open_inbox(
    config: Config,
    via: str,
    *,
    settings: DingTalkSettings | FeishuSettings,
    app_id: str,
    outbox: Outbox,
    decode: Decode,
    link: Link | None,
    limit: int,
) -> Inbox:
    """Load the index once, open the log and journal (`settings.feedback_db`), and replay what is left."""
    retriever = await load_retriever(config)
    path = Path(settings.feedback_db or f"data/{via}.sqlite3")
    # one journal file may serve several apps: each keeps its own rows, under a number made from its id
    bot_id = int.from_bytes(hashlib.blake2b(app_id.encode(), digest_size=6).digest(), "big")
    replies = Replies(
        retriever,
        settings=config.answer,
        access=Access.of(settings.allowed_user_ids, settings.allowed_chat_ids),
        questions=RateLimiter(settings.rate_limit_per_minute),
        feedback=await asyncio.to_thread(FeedbackLog, path),
        link=link,
        limit=limit,
    )
    journal = await asyncio.to_thread(Journal, path, bot_id)
    pacer = Pacer(settings.sends_per_second, settings.sends_per_chat_per_minute)
    inbox = Inbox(via, journal, replies, outbox=outbox, decode=decode, pacer=pacer)
    await inbox.start()
    logger.info("%s bot ready: %d passages, %s retrieval", via, len(retriever.passages), retriever.mode)
    return inbox
