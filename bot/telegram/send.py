"""The one way the bot sends replies: retried on the way to Telegram, never twice once delivered.

A request that failed before Telegram had all of it is tried again with doubling pauses
(`SEND_BACKOFF`); one whose response timed out counts as delivered. A reply holds the bot's one
reply-in-doubt turn (`bot.telegram.ledger.in_doubt`) from its first request until it is marked
answered, and "typing…" shows while a slow answer is being found.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import httpx
from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.delivery import Backoff
from bot.telegram.ledger import in_doubt, settle, undelivered

logger = logging.getLogger(__name__)

T = TypeVar("T")

TYPING_EVERY = 4.5  # Telegram shows "typing…" for at most 5 seconds per action
TYPING_AFTER = 0.3  # a faster answer needs no indicator, and skipping it halves the requests per answer


# Twelve tries over about a minute ride out a Telegram outage of that long; a reply that still does
# not get through is left in the journal and tried again later (`ledger.requeue`).
SEND_BACKOFF = Backoff()


class Undelivered(NetworkError):
    """Telegram could not be reached for a reply within `SEND_BACKOFF`; the update stays unanswered."""


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
