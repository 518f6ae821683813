"""A conversation: the last question's results, paging through them, and opening a cited paragraph.

Shared by `speechqa chat` and the Telegram bot (one `Conversation` per chat), so "还有呢？" and
"第二条的全文" mean the same thing everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from embeddings.passage import Passage, SearchResult
from embeddings.retrieve import Retriever, validate_question

from .answer import Answer, compose
from .config import AnswerSettings

POOL = 30
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_MORE = re.compile(r"^\s*(?:还有(?:呢|吗|没有|别的|其他的?)?|更多|继续|下一页|再来点|再多一些)\s*[？?。！!…]*\s*$")
_OPEN = re.compile(
    r"^\s*(?:(?:打开|查看|看看?|显示)?第\s*([0-9一二两三四五六七八九十]+)\s*[条个段]的?(?:全文|原文|全段|整段|完整内容|出处)?"
    r"|(?:打开|查看|看看?)\s*([0-9]+))\s*[？?。！!]*\s*$"
)


@dataclass(frozen=True, slots=True)
class ParagraphView:
    """A cited paragraph in full, with the paragraphs before and after it for context."""

    number: int
    citation: str
    text: str
    before: str
    after: str


def follow_up(text: str) -> tuple[str, int] | None:
    """("more", 0) or ("open", n) when `text` refers to the last answer instead of asking anew."""
    if _MORE.match(text):
        return "more", 0
    match = _OPEN.match(text)
    if match:
        raw = match.group(1) or match.group(2)
        return "open", int(raw) if raw.isdigit() else _chinese_number(raw)
    return None


def _chinese_number(raw: str) -> int:
    if raw.startswith("十"):
        return 10 + _CN_DIGITS.get(raw[1:], 0)
    if "十" in raw:
        tens, _, ones = raw.partition("十")
        return _CN_DIGITS.get(tens, 1) * 10 + _CN_DIGITS.get(ones, 0)
    return _CN_DIGITS.get(raw, 0)


class Conversation:
    def __init__(self, retriever: Retriever, settings: AnswerSettings) -> None:
        self.retriever = retriever
        self.settings = settings
        self.result: SearchResult | None = None
        self.shown = 0  # how many of the result's hits have been shown so far

    def ask(self, question: str) -> Answer:
        """A new question (validated against the configured length limit)."""
        question = validate_question(question, self.settings.max_question_chars)
        self.result = self.retriever.search(question, top_k=POOL)
        answer = compose(self.result, self.settings)
        self.shown = len(answer.citations)
        return answer

    def more(self) -> Answer | None:
        """The next page of the last question's passages, or None when there are no more."""
        if self.result is None or self.shown >= len(self.result.hits):
            return None
        page = self.result.hits[self.shown : self.shown + self.settings.top_k]
        self.shown += len(page)
        return compose(self.result, self.settings, hits=page)

    def cited(self, number: int) -> Passage | None:
        """Citation `number` of the last question (numbered across pages, from 1)."""
        if self.result is None or not 1 <= number <= min(self.shown, len(self.result.hits)):
            return None
        return self.result.hits[number - 1].passage

    def open(self, number: int) -> ParagraphView | None:
        passage = self.cited(number)
        return None if passage is None else paragraph_view(self.retriever, passage, number)


def paragraph_view(retriever: Retriever, passage: Passage, number: int) -> ParagraphView:
    speech = retriever.speeches[passage.speech_id]
    paragraphs = speech.paragraphs
    index = passage.paragraph_no - 1

    def text_of(i: int) -> str:
        return speech.text[paragraphs[i].start : paragraphs[i].end] if 0 <= i < len(paragraphs) else ""

    return ParagraphView(number, passage.citation, text_of(index), text_of(index - 1), text_of(index + 1))
