"""Asking: /start, /help, /ask, plain-text questions, follow-ups, /docs and /source.

Retrieval runs on the bot's retrieval pool (`BotState.retrieve`), so slow questions never hold up
the event loop, nor commands that need no search; the answer goes out as HTML split below
Telegram's limit, with its buttons on the last piece. Buttons and inline mode live in
`bot.telegram.buttons`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import logging
import math
import re
import time

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot.answer import Answer
from bot.replies import NO_MORE, NOT_SEARCHABLE, SEARCH_UNAVAILABLE
from bot.session import Conversation, follow_up
from bot.telegram import ledger
from bot.telegram.ledger import in_ledger
from bot.telegram.render import answer_blocks, docs_blocks, paragraph_blocks, split_message
from bot.telegram.send import send_html, typing
from bot.telegram.state import Asked, bot_state
from embeddings.errors import BadQuestion, SearchUnavailable

EXAMPLES = ("工匠日是怎么设立的？", "“春风行动”坚持了多少年？", "好干部的标准是什么？")
WELCOME = (
    "您好！我能回答关于已收录讲话的问题，每个回答都注明出自哪篇讲话的哪一段。\n\n试试这样问：\n"
    + "\n".join(f"• {example}" for example in EXAMPLES)
    + "\n\n发送 /help 查看全部用法，/docs 查看收录了哪些讲话。"
)
HELP = """<b>使用说明</b>
• 私聊中直接发送问题即可；群组中请用 /ask 问题，或回复我的消息、@我。
• /ask 问题 — 提问，例如 /ask 工匠日是怎么设立的？
• /source N — 查看上一个回答中第 N 条出处的整段原文
• /docs — 查看收录的讲话
• 回答下方的按钮：更多结果、查看整段原文、👍/👎 反馈
• 也可以说“还有呢？”或“第二条的全文”。
• 在任意聊天中输入 @{bot} 加问题，可以直接引用相关段落。"""
USAGE_ASK = "请在 /ask 后面写上问题，例如：/ask 工匠日是怎么设立的？"
USAGE_SOURCE = "用法：/source N，N 是上一个回答中的出处编号，例如 /source 1。"
logger = logging.getLogger(__name__)
DEEP_LINK_PREFIX = "ask-"


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Welcome the user; a deep link `/start ask-…` asks the question it carries."""
    payload = context.args[0] if context.args else ""
    question = decode_payload(payload)
    if question:
        await answer_question(update, context, question, via="deeplink")
    elif payload in ("help", "inline-help"):
        await help_command(update, context)
    else:
        await reply(update, context, [WELCOME])


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain the commands and buttons."""
    await reply(update, context, [HELP.format(bot=html.escape(context.bot.username))], escape=False)


async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer `/ask 问题`, also sent as `/ask@botname 问题` in groups."""
    text = update.effective_message.text if update.effective_message else ""
    parts = re.split(r"\s+", (text or "").strip(), maxsplit=1)
    await answer_question(update, context, parts[1] if len(parts) > 1 else "", via="ask")


async def text_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A question in a private chat; in groups only when it replies to or mentions the bot."""
    message = update.effective_message
    if message is None or not message.text:
        return
    text = message.text if message.chat.type == ChatType.PRIVATE else addressed_text(message, context.bot)
    if text is None:
        return
    action = follow_up(text)
    if action == ("more", 0):
        await more(update, context)
    elif action is not None:
        await show_source(update, context, action[1])
    else:
        await answer_question(update, context, text, via="text" if message.chat.type == ChatType.PRIVATE else "group")


async def docs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """List the speeches in the index with their passage counts."""
    retriever = bot_state(context).retriever
    speeches = retriever.speeches
    rows = [(s.title, s.source, len(speeches.passage_rows(speech_id)), s.aliases) for speech_id, s in speeches.items()]
    await reply(update, context, split_message(docs_blocks(rows)), escape=False)


async def source(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the full paragraph of citation N of the user's latest answer in this chat."""
    argument = context.args[0] if context.args else ""
    if not argument.isdigit():
        await reply(update, context, [USAGE_SOURCE])
        return
    await show_source(update, context, int(argument))


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Point at /help for a command we do not have."""
    await reply(update, context, ["没有这个命令。发送 /help 查看可用的命令。"])


async def answer_question(update: Update, context: ContextTypes.DEFAULT_TYPE, question: str, via: str) -> None:
    """Rate-limit, retrieve in a worker thread under a typing indicator, reply with buttons, and log."""
    state = bot_state(context)
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None:
        return
    question = question.strip()
    if not question:
        await reply(update, context, [USAGE_ASK])
        return
    wait = state.questions.check(user.id if user else chat.id)
    if wait:
        await reply(update, context, [f"您提问有点频繁，请 {math.ceil(wait)} 秒后再试。谢谢理解！"])
        return
    limit = state.config.answer.max_question_chars
    if len(question) > limit:
        await reply(update, context, [f"问题太长了（{len(question)} 字），请控制在 {limit} 字以内。"])
        return
    conversation = Conversation(state.current_retriever, state.config.answer)
    started = time.perf_counter()
    try:
        async with typing(context.bot, chat.id, thread_of(message)):
            answer = await state.retrieve(conversation.ask, question)
    except BadQuestion:
        await reply(update, context, [NOT_SEARCHABLE])
        return
    except SearchUnavailable as error:
        # The question stays unanswered in the journal, which asks it again until search is back;
        # the asker hears once that the answer will come, not at every try.
        logger.warning("question held until search is back: %s", error)
        if state.unavailable_told.get((chat.id, message.message_id)) is None:
            state.unavailable_told.put((chat.id, message.message_id), True)
            await reply(update, context, [SEARCH_UNAVAILABLE], answers=False)
        ledger.undelivered()
        return
    latency_ms = (time.perf_counter() - started) * 1000
    asked = state.remember(chat.id, user.id if user else None, question, conversation)
    await send_page(context.bot, asked, 0, answer, message)
    top = answer.citations[0].passage.citation if answer.citations else None
    await in_ledger(
        state.feedback,
        state.feedback.question,
        answer_id=asked.answer_id,
        user_id=user.id if user else None,
        chat_id=chat.id,
        via=via,
        question=question,
        found=answer.found,
        top_citation=top,
        latency_ms=latency_ms,
    )


async def more(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The next page of the user's latest answer in this chat, as a new message ("还有呢？")."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    asked = bot_state(context).latest_of(chat.id, user.id if user else None) if chat else None
    if asked is None or message is None:
        await reply(update, context, ["请先提一个问题。"])
        return
    async with asked.lock:
        conversation = asked.conversation
        index = -(-conversation.shown // conversation.settings.top_k)
        answer = await asyncio.to_thread(asked.page, index) if index < asked.pages else None
    if answer is None:
        await reply(update, context, [NO_MORE])
        return
    await send_page(context.bot, asked, index, answer, message)


async def show_source(update: Update, context: ContextTypes.DEFAULT_TYPE, number: int) -> None:
    chat, user = update.effective_chat, update.effective_user
    asked = bot_state(context).latest_of(chat.id, user.id if user else None) if chat else None
    view = await asyncio.to_thread(asked.conversation.open, number) if asked else None
    if view is None:
        await reply(update, context, [f"没有第 {number} 条出处。请先提问，再用 /source N 查看（N 是出处编号）。"])
        return
    await reply(update, context, split_message(paragraph_blocks(view)), escape=False)


async def send_page(bot: Bot, asked: Asked, index: int, answer: Answer, question: Message) -> None:
    total = len(asked.conversation.result.hits) if asked.conversation.result else None
    chunks = split_message(answer_blocks(answer, total))
    await send_html(
        bot,
        asked.chat_id,
        chunks,
        reply_to=question.message_id,
        keyboard=answer_keyboard(asked, index, answer),
        thread_id=thread_of(question),
    )


def answer_keyboard(asked: Asked, index: int, answer: Answer) -> InlineKeyboardMarkup:
    """Open-paragraph buttons for this page, paging, and feedback; data is `kind:answer_id:argument`."""
    key = asked.answer_id
    numbers = [answer.first_rank + citation.number - 1 for citation in answer.citations]
    rows = [[InlineKeyboardButton(f"全文[{n}]", callback_data=f"o:{key}:{n}") for n in numbers]]
    paging = []
    if index > 0:
        paging.append(InlineKeyboardButton("« 上一页", callback_data=f"p:{key}:{index - 1}"))
    if index + 1 < asked.pages:
        paging.append(InlineKeyboardButton("更多结果 »", callback_data=f"p:{key}:{index + 1}"))
    votes = [
        InlineKeyboardButton("👍", callback_data=f"v:{key}:1"),
        InlineKeyboardButton("👎", callback_data=f"v:{key}:-1"),
    ]
    rows += [paging, votes]
    return InlineKeyboardMarkup([row for row in rows if row])


def addressed_text(message: Message, bot: Bot) -> str | None:
    """The question in a group message meant for the bot (a reply to it or an @mention), else None."""
    text = message.text or ""
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
        return text
    mention = f"@{bot.username}".lower()
    for entity, value in message.parse_entities([MessageEntity.MENTION]).items():
        if value.lower() == mention:
            start = len(text.encode("utf-16-le")[: entity.offset * 2].decode("utf-16-le"))
            return (text[:start] + text[start + len(value) :]).strip()
    return None


def thread_of(message: Message) -> int | None:
    return message.message_thread_id if message.is_topic_message else None


def encode_payload(question: str) -> str:
    """A `/start` deep-link payload carrying the question (64 characters of A–Z a–z 0–9 _ - at most)."""
    payload = DEEP_LINK_PREFIX + base64.urlsafe_b64encode(question.encode()).decode().rstrip("=")
    return payload if len(payload) <= 64 else "inline-help"


def decode_payload(payload: str) -> str | None:
    if not payload.startswith(DEEP_LINK_PREFIX):
        return None
    body = payload.removeprefix(DEEP_LINK_PREFIX)
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().strip() or None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


async def reply(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    chunks: list[str],
    escape: bool = True,
    answers: bool = True,
) -> None:
    """Answer the update's message; plain Chinese strings are escaped here, rendered HTML is not.

    `answers=False` for a progress note: the update counts as answered only at its final reply.
    """
    message = update.effective_message
    if message is None:
        return
    if escape:
        chunks = [split for chunk in chunks for split in split_message([[(chunk, ())]])]
    await send_html(
        context.bot,
        message.chat.id,
        chunks,
        reply_to=message.message_id,
        thread_id=thread_of(message),
        answers=answers,
    )
