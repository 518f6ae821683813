"""The README is a front door: short, and every relative link in it and in docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

README_LIMIT = 12_000
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text("utf-8"))
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_the_readme_is_a_front_door() -> None:
    text = (REPO / "README.md").read_text("utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters; move detail into docs/"
    for must in ("make ask Q=", "make test", "<!-- example:start -->", "| `speechqa ask"):
        assert must in text


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    text = _FENCE.sub("", page.read_text("utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:, dtmd: …
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor})")
    assert broken == [], f"{page.relative_to(REPO)}: {broken}"


def test_the_slug_follows_github() -> None:
    assert slug(" Settings (`[dingtalk]` in config.toml)") == "settings-dingtalk-in-configtoml"
    assert slug("What an answer holds") == "what-an-answer-holds"
