"""The `tutorial-hybrid` row: the LangChain tutorial ensemble (`benchmarks/tutorial.py`) measured.

It uses the same bundled model as speechqa's `hybrid-bundled` row, loaded the same way, with its
own "query: " / "passage: " prefixes (kinder to the tutorial than LangChain's `HuggingFaceEmbeddings`,
which adds none). Speeches are ranked chunk by chunk; a CMRC passage by its best chunk in the
fused list (later chunks of the same passage are dropped, as the baseline row does).
"""

from __future__ import annotations

from benchmarks.datasets import Dataset
from benchmarks.instrumented import InstrumentedEmbedder
from benchmarks.measure import (
    MRR_DEPTH,
    Measurement,
    Ranking,
    RowSkipped,
    Search,
    Stopwatch,
    cache_state,
    embed_budget,
    figures,
    figures_by_kind,
    peak_rss_mib,
)
from benchmarks.measure import latency as latency_of
from benchmarks.tutorial import K, TutorialHybrid, split_text
from benchmarks.vector_cache import VectorCache
from embeddings.models.bundled import BUNDLED_MODEL


def run_tutorial(dataset: Dataset) -> Measurement:
    from benchmarks.systems import TUTORIAL_CACHE, sampled_outcomes
    from embeddings.models.dense import load_embedder

    with Stopwatch() as load:
        embedder = InstrumentedEmbedder(load_embedder(BUNDLED_MODEL, "", 32, "cpu", False))
    cache = VectorCache(TUTORIAL_CACHE / dataset.name) if dataset.cached_embeddings else None
    was_empty = cache is not None and not len(cache)
    sampled_s = _check_budget(dataset, embedder, cache) if cache is not None else 0.0
    with Stopwatch() as build:
        index = TutorialHybrid.build(
            dataset.baseline_documents,
            embedder,
            embed_chunks=(lambda texts: cache.vectors(texts, embedder.embed_passages)) if cache else None,
        )
    outcomes, timed, notes = sampled_outcomes(
        tutorial_search(index, dataset.baseline_ranks_chunks), embedder, dataset.questions
    )
    notes.insert(0, f"each retriever's top {K} (the tutorial's default is 4), fused by weighted RRF")
    if cache is not None:
        notes.append(f"embedded {cache.embedded:,} chunks, reused {cache.reused:,} from benchmarks/.cache")
    return Measurement(
        dataset=dataset.name,
        system="tutorial-hybrid",
        indexed=len(index.chunks),
        indexed_unit="chunks",
        figures=figures(outcomes),
        latency=latency_of(timed),
        build_s=build.seconds + sampled_s,
        peak_rss_mib=peak_rss_mib(),
        model_load_s=load.seconds,
        embed_texts_per_s=embedder.texts_per_second,
        embed_chars_per_s=embedder.chars_per_second,
        note="; ".join(notes),
        by_kind=figures_by_kind(outcomes),
        cache_state=cache_state(was_empty, cache.embedded) if cache else "",
        model=embedder.name,
    )


SAMPLE_CHUNKS = 24


def _check_budget(dataset: Dataset, embedder: InstrumentedEmbedder, cache: VectorCache) -> float:
    """Embed (and cache) a sample of the uncached chunks; give up when the rest would overrun the budget.

    Returns the seconds the sample took, which belong to the build."""
    budget = embed_budget()
    missing = cache.missing([chunk for _, text in dataset.baseline_documents for chunk in split_text(text)])
    if budget is None or not missing:
        return 0.0
    sample, rest = missing[:SAMPLE_CHUNKS], missing[SAMPLE_CHUNKS:]
    with Stopwatch() as watch:
        cache.vectors(sample, embedder.embed_passages)
    rate = sum(len(text) for text in sample) / max(watch.seconds, 1e-6)
    projected = sum(len(text) for text in rest) / rate
    if projected > budget:
        raise RowSkipped(
            f"not run: {len(rest):,} chunks ({sum(len(t) for t in rest):,} characters) still to embed, ~"
            f"{projected / 60:.0f} min at the {rate:,.0f} characters/s measured on {len(sample)} of them "
            f"(budget {budget:.0f} s); embedded chunks stay cached for the next run"
        )
    return watch.seconds


def tutorial_search(index: TutorialHybrid, rank_chunks: bool) -> Search:
    def search(question: str) -> Ranking:
        fused = index.search(question, K)
        if rank_chunks:
            hits = fused
        else:
            seen: dict[str, str] = {}
            for doc_id, text in fused:
                seen.setdefault(doc_id, text)  # CMRC is judged by passage id
            hits = list(seen.items())
        return Ranking(tuple((rank, pid, text) for rank, (pid, text) in enumerate(hits[:MRR_DEPTH], 1)), False)

    return search
