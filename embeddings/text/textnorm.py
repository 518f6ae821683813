"""The matching form of text: what the index and the queries are compared in, never what is shown.

NFKC folds full/half width (`，`/`,`, `１`/`1`), Traditional characters become Simplified (so
`西湖區總工會` finds `西湖区总工会`), case is folded, and control characters and stray spaces go.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib import resources

_CONTROL_OR_SURROGATE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u2028-\u202e\ufeff]")
_CJK_SPACE = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff\d])|(?<=\d)\s+(?=[\u3400-\u9fff])")
_SPACES = re.compile(r"\s+")


@cache
def _traditional_to_simplified() -> dict[int, str]:
    """OpenCC's character table (one-to-one part), used through `str.translate` for speed."""
    table: dict[int, str] = {}
    data = resources.files("opencc").joinpath("dictionary", "TSCharacters.txt").read_text("utf-8")
    for line in data.splitlines():
        source, _, targets = line.partition("\t")
        target = targets.split(" ", 1)[0]
        if len(source) == 1 and target and source != target:
            table[ord(source)] = target
    return table


def to_simplified(text: str) -> str:
    return text.translate(_traditional_to_simplified())


def matching_form(text: str) -> str:
    """Normalise `text` for matching; offsets are not preserved (only used on the search side)."""
    text = _CONTROL_OR_SURROGATE.sub(" ", text)
    text = unicodedata.normalize("NFKC", text).casefold()
    text = to_simplified(text)
    text = _CJK_SPACE.sub("", text)
    return _SPACES.sub(" ", text).strip()


def has_searchable_text(text: str) -> bool:
    """True when `text` has a letter or digit to search for (not only punctuation, symbols or emoji)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)
