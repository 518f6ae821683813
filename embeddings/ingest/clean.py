"""Cleaning rules for speeches as received. Each rule is named, does one thing, and reports how often it fired.

The displayed text keeps the speech's own punctuation; only the matching form (see `textnorm`) is
NFKC-normalised, so a quote copied from an answer is the speaker's words, not ours.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from embeddings.ingest.load import RawLine

BOILERPLATE = re.compile(
    r"^(?:本文系作者原创投稿|本文为作者原创|仅供学习参考|请勿照搬照抄|版权归原作者所有|"
    r"免责声明|更多范文请|本文来源于|文章来源[:：]|来源[:：]\s*\S+网)"
)
_PAGE_MARKER = re.compile(r"^(\d{1,3})、")
# Every Unicode space (web copies indent with `&emsp;` = U+2003), plus zero-width space and BOM.
_EDGE_SPACE = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace()) + "\u200b\ufeff"
_SENTENCE_END = set("。！？；!?;…:：")
_CLOSERS = "”’」』）)》】\"' \u3000"
# A space is stray when it touches a Chinese character or full-width punctuation: "4月 3 日", "854 家".
_WIDE = r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef\u2018-\u201d\u2026\u2014]"
_STRAY_SPACE = re.compile(rf"(?<={_WIDE})[ \t\u00a0\u3000]+|[ \t\u00a0\u3000]+(?={_WIDE})")
_MIN_PAGE_CHARS = 80


def ends_sentence(text: str) -> bool:
    """True when `text` ends at a sentence boundary (closing quotes after the mark allowed)."""
    stripped = text.rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _SENTENCE_END


def drop_boilerplate(lines: Sequence[RawLine], fired: Counter[str]) -> list[RawLine]:
    """Remove whole lines of publisher boilerplate such as `本文系作者原创投稿，仅供学习参考…`."""
    kept = []
    for line in lines:
        if BOILERPLATE.match(line.text.strip(_EDGE_SPACE)):
            fired["boilerplate"] += 1
        else:
            kept.append(line)
    return kept


def strip_indentation(lines: Sequence[RawLine], fired: Counter[str]) -> list[RawLine]:
    """Remove full-width indentation and trailing blanks, which carry no meaning in the text."""
    result = []
    for line in lines:
        stripped = line.text.strip(_EDGE_SPACE)
        if stripped != line.text and stripped:
            fired["indentation"] += 1
        result.append(RawLine(stripped, line.heading_level, line.is_title))
    return result


def rejoin_page_markers(lines: Sequence[RawLine], fired: Counter[str]) -> list[RawLine]:
    """Remove `N、` page numbers that start physical lines and cut sentences, and rejoin the sentences.

    A marker belongs to a run numbered consecutively; the run counts as page numbering only when
    most of its line breaks fall inside a sentence and the pages are long. A real enumeration
    (`1、做事情的干劲。` items that end their sentences, or a short list) does not qualify.
    """
    markers = [(i, int(m.group(1))) for i, line in enumerate(lines) if (m := _PAGE_MARKER.match(line.text))]
    page_lines: set[int] = set()
    run: list[int] = []
    for position, (index, number) in enumerate(markers):
        if run and number != markers[position - 1][1] + 1:
            page_lines.update(_page_run(lines, run))
            run = []
        run.append(index)
    page_lines.update(_page_run(lines, run))
    if not page_lines:
        return list(lines)
    result: list[RawLine] = []
    for index, line in enumerate(lines):
        if index not in page_lines:
            result.append(line)
            continue
        fired["page_markers"] += 1
        text = _PAGE_MARKER.sub("", line.text, count=1)
        if result and not ends_sentence(result[-1].text):
            result[-1] = RawLine(result[-1].text + text, result[-1].heading_level, result[-1].is_title)
        else:
            result.append(RawLine(text, line.heading_level, line.is_title))
    return result


def _page_run(lines: Sequence[RawLine], run: list[int]) -> list[int]:
    if len(run) < 2:
        return []
    breaks = [index for index in run[1:] if index > 0 and not ends_sentence(lines[index - 1].text)]
    page_chars = sum(len(lines[index].text) for index in run) / len(run)
    if len(breaks) * 2 >= len(run) - 1 and page_chars >= _MIN_PAGE_CHARS:
        return run
    return []


def collapse_stray_spaces(text: str, fired: Counter[str]) -> str:
    """`4月 3 日` → `4月3日`, `854 家` → `854家`; spaces between Latin words stay."""
    collapsed, count = _STRAY_SPACE.subn("", text)
    fired["stray_spaces"] += count
    return collapsed


def clean_lines(lines: Sequence[RawLine], fired: Counter[str]) -> list[RawLine]:
    """Apply the line-level rules in order; spaces are collapsed later, once titles are set apart."""
    cleaned = drop_boilerplate(lines, fired)
    cleaned = [line for line in strip_indentation(cleaned, fired) if line.text]
    return rejoin_page_markers(cleaned, fired)
