"""The Milvus backend beside the local one: hit@1 per question set, and whether the citations are the same.

    .venv/bin/python -m benchmarks.milvus_parity                      hybrid (our model), the three speech sets
    .venv/bin/python -m benchmarks.milvus_parity --system lexical     words only
    .venv/bin/python -m benchmarks.milvus_parity --datasets corpus-69 --json parity.json

Each question set's corpus is built once (as `benchmarks.run` builds it), written into a Milvus
Lite file, and every question is asked of both backends. A hit at the same rank with the same
passage must carry the same citation fields (title, section path, paragraph, offsets, text); the
script exits non-zero when one differs or hit@1 moves by more than the floor (0.02). Milvus Lite's
timings are its own, in-process, and not a server's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.datasets import SPEECH_SETS, load_dataset
from benchmarks.measure import Stopwatch, figures, latency, run_questions
from benchmarks.systems import engine_search, engine_settings
from embeddings.engine import remote
from embeddings.index.build import build_index
from embeddings.index.store import open_stored
from embeddings.passage import Hit
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import BackendSettings

FLOOR = 0.02
CITATION_FIELDS = ("passage_id", "speech_id", "title", "section_path", "paragraph_no", "part", "start", "end", "text")


@dataclass(frozen=True, slots=True)
class Parity:
    dataset: str
    system: str
    questions: int
    hit_at_1_local: float
    hit_at_1_milvus: float
    same_top_hit: int  # questions whose first hit is the same passage on both backends (or none on both)
    same_answerable: int  # questions both backends answer, or both decline
    citation_mismatches: int  # hits at the same rank and passage whose citation fields differ
    build_s_local: float
    sync_s_milvus: float
    p50_ms_local: float
    p95_ms_local: float
    p50_ms_milvus: float
    p95_ms_milvus: float


def citation(hit: Hit) -> tuple[Any, ...]:
    """The hit's passage and the paragraph it cites, field by field."""
    fields = [asdict(hit.passage)] + ([asdict(hit.paragraph)] if hit.paragraph is not None else [])
    return tuple(record.get(name) for record in fields for name in CITATION_FIELDS)


def compare(dataset_name: str, system: str) -> Parity:
    settings, speeches_root, _ = engine_settings(system)
    dataset = load_dataset(dataset_name, settings.segment, speeches_root, quick=False)
    embedder = None
    if system != "lexical":
        from embeddings.models.dense import load_embedder

        dense = settings.dense
        embedder = load_embedder(dense.model, dense.query_instruction, dense.batch_size, dense.device, False)
    with tempfile.TemporaryDirectory(prefix="speechqa-parity-") as tmp:
        root = Path(tmp) / "index"
        with Stopwatch() as build:
            build_index(dataset.corpus, settings, root, embedder=embedder)
        stored = open_stored(root)
        local = Retriever(stored, settings, embedder)
        on_milvus = replace(settings, backend=BackendSettings("milvus", str(Path(tmp) / "parity.db"), "parity"))
        with Stopwatch() as sync:  # opening the retriever brings the collections in step
            milvus = Retriever(stored, on_milvus, embedder, remote=remote(on_milvus, progress=False))
        outcomes = {
            name: run_questions(engine_search(r), dataset.questions)
            for name, r in (("local", local), ("milvus", milvus))
        }
        same_top = same_answerable = mismatches = 0
        for question in dataset.questions:
            a, b = local.search(question.text, top_k=10), milvus.search(question.text, top_k=10)
            same_answerable += a.answerable == b.answerable
            first = [result.hits[0].passage.passage_id if result.hits else None for result in (a, b)]
            same_top += first[0] == first[1]
            for x, y in zip(a.hits, b.hits, strict=False):
                if x.passage.passage_id == y.passage.passage_id and citation(x) != citation(y):
                    mismatches += 1
    hit1 = {name: figures(found).quality.hit_at_1 for name, found in outcomes.items()}
    lat = {name: latency(found) for name, found in outcomes.items()}
    return Parity(
        dataset_name,
        system,
        len(dataset.questions),
        hit1["local"],
        hit1["milvus"],
        same_top,
        same_answerable,
        mismatches,
        build.seconds,
        sync.seconds,
        lat["local"].p50_ms,
        lat["local"].p95_ms,
        lat["milvus"].p50_ms,
        lat["milvus"].p95_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.milvus_parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(SPEECH_SETS), help="comma-separated question sets")
    parser.add_argument("--system", default="hybrid", choices=("lexical", "hybrid", "hybrid-bundled"))
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = [compare(name.strip(), args.system) for name in args.datasets.split(",") if name.strip()]
    print(
        "| set | system | questions | hit@1 local | hit@1 Milvus Lite | same top hit | same answered/declined | "
        "citation mismatches | local build s | Milvus write s | p50/p95 ms local | p50/p95 ms Milvus Lite |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.dataset} | {r.system} | {r.questions} | {r.hit_at_1_local:.3f} | {r.hit_at_1_milvus:.3f} | "
            f"{r.same_top_hit}/{r.questions} | {r.same_answerable}/{r.questions} | {r.citation_mismatches} | "
            f"{r.build_s_local:.1f} | {r.sync_s_milvus:.1f} | {r.p50_ms_local:.1f} / {r.p95_ms_local:.1f} | "
            f"{r.p50_ms_milvus:.1f} / {r.p95_ms_milvus:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2), "utf-8")
    failed = [r for r in rows if abs(r.hit_at_1_local - r.hit_at_1_milvus) > FLOOR or r.citation_mismatches]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
