"""The speechqa engine: speeches → cleaned, segmented, cited passages → BM25 + FAISS → hybrid retrieval.

Stages, one module each: `load` → `clean` → `structure` → `segment` → `corpus`; `tokenize` and
`lexical`, `dense` and `vectors`, `fusion`; `build` and `store` on disk; `retrieve` at query time;
`engine` ties them together for front-ends. This package never imports `bot`.
"""

from embeddings.errors import SpeechQAError
from embeddings.passage import Hit, Passage, SearchResult, Speech

__all__ = ["Hit", "Passage", "SearchResult", "Speech", "SpeechQAError"]
