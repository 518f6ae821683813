"""A reproducible synthetic speech corpus of any size, made of the CMRC 2018 passages' sentences.

Each speech is a title, a `——在…上的讲话` subtitle, sections headed `一、…` and paragraphs of
sentences drawn from the CMRC pool, all chosen by a random generator seeded with the speech's
number: speech *i* is the same file whatever the corpus size, so a corpus of N passages is a prefix
of a larger one. Sentences recur across speeches (the pool has ~40k), as phrases do in real
archives; the vocabulary therefore grows more slowly than in a real corpus of the same size.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

POOL = Path(__file__).resolve().parents[2] / "shared" / "bench" / "cmrc2018-all-passages.jsonl"
_SENTENCE = re.compile(r"[^。！？]{8,}[。！？]")
_NUMERALS = "一二三四五六七八九十"
# Measured with the shipped segmentation settings (300 characters, 1 sentence of overlap) on the
# first 400 speeches; `--passages N` writes N / this many speeches and the build reports the count.
PASSAGES_PER_SPEECH = 28.3


def sentence_pool(path: Path = POOL) -> tuple[list[str], list[str]]:
    """The pool's sentences and its non-empty titles, in file order."""
    sentences: list[str] = []
    titles: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            sentences.extend(s.strip() for s in _SENTENCE.findall(record["text"]))
            if record.get("title"):
                titles.append(record["title"])
    return sentences, titles


def speech_text(number: int, sentences: list[str], titles: list[str], seed: int = 12) -> str:
    """Speech `number`: 3–5 sections of 4–7 paragraphs of 3–8 sentences."""
    rng = random.Random(f"{seed}:{number}")
    topic = rng.choice(titles)
    lines = [f"关于{topic}工作的讲话（第{number + 1}号）", f"——在{rng.choice(titles)}专题会议上的讲话", ""]
    for section in range(rng.randint(3, 5)):
        lines.append(f"{_NUMERALS[section]}、{rng.choice(titles)}")
        for _ in range(rng.randint(4, 7)):
            lines.append("\u3000\u3000" + "".join(rng.choice(sentences) for _ in range(rng.randint(3, 8))))
    return "\n".join(lines) + "\n"


def speeches_for(passages: int) -> int:
    return max(1, round(passages / PASSAGES_PER_SPEECH))


def write_corpus(folder: Path, speeches: int, seed: int = 12) -> int:
    """Write speeches 0 … `speeches` - 1 into `folder` (500 to a subfolder); returns the characters written."""
    sentences, titles = sentence_pool()
    written = 0
    for number in range(speeches):
        path = folder / f"{number // 500:04d}" / f"speech-{number:06d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = speech_text(number, sentences, titles, seed)
        path.write_text(text, "utf-8")
        written += len(text)
    return written
