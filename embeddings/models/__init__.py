"""The heavy parts behind narrow seams: the `Embedder` (sentence-transformers, bundled, trained) and the reranker."""
