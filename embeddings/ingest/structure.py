"""A speech's structure: title and subtitle, section headings at every level, numbered paragraphs.

Speeches mark sections with `一、`, `（一）`, `1、` and lead-ins such as `一是…`/`第一要…`; copies
taken from the web often glue a heading or the title to the next sentence, so headings are also
found inside a line, right after a sentence ends. No words of the body are lost: a numbered line
counts as a heading only when body text follows it, so every other character lies in a paragraph.
The subtitle, date and speaker lines under the title are paragraph 0 (`FRONT_MATTER`): the speech's
own word on where, when and by whom it was given.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from embeddings.ingest.clean import clean_lines, collapse_stray_spaces, ends_sentence
from embeddings.ingest.load import RawDocument, RawLine
from embeddings.passage import FRONT_MATTER, Paragraph, Speech
from embeddings.text.textnorm import has_searchable_text

_NUM = "一二三四五六七八九十"
# Level by pattern: 一、 > （一） > 1、/（1） > 一是/第一要 (lead-ins count only where they open a paragraph).
# `5、6月份` is a range of months, not item 5: a digit after `N、` never starts a heading.
_HEADINGS = (
    (1, re.compile(rf"^[{_NUM}]{{1,3}}、")),
    (2, re.compile(rf"^[（(][{_NUM}]{{1,3}}[）)]")),
    (3, re.compile(r"^(?:\d{1,2}、(?!\d)|[（(]\d{1,2}[）)])")),
    (4, re.compile(rf"^第?[{_NUM}]{{1,2}}[是要](?![的否])")),
)
_INLINE_LEVELS = (1, 2, 3)
_SENTENCE_BREAK = re.compile(r"(?<=[。！？!?])[”’」』]*")
_LABEL_END = re.compile(r"[。！？；：:，,!?;]")
_FULL_STOP = re.compile(r"[。！？!?]")
_CLOSERS = "”’」』）)》】\"'"
_OPENERS = ("今天", "我们", "同志们", "当前", "目前", "近年来", "首先", "下面", "刚才")
_SALUTATION_WORDS = "同志们|尊敬的|各位|大家好|朋友们|女士们|先生们|亲爱的|老师们|同学们"
_SALUTATION = re.compile(rf"^(?:{_SALUTATION_WORDS})")
# `同志们：`, `尊敬的各位领导、各位来宾：`, `同志们，大家好！`: the speaker addressing the audience, no content.
_ADDRESS_LINE = re.compile(
    rf"^(?:(?:{_SALUTATION_WORDS})[^。！？!?；;]{{0,38}}[：:]|(?:(?:{_SALUTATION_WORDS})[^、，,：:！!。？?；;]{{0,12}}[、，,]?)+[！!]?)$"
)
_SPEECH_KIND = r"(?:讲话|发言|致辞|报告|讲稿|演讲|主持词)(?:稿|材料|提纲|范文|全文|摘要|要点)*"
_GLUED_TITLE = re.compile(rf"^(?P<title>.{{4,60}}?{_SPEECH_KIND})(?P<body>(?:{_SALUTATION_WORDS}).+)$")
_ENDS_LIKE_SPEECH_TITLE = re.compile(rf"{_SPEECH_KIND}$")
_SUBTITLE = re.compile(r"^[—－-]{1,2}")
_SUBTITLE_ON_TITLE_LINE = re.compile(r"^(?P<title>.{2,}?)\s*(?P<subtitle>——.+)$")
_DIGIT = r"[\d〇○零一二三四五六七八九十]"
_DATE_LINE = re.compile(rf"^[（(]?{_DIGIT}{{4}}年(?:{_DIGIT}{{1,2}}月(?:{_DIGIT}{{1,3}}日)?)?[）)]?$")
_SPEAKER_LINE = re.compile(r"^[\u4e00-\u9fff]{2,4}$")  # a name, once spaces are gone: `张  三`
MAX_HEADING_CHARS = 30
MAX_TITLE_LINE_CHARS = 40
MAX_TITLE_LINES = 3
MAX_FRONT_LINES = 6


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    level: int | None  # set for a heading line of its own; None for a body paragraph
    label: str = ""  # the heading's name in section paths (also for a run-in heading opening a paragraph)
    styled: bool = False  # a Word heading style: the author's own mark, never second-guessed
    address: bool = False  # a salutation line (`同志们：`): kept in the text, but no paragraph of its own


@dataclass(frozen=True, slots=True)
class _FrontMatter:
    lines: tuple[str, ...]  # what stands above the body in the cleaned text
    title: str
    subtitle: str  # the subtitle line, date and speaker, joined by spaces
    meta: tuple[int, ...] = ()  # which of `lines` are the subtitle, date and speaker lines

    def paragraph(self) -> Paragraph | None:
        """The subtitle, date and speaker lines as paragraph 0 (the text opens with `lines`); None without any.

        It runs from the first of them to the last: title lines are left out (every passage is searched
        with the title already), except one standing between them, as where a date heads the page.
        """
        if not self.meta or not has_searchable_text(self.subtitle):
            return None
        starts = [sum(len(line) + 1 for line in self.lines[:index]) for index in range(len(self.lines))]
        first, last = self.meta[0], self.meta[-1]
        return Paragraph(FRONT_MATTER, starts[first], starts[last] + len(self.lines[last]), ())


def build_speech(document: RawDocument, speech_id: str, source: str) -> Speech:
    """Clean a raw document and recover its title, sections and numbered paragraphs."""
    fired: Counter[str] = Counter()
    front, body = _front_matter(clean_lines(document.lines, fired), fired)
    out_lines = list(front.lines)
    offset = sum(len(line) + 1 for line in out_lines)
    paragraphs: list[Paragraph] = []
    sections: list[str] = []
    path: dict[int, str] = {}
    for block in _blocks(body, fired):
        level = _rank(block)
        if level is not None:
            path = {lvl: label for lvl, label in path.items() if lvl < level}
            path[level] = block.label
            sections.append(block.label)
        if block.level is None and not block.address:
            section_path = tuple(path[lvl] for lvl in sorted(path))
            paragraphs.append(Paragraph(len(paragraphs) + 1, offset, offset + len(block.text), section_path))
        out_lines.append(block.text)
        offset += len(block.text) + 1
    return Speech(
        speech_id=speech_id,
        source=source,
        title=front.title or _title_from_name(document.path),
        subtitle=front.subtitle,
        front_matter=front.paragraph(),
        text="\n".join(out_lines),
        paragraphs=tuple(paragraphs),
        sections=tuple(sections),
        rules_fired={rule: count for rule, count in sorted(fired.items()) if count},
        encoding=document.encoding,
    )


def _front_matter(lines: list[RawLine], fired: Counter[str]) -> tuple[_FrontMatter, list[RawLine]]:
    """Title lines, then the subtitle, date and speaker lines; the body starts at a salutation at the latest."""
    front: list[str] = []  # in the source's order
    titles: list[str] = []
    meta: list[int] = []  # where in `front` the subtitle, date and speaker lines are
    index = 0
    while index < len(lines) and len(front) < MAX_FRONT_LINES:
        line = lines[index]
        text = line.text
        if _SALUTATION.match(text) or (line.heading_level is not None and not line.is_title):
            break  # the speech begins; a Word heading style marks a section, not the title
        if _is_metadata(text, titles, front):
            fired["front_matter"] += not _SUBTITLE.match(text)  # dates and names; a subtitle was always found
            meta.append(len(front))
            front.append(text)
        elif _continues_title(line, titles, front):
            split = _SUBTITLE_ON_TITLE_LINE.match(text)
            parts = [split.group("title"), split.group("subtitle")] if split else [text]
            fired["glued_subtitle"] += len(parts) - 1
            titles.append(parts[0])
            meta.extend(range(len(front) + 1, len(front) + len(parts)))
            front.extend(parts)
        else:
            break
        index += 1
    body = lines[index:]
    if not titles and body and (glued := _GLUED_TITLE.match(body[0].text)):
        fired["glued_title"] += 1
        titles = [glued.group("title")]
        front = [*front, *titles]
        body = [RawLine(glued.group("body")), *body[1:]]
    title = " ".join(" ".join(text.split()) for text in titles)
    subtitle = " ".join(" ".join(front[at].split()) for at in meta)
    return _FrontMatter(tuple(front), title, subtitle, tuple(meta)), body


def _continues_title(line: RawLine, titles: list[str], front: list[str]) -> bool:
    """Title lines are one short run: a subtitle, date or name after them ends it."""
    if titles and (front[-1] != titles[-1] or len(titles) == MAX_TITLE_LINES):
        return False
    text = line.text
    return line.is_title or (len(text) <= MAX_TITLE_LINE_CHARS and not ends_sentence(text) and not heading_level(text))


def _is_metadata(text: str, titles: list[str], front: list[str]) -> bool:
    """A subtitle, date or speaker line. A name only where a title is complete: `当头雁` may open a title."""
    compact = "".join(text.split())
    if (_SUBTITLE.match(text) and len(text) <= 60) or _DATE_LINE.match(compact):
        return True
    complete = bool(titles) and (front[-1] != titles[-1] or bool(_ENDS_LIKE_SPEECH_TITLE.search(titles[-1])))
    return complete and bool(_SPEAKER_LINE.match(compact))


def heading_level(text: str) -> int | None:
    """1 for `一、`, 2 for `（一）`, 3 for `1、`/`（1）`, 4 for lead-ins like `一是`; None for body text."""
    return next((level for level, pattern in _HEADINGS if pattern.match(text)), None)


def _blocks(lines: list[RawLine], fired: Counter[str]) -> list[_Block]:
    """Body lines → headings and paragraphs, splitting lines where a numbered heading follows a sentence."""
    blocks: list[_Block] = []
    for line in lines:
        text = collapse_stray_spaces(line.text, fired)
        if line.heading_level is not None:
            blocks.append(_Block(text, min(line.heading_level, 4), text, styled=True))
        elif _ADDRESS_LINE.match(text):
            fired["salutation_lines"] += 1
            blocks.append(_Block(text, None, address=True))
        else:
            for piece in _inline_pieces(text, fired):
                blocks.extend(_classify(piece, fired))
    return _demote_lists(blocks, fired)


def _inline_pieces(text: str, fired: Counter[str]) -> list[str]:
    cuts = [0]
    for match in _SENTENCE_BREAK.finditer(text):
        position = match.end()
        # Headings are a few characters long; slicing all the rest made one long line quadratic.
        if 0 < position < len(text) and heading_level(text[position : position + 8]) in _INLINE_LEVELS:
            cuts.append(position)
    ends = [*cuts[1:], len(text)]
    # `工作有三点要求。1、要讲政治。2、要抓落实。` is an enumeration inside the paragraph: a short item that is one
    # complete sentence is no heading. An item that runs on (`1、做事情的干劲。毛主席讲过…`) opens a paragraph.
    kept = [0, *(cut for cut, end in zip(cuts[1:], ends[1:], strict=True) if not _short_sentence(text[cut:end]))]
    fired["inline_headings"] += len(kept) - 1
    fired["inline_enumerations"] += len(cuts) - len(kept)
    return [text[start:end] for start, end in zip(kept, [*kept[1:], len(text)], strict=True)]


def _short_sentence(text: str) -> bool:
    stripped = text.rstrip(_CLOSERS).rstrip("。！？!?")
    return len(text) <= MAX_HEADING_CHARS and stripped != text.rstrip(_CLOSERS) and not _FULL_STOP.search(stripped)


def _classify(text: str, fired: Counter[str]) -> list[_Block]:
    level = heading_level(text)
    if level is None:
        return [_Block(text, None)]
    if len(text) <= MAX_HEADING_CHARS and not _FULL_STOP.search(text.rstrip("。")):
        return [_Block(text, level, text.rstrip("。"))]
    end = _LABEL_END.search(text)
    if end and end.start() <= MAX_HEADING_CHARS:
        return [_Block(text, None, text[: end.start()])]
    if glued := _glued_heading_end(text):
        fired["glued_headings"] += 1
        return [_Block(text[:glued], level, text[:glued]), _Block(text[glued:], None)]
    return [_Block(text, None, text[:20] + "…")]


def _glued_heading_end(text: str) -> int | None:
    """Where a heading with no punctuation runs into the next sentence: at an opening quote or opener."""
    for position in range(4, MAX_HEADING_CHARS + 1):
        rest = text[position:]
        if rest.startswith(_OPENERS) or (rest.startswith("“") and text[position - 1] not in "“、 "):
            return position
    return None


def _demote_lists(blocks: list[_Block], fired: Counter[str]) -> list[_Block]:
    """A numbered line is a heading only when body text follows it before the next heading of its rank: lines
    with nothing between them (`1、要讲政治。` `2、要抓落实。`) are a list, the last item too, and stay body text."""
    result = list(blocks)
    index = 0
    while index < len(result):
        level = result[index].level
        if level is None or result[index].styled:
            index += 1
            continue
        end = index + 1
        while end < len(result) and result[end].level == level and not result[end].styled:
            end += 1
        following = next((result[at] for at in range(end, len(result)) if not result[at].address), None)
        rank = _rank(following) if following else 0  # the end of the speech closes every section
        if end - index > 1 or (rank is not None and rank <= level):
            fired["numbered_lists"] += end - index
            result[index:end] = [_Block(block.text, None) for block in result[index:end]]
        index = end
    return result


def _rank(block: _Block) -> int | None:
    """The level at which a block opens a section: a heading's, or a run-in heading's (`1、做事情的干劲。…`)."""
    return block.level or (heading_level(block.text) if block.label else None)


def _title_from_name(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip() or path.name
