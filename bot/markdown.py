"""Answers as chat markdown, for the bots whose platforms render it (DingTalk, Feishu).

The same answer as in the terminal and Telegram: the direct answer with [n] marks, the numbered
citations (《title》 › section · 第N段, each on one line to copy), the shown part with the
question's words in bold, and how to see more. Text from the speeches is escaped with HTML
character references, which both platforms' markdown shows as the character, so a `*`, `[` or
`<at …>` in a speech (or a question) can never become formatting, a link or a mention.
A long reply is cut into messages at block, line or sentence ends (`pack`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from bot.answer import Answer, Citation
from bot.render import NOT_FOUND, cut_point, sources_heading
from bot.session import ParagraphView

Link = Callable[[str, str], str]  # (label, what a tap says) → markdown the user can act on

_SPECIAL = re.compile(r"[&<>*_`~\[\]#|\\]|^[-+]", re.MULTILINE)


def escape(text: str) -> str:
    """`text` shown as it is: every character markdown or a platform's tags could read, as a reference."""
    return _SPECIAL.sub(lambda match: f"&#{ord(match.group())};", text)


def hint(link: Link | None, more: bool, numbers: Sequence[int]) -> str:
    """The line under an answer: more results, and a cited paragraph's full text (tappable where `link` is given)."""
    if link is None:
        first, last = numbers[0], numbers[-1]
        return ("发送“更多”查看更多结果；" if more else "") + f"发送“全文 N”查看第 N 条（{first}–{last}）的整段原文。"
    parts = [link("更多结果", "更多")] if more else []
    parts.append("全文 " + " ".join(link(f"[{n}]", f"全文 {n}") for n in numbers))
    return " · ".join(parts)


def answer_blocks(answer: Answer, link: Link | None, more: bool, total: int | None = None) -> list[str]:
    """The answer as markdown blocks (to be packed into messages by `pack`)."""
    blocks: list[str] = []
    if answer.found and answer.direct:
        lines = ["**答：**", *(f"{escape(s.text)}**[{s.citation}]**" for s in answer.direct)]
        blocks.append("\n\n".join(lines))
    elif not answer.found:
        blocks.append(escape(NOT_FOUND))
    if not answer.citations:
        blocks.append("可以换个说法再问，或发送“目录”查看收录了哪些讲话。")
        return blocks
    numbers = [answer.first_rank + citation.number - 1 for citation in answer.citations]
    cited = [citation_block(citation, number) for citation, number in zip(answer.citations, numbers, strict=True)]
    cited[0] = f"**{sources_heading(answer, total)}**\n\n{cited[0]}"  # the heading stays with what it heads
    blocks += cited
    blocks.append(hint(link, more, numbers))
    return blocks


def citation_block(citation: Citation, number: int) -> str:
    return f"**[{number}]** {escape(citation.passage.citation)}\n\n> {highlighted(citation)}"


def highlighted(citation: Citation) -> str:
    """The snippet with the question's words in bold."""
    out, cursor = [], 0
    text = citation.snippet
    for start, end in citation.highlights:
        out += [escape(text[cursor:start]), f"**{escape(text[start:end])}**"]
        cursor = end
    out.append(escape(text[cursor:]))
    return "".join(out)


def paragraph_blocks(view: ParagraphView) -> list[str]:
    """A cited paragraph in full, its neighbours for context, and the citation as one line to copy."""
    blocks = [f"**[{view.number}]** {escape(view.citation)}"]
    if view.note:
        blocks.append(escape(view.note))
    if view.before:
        blocks.append(f"（上一段）{escape(view.before)}")
    blocks.append(f"> {escape(view.text)}")
    if view.after:
        blocks.append(f"（下一段）{escape(view.after)}")
    blocks.append(f"引用：{escape(view.citation)}")
    return blocks


def docs_blocks(speeches: Sequence[tuple[str, int]]) -> list[str]:
    """(title, passage count) per speech."""
    total = sum(count for _, count in speeches)
    lines = [f"{n}. 《{escape(title)}》 · {count} 段" for n, (title, count) in enumerate(speeches, 1)]
    return [f"**收录的讲话（{len(speeches)} 篇，共 {total} 段）：**", "\n\n".join(lines)]


def pack(blocks: Sequence[str], limit: int) -> list[str]:
    """Blocks joined into as few messages of at most `limit` characters as fit; a longer block is cut."""
    messages: list[str] = []
    current = ""
    for block in blocks:
        for piece in _cut_to(block, limit):
            joined = f"{current}\n\n{piece}" if current else piece
            if len(joined) <= limit:
                current = joined
            else:
                messages.append(current)
                current = piece
    if current:
        messages.append(current)
    return messages


def _cut_to(block: str, limit: int) -> list[str]:
    pieces = []
    while len(block) > limit:
        end = cut_point(block, 0, limit, functools.partial(_outside_reference, block))
        pieces.append(block[:end].rstrip())
        block = block[end:].lstrip()
        if pieces[-1].startswith("> ") and not block.startswith(">"):
            block = "> " + block  # a cut quotation goes on as one
    if block.strip():
        pieces.append(block)
    return pieces


def _outside_reference(text: str, end: int) -> bool:
    """Whether `end` falls outside every `&#…;` reference (cutting inside one would show its pieces)."""
    amp = text.rfind("&", max(0, end - 8), end)
    return not (amp >= 0 and ";" not in text[amp:end] and text[amp : amp + 2] == "&#")
