"""Which rows a run measures, in what order, and why a row is left out (budgets, options)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from benchmarks.datasets import DATASETS, SPEECH_SETS, corpus_chars
from benchmarks.measure import Measurement, known_uncached_builds
from benchmarks.systems import EMBEDDING_SYSTEMS, uncached

# Embedding the 69 documents (1.4 M characters) or all 3,507 CMRC passages (1.8 M) on a small CPU
# takes far longer than the rest of the run. A row whose embeddings are not cached yet is projected
# from the rate measured on smaller sets and skipped over budget; the tutorial ensemble checks its
# own uncached chunks the same way. What was embedded stays cached, so a later run gets further.
DENSE_EMBED_BUDGET_S = 900.0
RUN_ORDER = ("lexical", "baseline", "hybrid", "hybrid-bundled", "tutorial-hybrid", "hybrid-minilm")
MINILM_DATASETS = (*SPEECH_SETS, "cmrc-848")  # the weak-model check; elsewhere it only costs time


def run_order(datasets: Sequence[str], systems: Sequence[str]) -> list[tuple[str, str]]:
    """Rows that embed nothing first, so that a run cut short by --deadline loses the slow rows only;
    within each half dataset by dataset (the 3,507 pool's embedding rows need the 848 pool's rates)."""
    rows = [(d, s) for d in DATASETS if d in datasets for s in RUN_ORDER if s in systems]
    return [row for row in rows if row[1] not in EMBEDDING_SYSTEMS] + [
        row for row in rows if row[1] in EMBEDDING_SYSTEMS
    ]


def skip_reason(dataset: str, system: str, args: argparse.Namespace, results: Sequence[Measurement]) -> str | None:
    if f"{dataset}:{system}" in args.skip:
        return "not run in this run (--skip)"
    if system not in EMBEDDING_SYSTEMS:
        return None
    if args.no_dense:
        return "not run (--no-dense)"
    if system == "hybrid-minilm" and dataset not in MINILM_DATASETS:
        return "not run (MiniLM is checked on the speeches sets and the 848 pool only)"
    if args.quick and dataset.startswith("cmrc-"):
        return "not run (--quick)"
    if dataset in SPEECH_SETS:
        return None  # two speeches: embedded in every run, in seconds
    if dataset == "cmrc-3507":
        rate = _rate(results, "cmrc-848", system)
        where = "the 848 pool"
    else:
        rate = max((_rate(results, d, system) or 0.0 for d in SPEECH_SETS), default=0.0) or None
        where = "the speeches"
    if system == "tutorial-hybrid" or not uncached(dataset, system):
        return None  # the tutorial ensemble checks its own uncached chunks; warm caches cost no embedding
    if not rate:
        return None if dataset != "cmrc-3507" else "not run: no embedding rate was measured to project its cost"
    chars = corpus_chars(dataset)
    projected = chars / rate
    if projected > args.dense_budget:
        return (
            f"not run: embedding {chars:,} characters would take ~{projected / 60:.0f} min at the {rate:,.0f} "
            f"characters/s measured on {where} (budget {args.dense_budget:.0f} s)"
        )
    return None


def _rate(results: Sequence[Measurement], dataset: str, system: str) -> float | None:
    """Characters/s this run measured for `system` on `dataset`, or that row's uncached build earlier."""
    rate = next((m.embed_chars_per_s for m in results if (m.dataset, m.system) == (dataset, system)), None)
    if not rate:
        rate = float(known_uncached_builds().get(f"{dataset}/{system}", {}).get("chars_per_s", 0.0)) or None
    return rate
