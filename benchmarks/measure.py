"""Timing and scoring one system on one dataset, the same way for every system.

Each question is timed alone with `time.perf_counter` around the system's whole search call
(tokenising, scoring, ranking), after a few untimed warm-up questions, so that first-call costs
(lazy imports, page faults, caches) do not land on the first timed query. Ranks, hit@k and MRR@10
are scored by `embeddings.evaluate.score` and p50/p95 by its `percentile`, so they mean the same here.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.datasets import Question
from embeddings.evaluate import Quality, percentile

WARMUP_QUERIES = 5
MRR_DEPTH = 10


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


@dataclass(frozen=True, slots=True)
class Latency:
    queries: int
    p50_ms: float
    p95_ms: float


Search = Callable[[str], Ranking]


def run_questions(search: Search, questions: Sequence[Question]) -> list[Outcome]:
    for question in questions[:WARMUP_QUERIES]:
        search(question.text)
    outcomes = []
    for question in questions:
        started = time.perf_counter()
        ranking = search(question.text)
        latency = (time.perf_counter() - started) * 1000
        outcomes.append(Outcome(question.answerable, first_answer(question, ranking), ranking.declined, latency))
    return outcomes


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


@dataclass(frozen=True, slots=True)
class Measurement:
    """One (dataset, system) row, as the child process hands it back in JSON."""

    dataset: str
    system: str
    indexed: int  # passages for speechqa, chunks for the baseline
    indexed_unit: str
    quality: Quality
    latency: Latency
    build_s: float
    peak_rss_mib: float
    model_load_s: float | None = None
    embed_passages_per_s: float | None = None
    dense_weight: float | None = None
    note: str = ""

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Measurement:
        return cls(**{**record, "quality": Quality(**record["quality"]), "latency": Latency(**record["latency"])})
