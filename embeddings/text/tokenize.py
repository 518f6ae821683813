"""Lexical tokens: jieba words plus character bigrams, over the matching form of the text.

Words carry meaning (`工匠日`, `群团组织` stay whole thanks to the domain dictionary); bigrams catch
what segmentation splits differently in question and passage. Both are needed: measured on
CMRC 2018, each alone ranks worse than the two together.

Passages are cut with jieba's full dictionary, by jieba-rs (`rjieba`) where it installs: the same
dynamic programme over the same dictionary and total, so the same words, about ten times faster,
which was most of a large build. jieba itself cuts where there is no wheel for the platform.

Questions are cut with a *query dictionary* made at index time: the words that occur in the corpus
plus jieba's most frequent words. It segments a question the same way wherever it matters (words
the index knows) and loads in a tenth of the time of the full dictionary, which is most of a cold
start.

jieba caches every dictionary it loads as a marshal file named after the dictionary's path in the
shared temp folder: one per index generation, never removed, and loaded again by whoever can write
there. The query dictionary is small enough to read as text each time (as fast as jieba's cache),
so it gets no cache at all; the full dictionary's cache goes to the user's own cache folder.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any

from embeddings.errors import IndexError_
from embeddings.index.store import REBUILD_HINT
from embeddings.text.textnorm import matching_form


@contextmanager
def _hidden(module: str) -> Iterator[None]:
    """`import module` fails inside the block, unless it was imported already."""
    hide = module not in sys.modules
    if hide:
        sys.modules[module] = None  # type: ignore[assignment]  # None in sys.modules: the import raises
    try:
        yield
    finally:
        if hide:
            del sys.modules[module]


# jieba 0.42 imports setuptools' pkg_resources only to open its own files, and opens them by path
# without it; pkg_resources alone costs ~60 ms, a tenth of a cold question.
with _hidden("pkg_resources"):
    import jieba

TokenizerFn = Callable[[str], list[str]]
Cut = Callable[[str], list[str]]  # jieba's words of a text in matching form, without HMM

BIGRAM_PREFIX = "#"
COMMON_WORDS = 20000
_ALL_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_SEARCHABLE = re.compile(r"\w", re.UNICODE)
USER_WORD_FREQ = 50000
RUST_FROM_PASSAGES = 1000
TOTAL_PADDING = "\ue000"  # a private-use character: never a word in real text
TOKEN, HAN = 1, 2  # kinds of word: kept as a token; Han characters that bigrams are made of

jieba.setLogLevel(logging.WARNING)  # jieba logs every dictionary load to stderr through its own handler


def load_stopwords(path: Path) -> frozenset[str]:
    if not path.is_file():
        return frozenset()
    lines = path.read_text("utf-8").splitlines()
    return frozenset(word for line in lines if (word := line.strip()) and not word.startswith("#"))


def load_user_words(path: Path) -> list[str]:
    """Domain terms, one per line (optionally `word freq`), that jieba must keep whole."""
    if not path.is_file():
        return []
    words = []
    for line in path.read_text("utf-8").splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            words.append(parts[0])
    return words


class Tokenizer:
    """`text -> tokens`: jieba words that are not stop words, then `#`-prefixed character bigrams."""

    def __init__(self, cut: Cut, stopwords: frozenset[str], bigrams: bool = True) -> None:
        self._cut = cut
        self._stopwords = stopwords
        self._bigrams = bigrams
        self._kinds: dict[str, int] = {}  # word → TOKEN | HAN, worked out once per word (words recur)

    def __call__(self, text: str) -> list[str]:
        return self.tokens_and_words(text)[0]

    def tokens_and_words(self, text: str) -> tuple[list[str], list[str]]:
        """The tokens of `text` and the jieba words they came from, from one cut (a build needs both).

        Bigrams are those of Han text between stop words: "工匠日是怎么设立的" gives 工匠 匠日 设立,
        not 日是 or 立的. A bigram across a stop word pairs a content character with a function
        word; on CMRC such pairs only add noise (measured: hit@1 0.973 with them, 0.975 without).
        """
        words = self._cut(matching_form(text))
        tokens: list[str] = []
        bigrams: list[str] = []
        run = ""
        for word in words:
            kind = self._kinds.get(word)
            if kind is None:
                kind = self._kinds[word] = self._kind(word)
            if kind & TOKEN:
                tokens.append(word)
            if kind & HAN:
                run += word
                continue
            if len(run) > 1:
                bigrams.extend([BIGRAM_PREFIX + run[i : i + 2] for i in range(len(run) - 1)])
            run = ""
        if len(run) > 1:
            bigrams.extend([BIGRAM_PREFIX + run[i : i + 2] for i in range(len(run) - 1)])
        if self._bigrams:
            tokens.extend(bigrams)
        return tokens, words

    def _kind(self, word: str) -> int:
        if word in self._stopwords:
            return 0
        token = TOKEN if _SEARCHABLE.search(word) and not word.isspace() else 0
        return token | (HAN if _ALL_HAN.fullmatch(word) else 0)

    def words(self, text: str) -> list[str]:
        """The jieba words of `text` (no stop-word filtering), for building the query dictionary."""
        return self._cut(matching_form(text))


def jieba_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "speechqa" / "jieba"


@cache
def _full_segmenter(user_dict: str) -> jieba.Tokenizer:
    segmenter = jieba.Tokenizer()
    try:
        jieba_cache_dir().mkdir(parents=True, exist_ok=True)
        segmenter.tmp_dir = str(jieba_cache_dir())
        segmenter.initialize()
    except OSError:  # no writable cache folder (a read-only home): read the dictionary itself, slower
        segmenter.FREQ, segmenter.total = jieba.Tokenizer.gen_pfdict(segmenter.get_dict_file())
        segmenter.initialized = True
    for word in load_user_words(Path(user_dict)):
        segmenter.add_word(matching_form(word), USER_WORD_FREQ)
    return segmenter


def _rust_jieba() -> Any:
    """jieba-rs's segmenter class, or None where it is not installed.

    Imported only to build: importing it loads a dictionary of its own (0.1 s, 23 MB), which a cold
    question must not pay for.
    """
    try:
        from rjieba import Jieba
    except ImportError:  # installed without it (no wheel for the platform): jieba's own cut, the same words
        return None
    return Jieba


@cache
def _passage_cut(user_dict: str, large: bool) -> Cut:
    """jieba's cut on the full dictionary, run by jieba-rs for a large corpus when it is installed."""
    full = _full_segmenter(user_dict)
    rust_jieba = _rust_jieba() if large else None
    if rust_jieba is None:
        return partial(full.lcut, HMM=False)
    fast = rust_jieba.empty()
    counted = 0
    for word, freq in full.FREQ.items():
        if freq > 0:  # jieba keeps every prefix of a word at frequency 0; jieba-rs needs only words
            fast.add_word(word, freq, None)
            counted += freq
    # jieba scores a cut by log(freq / total), and its total counts a domain word that was already in
    # the dictionary twice: pad jieba-rs's total to the same number, or a few cuts would differ.
    if full.total > counted:
        fast.add_word(TOTAL_PADDING, full.total - counted, None)
    return partial(fast.cut, hmm=False)


def passage_tokenizer(user_dict: Path, stopwords: Path, bigrams: bool, passages: int = 0) -> Tokenizer:
    """The index-time tokenizer for `passages` passages, on jieba's full dictionary plus the domain words.

    jieba-rs takes ~0.3 s to load the dictionary and saves ~0.4 ms a passage: it cuts corpora of
    `RUST_FROM_PASSAGES` and more (the shipped speeches, 63 passages, would wait for it).
    """
    return Tokenizer(_passage_cut(str(user_dict), passages >= RUST_FROM_PASSAGES), load_stopwords(stopwords), bigrams)


def query_tokenizer(query_dict: Path, stopwords: Path, bigrams: bool) -> Tokenizer:
    """The query-time tokenizer, on the query dictionary saved with the index, read without jieba's cache."""
    segmenter = jieba.Tokenizer(dictionary=str(query_dict))
    try:
        with query_dict.open("rb") as handle:
            segmenter.FREQ, segmenter.total = jieba.Tokenizer.gen_pfdict(handle)
    except (OSError, ValueError) as error:
        raise IndexError_(f"the query dictionary {query_dict} cannot be read ({error})", REBUILD_HINT) from error
    segmenter.initialized = True
    return Tokenizer(partial(segmenter.lcut, HMM=False), load_stopwords(stopwords), bigrams)


@cache
def _common_words(user_dict: str) -> tuple[tuple[str, int], ...]:
    """jieba's most frequent words: sorting its whole dictionary is most of a small build, so once per process."""
    full = _full_segmenter(user_dict)
    return tuple(sorted(((w, f) for w, f in full.FREQ.items() if f > 0), key=lambda item: -item[1])[:COMMON_WORDS])


def write_query_dictionary(path: Path, words: Iterable[str], user_dict: Path) -> None:
    """The given words jieba knows, domain words and jieba's most frequent words, with jieba's frequencies."""
    full = _full_segmenter(str(user_dict))
    frequencies = dict(_common_words(str(user_dict)))
    for word in words:
        if full.FREQ.get(word, 0) > 0:
            frequencies[word] = full.FREQ[word]
    for word in load_user_words(user_dict):
        frequencies[matching_form(word)] = USER_WORD_FREQ
    frequencies = {word: freq for word, freq in frequencies.items() if word.split() == [word]}  # no blanks
    # jieba scores a segmentation by log(freq / total): padding the total to the full dictionary's
    # keeps questions cut exactly as the full dictionary would cut them wherever the words are known.
    frequencies[TOTAL_PADDING] = max(1, full.total - sum(frequencies.values()))
    path.write_text("".join(f"{word} {freq}\n" for word, freq in sorted(frequencies.items())), "utf-8")
