"""Which words Milvus should index: the project's own cut (whitespace analyser) or Milvus's jieba analyser.

    .venv/bin/python -m benchmarks.milvus_analyser

For each speech question set (and the paraphrase questions over the 69 documents), BM25 alone
(the words candidate search) over the set's passages, three ways: the local index; Milvus over
the tokens speechqa cuts (jieba with the domain dictionary, stop words out, character bigrams),
joined by spaces, with the `whitespace` analyser; Milvus over the raw passage text with its own
`jieba` analyser (no custom dictionary in Milvus 2.5) and our stop words as its stop filter.
Reported: hit@1 and recall@50 (the gold passage among the candidates the
retriever fuses). docs/milvus.md has the figures and the choice.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.datasets import SPEECH_SETS, Dataset, load_dataset
from benchmarks.systems import engine_settings
from embeddings.index.lexical import LexicalIndex
from embeddings.text.tokenize import load_stopwords, passage_tokenizer

DEPTH = 50


def ranks(dataset: Dataset, ranked: Callable[[str], list[int]]) -> tuple[float, float]:
    """(hit@1, recall@DEPTH) of the answerable questions."""
    passages = dataset.corpus.passages
    answerable = [q for q in dataset.questions if q.answerable]
    first = []
    for question in answerable:
        rows = ranked(question.text)[:DEPTH]
        found = [i for i, row in enumerate(rows) if question.answered_by(passages[row].passage_id, passages[row].text)]
        first.append(found[0] if found else None)
    return (
        sum(f == 0 for f in first) / len(answerable),
        sum(f is not None for f in first) / len(answerable),
    )


def milvus_ranker(
    client: Any, name: str, texts: list[str], analyser: dict[str, Any], query: Callable[[str], str]
) -> Callable[[str], list[int]]:
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(auto_id=False)
    schema.add_field("row", DataType.INT64, is_primary=True)
    schema.add_field("words", DataType.VARCHAR, max_length=65535, enable_analyzer=True, analyzer_params=analyser)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25", function_type=FunctionType.BM25, input_field_names=["words"], output_field_names=["sparse"]
        )
    )
    index = client.prepare_index_params()
    index.add_index(
        "sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"bm25_k1": 1.2, "bm25_b": 0.75}
    )
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    client.insert(name, [{"row": i, "words": text} for i, text in enumerate(texts)])

    def ranked(question: str) -> list[int]:
        found = client.search(
            name, data=[query(question)], anns_field="sparse", limit=DEPTH, search_params={"metric_type": "BM25"}
        )
        return [int(hit["id"]) for hit in found[0]]

    return ranked


def compare(client: Any, number: int, name: str, work: Path) -> str:
    """One table row: the set's passages indexed the three ways and its questions asked of each."""
    from embeddings.index.build import build_index
    from embeddings.index.store import open_stored
    from embeddings.text.tokenize import query_tokenizer

    settings, speeches_root, _ = engine_settings("lexical")
    lexical = settings.lexical
    dataset = load_dataset(name, settings.segment, speeches_root, quick=False)
    texts = [p.search_text for p in dataset.corpus.passages]
    build_index(dataset.corpus, settings, work / name, embedder=None)
    stored = open_stored(work / name)
    local = LexicalIndex.load(stored.directory / "lexical")
    cut_query = query_tokenizer(stored.directory / "query_dict.txt", Path(lexical.stopwords), lexical.bigrams)
    cut_passage = passage_tokenizer(Path(lexical.user_dict), Path(lexical.stopwords), lexical.bigrams)

    def local_ranked(question: str) -> list[int]:
        scores = local.scores(cut_query(question))
        return [int(r) for r in scores.argsort(kind="stable")[::-1] if scores[r] > 0]

    ours = milvus_ranker(
        client,
        f"ours{number}",
        [" ".join(cut_passage(t)) for t in texts],
        {"tokenizer": "whitespace"},
        lambda q: " ".join(cut_query(q)),
    )
    stopwords = sorted(load_stopwords(Path(lexical.stopwords)))
    jieba_analyser = {"tokenizer": "jieba", "filter": [{"type": "stop", "stop_words": stopwords}]}
    jieba = milvus_ranker(client, f"jieba{number}", texts, jieba_analyser, lambda q: q)
    cells = " | ".join(f"{h:.3f} / {r:.3f}" for h, r in (ranks(dataset, x) for x in (local_ranked, ours, jieba)))
    return f"| {name} | {sum(q.answerable for q in dataset.questions)} | {cells} |"


def main() -> int:
    from pymilvus import MilvusClient

    print("| set | questions | local BM25 hit@1 / recall@50 | Milvus, our words (whitespace) | Milvus jieba analyser |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(str(Path(tmp) / "analyser.db"))
        for number, name in enumerate((*SPEECH_SETS, "corpus-69")):
            print(compare(client, number, name, Path(tmp)))
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
