"""What the DingTalk and Feishu bots say to a message: one reply (a list of markdown messages) or nothing.

Platform-neutral: the platforms' packages turn their events into `Incoming` and send the markdown
the way their platform shows it. The words are the Telegram bot's (it takes them from here): the same answer, the same
"not in the speeches", the same rate-limit and error messages, and the same follow-ups
("还有呢？", "第二条的全文") as in `speechqa chat`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bot import markdown
from bot.access import Access, Lru, RateLimiter
from bot.config import AnswerSettings, Config
from bot.feedback import FeedbackLog
from bot.markdown import Link
from bot.session import Conversation, follow_up
from embeddings.engine import open_retriever
from embeddings.errors import BadQuestion, SearchUnavailable
from embeddings.retrieval.retrieve import Retriever

logger = logging.getLogger(__name__)

SORRY = "抱歉，处理您的请求时出了点问题，请稍后再试。"
REFUSED = "抱歉，这个机器人只对授权用户开放。如需使用，请联系管理员。"
ONLY_TEXT = "目前只能回答文字问题，请直接输入问题，例如：工匠日是怎么设立的？"
NO_QUESTION = "请先提一个问题。"
NO_MORE = "没有更多结果了。"
NOT_SEARCHABLE = "这个问题里没有可以检索的词语，请换个说法，例如：工匠日是怎么设立的？"
WARM_UP_QUESTION = "工会"  # asked once at start-up, so that the first real question does not load the dictionaries
SEARCH_UNAVAILABLE = "检索服务暂时不可用。您的问题已记下，服务恢复后会自动回答，无需重发。"
HELP = """**使用说明**

- 单聊中直接发送问题；群聊中请 @我 再提问。
- 每个回答都注明出自哪篇讲话的哪一段，例如：工匠日是怎么设立的？
- “更多”：下一页结果；“全文 N”：第 N 条出处的整段原文。
- 也可以说“还有呢？”或“第二条的全文”。
- “目录”：收录的讲话。"""
_SOURCE = re.compile(r"^(?:/source|全文|原文)\s*(\d+)$")
_HELP = frozenset({"/help", "/start", "help", "帮助", "使用说明", "?", "？"})
_DOCS = frozenset({"/docs", "目录", "收录", "讲话列表"})


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message as the shared layer sees it, whatever the platform."""

    message_id: str  # the platform's id of the message: the same on every redelivery
    user_id: str
    chat_id: str
    private: bool  # a one-to-one chat with the bot
    addressed: bool  # private, or the bot is @-mentioned in the group
    kind: str  # "text", or the platform's name for what else it is
    text: str  # with the @-mention of the bot taken out
    payload: dict[str, Any] = field(compare=False)  # the event as received: journaled, to reply to after a restart


@dataclass
class Thread:
    """One user's conversation in one chat: "更多" and "全文 N" refer to their latest answer there."""

    conversation: Conversation
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Replies:
    """The replies of one bot: its access rules, rate limits, retrieval pool and conversations."""

    def __init__(
        self,
        retriever: Retriever,
        *,
        settings: AnswerSettings,
        access: Access,
        questions: RateLimiter,
        feedback: FeedbackLog,
        link: Link | None,
        limit: int,
        workers: int = 2,
    ) -> None:
        self.retriever, self.settings, self.access, self.questions = retriever, settings, access, questions
        self.feedback, self.link, self.limit = feedback, link, limit
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="speechqa-retrieval")
        self.threads: Lru[tuple[str, str], Thread] = Lru(4096)

    async def reply(self, incoming: Incoming, via: str) -> list[str] | None:
        """The messages to send back, or None for a message to pass over in silence."""
        if not self.access.allows(incoming.user_id, incoming.chat_id):
            await self._log(self.feedback.refused, user_id=incoming.user_id, chat_id=incoming.chat_id, kind="message")
            if incoming.private and not self.questions.check(("refused", incoming.user_id)):
                return [REFUSED]
            return None
        if not incoming.addressed:
            return None
        if incoming.kind != "text":
            return [ONLY_TEXT]
        text = incoming.text.strip()
        command = text.lower()
        if not text or command in _HELP:
            return [HELP]
        if command in _DOCS:
            rows = [
                (s.title, len(self.retriever.speeches.passage_rows(key))) for key, s in self.retriever.speeches.items()
            ]
            return markdown.pack(markdown.docs_blocks(rows), self.limit)
        key = (incoming.chat_id, incoming.user_id)
        source = _SOURCE.match(text)
        action = ("open", int(source.group(1))) if source else ("more", 0) if command == "/more" else follow_up(text)
        if action is None:
            return await self._answer(incoming, key, text, via)
        return await (self._open(key, action[1]) if action[0] == "open" else self._more(key))

    async def _answer(self, incoming: Incoming, key: tuple[str, str], question: str, via: str) -> list[str]:
        wait = self.questions.check(incoming.user_id)
        if wait:
            return [f"您提问有点频繁，请 {math.ceil(wait)} 秒后再试。谢谢理解！"]
        limit = self.settings.max_question_chars
        if len(question) > limit:
            return [f"问题太长了（{len(question)} 字），请控制在 {limit} 字以内。"]
        thread = Thread(Conversation(self.retriever, self.settings))
        started = time.perf_counter()
        try:
            answer = await self._retrieve(thread.conversation.ask, question)
        except BadQuestion:
            return [NOT_SEARCHABLE]
        self.threads.put(key, thread)
        await self._log(
            self.feedback.question,
            answer_id=incoming.message_id,
            user_id=incoming.user_id,
            chat_id=incoming.chat_id,
            via=via,
            question=question,
            found=answer.found,
            top_citation=answer.citations[0].passage.citation if answer.citations else None,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        return self._page(thread, answer)

    async def _more(self, key: tuple[str, str]) -> list[str]:
        thread = self.threads.get(key)
        if thread is None:
            return [NO_QUESTION]
        async with thread.lock:
            answer = await self._retrieve(thread.conversation.more)
        return [NO_MORE] if answer is None else self._page(thread, answer)

    async def _open(self, key: tuple[str, str], number: int) -> list[str]:
        thread = self.threads.get(key)
        view = None if thread is None else await self._retrieve(thread.conversation.open, number)
        if view is None:
            return [f"没有第 {number} 条出处。请先提问，再发送“全文 N”查看（N 是出处编号）。"]
        return markdown.pack(markdown.paragraph_blocks(view), self.limit)

    def _page(self, thread: Thread, answer: Any) -> list[str]:
        result = thread.conversation.result
        total = len(result.hits) if result else None
        more = result is not None and thread.conversation.shown < len(result.hits)
        return markdown.pack(markdown.answer_blocks(answer, self.link, more, total), self.limit)

    async def _retrieve(self, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(call, *args))

    async def _log(self, call: Any, **kwargs: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self.feedback.worker, functools.partial(call, **kwargs))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


async def load_retriever(config: Config) -> Retriever:
    """A bot's retriever: the index loaded (built first where needed) off the event loop, then warmed.

    The first search loads the tokenizer's dictionaries (about a second): before connecting, so the
    first people to ask after a start or a restart do not wait for it. With Milvus down the bot
    starts anyway; its questions wait in the journal until search is back.
    """
    retriever, report = await asyncio.to_thread(
        open_retriever, config.corpus_path, config.index_path, config.engine, False, True
    )
    if report is not None:
        logger.info("index built: %d passages", report.passages)
    if retriever.notice:
        logger.warning("%s", retriever.notice)
    try:
        await asyncio.to_thread(retriever.search, WARM_UP_QUESTION, top_k=1)
    except SearchUnavailable as error:
        logger.warning("%s", error)
    return retriever
