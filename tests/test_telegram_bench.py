"""The load-test script runs as a library call and reports complete, consistent figures."""

from __future__ import annotations

from benchmarks import bench_chaos
from benchmarks.bench_bot import RssSampler, percentile, run


def test_small_load_run_answers_every_question_exactly_once() -> None:
    figures = run(users=5, questions=2, seed=3)
    assert (figures["questions"], figures["answered"], figures["lost"], figures["duplicated"]) == (10, 10, 0, 0)
    assert figures["apologised"] == 0 and figures["errors_logged"] == 0
    latency = figures["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]  # complete and ordered; how fast: the benchmark
    assert figures["problems"] == [] and figures["memory_mb"]["peak_rss"] > 0
    assert figures["crashed"] is False and figures["throughput_answers_per_s"] > 0
    assert figures["log_lines"] > 0 and figures["token_in_logs"] == 0


def test_under_random_faults_nothing_is_lost_or_answered_twice() -> None:
    """429s, 500s, dropped connections and executed-but-timed-out requests, all at once."""
    figures = run(users=8, questions=3, fault_rate=0.3, seed=5, timeout=1.0)
    assert set(figures["faults_injected"]) == {"429", "500", "drop", "slow"}
    assert (figures["answered"], figures["lost"], figures["duplicated"]) == (24, 0, 0)
    assert figures["crashed"] is False and figures["errors_logged"] == 0 and figures["problems"] == []
    assert figures["token_in_logs"] == 0 and figures["log_lines"] > 0  # retries were logged, redacted


def test_a_small_chaos_run_loses_nothing_and_repeats_at_most_one_answer_per_kill() -> None:
    """The real bot process, SIGKILLed twice while answering ten users (the full run: docs/telegram.md)."""
    figures = bench_chaos.run(users=10, kills=2, seed=3)
    assert (figures["questions"], figures["kills"], figures["answered"], figures["lost"]) == (10, 2, 10, 0)
    assert all(duplicates <= 1 for duplicates in figures["duplicated_per_kill"])
    assert figures["duplicated"] == sum(figures["duplicated_per_kill"]) and figures["duplicated_without_kill"] == 0
    assert len(figures["replayed_from_journal"]) == 2  # each restart answered what the killed run left
    assert figures["stopped_cleanly"] and figures["token_in_logs"] == 0 and figures["problems"] == []


def test_memory_quarters_use_the_samples_inside_each_quarter() -> None:
    sampler = RssSampler()
    sampler.samples = [(0.0, 100.0), (1.0, 110.0), (2.0, 500.0), (3.0, 120.0), (4.0, 130.0)]
    assert sampler.quarters(0.0, 4.0) == (105.0, 125.0)


def test_percentile_picks_nearest_rank() -> None:
    assert percentile([], 0.95) == 0.0
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0 and percentile(list(map(float, range(101))), 0.95) == 95.0
