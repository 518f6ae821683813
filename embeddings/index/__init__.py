"""The built index: BM25 arrays and sentence vectors written as an atomic generation, and read back lazily."""
