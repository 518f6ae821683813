"""The scale benchmark's Milvus Lite figures, beside the local backend's (`benchmarks.scale --backend milvus`).

On the corpus `benchmarks.scale` built (words only): writing it whole into a fresh Milvus Lite file,
then adding one speech (its rows only: the local index is rebuilt as before, see `add_one_speech`
beside these figures), cold `speechqa ask` and warm search p50/p95. Milvus Lite runs the Milvus
core in a child process on this machine: its figures are its own, not a server's or a cluster's.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
import tomllib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.coldstart import to_toml
from benchmarks.scale import watched

COLD_RUNS = 3


def milvus_figures(config: Path, corpus: Path, questions_file: Path, warm_questions: int) -> dict[str, Any]:
    from bot.config import load_config
    from embeddings.engine import open_retriever
    from embeddings.milvus.backend import milvus_for
    from embeddings.milvus.sync import sync
    from embeddings.settings import BackendSettings

    work = config.parent
    lite = work / "milvus"
    shutil.rmtree(lite, ignore_errors=True)
    settings = load_config(str(config))
    backend = BackendSettings("milvus", str(lite / "scale.db"), "scale", timeout_s=600)
    engine = replace(settings.engine, backend=backend)
    local, _ = open_retriever(settings.corpus_path, settings.index_path, settings.engine)
    milvus = milvus_for(backend)
    started = time.perf_counter()
    whole = sync(milvus, local.stored, engine, progress=sys.stderr.isatty())
    full_s = time.perf_counter() - started
    figures: dict[str, Any] = {"full_write": {"wall_s": round(full_s, 2), **asdict(whole)}}

    on_milvus = work / "config-milvus.toml"
    raw = tomllib.loads(config.read_text("utf-8"))
    raw["backend"] = {"kind": "milvus", "uri": backend.uri, "collection": backend.collection}
    on_milvus.write_text(to_toml(raw), "utf-8")
    milvus.close()  # Milvus Lite lets one process hold its file: the CLI runs below need it
    speechqa = str(Path(sys.executable).with_name("speechqa"))
    question = "工匠日是怎么设立的？"
    cold = [watched([speechqa, "--config", str(on_milvus), "ask", question]) for _ in range(COLD_RUNS)]
    figures["cold_ask"] = {"median_s": round(statistics.median(c["wall_s"] for c in cold), 3)}

    extra = corpus / "added" / "speech-added-milvus.txt"
    extra.parent.mkdir(exist_ok=True)
    extra.write_text((corpus / "0000" / "speech-000001.txt").read_text("utf-8").replace("关于", "再论", 1), "utf-8")
    try:
        local, _ = open_retriever(settings.corpus_path, settings.index_path, settings.engine)  # words rebuilt
        started = time.perf_counter()
        added = sync(milvus, local.stored, engine)
        add_s = time.perf_counter() - started
        figures["add_one_speech_write"] = {"wall_s": round(add_s, 2), **asdict(added)}
        figures["add_over_full_write"] = round(add_s / full_s, 4)
        retriever, _ = open_retriever(settings.corpus_path, settings.index_path, engine)
        lines = questions_file.read_text("utf-8").splitlines()[:warm_questions]
        asked = [json.loads(line)["question"] for line in lines]
        for text in asked[:10]:
            retriever.search(text)
        latencies = []
        for text in asked:
            started = time.perf_counter()
            retriever.search(text)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        figures["warm_ms"] = {
            "p50": round(latencies[len(latencies) // 2], 2),
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        }
    finally:
        extra.unlink()
    milvus.close()
    return figures
