"""The speechqa engine: speeches → cleaned, segmented, cited passages → BM25 + FAISS → hybrid retrieval.

Stages, one module each: `load` → `clean` → `structure` → `segment` → `corpus`; `tokenize` and
`lexical`, `dense` and `vectors`, `fusion`; `build` and `store` on disk; `retrieve` at query time;
`engine` ties them together for front-ends. This package never imports `bot`.
"""

import warnings

# jieba (and milvus-lite) import pkg_resources while it exists; setuptools < 81 is kept installed for
# milvus-lite 2.5.1, whose deprecation warning would otherwise precede every answer on stderr.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from embeddings.errors import SpeechQAError  # noqa: E402
from embeddings.passage import Hit  # noqa: E402, Passage, SearchResult, Speech

__all__ = ["Hit", "Passage", "SearchResult", "Speech", "SpeechQAError"]
