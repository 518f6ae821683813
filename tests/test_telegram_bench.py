"""The load-test script runs as a library call and reports complete, consistent figures."""

from __future__ import annotations

from benchmarks.bench_bot import percentile, run


def test_small_load_run_answers_every_question_exactly_once() -> None:
    figures = run(users=5, questions=2, seed=3)
    assert (figures["questions"], figures["answered"], figures["lost"], figures["duplicated"]) == (10, 10, 0, 0)
    latency = figures["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] < 10_000
    assert figures["problems"] == [] and figures["peak_rss_mb"] > 0


def test_percentile_picks_nearest_rank() -> None:
    assert percentile([], 0.95) == 0.0
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0 and percentile(list(map(float, range(101))), 0.95) == 95.0
