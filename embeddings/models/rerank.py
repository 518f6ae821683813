"""The optional rerank stage: a cross-encoder reads question and passage together and reorders the top.

Off by default: it costs a model load and tens of milliseconds per candidate on a CPU. When it is
on, it reorders only the fused top candidates, so it can fix an order but never invent a hit.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from embeddings.errors import ModelUnavailable
from embeddings.models.dense import locate_model


class Reranker(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, question: str, texts: list[str]) -> np.ndarray: ...


class CrossEncoderReranker:
    def __init__(self, model: str, device: str, local_only: bool) -> None:
        from sentence_transformers import CrossEncoder

        try:
            self._model = CrossEncoder(model, device=device, local_files_only=local_only)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelUnavailable(f"rerank model {model} cannot be loaded: {error}") from error
        self._name = model

    @property
    def name(self) -> str:
        return self._name

    def score(self, question: str, texts: list[str]) -> np.ndarray:
        scores = self._model.predict([(question, text) for text in texts], show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32)


def load_reranker(model: str, device: str, allow_network: bool) -> Reranker:
    location = locate_model(model, allow_network)
    if not location.available:
        raise ModelUnavailable(
            f"rerank model {model} is not available: {location.reason}",
            "set [rerank] model to a local folder or set [rerank] enabled = false",
        )
    return CrossEncoderReranker(model, device, location.local_only)


def rerank_order(rows: list[int], scores: np.ndarray) -> list[int]:
    """`rows` reordered by descending rerank score; the fused order breaks ties."""
    order = sorted(range(len(rows)), key=lambda i: (-float(scores[i]), i))
    return [rows[i] for i in order]
