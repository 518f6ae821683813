"""The collections of one corpus in Milvus, and the record that says which index they were written from.

- `<name>_passages`: one row per passage, keyed by passage id; `words` holds the passage's tokens as
  cut by speechqa's own jieba, domain dictionary and bigrams, joined by spaces, and Milvus's BM25
  function (whitespace analyser) turns them into the sparse vector it searches. Both backends thus
  score the same words with the same BM25 (Lucene's IDF, same k1 and b).
- `<name>_units`: one row per sentence unit, keyed by `speech@start`, with its vector (dense side only).
- `<name>_speeches`: one row per speech with the digest of what was written for it, written after
  its rows: a speech without it was cut short and is written again. The row `~meta` records the
  settings, dictionary and model the rows were made with; when they change, everything is rewritten.
"""

from __future__ import annotations

import json
from typing import Any

from embeddings.milvus.client import MAX_TEXT, Collections

META_KEY = "~meta"
KEY_CHARS = 1024
FORMAT = 2  # 2: a speech being written has a pending record, so a new one needs no delete first
# Every Milvus collection needs a vector field; the speeches' record has nothing to search.
PLACEHOLDER = [0.0, 0.0]


def create(client: Any, collections: Collections, dimension: int | None, k1: float, b: float) -> None:
    """The three collections, with strong consistency: a row written is seen by the next search anywhere."""
    from pymilvus import DataType, Function, FunctionType

    passages = client.create_schema(auto_id=False)
    passages.add_field("pid", DataType.VARCHAR, is_primary=True, max_length=KEY_CHARS)
    passages.add_field("speech", DataType.VARCHAR, max_length=KEY_CHARS)
    analyser = {"tokenizer": "whitespace"}
    passages.add_field("words", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True, analyzer_params=analyser)
    passages.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    bm25 = Function(
        name="bm25", function_type=FunctionType.BM25, input_field_names=["words"], output_field_names=["sparse"]
    )
    passages.add_function(bm25)
    index = client.prepare_index_params()
    bm25_params = {"bm25_k1": k1, "bm25_b": b}
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=bm25_params)
    client.create_collection(collections.passages, schema=passages, index_params=index, consistency_level="Strong")

    if dimension is not None:
        units = client.create_schema(auto_id=False)
        units.add_field("uid", DataType.VARCHAR, is_primary=True, max_length=KEY_CHARS)
        units.add_field("speech", DataType.VARCHAR, max_length=KEY_CHARS)
        units.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        index = client.prepare_index_params()
        # AUTOINDEX: exact in Milvus Lite, the server's own choice (HNSW) on a server or cluster.
        index.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
        client.create_collection(collections.units, schema=units, index_params=index, consistency_level="Strong")

    speeches = client.create_schema(auto_id=False)
    speeches.add_field("speech", DataType.VARCHAR, is_primary=True, max_length=KEY_CHARS)
    speeches.add_field("digest", DataType.VARCHAR, max_length=MAX_TEXT)
    speeches.add_field("placeholder", DataType.FLOAT_VECTOR, dim=len(PLACEHOLDER))
    index = client.prepare_index_params()
    index.add_index("placeholder", index_type="FLAT", metric_type="L2")
    client.create_collection(collections.speeches, schema=speeches, index_params=index, consistency_level="Strong")


def drop(client: Any, collections: Collections) -> None:
    for name in (collections.passages, collections.units, collections.speeches):
        if client.has_collection(name):
            client.drop_collection(name)


def read_meta(client: Any, collections: Collections, timeout: float) -> dict[str, Any] | None:
    """The `~meta` record, or None when the collections are not there (or were never finished)."""
    if not client.has_collection(collections.speeches, timeout=timeout):
        return None
    found = client.get(collections.speeches, ids=[META_KEY], output_fields=["digest"], timeout=timeout)
    return json.loads(found[0]["digest"]) if found else None


def write_meta(client: Any, collections: Collections, meta: dict[str, Any], timeout: float) -> None:
    record = {"speech": META_KEY, "digest": json.dumps(meta, sort_keys=True), "placeholder": PLACEHOLDER}
    client.upsert(collections.speeches, [record], timeout=timeout)


def filter_in(field: str, values: list[str]) -> str:
    """`field in [...]` with each value quoted as a JSON string (ids may hold quotes or backslashes)."""
    return f"{field} in {json.dumps(values, ensure_ascii=False)}"
