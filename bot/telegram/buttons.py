"""The buttons under an answer (paging, full paragraph, 👍/👎) and inline mode (`@bot 问题` anywhere).

Every callback query is answered, or the user's client shows a spinner until it times out.
Inline answers carry retrieval hits only, so they return well within Telegram's time window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from telegram import (
    CallbackQuery,
    InlineQueryResultArticle,
    InlineQueryResultsButton,
    InputTextMessageContent,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.answer import Answer, compose
from bot.telegram.handlers import answer_keyboard, encode_payload
from bot.telegram.ledger import in_ledger
from bot.telegram.render import answer_blocks, paragraph_blocks, passage_message, split_message
from bot.telegram.send import edit_html, send_html
from bot.telegram.state import Asked, BotState, bot_state
from embeddings.errors import BadQuestion

logger = logging.getLogger(__name__)

INLINE_BUDGET_SECONDS = 5.0  # Telegram drops an inline answer that comes after about 10 seconds
INLINE_RESULTS = 10
INLINE_QUERY_CHARS = 256
EXPIRED = "这条回答已过期，请重新提问。"


async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Handle a press on an answer's buttons: `p` turns the page, `o` opens a paragraph, `v` votes."""
    query = update.callback_query
    if query is None:
        return
    kind, _, rest = (query.data or "").partition(":")
    answer_id, _, argument = rest.partition(":")
    state = bot_state(context)
    asked = state.answers.get(answer_id)
    message = query.message if isinstance(query.message, Message) else None
    if asked is None or message is None or message.chat.id != asked.chat_id or not argument.lstrip("-").isdigit():
        await acknowledge(query, EXPIRED, alert=True)
        return
    if kind == "p":
        await turn_page(update, context, asked, int(argument), message)
    elif kind == "o":
        view = await asyncio.to_thread(asked.conversation.open, int(argument))
        if view is None:
            await acknowledge(query, EXPIRED, alert=True)
            return
        await acknowledge(query)
        chunks = split_message(paragraph_blocks(view))
        await send_html(context.bot, message.chat.id, chunks, reply_to=message.message_id)
    elif kind == "v" and argument in ("1", "-1"):
        user = query.from_user
        again = await in_ledger(
            state.feedback,
            state.feedback.vote,
            answer_id=answer_id,
            user_id=user.id,
            vote=int(argument),
            question=asked.question,
        )
        await acknowledge(query, "已更新您的反馈。" if again else "谢谢反馈！")
    else:
        await acknowledge(query, EXPIRED, alert=True)


async def acknowledge(query: CallbackQuery, text: str | None = None, alert: bool = False) -> None:
    """Answer the press. A press handled again after an outage is too old to answer; its reply still goes out."""
    try:
        await query.answer(text, show_alert=alert)
    except BadRequest as error:
        if "query is too old" not in error.message.lower():
            raise
        logger.info("button press %s is too old to acknowledge", query.id)


async def turn_page(
    update: Update, context: ContextTypes.DEFAULT_TYPE, asked: Asked, index: int, message: Message
) -> None:
    """Replace the answer in place with page `index`, as Telegram suggests for paging."""
    query = update.callback_query
    assert query is not None
    async with asked.lock:
        answer = await asyncio.to_thread(asked.page, index)
    if answer is None:
        await acknowledge(query, "没有更多结果了。")
        return
    await acknowledge(query)
    total = len(asked.conversation.result.hits) if asked.conversation.result else None
    chunks = split_message(answer_blocks(answer, total))
    keyboard = answer_keyboard(asked, index, answer)
    await edit_html(context.bot, message, chunks[0], keyboard if len(chunks) == 1 else None)
    if len(chunks) > 1:
        await send_html(context.bot, message.chat.id, chunks[1:], keyboard=keyboard)


async def inline_query(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Offer the top passages for `@bot 问题` typed in any chat."""
    query = update.inline_query
    if query is None:
        return
    state = bot_state(context)
    text = query.query.strip()[:INLINE_QUERY_CHARS]
    button = InlineQueryResultsButton(text="在私聊中查看完整回答", start_parameter=encode_payload(text))
    answer = None
    started = time.perf_counter()
    if text and not state.inline.check(query.from_user.id):
        try:
            answer = await asyncio.wait_for(state.retrieve(_search, state, text), INLINE_BUDGET_SECONDS)
        except TimeoutError:
            logger.warning("inline query took longer than %.0f s; answered empty", INLINE_BUDGET_SECONDS)
        except BadQuestion:
            answer = None
    results = [
        InlineQueryResultArticle(
            id=str(number),
            title=f"[{number}] 《{citation.passage.title}》 · {citation.passage.place}",
            description=citation.snippet[:120],
            input_message_content=InputTextMessageContent(passage_message(citation), parse_mode=ParseMode.HTML),
        )
        for number, citation in enumerate(answer.citations if answer else (), 1)
    ]
    # An allow-list makes answers personal: Telegram would otherwise cache them for other users.
    await query.answer(results, button=button, cache_time=0 if state.access.restricted else 30, is_personal=True)
    if answer is not None:
        await in_ledger(
            state.feedback,
            state.feedback.question,
            answer_id=None,
            user_id=query.from_user.id,
            chat_id=None,
            via="inline",
            question=text,
            found=answer.found,
            top_citation=answer.citations[0].passage.citation if answer.citations else None,
            latency_ms=(time.perf_counter() - started) * 1000,
        )


def _search(state: BotState, text: str) -> Answer:
    settings = replace(state.config.answer, top_k=INLINE_RESULTS)
    return compose(state.retriever.search(text, top_k=INLINE_RESULTS), settings)
