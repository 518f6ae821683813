"""Scale benchmark: `python -m benchmarks.scale --passages N` (`make bench-scale` runs ~108k).

Writes a synthetic corpus of about N passages (`benchmarks.synthetic`), then, lexical-only (the
config's dense side off): `speechqa index` from nothing (wall time, peak memory, disk), cold
`speechqa ask` (fresh processes; the index files are in the OS cache, as on a machine in use),
warm search p50/p95 on CMRC dev questions, and jieba alone cutting the same passages on one core,
the yardstick the build time is a ratio to. `--dense` adds embedding throughput and the recall of
the approximate vector indexes (`benchmarks.ann_recall`). `--backend milvus` adds the same corpus
in Milvus Lite (`benchmarks.scale_milvus`): writing it whole, adding one speech, cold and warm search.
Figures go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.coldstart import benchmark_config, to_toml
from benchmarks.measure import machine_line
from benchmarks.synthetic import POOL, speeches_for, write_corpus
from benchmarks.systems import REPO

QUESTIONS = POOL.parent / "cmrc2018-dev" / "questions.jsonl"
COLD_RUNS = 5
WARM_QUESTIONS = 300
JIEBA_SAMPLE_PASSAGES = 120_000  # above this, jieba is timed on an even sample and scaled up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=108_000)
    parser.add_argument("--work", type=Path, help="folder for the corpus and index (default /tmp/speechqa-scale-N)")
    parser.add_argument("--dense", action="store_true", help="also embedding throughput and ANN recall")
    parser.add_argument("--no-update", action="store_true", help="skip timing the index update for one added speech")
    parser.add_argument("--backend", choices=("local", "milvus"), default="local", help="milvus: also Milvus Lite")
    args = parser.parse_args(argv)
    work = args.work or Path(f"/tmp/speechqa-scale-{args.passages}")
    report: dict[str, Any] = {"machine": machine_line(os.getloadavg()[0]), "date": time.strftime("%Y-%m-%d")}
    corpus = work / "corpus"
    speeches = speeches_for(args.passages)
    if not (corpus / "done").is_file():
        report["corpus_chars"] = write_corpus(corpus, speeches)
        (corpus / "done").write_text(str(speeches))
    config = work / "config.toml"
    settings = benchmark_config(REPO / "config.toml", work)
    settings["corpus"]["path"] = str(corpus)
    settings["dense"]["mode"] = "off"
    config.write_text(to_toml(settings), "utf-8")
    speechqa = str(Path(sys.executable).with_name("speechqa"))
    report["speeches"] = speeches
    report["build"] = watched([speechqa, "--config", str(config), "index", "--force"])
    live = work / "index" / (work / "index" / "CURRENT").read_text().strip()
    report["disk_mb"] = round(sum(p.stat().st_size for p in live.rglob("*") if p.is_file()) / 2**20, 1)
    question = "工匠日是怎么设立的？"
    cold = [watched([speechqa, "--config", str(config), "ask", question]) for _ in range(COLD_RUNS)]
    report["cold_ask"] = {
        "median_s": round(statistics.median(c["wall_s"] for c in cold), 3),
        "max_rss_mb": max(c["peak_rss_mb"] for c in cold),
    }
    report.update(warm_and_jieba(config))
    if args.dense:
        from benchmarks.ann_recall import dense_figures

        report["dense"] = dense_figures(config)
    if args.backend == "milvus":
        from benchmarks.scale_milvus import milvus_figures

        report["milvus_lite"] = milvus_figures(config, corpus, QUESTIONS, WARM_QUESTIONS, report["build"]["wall_s"])
    if not args.no_update:
        # One more speech: BM25's arrays are written again (IDF and lengths are corpus-wide), from the
        # other speeches' words as the last build cut them. Last: the index it leaves is stale once the
        # speech is removed again.
        extra = corpus / "added" / "speech-added.txt"
        extra.parent.mkdir(exist_ok=True)
        extra.write_text((corpus / "0000" / "speech-000000.txt").read_text("utf-8").replace("关于", "再论", 1), "utf-8")
        report["add_one_speech"] = watched([speechqa, "--config", str(config), "index"])
        report["add_over_build"] = round(report["add_one_speech"]["wall_s"] / report["build"]["wall_s"], 3)
        extra.unlink()
    report["build_over_jieba"] = round(report["build"]["wall_s"] / report["jieba"]["speeches_s"], 3)
    report["build_over_jieba_on_passages"] = round(report["build"]["wall_s"] / report["jieba"]["passages_s"], 3)
    report["load_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def watched(command: list[str]) -> dict[str, Any]:
    """Run `command`; its wall time, the largest RSS of any one of its processes and their summed PSS."""
    import subprocess

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = {"rss": 0, "pss": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):  # PSS of a multi-GB process is costly to read: not too often
            tree = _tree(process.pid)
            peaks["rss"] = max([peaks["rss"], *(_kb(pid, "VmRSS", "status") for pid in tree)])
            peaks["pss"] = max(peaks["pss"], sum(_kb(pid, "Pss", "smaps_rollup") for pid in tree))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    error = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {error.strip()}")
    rss = max(peaks["rss"], usage.ru_maxrss)  # ru_maxrss: the main process, even between samples
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(rss / 1024), "peak_pss_sum_mb": round(peaks["pss"] / 1024)}


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _kb(pid: int, field: str, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def warm_ms(retriever: Any, questions_file: Path, count: int) -> dict[str, float]:
    """p50 and p95 of the first `count` questions of `questions_file`, each searched alone after ten untimed."""
    lines = questions_file.read_text("utf-8").splitlines()[:count]
    questions = [json.loads(line)["question"] for line in lines]
    for question in questions[:10]:
        retriever.search(question)
    latencies = []
    for question in questions:
        started = time.perf_counter()
        retriever.search(question)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(0.95 * (len(latencies) - 1))]
    return {"p50": round(p50, 2), "p95": round(p95, 2)}


def warm_and_jieba(config: Path) -> dict[str, Any]:
    """Warm search latency in this process, then jieba alone on the index's passages, one core."""
    import jieba

    from bot.config import load_config
    from embeddings.engine import open_retriever

    settings = load_config(str(config))
    retriever, report = open_retriever(settings.corpus_path, settings.index_path, settings.engine)
    assert report is None, "the index should have been fresh"
    warm = warm_ms(retriever, QUESTIONS, WARM_QUESTIONS)
    segmenter = jieba.Tokenizer()
    segmenter.initialize()
    # The issue's yardstick: jieba.lcut on the speeches' text. Also on the passages (the build cuts
    # those: each with its title and section, overlapping sentences twice), and with HMM off as the build.
    files = sorted(settings.corpus_path.rglob("*.txt"))
    step = max(1, len(retriever.passages) // JIEBA_SAMPLE_PASSAGES)
    speeches = [path.read_text("utf-8") for path in files[::step]]
    passages = [p.search_text for i, p in enumerate(retriever.passages) if i % step == 0]
    timings = {}
    runs = (("speeches_s", speeches, True), ("passages_s", passages, True), ("passages_hmm_off_s", passages, False))
    for name, texts, hmm in runs:
        started = time.perf_counter()  # wall time, like the build's: both pay the same for a busy machine
        for text in texts:
            segmenter.lcut(text, HMM=hmm)
        timings[name] = round((time.perf_counter() - started) * step, 1)
    return {
        "passages": len(retriever.passages),
        "warm_ms": warm,
        "jieba": {**timings, "sampled_every": step, "speech_chars": sum(map(len, speeches)) * step},
    }


if __name__ == "__main__":
    sys.exit(main())
