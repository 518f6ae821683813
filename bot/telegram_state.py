"""What the bot keeps between updates, and the one way it sends replies.

Buttons carry only a short answer id (Telegram allows 64 bytes of callback data); the question's
results live here, in bounded LRU maps, so old buttons expire instead of memory growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import cast

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
from .telegram_ledger import settle

logger = logging.getLogger(__name__)

STATE_KEY = "speechqa"
# Five tries with doubling pauses (0.25 s … 2 s) ride out ~4 s of a flaky link before a reply is given up.
SEND_ATTEMPTS = 5
TYPING_EVERY = 4.5  # Telegram shows "typing…" for at most 5 seconds per action
TYPING_AFTER = 0.3  # a faster answer needs no indicator, and skipping it halves the requests per answer


def backoff(attempt: int) -> float:
    return 0.25 * 2 ** (attempt - 1)


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
    access: Access
    questions: RateLimiter
    inline: RateLimiter
    answers: Lru[str, Asked] = field(default_factory=lambda: Lru(4096))
    latest: Lru[int, str] = field(default_factory=lambda: Lru(4096))  # chat id → its latest answer id
    seen_updates: Lru[int, bool] = field(default_factory=lambda: Lru(10_000))
    rebuilding: asyncio.Lock = field(default_factory=asyncio.Lock)

    def remember(self, chat_id: int, question: str, conversation: Conversation) -> Asked:
        asked = Asked(secrets.token_urlsafe(6), chat_id, question, conversation)
        self.answers.put(asked.answer_id, asked)
        self.latest.put(chat_id, asked.answer_id)
        return asked

    def latest_in(self, chat_id: int) -> Asked | None:
        answer_id = self.latest.get(chat_id)
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
) -> list[Message]:
    """Send the chunks in order: the first quotes the question, the last carries the buttons.

    Flood limits (429) are waited out by the application's rate limiter. A request that failed
    before Telegram had all of it (refused or dropped connection, 5xx, connect or pool timeout) is
    tried again. A *read* timeout is not: the request was fully sent, so Telegram has almost
    certainly executed it and is only slow to say so; sending again would post the answer twice,
    so the chunk counts as sent (and is logged). Refusals (400, 403) are final. Once sent, the
    update being handled is marked answered in the ledger, so a restart does not answer it again.
    """
    sent: list[Message] = []
    for index, chunk in enumerate(chunks):
        quote = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to and index == 0 else None
        markup = keyboard if index == len(chunks) - 1 else None
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                sent.append(
                    await bot.send_message(
                        chat_id,
                        chunk,
                        parse_mode=ParseMode.HTML,
                        reply_parameters=quote,
                        reply_markup=markup,
                        message_thread_id=thread_id,
                    )
                )
                break
            except (BadRequest, Forbidden, RetryAfter):
                raise
            except NetworkError as error:
                if was_delivered(error):
                    logger.warning("no response from Telegram for a message to chat %s; assuming it arrived", chat_id)
                    break
                if attempt == SEND_ATTEMPTS:
                    raise
                logger.warning("sending to chat %s failed (%s); trying again", chat_id, error)
                await asyncio.sleep(backoff(attempt))
    await settle()
    return sent


def was_delivered(error: NetworkError) -> bool:
    """Whether the request reached Telegram whole and only its response is missing (a read timeout)."""
    return isinstance(error, TimedOut) and isinstance(error.__cause__, httpx.ReadTimeout)


async def edit_html(bot: Bot, message: Message, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    """Replace a message's text in place; editing to what it already says is not an error."""
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            await bot.edit_message_text(
                text, message.chat.id, message.message_id, parse_mode=ParseMode.HTML, reply_markup=keyboard
            )
            return
        except BadRequest as error:
            if "not modified" in error.message.lower():
                return
            raise
        except (Forbidden, RetryAfter):
            raise
        except NetworkError as error:  # an edit is idempotent, so trying again is always safe
            if attempt == SEND_ATTEMPTS:
                raise
            logger.warning("editing in chat %s failed (%s); trying again", message.chat.id, error)
            await asyncio.sleep(backoff(attempt))


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
