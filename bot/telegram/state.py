"""What the bot keeps between updates, and the one way it sends replies.

Buttons carry only a short answer id (Telegram allows 64 bytes of callback data); the question's
results live here, in bounded LRU maps, so old buttons expire instead of memory growing. A kept
answer refers to the index only through `BotState.current_retriever`, so an index replaced by
/reindex or an upload is freed instead of being held by the answers made with it.

Retrieval runs on its own bounded pool (`BotState.retrieve`), apart from the SQLite log's thread,
so slow questions never hold up /help, the journal or the access gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar, cast

import httpx
from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import ContextTypes

from embeddings.retrieve import Retriever

from .answer import Answer, compose
from .config import Config
from .feedback import FeedbackLog
from .session import Conversation
from .telegram_access import Access, Lru, RateLimiter
from .telegram_journal import Journal
from .telegram_ledger import in_doubt, settle, undelivered

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

STATE_KEY = "speechqa"
TYPING_EVERY = 4.5  # Telegram shows "typing…" for at most 5 seconds per action
TYPING_AFTER = 0.3  # a faster answer needs no indicator, and skipping it halves the requests per answer
RETRIEVAL_WORKERS = os.cpu_count() or 2  # searches are CPU-bound: more threads than cores only queue inside


@dataclass(frozen=True)
class Backoff:
    """Pauses between tries of a request that failed on its way to Telegram: doubling, capped, within a total."""

    first: float = 0.25
    cap: float = 8.0
    total: float = 60.0

    def pauses(self) -> Iterator[float]:
        pause, spent = self.first, 0.0
        while spent + pause <= self.total:
            yield pause
            spent += pause
            pause = min(pause * 2, self.cap)


# Twelve tries over about a minute ride out a Telegram outage of that long; a reply that still does
# not get through is left in the journal and tried again later (telegram_ledger.requeue).
SEND_BACKOFF = Backoff()


class Undelivered(NetworkError):
    """Telegram could not be reached for a reply within `SEND_BACKOFF`; the update stays unanswered."""


@dataclass
class Asked:
    """One question and its ranked passages; the buttons under its answer point here."""

    answer_id: str
    chat_id: int
    question: str
    conversation: Conversation
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pages(self) -> int:
        result = self.conversation.result
        top_k = self.conversation.settings.top_k
        return 0 if result is None else -(-len(result.hits) // top_k)

    def page(self, index: int) -> Answer | None:
        """Page `index` (from 0) of the results; what it shows then counts as shown for /source."""
        conversation, result = self.conversation, self.conversation.result
        if result is None or not 0 <= index < max(self.pages, 1):
            return None
        top_k = conversation.settings.top_k
        hits = result.hits[index * top_k : (index + 1) * top_k]
        conversation.shown = max(conversation.shown, index * top_k + len(hits))
        return compose(result, conversation.settings) if index == 0 else compose(result, conversation.settings, hits)


@dataclass
class BotState:
    config: Config
    retriever: Retriever
    feedback: FeedbackLog
    journal: Journal
    access: Access
    questions: RateLimiter
    inline: RateLimiter
    retrieval: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(RETRIEVAL_WORKERS, thread_name_prefix="speechqa-retrieval")
    )
    answers: Lru[str, Asked] = field(default_factory=lambda: Lru(4096))
    # (chat id, user id) → that user's latest answer there: in a group, /source N means *your* last answer
    latest: Lru[tuple[int, int | None], str] = field(default_factory=lambda: Lru(4096))
    rebuilding: asyncio.Lock = field(default_factory=asyncio.Lock)

    def current_retriever(self) -> Retriever:
        return self.retriever

    async def retrieve(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a search on the retrieval pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.retrieval, functools.partial(call, *args, **kwargs))

    def remember(self, chat_id: int, user_id: int | None, question: str, conversation: Conversation) -> Asked:
        asked = Asked(secrets.token_urlsafe(6), chat_id, question, conversation)
        self.answers.put(asked.answer_id, asked)
        self.latest.put((chat_id, user_id), asked.answer_id)
        return asked

    def latest_of(self, chat_id: int, user_id: int | None) -> Asked | None:
        answer_id = self.latest.get((chat_id, user_id))
        return None if answer_id is None else self.answers.get(answer_id)


def bot_state(context: ContextTypes.DEFAULT_TYPE) -> BotState:
    return cast(BotState, context.bot_data[STATE_KEY])


async def send_html(
    bot: Bot,
    chat_id: int,
    chunks: Sequence[str],
    *,
    reply_to: int | None = None,
    keyboard: InlineKeyboardMarkup | None = None,
    thread_id: int | None = None,
    answers: bool = True,
) -> list[Message]:
    """Send the chunks in order: the first quotes the question, the last carries the buttons.

    Flood limits (429) are waited out by the application's rate limiter. A request that failed
    before Telegram had all of it (refused or dropped connection, 5xx, connect or pool timeout) is
    tried again, with the pauses of `SEND_BACKOFF`. A *read* timeout is not: the request was fully
    sent, so Telegram has almost certainly executed it and is only slow to say so; sending again
    would post the answer twice, so the chunk counts as sent (and is logged). Refusals (400, 403)
    are final. Once sent, the update being handled is marked answered in the ledger, so a restart
    does not answer it again; `answers=False` sends a progress note that leaves it unanswered.

    When nothing got through within the backoff, raises `Undelivered` and leaves the update
    unanswered in the ledger, to be tried again when Telegram is back.
    """
    # A reply holds the bot's one reply-in-doubt lock from its first request until it is marked
    # answered, so a kill finds at most one reply delivered but not yet in the journal.
    lock = in_doubt() if answers else None
    sent: list[Message] = []
    holding = False
    try:
        for index, chunk in enumerate(chunks):
            quote = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to and index == 0 else None
            markup = keyboard if index == len(chunks) - 1 else None
            message = await _persist(
                f"sending to chat {chat_id}",
                functools.partial(
                    bot.send_message,
                    chat_id,
                    chunk,
                    parse_mode=ParseMode.HTML,
                    reply_parameters=quote,
                    reply_markup=markup,
                    message_thread_id=thread_id,
                ),
                give_up=index == 0,  # once part of a reply is out, sending it all again later would repeat that part
                hold=lock if index == 0 else None,
            )
            holding = lock is not None
            if message is not None:
                sent.append(message)
        if answers:
            await settle()
    finally:
        if holding and lock is not None:
            lock.release()
    return sent


async def _persist(
    what: str, request: Callable[[], Awaitable[T]], give_up: bool = True, hold: asyncio.Lock | None = None
) -> T | None:
    """`request()`, tried again after failures on the way to Telegram; None when it timed out after arriving.

    When the backoff runs out, `give_up` leaves the update unanswered in the ledger (`Undelivered`);
    otherwise the failure is raised as it came. With `hold`, each try waits for that lock and
    releases it unless the request may have been delivered, when the caller keeps it; so the
    pauses between tries hold up no other reply.
    """
    pauses = SEND_BACKOFF.pauses()
    while True:
        if hold is not None:
            await hold.acquire()
        kept = False
        try:
            result = await request()
            kept = True
            return result
        except (BadRequest, Forbidden, RetryAfter):
            raise
        except NetworkError as error:
            if was_delivered(error):
                logger.warning("no response from Telegram (%s); assuming the request arrived", what)
                kept = True
                return None
            pause = next(pauses, None)
            if pause is None:
                if give_up:
                    undelivered()
                    raise Undelivered(f"{what}: Telegram unreachable ({error.message})") from error
                raise
            logger.warning("%s failed (%s); trying again in %.2g s", what, error.message, pause)
        finally:
            if hold is not None and not kept:
                hold.release()
        await asyncio.sleep(pause)


def was_delivered(error: NetworkError) -> bool:
    """Whether the request reached Telegram whole and only its response is missing (a read timeout)."""
    return isinstance(error, TimedOut) and isinstance(error.__cause__, httpx.ReadTimeout)


async def edit_html(bot: Bot, message: Message, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    """Replace a message's text in place; editing to what it already says is not an error.

    Failures on the way to Telegram are tried again as in `send_html`, and raise `Undelivered`
    when the backoff runs out.
    """
    request = functools.partial(
        bot.edit_message_text,
        text,
        message.chat.id,
        message.message_id,
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard,
    )
    try:
        await _persist(f"editing in chat {message.chat.id}", request)
    except BadRequest as error:
        if "not modified" not in error.message.lower():
            raise


@contextlib.asynccontextmanager
async def typing(bot: Bot, chat_id: int, thread_id: int | None = None) -> AsyncIterator[None]:
    """Show "typing…" in the chat while the block runs longer than `TYPING_AFTER` seconds.

    A failed indicator never fails the reply. One already on its way is awaited before the
    block's reply goes out: arriving after the answer it would leave "typing…" under a finished
    reply.
    """

    async def send() -> bool:
        try:
            await bot.send_chat_action(chat_id, ChatAction.TYPING, message_thread_id=thread_id)
        except Forbidden:
            return False
        except Exception as error:  # the indicator is decoration; the answer matters
            logger.debug("typing indicator failed: %s", error)
        return True

    in_flight: list[asyncio.Task[bool]] = []

    async def keep_typing() -> None:
        await asyncio.sleep(TYPING_AFTER)
        while True:
            in_flight.append(asyncio.create_task(send()))
            # shielded: cancelling the loop must not cut off a request Telegram may already have
            if not await asyncio.shield(in_flight[-1]):
                return
            await asyncio.sleep(TYPING_EVERY)

    loop = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        loop.cancel()
        await asyncio.gather(loop, *in_flight, return_exceptions=True)
