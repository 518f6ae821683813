"""The heavy parts behind narrow seams: the `Embedder` (sentence-transformers or the bundled model) and the reranker."""
