"""The benchmark's LangChain tutorial ensemble (splitter, reciprocal rank fusion, search) and its run plan."""

from __future__ import annotations

import numpy as np

from benchmarks.measure import Outcome, figures, figures_by_kind
from benchmarks.tutorial import TutorialHybrid, reciprocal_rank_fusion, split_text
from benchmarks.vector_cache import VectorCache
from tests.fakes import FakeEmbedder


def test_short_text_is_one_chunk():
    assert split_text("工匠日是怎么设立的。") == ["工匠日是怎么设立的。"]


def test_splitter_prefers_paragraphs_and_keeps_the_separator_at_the_start():
    text = "甲" * 200 + "\n" + "乙" * 200 + "\n" + "丙" * 50
    chunks = split_text(text, chunk_size=300, overlap=50)
    assert chunks == ["甲" * 200, "乙" * 200 + "\n" + "丙" * 50]  # stripped; "\n乙…" starts the second piece


def test_splitter_overlaps_by_whole_pieces_and_cuts_long_lines_into_characters():
    lines = [f"第{i}句" + "字" * 36 for i in range(10)]  # 40 characters each (+ "\n")
    chunks = split_text("\n".join(lines), chunk_size=100, overlap=50)
    assert all(len(c) <= 100 for c in chunks)
    assert chunks[0].startswith("第0句") and "第1句" in chunks[0]
    assert "第1句" in chunks[1]  # the last piece of a chunk (≤ 50 characters) starts the next one
    long = split_text("长" * 650, chunk_size=300, overlap=50)
    assert [len(c) for c in long] == [300, 300, 150]
    assert "".join(long).count("长") == 750  # 50 characters of overlap at each of the two cuts


def test_rrf_is_weighted_reciprocal_rank_with_first_appearance_on_ties():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "d", "a"]], weights=(0.5, 0.5), c=60)
    # a: .5/61 + .5/63, c: .5/63 + .5/61 (tie, a came first), b: .5/62, d: .5/62 (tie, b first)
    assert fused == ["a", "c", "b", "d"]
    assert reciprocal_rank_fusion([["x"], ["y"]], weights=(0.2, 0.8)) == ["y", "x"]


def test_ensemble_search_finds_by_either_leg(tmp_path):
    documents = [
        ("s1", "工匠日设立于每年五月。\n全国劳动模范表彰大会隆重召开。"),
        ("s2", "工会组建工作要以制度为保障。\n各单位要用数字说话。"),
        ("s3", "今年的经济工作稳中有进。"),  # three documents: with two, BM25Okapi's idf is negative
    ]
    embedder = FakeEmbedder()
    cache = VectorCache(tmp_path / "cache")
    index = TutorialHybrid.build(
        documents,
        embedder,
        tokenize=list,
        embed_chunks=lambda texts: cache.vectors(texts, embedder.embed_passages),
    )
    assert index.chunk_doc == ["s1", "s2", "s3"]
    assert index.bm25_top("工会组建靠制度保障", 1) == [1] and index.dense_top("工会组建靠制度保障", 1) == [1]
    hits = index.search("工会组建靠制度保障", k=2)
    assert hits[0] == ("s2", documents[1][1]) and 2 <= len(hits) <= 4
    again = VectorCache(tmp_path / "cache")  # saved to disk: a second run embeds nothing
    vectors = again.vectors(index.chunks, lambda texts: np.zeros((len(texts), 1)))
    assert again.embedded == 0 and again.reused == 3 and vectors.shape == (3, 64)


def test_figures_count_direct_answers_per_kind():
    outcomes = [
        Outcome(True, 1, False, 1.0, "list", True),
        Outcome(True, None, True, 1.0, "list", False),
        Outcome(False, None, True, 1.0, "unanswerable-offtopic"),
    ]
    assert figures(outcomes).direct_holds_gold == 1 and figures(outcomes).direct_of == 2
    by_kind = figures_by_kind(outcomes)
    assert by_kind["list"].quality.hit_at_1 == 0.5
    assert by_kind["unanswerable-offtopic"].quality.declined_unanswerable == 1


def test_plan_runs_cheap_rows_first_and_says_why_a_row_is_left_out():
    import argparse

    from benchmarks.datasets import DATASETS
    from benchmarks.plan import run_order, skip_reason
    from benchmarks.systems import EMBEDDING_SYSTEMS, SYSTEMS

    order = run_order(DATASETS, SYSTEMS)
    first_embedding = next(i for i, (_, s) in enumerate(order) if s in EMBEDDING_SYSTEMS)
    assert all(s in EMBEDDING_SYSTEMS for _, s in order[first_embedding:])
    args = argparse.Namespace(skip=["speeches:baseline"], no_dense=False, quick=False, dense_budget=900)
    assert skip_reason("speeches", "hybrid", args, []) is None  # two speeches: always embedded
    assert skip_reason("speeches", "baseline", args, []) == "not run in this run (--skip)"
    assert str(skip_reason("corpus-69", "hybrid-minilm", args, [])).startswith("not run (")
    assert skip_reason("speeches", "tutorial-hybrid", argparse.Namespace(**{**vars(args), "no_dense": True}), [])
