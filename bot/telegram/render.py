"""Answers as Telegram HTML: escaped, highlighted, and split below the 4,096-unit message limit.

A message is built as blocks of styled runs rather than as an HTML string, so a long reply can be
cut anywhere in the text and each piece still closes every tag it opened. Telegram counts the limit
in UTF-16 code units after parsing; we count the HTML itself, which is never shorter, so a piece
that fits here always fits there.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from bot.answer import Answer, Citation
from bot.render import NOT_FOUND, cut_point, sources_heading
from bot.session import ParagraphView

MESSAGE_LIMIT = 4096
TAGS = frozenset({"b", "i", "u", "s", "code", "pre", "blockquote", "tg-spoiler"})

Run = tuple[str, tuple[str, ...]]  # text and the tags around it, outermost first
Block = list[Run]

ELLIPSIS = "…"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def plain(text: str) -> Run:
    return (text, ())


def styled(text: str, *tags: str) -> Run:
    return (text, tags)


def to_html(runs: Iterable[Run]) -> str:
    """Runs → HTML; neighbouring runs share the tags they have in common, so a quote stays one quote."""
    out: list[str] = []
    stack: tuple[str, ...] = ()
    for text, tags in runs:
        if not text:
            continue
        common = 0
        while common < min(len(stack), len(tags)) and stack[common] == tags[common]:
            common += 1
        out.extend(f"</{tag}>" for tag in reversed(stack[common:]))
        out.extend(f"<{tag}>" for tag in tags[common:])
        out.append(html.escape(text, quote=False))
        stack = tags
    out.extend(f"</{tag}>" for tag in reversed(stack))
    return "".join(out)


def highlighted(text: str, spans: Sequence[tuple[int, int]], *outer: str) -> Block:
    """`text` with the question's words (`spans`) in bold."""
    runs: Block = []
    cursor = 0
    for start, end in spans:
        runs += [(text[cursor:start], outer), (text[start:end], (*outer, "b"))]
        cursor = end
    runs.append((text[cursor:], outer))
    return runs


def split_message(blocks: Sequence[Block], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pack blocks into as few HTML messages as fit, cutting oversized blocks at line or sentence ends."""
    chunks: list[str] = []
    current = ""
    for block in blocks:
        room = limit - utf16_len(current) - 2 if current else limit
        # An oversized block starts in the room left in the current message rather than in a new one.
        first = room if room >= limit // 4 else limit
        for piece in _fit(block, limit, first):
            joined = f"{current}\n\n{piece}" if current else piece
            if utf16_len(joined) <= limit:
                current = joined
            else:
                chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks


def _slice(runs: Block, start: int, end: int) -> Block:
    out: Block = []
    offset = 0
    for text, tags in runs:
        low, high = max(start, offset), min(end, offset + len(text))
        if low < high:
            out.append((text[low - offset : high - offset], tags))
        offset += len(text)
    return out


def _fit(block: Block, limit: int, first: int) -> list[str]:
    """The block as HTML pieces: the first at most `first` units long, the others at most `limit`."""
    text = "".join(t for t, _ in block)
    if not text.strip():  # Telegram refuses a message with no visible text
        return []
    whole = to_html(block)
    if utf16_len(whole) <= limit:
        return [whole]
    pieces: list[str] = []
    start = 0
    while start < len(text):
        budget = limit if pieces else first
        low, high = start + 1, len(text)  # the longest slice whose HTML fits: HTML only grows with the slice
        while low < high:
            middle = (low + high + 1) // 2
            if utf16_len(to_html(_slice(block, start, middle))) <= budget:
                low = middle
            else:
                high = middle - 1
        end = low if low == len(text) else cut_point(text, start, low)
        if text[start:end].strip():
            pieces.append(to_html(_slice(block, start, end)))
        start = end
    return pieces


def answer_blocks(answer: Answer, total: int | None = None) -> list[Block]:
    """The answer as in the terminal: the direct answer with citation numbers, then numbered sources."""
    blocks: list[Block] = []
    if answer.found and answer.direct:
        lines: Block = [styled("答：", "b")]
        for sentence in answer.direct:
            lines += [plain(f"\n{sentence.text}"), styled(f"[{sentence.citation}]", "b")]
        blocks.append(lines)
    elif not answer.found:
        blocks.append([plain(NOT_FOUND)])
    if not answer.citations:
        blocks.append([plain("可以换个说法再问，或发送 /docs 查看收录了哪些讲话。")])
        return blocks
    cited = [citation_block(citation, answer.first_rank + citation.number - 1) for citation in answer.citations]
    # the heading stays with what it heads
    cited[0] = [styled(sources_heading(answer, total), "b"), plain("\n"), *cited[0]]
    return blocks + cited


def citation_block(citation: Citation, number: int) -> Block:
    return [
        styled(f"[{number}]", "b"),
        styled(f" {citation.passage.citation}", "i"),
        plain("\n"),
        *highlighted(citation.snippet, citation.highlights),
    ]


def paragraph_blocks(view: ParagraphView) -> list[Block]:
    """A cited paragraph in full, with its neighbours for context."""
    blocks: list[Block] = [[styled(f"[{view.number}]", "b"), styled(f" {view.citation}", "i")]]
    if view.note:
        blocks.append([styled(view.note, "i")])
    if view.before:
        blocks.append([styled(f"（上一段）{view.before}", "i")])
    blocks.append([styled(view.text, "blockquote")])
    if view.after:
        blocks.append([styled(f"（下一段）{view.after}", "i")])
    return blocks


def passage_message(citation: Citation, limit: int = MESSAGE_LIMIT) -> str:
    """What an inline result posts into a chat: the passage and where it is from, in one message.

    An inline result cannot be split, and one over the limit makes Telegram refuse the whole
    answer, so a long passage is cut short (`clip`).
    """
    block = [styled(citation.passage.citation, "b"), plain("\n"), styled(citation.passage.text, "blockquote")]
    return clip(block, limit)


def clip(block: Block, limit: int = MESSAGE_LIMIT) -> str:
    """The block as one message of at most `limit` units; when longer, cut at a sentence end and marked with …."""
    whole = to_html(block)
    if utf16_len(whole) <= limit:
        return whole
    text = "".join(t for t, _ in block)

    def ending_at(end: int) -> str:
        head = _slice(block, 0, end)
        return to_html([*head, (ELLIPSIS, head[-1][1] if head else ())])  # inside the last run's tags

    # The longest head that fits: its HTML only grows with it, and the … adds one unit to any head.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if utf16_len(ending_at(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    end = cut_point(text, 0, low)
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return ending_at(end)


def docs_blocks(speeches: Sequence[tuple[str, str, int, Sequence[str]]]) -> list[Block]:
    """(title, source file, passage count, other file names with the same text) per speech."""
    total = sum(count for _, _, count, _ in speeches)
    blocks: list[Block] = [[styled(f"收录的讲话（{len(speeches)} 篇，共 {total} 段）：", "b")]]
    for number, (title, source, count, aliases) in enumerate(speeches, 1):
        block = [plain(f"{number}. 《{title}》 · {count} 段\n"), styled(source, "code")]
        if aliases:  # indexed once, so without this the duplicates' names would appear nowhere
            block += [plain("（另存为："), *_joined([styled(alias, "code") for alias in aliases], "、"), plain("）")]
        blocks.append(block)
    return blocks


def _joined(runs: list[Run], separator: str) -> Block:
    out: Block = []
    for index, run in enumerate(runs):
        out += [plain(separator), run] if index else [run]
    return out
