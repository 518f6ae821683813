"""Timing and scoring one system on one dataset, the same way for every system.

Each question is timed alone with `time.perf_counter` around the system's whole search call
(tokenising, scoring, ranking), after a few untimed warm-up questions, so that first-call costs
(lazy imports, page faults, caches) do not land on the first timed query. Ranks, hit@k and MRR@10
are scored by `embeddings.retrieval.evaluate.score` and p50/p95 by its `percentile`, so they mean the same here.
"Direct answer holds a gold span" is checked apart from the timing, on the answer composed as
`speechqa ask` composes it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.datasets import CACHE, Question
from embeddings.retrieval.evaluate import Quality, percentile, score

WARMUP_QUERIES = 5
# Seconds of embedding a row may spend, handed to each child by the run (unset: no limit).
EMBED_BUDGET_ENV = "SPEECHQA_BENCH_EMBED_BUDGET_S"
UNCACHED_BUILDS = CACHE / "uncached-builds.json"  # build times of cached rows, measured with an empty cache
# Records written before they named their model: `hybrid` ran the bundled model then, `hybrid-bundled` does now.
RENAMED_SYSTEMS = {"hybrid": "hybrid-bundled"}
MRR_DEPTH = 10


class RowSkipped(Exception):
    """A row that would not finish embedding within its budget; the message is the table's reason."""


def embed_budget() -> float | None:
    value = os.environ.get(EMBED_BUDGET_ENV, "")
    return float(value) if value else None


@dataclass(frozen=True, slots=True)
class Ranking:
    hits: tuple[tuple[int, str, str], ...]  # (rank, passage id, text), best first
    declined: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    answerable: bool
    rank: int | None  # rank of the first hit that answers the question; None when none of the top 10 does
    declined: bool
    latency_ms: float
    kind: str = ""
    direct_holds_gold: bool | None = None  # None: the system composes no direct answer, or not checked


@dataclass(frozen=True, slots=True)
class Latency:
    queries: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True, slots=True)
class Figures:
    """Quality of a set of questions, and how many direct answers hold a gold span (None: not composed)."""

    quality: Quality
    direct_holds_gold: int | None = None
    direct_of: int = 0  # answerable questions whose direct answer was checked


Search = Callable[[str], Ranking]
DirectCheck = Callable[[Question], bool]  # does the composed direct answer hold a gold span?


def run_questions(search: Search, questions: Sequence[Question], direct: DirectCheck | None = None) -> list[Outcome]:
    """Each question timed alone around `search`; `direct` (untimed) checks the composed answer."""
    for question in questions[:WARMUP_QUERIES]:
        search(question.text)
    outcomes = []
    for question in questions:
        started = time.perf_counter()
        ranking = search(question.text)
        latency = (time.perf_counter() - started) * 1000
        holds = direct(question) if direct is not None and question.answerable else None
        outcomes.append(
            Outcome(
                question.answerable,
                first_answer(question, ranking),
                ranking.declined,
                latency,
                question.kind,
                holds,
            )
        )
    return outcomes


def figures(outcomes: Sequence[Outcome]) -> Figures:
    checked = [o.direct_holds_gold for o in outcomes if o.answerable and o.direct_holds_gold is not None]
    return Figures(score(outcomes), sum(checked) if checked else None, len(checked))


def figures_by_kind(outcomes: Sequence[Outcome]) -> dict[str, Figures]:
    kinds = sorted({o.kind for o in outcomes if o.kind})
    return {kind: figures([o for o in outcomes if o.kind == kind]) for kind in kinds}


def first_answer(question: Question, ranking: Ranking) -> int | None:
    return next(
        (rank for rank, pid, text in ranking.hits if rank <= MRR_DEPTH and question.answered_by(pid, text)),
        None,
    )


def latency(outcomes: Sequence[Outcome]) -> Latency:
    values = [o.latency_ms for o in outcomes]
    return Latency(len(values), percentile(values, 0.5), percentile(values, 0.95))


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark (Linux reports kibibytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stopwatch:
    """`with Stopwatch() as watch: ...` then `watch.seconds`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self._started


def cache_state(was_empty: bool, embedded: int) -> str:
    """A cached row's build: "cold" (the cache was empty), "warm" (nothing embedded) or "partial"."""
    return "cold" if was_empty else "warm" if not embedded else "partial"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One (dataset, system) row, as the child process hands it back in JSON."""

    dataset: str
    system: str
    indexed: int  # passages for speechqa, chunks for the baseline
    indexed_unit: str
    figures: Figures
    latency: Latency
    build_s: float
    peak_rss_mib: float
    model_load_s: float | None = None
    embed_texts_per_s: float | None = None  # sentences (speechqa) or chunks (tutorial) embedded per second
    embed_chars_per_s: float | None = None
    dense_weight: float | None = None
    note: str = ""
    by_kind: dict[str, Figures] = field(default_factory=dict)
    # Rows that keep embeddings between runs: "cold" (nothing was cached), "warm" (all reused), "partial".
    cache_state: str = ""
    model: str = ""  # the embedder's name (a trained model's carries its manifest's hash); "" for none

    @property
    def quality(self) -> Quality:
        return self.figures.quality

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Measurement:
        return cls(
            **{
                **record,
                "figures": _figures(record["figures"]),
                "latency": Latency(**record["latency"]),
                "by_kind": {kind: _figures(f) for kind, f in record.get("by_kind", {}).items()},
            }
        )


def _figures(record: dict[str, Any]) -> Figures:
    return Figures(**{**record, "quality": Quality(**record["quality"])})


def machine_line(load: float) -> str:
    cpu = _cpu_model() or platform.machine()
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} "
        f"(1-min load average {load:.2f} at start)"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def known_uncached_builds() -> dict[str, dict[str, Any]]:
    """Build times by `dataset/system`: build_s, chars_per_s, date and (recorded since) model."""
    try:
        known = dict(json.loads(UNCACHED_BUILDS.read_text("utf-8")))
    except (OSError, ValueError):
        return {}
    renamed: dict[str, dict[str, Any]] = {}
    for key, record in known.items():
        dataset, _, system = key.rpartition("/")
        if "model" not in record and system in RENAMED_SYSTEMS:
            renamed.setdefault(f"{dataset}/{RENAMED_SYSTEMS[system]}", record)
        else:
            renamed[key] = record
    return renamed


def remember_uncached_builds(results: Sequence[Measurement]) -> dict[str, dict[str, float | str]]:
    """Remember the build time of a cached row measured with an empty cache; the README quotes it later."""
    known = known_uncached_builds()
    fresh = {
        f"{m.dataset}/{m.system}": {
            "build_s": m.build_s,
            "chars_per_s": m.embed_chars_per_s or 0.0,
            "date": date.today().isoformat(),
            "model": m.model,
        }
        for m in results
        if m.cache_state == "cold"
    }
    if fresh:
        UNCACHED_BUILDS.parent.mkdir(parents=True, exist_ok=True)
        UNCACHED_BUILDS.write_text(json.dumps({**known, **fresh}, indent=2), "utf-8")
    return {**known, **fresh}
