"""What the bot keeps between updates.

Buttons carry only a short answer id (Telegram allows 64 bytes of callback data); the question's
results live here, in bounded LRU maps, so old buttons expire instead of memory growing. A kept
answer refers to the index only through `BotState.current_retriever`, so an index replaced by
/reindex or an upload is freed instead of being held by the answers made with it.

Retrieval runs on its own bounded pool (`BotState.retrieve`), apart from the SQLite log's thread,
so slow questions never hold up /help, the journal or the access gate. Replies go out through
`bot.telegram.send`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar, cast

from telegram.ext import ContextTypes

from bot.access import Access, Lru, RateLimiter
from bot.answer import Answer, compose
from bot.config import Config
from bot.feedback import FeedbackLog
from bot.journal import Journal
from bot.session import Conversation
from embeddings.retrieval.retrieve import Retriever

P = ParamSpec("P")
T = TypeVar("T")

STATE_KEY = "speechqa"
RETRIEVAL_WORKERS = os.cpu_count() or 2  # searches are CPU-bound: more threads than cores only queue inside


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
    # (chat id, message id) of questions held while search was unavailable, whose askers were told so
    unavailable_told: Lru[tuple[int, int], bool] = field(default_factory=lambda: Lru(4096))

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
