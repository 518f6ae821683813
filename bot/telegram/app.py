"""The Telegram bot: ask in Telegram, get answers with numbered citations.

Usage::

    export TELEGRAM_BOT_TOKEN=123456:ABC…        # from @BotFather; never put it in config.toml
    export TELEGRAM_API_BASE_URL=http://127.0.0.1:8081/bot   # optional: a self-hosted Bot API server
    speechqa bot                                  # long polling; Ctrl-C or SIGTERM stops it cleanly

Handlers: /start (deep links `ask-…`), /help, /ask, /docs, /source N, plain text in private chats,
replies and @mentions in groups, buttons under answers, inline mode, and for admins /reindex and
speech uploads. Everything the bot says is in Chinese.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

from telegram import BotCommand, BotCommandScopeAllGroupChats, BotCommandScopeChat, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    Defaults,
    InlineQueryHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.access import Access, RateLimiter
from bot.config import Config
from bot.feedback import FeedbackLog
from bot.journal import Journal
from bot.replies import REFUSED, SORRY, load_retriever
from bot.telegram import admin, buttons, handlers, ledger
from bot.telegram.ledger import in_ledger
from bot.telegram.send import Undelivered, send_html
from bot.telegram.state import RETRIEVAL_WORKERS, STATE_KEY, BotState, bot_state
from embeddings.errors import SpeechQAError

logger = logging.getLogger(__name__)

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
BASE_URL_ENV = "TELEGRAM_API_BASE_URL"
CONFIG_KEY = "speechqa.config"
ALLOWED_UPDATES = ["message", "callback_query", "inline_query"]
COMMANDS = [
    BotCommand("ask", "提问，例如 /ask 工匠日是怎么设立的？"),
    BotCommand("source", "查看上一个回答中第 N 条出处的整段原文"),
    BotCommand("docs", "查看收录的讲话"),
    BotCommand("help", "使用说明"),
    BotCommand("start", "开始使用"),
]
ADMIN_COMMANDS = [*COMMANDS, BotCommand("reindex", "重建索引（管理员）")]
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop updates already handled, or in hand, and everything from users outside the allow-list."""
    state = bot_state(context)
    # Claimed before the first await, so two copies of an update cannot both pass.
    if not ledger.claim():
        raise ApplicationHandlerStop
    if await ledger.answered_before(update):  # by a run before a crash: Telegram redelivered it
        logger.info("update %s was answered before the restart; skipped", update.update_id)
        raise ApplicationHandlerStop
    user, chat = update.effective_user, update.effective_chat
    if state.access.allows(user.id if user else None, chat.id if chat else None):
        return
    kind = "inline" if update.inline_query else "button" if update.callback_query else "message"
    logger.info("refused %s from user %s in chat %s", kind, user.id if user else "?", chat.id if chat else "?")
    await in_ledger(
        state.feedback,
        state.feedback.refused,
        user_id=user.id if user else None,
        chat_id=chat.id if chat else None,
        kind=kind,
    )
    if update.callback_query:
        await update.callback_query.answer(REFUSED, show_alert=True)
    elif update.inline_query:
        await update.inline_query.answer([], cache_time=0, is_personal=True)
    elif chat and chat.type == "private" and not state.questions.check(("refused", chat.id)):
        await handlers.reply(update, context, [REFUSED])
    raise ApplicationHandlerStop


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the error and tell the user, without details, that something went wrong."""
    error = context.error
    if isinstance(error, Forbidden):
        logger.info("a chat refused our message (%s)", error.message)
        return
    if update is None and isinstance(error, NetworkError):
        logger.warning("network problem while polling (retrying): %s", error)
        return
    if isinstance(error, Undelivered):  # an apology would not get through either
        logger.warning("%s; the update stays in the journal and is answered when Telegram is back", error.message)
        return
    where = f"update {update.update_id}" if isinstance(update, Update) else "a background task"
    logger.error("exception while handling %s", where, exc_info=error)
    if not isinstance(update, Update):
        return
    try:
        if update.callback_query:
            await update.callback_query.answer(SORRY, show_alert=True)
        elif update.effective_message and update.effective_chat:
            message = update.effective_message
            await send_html(context.bot, message.chat.id, [SORRY], reply_to=message.message_id)
    except TelegramError as failure:
        logger.warning("could not tell the user about the error: %s", failure)


async def post_init(application: Application) -> None:
    """Load the retriever once, open the feedback log, set the Chinese command menu, replay the ledger."""
    config: Config = application.bot_data[CONFIG_KEY]
    retriever = await load_retriever(config)
    settings = config.telegram
    log_path = Path(settings.feedback_db or "data/feedback.sqlite3")
    state = BotState(
        config=config,
        retriever=retriever,
        feedback=await asyncio.to_thread(FeedbackLog, log_path),
        journal=await asyncio.to_thread(Journal, log_path, application.bot.id),  # getMe has run: the id is known
        access=Access.from_settings(settings),
        questions=RateLimiter(settings.rate_limit_per_minute),
        inline=RateLimiter(settings.rate_limit_per_minute * 5),
    )
    application.bot_data[STATE_KEY] = state
    ledger.attach(application, state.journal, state.access)
    await ledger.replay(application, state.journal)
    bot = application.bot
    await bot.set_my_commands(COMMANDS)
    await bot.set_my_commands([c for c in COMMANDS if c.command != "start"], scope=BotCommandScopeAllGroupChats())
    for admin_id in settings.admin_ids:
        try:
            await bot.set_my_commands(ADMIN_COMMANDS, scope=BotCommandScopeChat(admin_id))
        except BadRequest as error:  # the admin has not opened a chat with the bot yet
            logger.info("admin command menu for %s not set: %s", admin_id, error.message)
    logger.info(
        "@%s ready: %d passages, %s retrieval on %d thread(s)",
        bot.username,
        len(retriever.passages),
        retriever.mode,
        RETRIEVAL_WORKERS,
    )


async def post_shutdown(application: Application) -> None:
    """Let running searches finish, then close the feedback log."""
    state = application.bot_data.get(STATE_KEY)
    if isinstance(state, BotState):
        state.retrieval.shutdown(wait=True, cancel_futures=True)
        state.journal.close()
        state.feedback.close()


def build_application(config: Config, token: str, base_url: str | None = None, timeout: float = 10.0) -> Application:
    """The configured application; `run_bot` polls with it, tests drive it against a fake server."""
    builder = (
        Application.builder()
        .token(token)
        .defaults(Defaults(parse_mode="HTML", do_quote=False))
        .rate_limiter(AIORateLimiter(max_retries=3))
        .update_queue(ledger.JournalQueue())
        .concurrent_updates(ledger.LedgerProcessor(64))
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .pool_timeout(timeout)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
    )
    if base_url:
        builder = builder.base_url(base_url).base_file_url(file_url(base_url))
    application = builder.build()
    application.bot_data[CONFIG_KEY] = config
    application.add_handler(TypeHandler(Update, gate), group=-1)
    application.add_handler(CommandHandler("start", handlers.start))
    application.add_handler(CommandHandler("help", handlers.help_command))
    application.add_handler(CommandHandler("ask", handlers.ask))
    application.add_handler(CommandHandler("docs", handlers.docs))
    application.add_handler(CommandHandler("source", handlers.source))
    application.add_handler(CommandHandler("reindex", admin.reindex))
    application.add_handler(MessageHandler(filters.Document.ALL, admin.upload))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handlers.text_message))
    unknown = filters.COMMAND & filters.ChatType.PRIVATE
    application.add_handler(MessageHandler(unknown, handlers.unknown_command))
    application.add_handler(CallbackQueryHandler(buttons.button))
    application.add_handler(InlineQueryHandler(buttons.inline_query))
    application.add_error_handler(on_error)
    return application


def api_base_url(config: Config) -> str | None:
    """`TELEGRAM_API_BASE_URL`, else `[telegram] api_base_url`, as the prefix the token is appended to."""
    url = (os.environ.get(BASE_URL_ENV) or config.telegram.api_base_url).strip()
    if not url:
        return None
    if "{token}" in url:
        return url
    url = url.rstrip("/")
    return url if url.endswith("/bot") else f"{url}/bot"


def file_url(base_url: str) -> str:
    """Files are served beside the methods: `…/bot<token>/…` → `…/file/bot<token>/…`."""
    if "/bot{token}" in base_url:
        return base_url.replace("/bot{token}", "/file/bot{token}", 1)
    head, _, _ = base_url.rpartition("/bot")
    return f"{head}/file/bot"


def read_token() -> str:
    """The bot token from `TELEGRAM_BOT_TOKEN`; an error that never repeats it when it is missing or malformed."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise SpeechQAError(f"{TOKEN_ENV} is not set", f"get a token from @BotFather and export {TOKEN_ENV}=…")
    if not _TOKEN.match(token):
        raise SpeechQAError(f"{TOKEN_ENV} does not look like a bot token", "it has the form 123456789:AA…")
    return token


def run_bot(config: Config, token: str) -> None:
    """Run the bot with long polling until SIGINT or SIGTERM; the caller has set up logging (`bot.cli`)."""
    application = build_application(config, token, api_base_url(config))
    try:
        # Pending updates are questions people are waiting on: they are answered, not dropped.
        application.run_polling(allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False)
    except InvalidToken:
        raise SpeechQAError("Telegram rejected the bot token", f"check {TOKEN_ENV} (ask @BotFather)") from None
