"""Rendering an `Answer` as terminal text (colour only when the terminal supports it), and what every
front-end's rendering shares: the headings, and where a message too long for a chat may be cut."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

from .answer import Answer, Citation
from .session import ParagraphView

NOT_FOUND = "讲话中没有找到这个问题的答案。"
POSSIBLY_RELATED = "可能相关的段落（仅供参考）："
SOURCES = "出处："

_CUTS = ("\n", "。！？!?；;…", "，、,：: ")  # preferred cut points, best first
_CLOSERS = "”’」』）)》"


def sources_heading(answer: Answer, total: int | None = None) -> str:
    """The heading over an answer's citations: a later page says which results it shows."""
    if answer.first_rank > 1:
        last = answer.first_rank + len(answer.citations) - 1
        return f"第 {answer.first_rank}–{last} 条结果" + (f"（共 {total} 条）：" if total else "：")
    return SOURCES if answer.found else POSSIBLY_RELATED


def cut_point(text: str, start: int, most: int, allowed: Callable[[int], bool] = lambda end: True) -> int:
    """The best place to end a piece in text[start:most]: a line end, else a sentence end (with its closing
    quote or bracket), else a comma; only where `allowed`, and not so early that the piece is too short."""
    floor = start + (most - start) // 3
    for marks in _CUTS:
        for end in range(most, floor, -1):
            last = text[end - 1]
            ends = last in marks or (last in _CLOSERS and end - 2 >= start and text[end - 2] in marks)
            if ends and allowed(end):
                return end
    end = most
    while end > start + 1 and not allowed(end):
        end -= 1
    return end


_BOLD_YELLOW, _CYAN, _DIM, _RESET = "\033[1;33m", "\033[36m", "\033[2m", "\033[0m"


def use_colour(stream: TextIO) -> bool:
    """Colour for a terminal, never for pipes or files; NO_COLOR turns it off, FORCE_COLOR on."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


class _Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def wrap(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour and text else text

    def highlight(self, citation: Citation) -> str:
        if not self.colour:
            return citation.snippet
        out, cursor = [], 0
        for start, end in citation.highlights:
            out.append(citation.snippet[cursor:start])
            out.append(self.wrap(citation.snippet[start:end], _BOLD_YELLOW))
            cursor = end
        out.append(citation.snippet[cursor:])
        return "".join(out)


def render_answer(answer: Answer, colour: bool = False) -> str:
    style = _Style(colour)
    lines: list[str] = []
    if answer.found and answer.direct:
        lines.append("答：")
        lines.extend(f"  {s.text}" + style.wrap(f"[{s.citation}]", _CYAN) for s in answer.direct)
        lines.append("")
        lines.append(SOURCES)
    elif not answer.found:
        lines.append(NOT_FOUND)
        if answer.citations:
            lines.append(POSSIBLY_RELATED)
    for citation in answer.citations:
        number = answer.first_rank + citation.number - 1
        lines.append(style.wrap(f"[{number}]", _CYAN) + f" {citation.passage.citation}")
        lines.append(f"    {style.highlight(citation)}")
    return "\n".join(lines)


def render_paragraph(view: ParagraphView, colour: bool = False) -> str:
    style = _Style(colour)
    lines = [f"[{view.number}] {view.citation}", ""]
    if view.note:
        lines += [style.wrap(view.note, _DIM), ""]
    if view.before:
        lines += [style.wrap(f"（上一段）{view.before}", _DIM), ""]
    lines.append(view.text)
    if view.after:
        lines += ["", style.wrap(f"（下一段）{view.after}", _DIM)]
    return "\n".join(lines)


def print_error(message: str, hint: str = "", stream: TextIO | None = None) -> None:
    """One line saying what went wrong, then the next step."""
    stream = stream or sys.stderr
    print(f"speechqa: error: {message}", file=stream)
    if hint:
        print(f"  next: {hint}", file=stream)
