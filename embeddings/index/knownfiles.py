"""What the live index read of each speech file, so that a changed corpus is read again only where it changed.

Reading and cleaning every file is the largest part of adding one speech to a large corpus (~4 s
at 108k passages on two cores). A generation keeps each speech's file stamp (size and modification
time, taken before the file was read) and where its passages lie; a file found under the same name,
with the same speech id and stamp, is taken from the index instead of being read again. The files'
stamps are what `corpus_fingerprint` already trusts to tell an unchanged corpus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from embeddings.errors import IndexError_
from embeddings.index.lazycorpus import Speeches
from embeddings.index.ondisk import mapped
from embeddings.index.store import SPANS_FILE, SPEECH_FILES, StoredIndex
from embeddings.ingest.corpus import Stamp
from embeddings.ingest.segment import Span
from embeddings.passage import Passage, Speech
from embeddings.settings import EngineSettings

logger = logging.getLogger(__name__)


def write_known(
    directory: Path, stamps: Sequence[Stamp | None], speeches: Sequence[Speech], passages: Sequence[Passage]
) -> None:
    """Each speech's [name in the corpus, size, mtime_ns] (null when unknown) and each passage's span."""
    known = len(stamps) == len(speeches)  # a corpus of bare passages has no files
    files = [[s.source, *stamp] if stamp else None for s, stamp in zip(speeches, stamps, strict=True)] if known else []
    (directory / SPEECH_FILES).write_text(json.dumps(files), "utf-8")
    spans = np.array([(p.paragraph_no, p.part, p.start, p.end) for p in passages], dtype=np.int64).reshape(-1, 4)
    np.save(directory / SPANS_FILE, spans, allow_pickle=False)


class KnownFiles:
    """`load_corpus`'s `known`: the speech and passage spans a generation holds for a file, if it is unchanged."""

    def __init__(self, stored: StoredIndex) -> None:
        files = json.loads((stored.directory / SPEECH_FILES).read_text("utf-8"))
        self._stamps = {entry[0]: (entry[1], entry[2]) for entry in files if entry}
        self._speeches = Speeches(stored.directory)
        self._spans = mapped(stored.directory / SPANS_FILE)

    def __call__(self, speech_id: str, source: str, stamp: Stamp) -> tuple[Speech, list[Span]] | None:
        if self._stamps.get(source) != stamp:
            return None
        try:
            speech = self._speeches.get(speech_id)
            rows = self._speeches.passage_rows(speech_id)
        except (IndexError_, OSError, ValueError, KeyError, TypeError) as error:
            logger.info("%s is read again: %s", source, str(error))
            return None
        if speech is None or speech.source != source or not len(rows) or rows.stop > len(self._spans):
            return None
        spans: list[Span] = [(a, b, c, d) for a, b, c, d in self._spans[rows.start : rows.stop].tolist()]
        # Duplicates are found again among the files as they are now: the names it was also cited under go.
        return replace(speech, aliases=()), spans


def known_files(stored: StoredIndex | None, settings: EngineSettings) -> KnownFiles | None:
    """What the generation `stored` read of each file, when it cut them as `settings` would."""
    if stored is None or stored.manifest["config_hash"] != settings.index_hash():
        return None
    try:
        return KnownFiles(stored)
    except (IndexError_, OSError, ValueError, KeyError, TypeError, IndexError) as error:
        # The text, not the error: a record kept by a handler would keep its frames, and their locals, alive.
        logger.info("every speech file is read again: %s", str(error))
        return None
