"""Whatever the speeches, titles and questions hold, every Telegram message the bot builds is valid HTML
within the limit: answers, paragraphs, the /docs list (split into messages) and inline results (one
message each, clipped). Checked with the fake Bot API's own parser, which refuses what Telegram does.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.answer import Citation, compose
from bot.config import AnswerSettings
from bot.session import ParagraphView
from bot.telegram.render import (
    MESSAGE_LIMIT,
    Block,
    answer_blocks,
    docs_blocks,
    paragraph_blocks,
    passage_message,
    split_message,
)
from embeddings.passage import Hit, Passage, SearchResult
from tests.fakebotapi import parse_html, utf16_len

# Markup characters, Chinese punctuation, and 𠌕 (outside the BMP: two UTF-16 units).
TRICKY = st.text(alphabet=st.sampled_from("讲话工会。！？；，、\n <>&\"'a𠌕”《》…"), max_size=300)
TEXT = st.one_of(TRICKY, st.text(max_size=200))
LONG = st.one_of(TEXT, st.builds(lambda unit, n: unit * n, TRICKY, st.integers(1, 40)))
LIMITS = st.one_of(st.just(MESSAGE_LIMIT), st.integers(min_value=60, max_value=600))


def passage(number: int, text: str, title: str, section: Sequence[str]) -> Passage:
    return Passage(f"s:{number}.1", "s", title, tuple(section), number, 1, 0, len(text), text, "s.txt")


def shown(message: str, limit: int) -> str:
    """The text Telegram would show for `message`, after checking it would accept it."""
    text, problem = parse_html(message)
    assert problem == "", (problem, message)
    assert utf16_len(message) <= limit and utf16_len(text) <= limit
    assert text.strip(), message  # Telegram refuses a message with nothing to show
    return text


def assert_split_keeps_everything(blocks: list[Block], limit: int) -> None:
    messages = split_message(blocks, limit)
    texts = [shown(message, limit) for message in messages]
    original = "".join(text for block in blocks for text, _ in block)
    assert "".join("".join(texts).split()) == "".join(original.split())  # whitespace at the cuts aside


@settings(max_examples=100)
@given(
    texts=st.lists(LONG, min_size=0, max_size=4),
    title=TEXT,
    section=st.lists(TEXT, max_size=2),
    answerable=st.booleans(),
    snippet_chars=st.integers(min_value=1, max_value=400),
    limit=LIMITS,
)
def test_answers(
    *, texts: list[str], title: str, section: list[str], answerable: bool, snippet_chars: int, limit: int
) -> None:
    hits = tuple(
        Hit(rank, passage(rank, text, title, section), 1.0 / rank, 1.0, None, "lexical")
        for rank, text in enumerate(texts, 1)
        if text.strip()
    )
    result = SearchResult("问题", hits, 0.9, answerable and bool(hits), "lexical", terms=(("工会", 2.0, True),))
    answer = compose(result, AnswerSettings(snippet_chars=snippet_chars))
    assert_split_keeps_everything(answer_blocks(answer, len(hits)), limit)


@settings(max_examples=100)
@given(number=st.integers(1, 50), citation=TEXT, text=LONG, before=TEXT, after=TEXT, note=TEXT, limit=LIMITS)
def test_paragraphs(*, number: int, citation: str, text: str, before: str, after: str, note: str, limit: int) -> None:
    assert_split_keeps_everything(paragraph_blocks(ParagraphView(number, citation, text, before, after, note)), limit)


@settings(max_examples=100)
@given(
    speeches=st.lists(st.tuples(TEXT, TEXT, st.integers(0, 10_000), st.lists(TEXT, max_size=3)), max_size=30),
    limit=LIMITS,
)
def test_the_docs_list(speeches: list[tuple[str, str, int, list[str]]], limit: int) -> None:
    assert_split_keeps_everything(docs_blocks(speeches), limit)


@settings(max_examples=150)
@given(text=LONG, title=TEXT, section=st.lists(TEXT, max_size=2), limit=LIMITS)
def test_inline_results(text: str, title: str, section: list[str], limit: int) -> None:
    cited = passage(3, text, title, section)
    whole = f"{cited.citation}\n{text}"
    message = passage_message(Citation(1, cited, 1.0, text[:160], ()), limit)
    visible = shown(message, limit)  # one message, always: an inline result cannot be split
    if visible != whole:  # clipped: a head of the passage, marked as cut
        assert visible.endswith("…") and whole.startswith(visible.removesuffix("…"))


def test_a_clipped_inline_result_ends_at_a_sentence_end() -> None:
    text = "".join(f"第{n}句讲话𠌕到此为止。" for n in range(600))  # 7,800 characters, 9,000 UTF-16 units
    message = passage_message(Citation(1, passage(1, text, "长讲话", ()), 1.0, "", ()))
    assert utf16_len(message) <= MESSAGE_LIMIT < utf16_len(text)
    assert message.startswith("<b>《长讲话》 · 第1段</b>\n<blockquote>第0句")
    assert message.endswith("到此为止。…</blockquote>")
