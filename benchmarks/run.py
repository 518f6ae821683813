"""speechqa benchmarks: quality, build time, warm latency and peak memory, next to the tutorial recipes.

    .venv/bin/python -m benchmarks.run                  full run; rewrites the table in docs/benchmarks.md
    .venv/bin/python -m benchmarks.run --quick          300 CMRC questions, no embedding of the CMRC pools
    .venv/bin/python -m benchmarks.run --only-speeches  the three question sets over the two speeches
    .venv/bin/python -m benchmarks.run --no-dense       skip every system that embeds (lexical rows only)
    .venv/bin/python -m benchmarks.run --datasets corpus-69 --systems hybrid,lexical --no-readme
    .venv/bin/python -m benchmarks.run --no-readme --json results.json

Every (dataset, system) pair runs in a child process (`--one DATASET SYSTEM`) that prints one JSON
line, so each peak-memory figure is that system's alone and no system inherits another's warm
caches. Children run one after another: on a 2-core machine, two at once would time each other.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path

from benchmarks.datasets import DATASETS, SPEECH_SETS
from benchmarks.measure import (
    EMBED_BUDGET_ENV,
    Measurement,
    RowSkipped,
    machine_line,
    remember_uncached_builds,
)
from benchmarks.plan import DENSE_EMBED_BUDGET_S, run_order, skip_reason
from benchmarks.systems import REPO, SYSTEMS

README = REPO / "docs" / "benchmarks.md"  # the table between its bench markers
ROW_TIMEOUT_S = 1800.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a spread sample of 300 CMRC questions; not written down")
    parser.add_argument("--no-dense", action="store_true", help="skip every system that embeds")
    parser.add_argument("--only-speeches", action="store_true", help=f"only {', '.join(SPEECH_SETS)}")
    parser.add_argument("--datasets", type=_names(DATASETS), default=DATASETS, help="comma-separated subset")
    parser.add_argument("--systems", type=_names(SYSTEMS), default=SYSTEMS, help="comma-separated subset")
    parser.add_argument("--no-readme", action="store_true", help="print the table but leave docs/benchmarks.md alone")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument(
        "--dense-budget",
        type=float,
        default=DENSE_EMBED_BUDGET_S,
        metavar="S",
        help="skip a row whose uncached embeddings are projected to take more than S seconds "
        f"(default {DENSE_EMBED_BUDGET_S:.0f})",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="DATASET:SYSTEM",
        help="leave one row out (repeatable); the table says it was not run",
    )
    parser.add_argument(
        "--row-timeout",
        type=float,
        default=ROW_TIMEOUT_S,
        metavar="S",
        help=f"stop a row that runs longer (default {ROW_TIMEOUT_S:.0f}); cached embeddings are kept",
    )
    parser.add_argument(
        "--deadline",
        type=_clock,
        metavar="HH:MM",
        help="UTC time by which every row must have finished; rows that would run past it are cut short",
    )
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "SYSTEM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one and (args.one[0] not in DATASETS or args.one[1] not in SYSTEMS):
        parser.error(f"--one takes a dataset of {DATASETS} and a system of {SYSTEMS}")
    if args.only_speeches:
        args.datasets = tuple(d for d in args.datasets if d in SPEECH_SETS)
    return args


def _clock(value: str) -> float:
    """Today's HH:MM UTC as a Unix time."""
    hours, minutes = (int(part) for part in value.split(":"))
    now = datetime.now(UTC)
    return now.replace(hour=hours, minute=minutes, second=0, microsecond=0).timestamp()


def _names(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        if unknown := [n for n in names if n not in allowed]:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return names

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_child(args.one[0], args.one[1], args.quick)
    return run_all(args, command_line(argv))


def run_child(dataset: str, system: str, quick: bool) -> int:
    from benchmarks.systems import run_one

    try:
        measurement = run_one(dataset, system, quick)
    except RowSkipped as skipped:
        print(json.dumps({"skipped": str(skipped)}, ensure_ascii=False))
        return 0
    print(json.dumps(asdict(measurement), ensure_ascii=False))
    return 0


def run_all(args: argparse.Namespace, command: str) -> int:
    from benchmarks.coldstart import measure_cold_start
    from benchmarks.report import RunContext, render, update_readme

    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    results: list[Measurement] = []
    skipped: dict[tuple[str, str], str] = {}
    cold = None
    if not args.only_speeches and not args.no_dense and args.datasets == DATASETS and "hybrid" in args.systems:
        _log("CLI: index build from nothing and cold start …")
        cold = measure_cold_start()
    for dataset, system in run_order(args.datasets, args.systems):
        try:
            reason = skip_reason(dataset, system, args, results) or _run_or_reason(dataset, system, args, results)
        except Exception as error:  # a bug in one row's bookkeeping must not lose the rows already measured
            reason = f"failed: {type(error).__name__}: {error}"
        if reason is not None:
            skipped[(dataset, system)] = reason
            _log(f"{dataset} / {system}: {reason}")
    seconds = time.perf_counter() - started
    context = RunContext(machine_line(load_at_start), date.today().isoformat(), command, seconds, args.quick)
    markdown = render(context, results, skipped, cold, remember_uncached_builds(results))
    print(markdown)
    if args.json:
        payload = {
            "context": asdict(context),
            "results": [asdict(m) for m in results],
            "skipped": [{"dataset": d, "system": s, "reason": r} for (d, s), r in skipped.items()],
            "cold_start": None if cold is None else {**asdict(cold), "median_s": cold.median_s},
        }
        Path(args.json).write_text(json.dumps(payload, ensure_ascii=False, indent=2), "utf-8")
    partial = args.datasets != DATASETS or args.systems != SYSTEMS
    if args.quick or args.no_readme or partial:
        _log("docs/benchmarks.md left as it is" + (" (only a full run goes into it)" if args.quick or partial else ""))
    else:
        update_readme(README, markdown)
        _log(f"wrote the table into {README}")
    return 0


def _run_or_reason(dataset: str, system: str, args: argparse.Namespace, results: list[Measurement]) -> str | None:
    """Run one child; a failure becomes the row's reason instead of ending the whole run."""
    timeout = args.row_timeout
    if args.deadline is not None:
        timeout = min(timeout, args.deadline - time.time())
        if timeout < 30:
            return "not run: the run's deadline (--deadline) had come"
    _log(f"{dataset} / {system} …")
    try:
        measurement = run_in_child(dataset, system, args.quick, timeout, min(args.dense_budget, timeout - 60))
    except subprocess.TimeoutExpired:
        return f"cut short after {timeout / 60:.0f} min (row limit or --deadline); embeddings so far stay cached"
    except RuntimeError as error:
        return f"failed: {error}"
    if isinstance(measurement, str):
        return measurement
    results.append(measurement)
    q, lat, f = measurement.quality, measurement.latency, measurement.figures
    direct = "" if f.direct_holds_gold is None else f"  direct holds gold {f.direct_holds_gold}/{f.direct_of}"
    _log(
        f"  hit@1 {q.hit_at_1:.3f} hit@5 {q.hit_at_5:.3f} MRR@10 {q.mrr_at_10:.3f}  declined "
        f"{q.declined_unanswerable}/{q.unanswerable}, wrongly {q.wrongly_declined_answerable}/{q.answerable}{direct}  "
        f"build {measurement.build_s:.1f} s  p50 {lat.p50_ms:.2f} ms  peak {measurement.peak_rss_mib:.0f} MiB"
    )
    return None


def run_in_child(
    dataset: str, system: str, quick: bool, timeout: float | None = None, budget: float | None = None
) -> Measurement | str:
    """The child's measurement, or the reason it gave for not running (`RowSkipped`)."""
    command = [sys.executable, "-m", "benchmarks.run", "--one", dataset, system] + (["--quick"] if quick else [])
    # Offline by construction: the model is a local folder, and the hub client must not go looking.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if budget is not None:
        env[EMBED_BUDGET_ENV] = f"{budget:.0f}"
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=False, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"`{shlex.join(command[1:])}` exited {done.returncode} (its stderr is above)")
    record = json.loads(lines[-1])
    return str(record["skipped"]) if "skipped" in record else Measurement.from_dict(record)


def command_line(argv: Sequence[str] | None) -> str:
    arguments = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", "-m", "benchmarks.run", *arguments])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
