"""Deterministic stand-ins for the heavy parts, and a tiny real sentence-transformers model built on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

DIMENSION = 64


class FakeEmbedder:
    """Hashes character bigrams into 64 dimensions; records what it was asked to embed."""

    def __init__(self, name: str = "fake-bigram-embedder") -> None:
        self._name = name
        self.embedded: list[str] = []
        self.queries: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return DIMENSION

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(DIMENSION, dtype=np.float32)
        for i in range(len(text) - 1):
            bucket = int(hashlib.md5(text[i : i + 2].encode()).hexdigest()[:8], 16) % DIMENSION
            vector[bucket] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, DIMENSION), np.float32)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        self.queries.extend(texts)
        return self._vectors(texts)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        self.embedded.extend(texts)
        return self._vectors(texts)


def build_tiny_sentence_transformer(target: Path, corpus_text: str, dimension: int = 32) -> Path:
    """A 1-layer BERT (32 dimensions unless told) with a character vocabulary, as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers before the modules move
        from sentence_transformers.models import Pooling, Transformer

    bert_dir = target / "bert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    characters = sorted({ch for ch in corpus_text if not ch.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters]
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", "utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=dimension,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * dimension,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(bert_dir))
    tokenizer.save_pretrained(str(bert_dir))
    transformer = Transformer(str(bert_dir), max_seq_length=256)
    model = SentenceTransformer(modules=[transformer, Pooling(dimension, "mean")], device="cpu")
    model_dir = target / "tiny-st"
    model.save(str(model_dir))
    return model_dir
