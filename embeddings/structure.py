"""A speech's structure: title and subtitle, section headings at every level, numbered paragraphs.

Speeches mark sections with `一、`, `（一）`, `1、` and lead-ins such as `一是…`/`第一要…`; copies
taken from the web often glue a heading or the title to the next sentence, so headings are also
found inside a line, right after a sentence ends.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from embeddings.clean import clean_lines, collapse_stray_spaces, ends_sentence
from embeddings.load import RawDocument, RawLine
from embeddings.passage import Paragraph, Speech

_NUM = "一二三四五六七八九十"
# Level by pattern: 一、 > （一） > 1、/（1） > 一是/第一要 (lead-ins count only where they open a paragraph).
_HEADINGS = (
    (1, re.compile(rf"^[{_NUM}]{{1,3}}、")),
    (2, re.compile(rf"^[（(][{_NUM}]{{1,3}}[）)]")),
    (3, re.compile(r"^(?:\d{1,2}、|[（(]\d{1,2}[）)])")),
    (4, re.compile(rf"^第?[{_NUM}]{{1,2}}[是要](?![的否])")),
)
_INLINE_LEVELS = (1, 2, 3)
_SENTENCE_BREAK = re.compile(r"(?<=[。！？!?])[”’」』]*")
_LABEL_END = re.compile(r"[。！？；：:，,!?;]")
_FULL_STOP = re.compile(r"[。！？!?]")
_OPENERS = ("今天", "我们", "同志们", "当前", "目前", "近年来", "首先", "下面", "刚才")
_GLUED_TITLE = re.compile(
    r"^(?P<title>.{4,60}?(?:讲话|发言|致辞|报告|讲稿)稿?(?:范文|全文)?)(?P<body>(?:同志们|各位|尊敬的|大家好|朋友们).+)$"
)
_SUBTITLE = re.compile(r"^[—－-]{1,2}")
MAX_HEADING_CHARS = 30
MAX_TITLE_LINE_CHARS = 40


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    level: int | None  # set for a heading line of its own; None for a body paragraph
    label: str = ""  # the heading's name in section paths (also for a run-in heading opening a paragraph)


def build_speech(document: RawDocument, speech_id: str, source: str) -> Speech:
    """Clean a raw document and recover its title, sections and numbered paragraphs."""
    fired: Counter[str] = Counter()
    lines = clean_lines(document.lines, fired)
    title_lines, subtitle, body = _split_title(lines, fired)
    title = " ".join(" ".join(line.split()) for line in title_lines) or _title_from_name(document.path)

    out_lines = [*title_lines, *([subtitle] if subtitle else [])]
    offset = sum(len(line) + 1 for line in out_lines)
    paragraphs: list[Paragraph] = []
    sections: list[str] = []
    path: dict[int, str] = {}
    for block in _blocks(body, fired):
        level = block.level or (_heading_level(block.text) if block.label else None)
        if level is not None:
            path = {lvl: label for lvl, label in path.items() if lvl < level}
            path[level] = block.label
            sections.append(block.label)
        if block.level is None:
            section_path = tuple(path[lvl] for lvl in sorted(path))
            paragraphs.append(Paragraph(len(paragraphs) + 1, offset, offset + len(block.text), section_path))
        out_lines.append(block.text)
        offset += len(block.text) + 1
    return Speech(
        speech_id=speech_id,
        source=source,
        title=title,
        subtitle=subtitle,
        text="\n".join(out_lines),
        paragraphs=tuple(paragraphs),
        sections=tuple(sections),
        rules_fired={rule: count for rule, count in sorted(fired.items()) if count},
        encoding=document.encoding,
    )


def _split_title(lines: list[RawLine], fired: Counter[str]) -> tuple[list[str], str, list[RawLine]]:
    titles: list[str] = []
    index = 0
    while index < len(lines) and len(titles) < 3:
        line = lines[index]
        if line.heading_level is not None and not line.is_title:
            break  # a Word heading style marks a section, not the title
        if not (line.is_title or _looks_like_title(line.text)) or _SUBTITLE.match(line.text):
            break
        titles.append(line.text)
        index += 1
    if not titles and lines and (glued := _GLUED_TITLE.match(lines[0].text)):
        fired["glued_title"] += 1
        titles = [glued.group("title")]
        lines = [RawLine(glued.group("body")), *lines[1:]]
        index = 0
    subtitle = ""
    if index < len(lines) and _SUBTITLE.match(lines[index].text) and len(lines[index].text) <= 60:
        subtitle = lines[index].text
        index += 1
    return titles, subtitle, lines[index:]


def _looks_like_title(text: str) -> bool:
    return len(text) <= MAX_TITLE_LINE_CHARS and not ends_sentence(text) and _heading_level(text) is None


def _heading_level(text: str) -> int | None:
    for level, pattern in _HEADINGS:
        if pattern.match(text):
            return level
    return None


def _blocks(lines: list[RawLine], fired: Counter[str]) -> list[_Block]:
    """Body lines → headings and paragraphs, splitting lines where a numbered heading follows a sentence."""
    blocks: list[_Block] = []
    for line in lines:
        if line.heading_level is not None:
            text = collapse_stray_spaces(line.text, fired)
            blocks.append(_Block(text, min(line.heading_level, 4), text))
            continue
        for piece in _inline_pieces(collapse_stray_spaces(line.text, fired), fired):
            blocks.extend(_classify(piece, fired))
    return blocks


def _inline_pieces(text: str, fired: Counter[str]) -> list[str]:
    cuts = [0]
    for match in _SENTENCE_BREAK.finditer(text):
        position = match.end()
        # Headings are a few characters long; slicing all the rest made one long line quadratic.
        if 0 < position < len(text) and _heading_level(text[position : position + 8]) in _INLINE_LEVELS:
            cuts.append(position)
    fired["inline_headings"] += len(cuts) - 1
    return [text[start:end] for start, end in zip(cuts, [*cuts[1:], len(text)], strict=True)]


def _classify(text: str, fired: Counter[str]) -> list[_Block]:
    level = _heading_level(text)
    if level is None:
        return [_Block(text, None)]
    if len(text) <= MAX_HEADING_CHARS and not _FULL_STOP.search(text.rstrip("。")):
        return [_Block(text, level, text.rstrip("。"))]
    end = _LABEL_END.search(text)
    if end and end.start() <= MAX_HEADING_CHARS:
        return [_Block(text, None, text[: end.start()])]
    glued = _glued_heading_end(text)
    if glued:
        fired["glued_headings"] += 1
        return [_Block(text[:glued], level, text[:glued]), _Block(text[glued:], None)]
    return [_Block(text, None, text[:20] + "…")]


def _glued_heading_end(text: str) -> int | None:
    """Where a heading with no punctuation runs into the next sentence: at an opening quote or opener."""
    for position in range(4, MAX_HEADING_CHARS + 1):
        rest = text[position:]
        if rest.startswith("“") and text[position - 1] not in "“、 ":
            return position
        if rest.startswith(_OPENERS):
            return position
    return None


def _title_from_name(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip() or path.name
