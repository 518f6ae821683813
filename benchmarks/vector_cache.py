"""A content-hash cache of embedding vectors for the benchmark's own embedders (the tutorial hybrid).

speechqa's rows use speechqa's own cache (`index_root/cache`); this one holds what the benchmark
embeds itself, so that a corpus embedded once (minutes on a 2-core CPU) is not embedded again by
the next run. Keys are SHA-256 of the text; one folder per model; saved after every batch, so a
run that is stopped keeps what it embedded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

BATCH = 256


class VectorCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._vectors: dict[str, np.ndarray] = {}
        keys_file, vectors_file = folder / "keys.txt", folder / "vectors.npy"
        if keys_file.is_file() and vectors_file.is_file():
            keys = keys_file.read_text("ascii").split()
            matrix = np.load(vectors_file, allow_pickle=False)
            if len(keys) == len(matrix):
                self._vectors = dict(zip(keys, matrix, strict=True))
        self.embedded = 0
        self.reused = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def missing(self, texts: list[str]) -> list[str]:
        """The distinct texts not cached yet, in order."""
        keys = {hashlib.sha256(text.encode()).hexdigest(): text for text in texts}
        return [text for key, text in keys.items() if key not in self._vectors]

    def vectors(self, texts: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors for `texts` in order, embedding (in batches) only those not cached yet."""
        keys = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
        missing = list({key: text for key, text in zip(keys, texts, strict=True) if key not in self._vectors}.items())
        self.reused = len(texts) - len(missing)
        for first in range(0, len(missing), BATCH):
            batch = missing[first : first + BATCH]
            matrix = np.asarray(embed([text for _, text in batch]), dtype=np.float32)
            self._vectors.update(zip((key for key, _ in batch), matrix, strict=True))
            self.embedded += len(batch)
            self._save()
        if not keys:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._vectors[key] for key in keys])

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = list(self._vectors)
        temporary = self.folder / "vectors.tmp.npy"
        np.save(temporary, np.stack([self._vectors[k] for k in keys]), allow_pickle=False)
        (self.folder / "keys.tmp").write_text("\n".join(keys) + "\n", "ascii")
        temporary.replace(self.folder / "vectors.npy")
        (self.folder / "keys.tmp").replace(self.folder / "keys.txt")
