"""The scale benchmark's Milvus Lite figures, beside the local backend's (`benchmarks.scale --backend milvus`).

On the corpus `benchmarks.scale` built (words only), as a user runs it: `speechqa index` into a
fresh Milvus Lite file (the local index is fresh: the whole command is the write; the full build
is the local build `benchmarks.scale` timed plus this), cold `speechqa ask`, `speechqa index`
after one speech is added (the local generation takes the other speeches' words from the last
one; Milvus gets that speech's rows only), then warm search p50/p95 in-process.

Milvus Lite runs the Milvus core in a child process of each command, and the first call that
touches a collection loads it (~10 s at 108k passages), which a server, started once, does not
do again. So adding a speech is also timed in a process whose Lite has the collection loaded
already, as a running server would: the same local rebuild and Milvus write, without Lite's start.
The Milvus part of each `index` is the time the command prints. Its figures are Lite's own, not
a server's or a cluster's.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from benchmarks.coldstart import to_toml
from benchmarks.scale import warm_ms, watched

COLD_RUNS = 3
WRITTEN = re.compile(r"(\d+) speech\(es\) written \((\d+) rows\) in ([0-9.]+) s")


def index_run(speechqa: str, config: Path) -> dict[str, Any]:
    """`speechqa index`: its wall time and the Milvus write it reports."""
    started = time.perf_counter()
    done = subprocess.run([speechqa, "--config", str(config), "index"], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    found = WRITTEN.search(done.stdout)
    if found is None:
        raise RuntimeError(f"`speechqa index` wrote nothing to Milvus: {done.stdout.strip()}")
    speeches, rows, seconds = found.groups()
    return {"wall_s": round(wall, 2), "milvus_write_s": float(seconds), "speeches": int(speeches), "rows": int(rows)}


def milvus_figures(
    config: Path, corpus: Path, questions_file: Path, warm_questions: int, local_build_s: float
) -> dict[str, Any]:
    from bot.config import load_config
    from embeddings.engine import open_retriever

    work = config.parent
    lite = work / "milvus"
    shutil.rmtree(lite, ignore_errors=True)
    raw = tomllib.loads(config.read_text("utf-8"))
    raw["backend"] = {"kind": "milvus", "uri": str(lite / "scale.db"), "collection": "scale", "timeout_s": 600}
    on_milvus = work / "config-milvus.toml"
    on_milvus.write_text(to_toml(raw), "utf-8")
    speechqa = str(Path(sys.executable).with_name("speechqa"))
    figures: dict[str, Any] = {"full_write": index_run(speechqa, on_milvus)}
    full_build = local_build_s + figures["full_write"]["wall_s"]
    figures["full_build_s"] = round(full_build, 2)
    cold = [watched([speechqa, "--config", str(on_milvus), "ask", "工匠日是怎么设立的？"]) for _ in range(COLD_RUNS)]
    figures["cold_ask"] = {"median_s": round(statistics.median(c["wall_s"] for c in cold), 3)}

    extra = corpus / "added" / "speech-added-milvus.txt"
    extra.parent.mkdir(exist_ok=True)
    extra.write_text((corpus / "0000" / "speech-000001.txt").read_text("utf-8").replace("关于", "再论", 1), "utf-8")
    try:
        added = index_run(speechqa, on_milvus)
        figures["add_one_speech"] = added
        settings = load_config(str(on_milvus))
        retriever, _ = open_retriever(settings.corpus_path, settings.index_path, settings.engine)
        figures["warm_ms"] = warm_ms(retriever, questions_file, warm_questions)  # Lite has the collection loaded
        figures["add_one_speech_loaded"] = _add_in_process(settings, extra.with_name("speech-added-loaded.txt"))
        figures["add_over_full_build"] = {
            "whole_command": round(added["wall_s"] / full_build, 4),
            "collection_loaded": round(figures["add_one_speech_loaded"]["wall_s"] / full_build, 4),
            "milvus_write_alone": round(added["milvus_write_s"] / figures["full_write"]["milvus_write_s"], 4),
        }
    finally:
        extra.unlink()
    figures["disk_mb"] = round(sum(p.stat().st_size for p in lite.rglob("*") if p.is_file()) / 2**20, 1)
    return figures


def _add_in_process(settings: Any, extra: Path) -> dict[str, Any]:
    """One more speech, opened again in this process: the local rebuild and the Milvus write, Lite loaded."""
    from embeddings.engine import open_retriever

    source = settings.corpus_path / "0000" / "speech-000002.txt"
    extra.write_text(source.read_text("utf-8").replace("关于", "三论", 1), "utf-8")
    try:
        started = time.perf_counter()
        retriever, report = open_retriever(settings.corpus_path, settings.index_path, settings.engine)
        wall = time.perf_counter() - started
        assert retriever.remote_words is not None
        written = retriever.remote_words.ready.report
    finally:
        extra.unlink()
    write = None if written is None else {"speeches": written.written, "rows": written.rows, "s": written.seconds}
    return {"wall_s": round(wall, 2), "cut": report.cut if report else 0, "milvus_write": write}
