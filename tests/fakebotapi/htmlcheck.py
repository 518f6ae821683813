"""Telegram's HTML parse mode and length limit, as the fake Bot API checks every text the bot sends."""

from __future__ import annotations

import html
import re

LIMIT = 4096
TAGS = {
    "b": set(), "strong": set(), "i": set(), "em": set(), "u": set(), "ins": set(), "s": set(), "strike": set(),
    "del": set(), "tg-spoiler": set(), "span": {"class"}, "a": {"href"}, "code": {"class"}, "pre": set(),
    "blockquote": {"expandable"}, "tg-emoji": {"emoji-id"},
}  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][\w-]*)((?:\s+[\w-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))?)*)\s*>")
_ATTR = re.compile(r"([\w-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>\"']+)))?")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> tuple[str, str]:
    """Telegram's HTML mode: (the text after parsing, "" or the reason Telegram would refuse it)."""
    out: list[str] = []
    stack: list[str] = []
    i = 0

    def at(position: int) -> str:
        return f"at byte offset {len(text[:position].encode())}"

    while i < len(text):
        ch = text[i]
        if ch == "<":
            match = _TAG.match(text, i)
            if not match:
                return "", f"can't parse entities: Unexpected character '<' {at(i)}"
            closing, name, attrs = match.group(1), match.group(2).lower(), match.group(3)
            if name not in TAGS:
                return "", f'can\'t parse entities: Unsupported start tag "{name}" {at(i)}'
            if closing:
                if not stack or stack[-1] != name:
                    return "", f"can't parse entities: Can't find start tag for \"{name}\" {at(i)}"
                stack.pop()
            else:
                for attr in _ATTR.finditer(attrs):
                    if attr.group(1).lower() not in TAGS[name]:
                        return "", f'can\'t parse entities: Unsupported attribute "{attr.group(1)}" {at(i)}'
                if stack and stack[-1] in ("pre", "code") and not (stack[-1] == "pre" and name == "code"):
                    return "", f"can't parse entities: Tags inside {stack[-1]} are not allowed {at(i)}"
                stack.append(name)
            i = match.end()
        elif ch == "&":
            match = _ENTITY.match(text, i)
            if not match:
                return "", f"can't parse entities: Unsupported HTML entity or unescaped '&' {at(i)}"
            out.append(html.unescape(match.group()))
            i = match.end()
        elif ch == ">":
            return "", f"can't parse entities: Unescaped '>' {at(i)}"
        else:
            out.append(ch)
            i += 1
    if stack:
        return "", f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\""
    return "".join(out), ""
