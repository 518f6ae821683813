"""Milvus as the search backend: the BM25 and sentence-vector candidate searches run in a collection.

Everything above the two candidate searches (fusion, paragraphs, citations, confidence) is the
local `Retriever`'s own code, so answers are the same on either backend by construction.
"""
