"""speechqa benchmarks: quality, build time, warm latency and peak memory, next to the tutorial baseline.

    .venv/bin/python -m benchmarks.run              full run; rewrites the README's bench section
    .venv/bin/python -m benchmarks.run --quick      300 CMRC questions per pool, no MiniLM on 3,507
    .venv/bin/python -m benchmarks.run --no-dense   skip the MiniLM hybrid
    .venv/bin/python -m benchmarks.run --no-readme --json results.json

Every (dataset, system) pair runs in a child process (`--one DATASET SYSTEM`) that prints one JSON
line, so each peak-memory figure is that system's alone and no system inherits another's warm
caches. Children run one after another: on a 2-core machine, two at once would time each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path

from benchmarks.datasets import DATASETS
from benchmarks.measure import Measurement
from benchmarks.systems import REPO, SYSTEMS

README = REPO / "README.md"
# Embedding all 3,507 CMRC passages with MiniLM on a small CPU can take longer than the rest of the
# run together. It is projected from the rate measured on the 848 pool and skipped over budget:
# 4 minutes of embedding (about 5 for that whole row) keeps a full 2-core run near 10 minutes.
DENSE_EMBED_BUDGET_S = 240.0
RUN_ORDER = ("lexical", "baseline", "hybrid")  # hybrid last: the 3,507 one depends on the 848 one's rate


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a spread sample of 300 CMRC questions; no README")
    parser.add_argument("--no-dense", action="store_true", help="skip the MiniLM hybrid")
    parser.add_argument("--no-readme", action="store_true", help="print the table but leave README.md alone")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument(
        "--dense-budget",
        type=float,
        default=DENSE_EMBED_BUDGET_S,
        metavar="S",
        help="skip MiniLM on the 3,507 pool when embedding it is projected above S seconds "
        f"(default {DENSE_EMBED_BUDGET_S:.0f})",
    )
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "SYSTEM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one and (args.one[0] not in DATASETS or args.one[1] not in SYSTEMS):
        parser.error(f"--one takes a dataset of {DATASETS} and a system of {SYSTEMS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        return run_child(args.one[0], args.one[1], args.quick)
    return run_all(args, command_line(argv))


def run_child(dataset: str, system: str, quick: bool) -> int:
    from benchmarks.systems import run_one

    measurement = run_one(dataset, system, quick)
    print(json.dumps(asdict(measurement), ensure_ascii=False))
    return 0


def run_all(args: argparse.Namespace, command: str) -> int:
    from benchmarks.coldstart import measure_cold_start
    from benchmarks.report import RunContext, render, update_readme

    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    results: list[Measurement] = []
    skipped: dict[tuple[str, str], str] = {}
    for dataset in DATASETS:
        for system in RUN_ORDER:
            reason = skip_reason(dataset, system, args, results)
            if reason is None:
                reason = _run_or_reason(dataset, system, args.quick, results)
            if reason is not None:
                skipped[(dataset, system)] = reason
                _log(f"{dataset} / {system}: {reason}")
    _log("CLI cold start …")
    cold = measure_cold_start()
    seconds = time.perf_counter() - started
    context = RunContext(machine_line(load_at_start), date.today().isoformat(), command, seconds, args.quick)
    markdown = render(context, results, skipped, cold)
    print(markdown)
    if args.json:
        payload = {
            "context": asdict(context),
            "results": [asdict(m) for m in results],
            "skipped": [{"dataset": d, "system": s, "reason": r} for (d, s), r in skipped.items()],
            "cold_start": {**asdict(cold), "median_s": cold.median_s},
        }
        Path(args.json).write_text(json.dumps(payload, ensure_ascii=False, indent=2), "utf-8")
    if args.quick or args.no_readme:
        _log("README.md left as it is" + (" (a --quick run never goes into it)" if args.quick else ""))
    else:
        update_readme(README, markdown)
        _log(f"wrote the table into {README}")
    return 0


def skip_reason(dataset: str, system: str, args: argparse.Namespace, results: Sequence[Measurement]) -> str | None:
    if system != "hybrid":
        return None
    if args.no_dense:
        return "not run (--no-dense)"
    if dataset != "cmrc-3507":
        return None
    if args.quick:
        return "not run (--quick)"
    rate = next((m.embed_passages_per_s for m in results if (m.dataset, m.system) == ("cmrc-848", "hybrid")), None)
    if not rate:
        return "not run: no embedding rate was measured on the 848 pool to project its cost"
    lexical = next((m for m in results if (m.dataset, m.system) == ("cmrc-3507", "lexical")), None)
    passages = lexical.indexed if lexical is not None else 3507
    projected = passages / rate
    if projected > args.dense_budget:
        return (
            f"not run: embedding {passages:,} passages would take ~{projected:.0f} s at the {rate:.1f} passages/s "
            f"measured on the 848 pool (budget {args.dense_budget:.0f} s)"
        )
    return None


def _run_or_reason(dataset: str, system: str, quick: bool, results: list[Measurement]) -> str | None:
    """Run one child; a failure becomes the row's reason instead of ending the whole run."""
    _log(f"{dataset} / {system} …")
    try:
        measurement = run_in_child(dataset, system, quick)
    except RuntimeError as error:
        return f"failed: {error}"
    results.append(measurement)
    q, lat = measurement.quality, measurement.latency
    _log(
        f"  hit@1 {q.hit_at_1:.3f} hit@5 {q.hit_at_5:.3f} MRR@10 {q.mrr_at_10:.3f}  build {measurement.build_s:.1f} s  "
        f"p50 {lat.p50_ms:.2f} ms  peak {measurement.peak_rss_mib:.0f} MiB"
    )
    return None


def run_in_child(dataset: str, system: str, quick: bool) -> Measurement:
    command = [sys.executable, "-m", "benchmarks.run", "--one", dataset, system] + (["--quick"] if quick else [])
    # Offline by construction: the model is a local folder, and the hub client must not go looking.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"`{shlex.join(command[1:])}` exited {done.returncode} (its stderr is above)")
    return Measurement.from_dict(json.loads(lines[-1]))


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


def command_line(argv: Sequence[str] | None) -> str:
    arguments = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", "-m", "benchmarks.run", *arguments])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
