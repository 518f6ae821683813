"""Building the BM25 arrays in chunks: tokenised on every core, spilled to disk, assembled column by column.

Holding every passage's tokens at once took 3.4 GB for 108k passages. Here worker processes
tokenise chunks of passages (jieba once per worker), the parent gives each new token an id and
spills the chunk's (token, passage, count) triples to a scratch file, and a second pass writes each
chunk's scores straight into memory-mapped CSC arrays. Memory holds a chunk, the vocabulary and one
number per passage, not the corpus's tokens.

The scores are bm25s's Lucene BM25 computed the same way (the same float64 steps, rounded to
float32), so the arrays equal the ones `bm25s` builds, column for column; columns are in sorted
token order, which lets a reader find a token by binary search without loading a dictionary.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.index.forward import ForwardWriter, Reused

CHUNK_PASSAGES = 1000
# A chunk, as a worker sends it: who tokenised it (tokens are numbered per worker), the tokens new
# to that worker, then per (passage, token) pair its row in the chunk, the token's number and its
# count; each passage's token count.
Chunk = tuple[int, list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def count_tokens(token_lists: Iterable[list[str]], vocab: dict[str, int], source: int = 0) -> Chunk:
    """One chunk's counts; `vocab` numbers the tokens of every chunk of `source` and grows with new ones."""
    keys: list[str] = []
    counts: list[int] = []
    sizes: list[int] = []
    lengths: list[int] = []
    for token_list in token_lists:
        counter = Counter(token_list)
        keys.extend(counter)
        counts.extend(counter.values())
        sizes.append(len(counter))
        lengths.append(len(token_list) or 1)  # bm25s scores an empty passage as one empty token
    new = [key for key in dict.fromkeys(keys) if key not in vocab]
    vocab.update(zip(new, range(len(vocab), len(vocab) + len(new)), strict=True))
    return (
        source,
        new,
        np.repeat(np.arange(len(sizes), dtype=np.int32), sizes),
        np.fromiter(map(vocab.__getitem__, keys), dtype=np.int32, count=len(keys)),
        np.array(counts, dtype=np.float32),
        np.array(lengths, dtype=np.int64),
    )


@dataclass
class Spill:
    """Where the first pass leaves each chunk's triples, in global token ids, until the second pass."""

    directory: Path
    vocab: dict[str, int] = field(default_factory=dict)
    frequencies: np.ndarray = field(default_factory=lambda: np.zeros(1 << 16, dtype=np.int64))  # by token id
    lengths: list[np.ndarray] = field(default_factory=list)
    chunks: int = 0
    passages: int = 0
    _numbering: dict[int, np.ndarray] = field(default_factory=dict)  # a source's token numbers → global ids

    def add(self, chunk: Chunk) -> None:
        source, new, rows, tokens, counts, lengths = chunk
        unseen = [token for token in new if token not in self.vocab]  # another worker may have sent it
        self.vocab.update(zip(unseen, range(len(self.vocab), len(self.vocab) + len(unseen)), strict=True))
        fresh = np.fromiter(map(self.vocab.__getitem__, new), dtype=np.int64, count=len(new))
        numbering = self._numbering[source] = np.concatenate([self._numbering.get(source, fresh[:0]), fresh])
        ids = numbering[tokens]
        while len(self.frequencies) < len(self.vocab):
            self.frequencies = np.concatenate([self.frequencies, np.zeros_like(self.frequencies)])
        np.add.at(self.frequencies, ids, 1)  # each (passage, token) pair appears once: one more document
        np.save(self.directory / f"{self.chunks:06d}.npy", np.stack([rows + self.passages, ids]), allow_pickle=False)
        np.save(self.directory / f"{self.chunks:06d}.counts.npy", counts, allow_pickle=False)
        self.lengths.append(lengths)
        self.chunks += 1
        self.passages += len(lengths)


def assemble(
    spill: Spill, out: Path, k1: float, b: float, forward: ForwardWriter | None = None
) -> tuple[list[str], int]:
    """Write `data`, `indices`, `indptr` (.npy) into `out` from the spilled chunks, and `forward`'s rows.

    Returns the vocabulary in column order (sorted) and the number of passages. A token no passage
    holds (one only a reused generation's removed speeches had) gets no column.
    """
    held = spill.frequencies[: len(spill.vocab)] > 0
    names = sorted(name for name, number in spill.vocab.items() if held[number])
    column = np.full(len(spill.vocab), -1, dtype=np.int64)
    column[[spill.vocab[name] for name in names]] = np.arange(len(names))
    frequencies = spill.frequencies[: len(spill.vocab)][held][np.argsort(column[held])]
    lengths = np.concatenate(spill.lengths) if spill.lengths else np.zeros(0, np.int64)
    documents = len(lengths)
    indptr = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum(frequencies, out=indptr[1:])
    # Lucene IDF depends on the document frequency alone: one math.log per distinct frequency, as bm25s does.
    distinct, inverse = np.unique(frequencies, return_inverse=True)
    idf = np.array([math.log(1 + (documents - df + 0.5) / (df + 0.5)) for df in distinct.tolist()], np.float32)
    idf = idf[inverse]
    average = lengths.mean() if documents else 1.0
    size = int(indptr[-1])
    data = np.lib.format.open_memmap(out / "data.csc.index.npy", mode="w+", dtype=np.float32, shape=(size,))
    indices = np.lib.format.open_memmap(out / "indices.csc.index.npy", mode="w+", dtype=np.int32, shape=(size,))
    fill = indptr[:-1].copy()
    rows_before = 0
    for number in range(spill.chunks):
        rows, ids = np.load(spill.directory / f"{number:06d}.npy", allow_pickle=False)
        counts = np.load(spill.directory / f"{number:06d}.counts.npy", allow_pickle=False).astype(np.float64)
        columns = column[ids]
        passages = len(spill.lengths[number])
        if forward is not None:
            forward.add(rows - rows_before, columns, counts, passages)
        # (token, passage) pairs are unique, so one key orders them: 4x faster than np.lexsort.
        order = np.argsort(columns * passages + (rows - rows_before))
        rows_before += passages
        rows, columns, counts = rows[order], columns[order], counts[order]
        # bm25s: tf / (k1 * ((1 - b) + b * l_d / l_avg) + tf), times the float32 IDF, stored as float32.
        scores = idf[columns] * (counts / (k1 * ((1 - b) + b * lengths[rows] / average) + counts))
        starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
        group = np.repeat(starts, np.diff(np.r_[starts, len(columns)]))
        positions = fill[columns] + (np.arange(len(columns)) - group)
        data[positions] = scores.astype(np.float32)
        indices[positions] = rows
        fill[columns[starts]] += np.diff(np.r_[starts, len(columns)])
        (spill.directory / f"{number:06d}.npy").unlink()
        (spill.directory / f"{number:06d}.counts.npy").unlink()
    data.flush()
    indices.flush()
    del data, indices
    np.save(out / "indptr.csc.index.npy", indptr, allow_pickle=False)
    if forward is not None:
        forward.close()
    return names, documents


# A worker's state: the factory of its tokenizer, the tokenizer once a text needs it (made once per
# process), and the numbers it gave tokens.
_worker_factory: Callable[[], Callable[[str], list[str]]] | None = None
_worker_tokenise: Callable[[str], list[str]] | None = None
_worker_vocab: dict[str, int] = {}


def _start_worker(factory: Callable[[], Callable[[str], list[str]]]) -> None:
    global _worker_factory, _worker_tokenise, _worker_vocab
    _worker_factory, _worker_tokenise, _worker_vocab = factory, None, {}


def _work(item: list[str] | Reused) -> Chunk | Reused:
    """A chunk of texts tokenised; rows of a previous generation pass through, for the parent to take in order."""
    global _worker_tokenise
    if isinstance(item, Reused):
        return item
    if _worker_tokenise is None:
        assert _worker_factory is not None
        _worker_tokenise = _worker_factory()
    return count_tokens(map(_worker_tokenise, item), _worker_vocab, os.getpid())


def tokenised_chunks(
    chunks: Iterable[list[str] | Reused],
    factory: Callable[[], Callable[[str], list[str]]],
    passages: int,
    workers: int | None = None,
) -> Iterator[Chunk | Reused]:
    """`chunks` of texts tokenised by `factory()`, in order, on every core; `Reused` rows pass through.

    `passages` counts the texts to tokenise: the workers started are as many as they keep busy.
    """
    workers = min(workers or os.cpu_count() or 1, -(-passages // CHUNK_PASSAGES))
    if workers <= 1:
        _start_worker(factory)
        yield from map(_work, chunks)
        return
    # fork: workers inherit the loaded jieba dictionary instead of each reading it again; frozen,
    # the parent's objects are left alone by the workers' garbage collector, so their pages stay shared.
    gc.freeze()
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=_start_worker, initargs=(factory,)) as pool:
            # imap takes chunks as workers free up: texts in flight stay a few chunks, not the corpus.
            yield from pool.imap(_work, chunks)
    finally:
        gc.unfreeze()
