"""The words side of a build: BM25 arrays and each passage's tokens, cutting only what the previous build did not.

A run of one speech's passages whose search texts the live generation already cut (same
configuration and dictionaries) is taken from its forward arrays (`forward`); the rest is cut on
every core (`bm25build`). Both arrive in corpus order, so the arrays are the same bytes a build
from scratch writes.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from embeddings.errors import IndexError_
from embeddings.index.bm25build import CHUNK_PASSAGES, Spill, assemble, tokenised_chunks
from embeddings.index.forward import Forward, ForwardWriter, Reused
from embeddings.index.lexical import write_meta
from embeddings.index.ondisk import write_strings
from embeddings.index.store import LEXICAL_FILES, StoredIndex
from embeddings.passage import Passage
from embeddings.settings import EngineSettings
from embeddings.text.tokenize import passage_tokenizer

logger = logging.getLogger(__name__)
SCRATCH = ".scratch"  # the tokenised chunks, inside the generation being built; removed before it is sealed


def build_words(
    passages: Sequence[Passage],
    settings: EngineSettings,
    out: Path,
    progress: bool,
    *,
    previous: Forward | None,
    runs: list[tuple[str, int]],
) -> list[str]:
    """The BM25 arrays of `passages` in `out` and their tokens beside it, tokenised in chunks on every core.

    `runs` are `passage_runs(passages)`; those that `previous` holds are taken from it, not cut
    again. Returns the vocabulary.
    """
    lexical = settings.lexical
    paths = Path(lexical.user_dict), Path(lexical.stopwords)
    to_cut = passages_to_cut(runs, previous)
    if to_cut:
        passage_tokenizer(*paths, lexical.bigrams, to_cut)  # loaded once here, inherited by the workers

    def tokenizer() -> Callable[[str], list[str]]:
        return passage_tokenizer(*paths, lexical.bigrams, to_cut)

    out.mkdir(parents=True)
    spill = Spill(out / SCRATCH)
    spill.directory.mkdir()
    first_reused = True
    with tqdm(total=len(passages), desc="tokenising", unit="passage", disable=not progress, leave=False) as bar:
        for chunk in tokenised_chunks(_plan(passages, runs, previous), tokenizer, to_cut):
            if isinstance(chunk, Reused):
                assert previous is not None
                spill.add(previous.chunk(chunk, first=first_reused))
                first_reused = False
            else:
                spill.add(chunk)
            bar.update(len(spill.lengths[-1]))
    postings = int(spill.frequencies.sum())
    forward = ForwardWriter(out.parent, len(passages), postings, runs)
    names, _ = assemble(spill, out, lexical.k1, lexical.b, forward)
    write_strings(out / LEXICAL_FILES[3], names)
    write_meta(out, len(passages))
    shutil.rmtree(spill.directory)
    return names


def passages_to_cut(runs: list[tuple[str, int]], previous: Forward | None) -> int:
    return sum(count for key, count in runs if previous is None or key not in previous.runs)


def _plan(
    passages: Sequence[Passage], runs: list[tuple[str, int]], previous: Forward | None
) -> Iterator[list[str] | Reused]:
    """Chunks in corpus order: texts to cut, and stretches of rows `previous` already holds."""
    texts: list[str] = []
    taken: Reused | None = None
    row = 0
    for key, count in runs:
        found = previous.runs.get(key) if previous is not None else None
        if found is None:
            if taken is not None:
                yield taken
                taken = None
            texts += [p.search_text for p in passages[row : row + count]]
            if len(texts) >= CHUNK_PASSAGES:
                yield texts
                texts = []
        else:
            if texts:
                yield texts
                texts = []
            if taken is not None and taken.end == found.start and len(taken) < CHUNK_PASSAGES:
                taken = Reused(taken.start, found.end)
            else:
                if taken is not None:
                    yield taken
                taken = found
        row += count
    if texts:
        yield texts
    if taken is not None:
        yield taken


def dictionary_hash(settings: EngineSettings) -> str:
    digest = hashlib.sha256()
    for name in (settings.lexical.user_dict, settings.lexical.stopwords, settings.lexical.question_frames):
        path = Path(name)
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def reusable(stored: StoredIndex | None, settings: EngineSettings) -> Forward | None:
    """The passage tokens of the generation `stored`, when it was built the way this build cuts words."""
    if stored is None:
        return None
    manifest = stored.manifest
    if manifest["config_hash"] != settings.index_hash() or manifest["dictionary_hash"] != dictionary_hash(settings):
        return None
    try:
        return Forward(stored.directory)
    except IndexError_ as error:
        logger.info("every passage is cut again: %s", str(error))  # not the error: it holds frames
        return None
