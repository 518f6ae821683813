"""Engine settings: the `[segment]`, `[lexical]`, `[dense]`, `[fusion]` and `[rerank]` parts of the config.

They live in the engine so that `embeddings` never imports `bot`; `bot.config` reads them from
`config.toml` into one frozen tree. A hash of the fields that shape the built index goes into its
manifest (a change makes the index stale); `[fusion]`, `[rerank]`, batch size and device apply when
questions are asked, so changing them needs no rebuild.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

DenseMode = Literal["off", "auto", "required"]
VectorIndexKind = Literal["auto", "flat", "hnsw", "ivf"]
DenseFallback = Literal["bundled", "none"]
BackendKind = Literal["local", "milvus"]


@dataclass(frozen=True, slots=True)
class SegmentSettings:
    max_chars: int = 300
    overlap_sentences: int = 1


@dataclass(frozen=True, slots=True)
class LexicalSettings:
    user_dict: str = "data/jieba/userdict.txt"
    stopwords: str = "data/jieba/stopwords.txt"
    question_frames: str = "data/jieba/question_frames.txt"
    k1: float = 1.2
    b: float = 0.75
    bigrams: bool = True


@dataclass(frozen=True, slots=True)
class DenseSettings:
    mode: DenseMode = "auto"
    model: str = "BAAI/bge-small-zh-v1.5"
    # What "auto" uses when `model` cannot be had: the bundled 4-bit multilingual-e5-small, or nothing.
    fallback: DenseFallback = "bundled"
    # Read-only vectors shipped with a corpus (a copy of INDEX_DIR/cache after `speechqa index`):
    # sentences found there by content are not embedded again. Empty: none.
    shipped_vectors: str = ""
    query_instruction: str = "为这个句子生成表示以用于检索相关文章："
    index: VectorIndexKind = "auto"
    batch_size: int = 32
    device: str = "cpu"


@dataclass(frozen=True, slots=True)
class FusionSettings:
    # "auto" calibrates the dense weight per index from how well each retriever finds held-out
    # sentences of the corpus itself, so a weak model cannot drag the lexical ranking down. A number
    # applies at query time without a rebuild; 0 means questions are not embedded at all.
    dense_weight: float | Literal["auto"] = "auto"
    candidates: int = 50
    min_confidence: float = 0.45
    # The best-sentence cosine similarity at which the model neither raises nor lowers confidence
    # ("auto": the value measured for the bundled model; other models leave confidence to the words).
    answer_similarity: float | Literal["auto"] = "auto"


@dataclass(frozen=True, slots=True)
class RerankSettings:
    enabled: bool = False
    model: str = "BAAI/bge-reranker-base"
    candidates: int = 20


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """Where the two candidate searches run: this machine's own index files, or a Milvus collection.

    `uri` is a file path (Milvus Lite, in this process) or `http://host:19530` (a server or cluster);
    the token is read from the environment variable named by `token_env`, never from the config.
    """

    kind: BackendKind = "local"
    uri: str = "data/milvus/speechqa.db"
    collection: str = "speechqa"
    token_env: str = "MILVUS_TOKEN"
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class EngineSettings:
    segment: SegmentSettings = field(default_factory=SegmentSettings)
    lexical: LexicalSettings = field(default_factory=LexicalSettings)
    dense: DenseSettings = field(default_factory=DenseSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)

    def index_hash(self) -> str:
        """Hash of the settings that shape the built index (not those applied at query time)."""
        shaping = {
            "segment": asdict(self.segment),
            "lexical": asdict(self.lexical),
            "dense": {
                k: v for k, v in asdict(self.dense).items() if k not in ("batch_size", "device", "shipped_vectors")
            },
        }
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
