"""A conversation: the last question's results, paging through them, and opening a cited paragraph.

Shared by `speechqa chat` and the Telegram bot (one `Conversation` per chat), so "还有呢？" and
"第二条的全文" mean the same thing everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from embeddings.passage import FRONT_MATTER, Passage, SearchResult
from embeddings.retrieval.retrieve import Retriever, validate_question

from .answer import Answer, compose
from .config import AnswerSettings

POOL = 30
CHANGED_SINCE = "这篇讲话在回答之后更新过，以下是回答时引用的原文。"
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
# Matched against the whole line once polite openers and end punctuation are stripped, so a real
# question that starts the same way ("还有哪些措施？") is never taken for a follow-up.
_POLITE = re.compile(r"^(?:请|麻烦|那)?|[\s？?。！!…~～]+$")
_MORE = re.compile(
    r"(?:还有(?:别的|其他|其它)?的?(?:呢|吗|没有|么)?|(?:别的|其他|其它)的?呢|更多(?:结果)?|继续|接着说"
    r"|下一页|下一批|换一批|再来(?:点|一些|几条)?|再多(?:一些|点)|再看看)"
)
_NUMBER = r"[0-9]+|[一二两三四五六七八九十]+"
_OPEN = re.compile(
    rf"(?:把|将)?(?:打开|查看|看看?|看一下|显示|展开|给我看看?)?第\s*(?P<nth>{_NUMBER})\s*[条个段项]"
    r"的?(?:全文|原文|全段|整段|完整内容|详细内容|内容|出处)?(?:展开|展开看看|是什么|呢|吧)?"
    r"|(?:打开|查看|看看?|看一下|显示|展开)\s*(?P<bare>[0-9]+)"
)


@dataclass(frozen=True, slots=True)
class ParagraphView:
    """A cited paragraph in full, with the paragraphs before and after it for context."""

    number: int
    citation: str
    text: str
    before: str
    after: str
    note: str = ""  # why only the cited passage is shown


def follow_up(text: str) -> tuple[str, int] | None:
    """("more", 0) or ("open", n) when `text` refers to the last answer instead of asking anew."""
    text = _POLITE.sub("", text)
    if _MORE.fullmatch(text):
        return "more", 0
    match = _OPEN.fullmatch(text)
    if match:
        raw = match.group("nth") or match.group("bare")
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
    def __init__(self, retriever: Retriever | Callable[[], Retriever], settings: AnswerSettings) -> None:
        """`retriever` may be a function returning the current one: then a conversation kept for its
        buttons does not hold on to an index that /reindex has since replaced."""
        self._retriever: Callable[[], Retriever] = retriever if callable(retriever) else lambda: retriever
        self.settings = settings
        self.result: SearchResult | None = None
        self.shown = 0  # how many of the result's hits have been shown so far

    def ask(self, question: str) -> Answer:
        """A new question (validated against the configured length limit)."""
        question = validate_question(question, self.settings.max_question_chars)
        self.result = self._retriever().search(question, top_k=POOL)
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
        return None if passage is None else paragraph_view(self._retriever(), passage, number)


def paragraph_view(retriever: Retriever, passage: Passage, number: int) -> ParagraphView:
    """The paragraph around a cited passage; the passage alone, with a note, if the speech changed since.

    The front matter (paragraph 0, the subtitle) is followed by paragraph 1; being no paragraph of
    the body, it is not paragraph 1's "previous paragraph".
    """
    speech = retriever.speeches.get(passage.speech_id)
    index = passage.paragraph_no - 1
    paragraphs = speech.paragraphs if speech is not None else ()
    if speech is not None and passage.paragraph_no == FRONT_MATTER:
        paragraph = speech.front_matter
    else:
        paragraph = paragraphs[index] if 0 <= index < len(paragraphs) else None
    if (
        speech is None
        or paragraph is None
        or not paragraph.start <= passage.start <= passage.end <= paragraph.end
        or speech.text[passage.start : passage.end] != passage.text
    ):
        return ParagraphView(number, passage.citation, passage.text, "", "", CHANGED_SINCE)

    def text_of(i: int) -> str:
        return speech.text[paragraphs[i].start : paragraphs[i].end] if 0 <= i < len(paragraphs) else ""

    text = speech.text[paragraph.start : paragraph.end]
    return ParagraphView(number, passage.citation, text, text_of(index - 1), text_of(index + 1))
