"""The results as Markdown, and putting them into the README between the bench markers.

Only the text between `<!-- bench:start -->` and `<!-- bench:end -->` is ever replaced; the README
is read just before it is written, and swapped in with one rename, so edits others make to the
rest of it are kept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.coldstart import ColdStart
from benchmarks.datasets import DATASETS, LABELS
from benchmarks.measure import Measurement
from benchmarks.systems import LABELS as SYSTEM_LABELS
from benchmarks.systems import SYSTEMS

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"
COLUMNS = (
    "Dataset",
    "System",
    "Indexed",
    "hit@1",
    "hit@5",
    "MRR@10",
    "Unanswerable declined",
    "Answerable wrongly declined",
    "Build (s)",
    "p50 (ms)",
    "p95 (ms)",
    "Peak RSS (MiB)",
    "p50 vs baseline",
)


@dataclass(frozen=True, slots=True)
class RunContext:
    machine: str
    date: str
    command: str
    seconds: float
    quick: bool


def render(
    context: RunContext, results: Sequence[Measurement], skipped: dict[tuple[str, str], str], cold: ColdStart | None
) -> str:
    parts = [
        f"Measured {context.date} on {context.machine}, in {context.seconds / 60:.1f} min, with `{context.command}`"
        + (" (quick subset: not comparable with a full run)" if context.quick else "")
        + ".",
        "",
        table(results, skipped),
        "",
        "**Targets**",
        "",
        *targets(results, cold),
        "",
        *notes(results),
    ]
    return "\n".join(parts) + "\n"


def table(results: Sequence[Measurement], skipped: dict[tuple[str, str], str]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    by_key = {(m.dataset, m.system): m for m in results}
    for dataset in DATASETS:
        baseline = by_key.get((dataset, "baseline"))
        for system in SYSTEMS:
            measured = by_key.get((dataset, system))
            if measured is not None:
                lines.append(_row(measured, baseline))
            elif (dataset, system) in skipped:
                cells = [LABELS[dataset], SYSTEM_LABELS[system], skipped[(dataset, system)]]
                lines.append("| " + " | ".join(cells + [""] * (len(COLUMNS) - len(cells))) + " |")
    return "\n".join(lines)


def _row(m: Measurement, baseline: Measurement | None) -> str:
    q, has_unanswerable = m.quality, m.quality.unanswerable > 0
    cells = [
        LABELS[m.dataset],
        SYSTEM_LABELS[m.system],
        f"{m.indexed:,} {m.indexed_unit}",
        f"{q.hit_at_1:.3f}",
        f"{q.hit_at_5:.3f}",
        f"{q.mrr_at_10:.3f}",
        f"{q.declined_unanswerable}/{q.unanswerable}" if has_unanswerable else "—",
        # Every CMRC question is answerable, so declining one is always wrong: worth showing there too.
        f"{q.wrongly_declined_answerable}/{q.answerable}" if has_unanswerable or m.system != "baseline" else "—",
        f"{m.build_s:.2f}",
        _ms(m.latency.p50_ms),
        _ms(m.latency.p95_ms),
        f"{m.peak_rss_mib:.0f}",
        _speedup(m, baseline),
    ]
    return "| " + " | ".join(cells) + " |"


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def _speedup(m: Measurement, baseline: Measurement | None) -> str:
    if baseline is None or m.system == "baseline" or m.latency.p50_ms <= 0:
        return "—"
    ratio = baseline.latency.p50_ms / m.latency.p50_ms
    return f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"


def targets(results: Sequence[Measurement], cold: ColdStart | None) -> list[str]:
    """The issue's floors, each with the measured value; a target that was not measured says so."""
    by_key = {(m.dataset, m.system): m for m in results}
    lex = by_key.get(("speeches", "lexical"))
    lines = []
    if lex is not None:
        q = lex.quality
        lines += [
            _check(q.hit_at_1 >= 0.94, f"speeches, lexical: hit@1 {q.hit_at_1:.3f} ≥ 0.94"),
            _check(q.hit_at_5 >= 1.0, f"speeches, lexical: hit@5 {q.hit_at_5:.3f} = 1.0"),
            _check(
                q.declined_unanswerable == q.unanswerable,
                f"speeches, lexical: unanswerable declined {q.declined_unanswerable}/{q.unanswerable}",
            ),
            _check(
                q.wrongly_declined_answerable == 0,
                f"speeches, lexical: answerable wrongly declined {q.wrongly_declined_answerable}",
            ),
        ]
    for dataset in ("speeches", "speeches-heldout"):
        lex, hyb = by_key.get((dataset, "lexical")), by_key.get((dataset, "hybrid"))
        if lex is not None and hyb is None:
            lines.append(_check(False, f"{dataset}, hybrid (MiniLM) hit@1 ≥ lexical: not measured"))
        elif lex is not None and hyb is not None:
            lines.append(
                _check(
                    hyb.quality.hit_at_1 >= lex.quality.hit_at_1,
                    f"{dataset}, hybrid (MiniLM) hit@1 {hyb.quality.hit_at_1:.3f} ≥ lexical {lex.quality.hit_at_1:.3f}",
                )
            )
    for system in ("lexical", "hybrid"):
        if (m := by_key.get(("cmrc-3507", system))) is None:
            lines.append(_check(False, f"CMRC 3,507 pool, {system}: not measured"))
        else:
            lines += [
                _check(
                    m.quality.hit_at_1 >= 0.965, f"CMRC 3,507 pool, {system}: hit@1 {m.quality.hit_at_1:.3f} ≥ 0.965"
                ),
                _check(
                    m.quality.mrr_at_10 >= 0.975, f"CMRC 3,507 pool, {system}: MRR@10 {m.quality.mrr_at_10:.3f} ≥ 0.975"
                ),
            ]
    lines += _latency_targets(by_key.get(("cmrc-3507", "lexical")), by_key.get(("cmrc-3507", "baseline")))
    if cold is not None:
        runs = ", ".join(f"{t:.2f}" for t in cold.runs_s)
        lines.append(
            _check(
                cold.median_s <= 1.2,
                f"CLI cold start `speechqa ask '{cold.question}'` (lexical, index built): "
                f"median of {len(cold.runs_s)} = {cold.median_s:.2f} s ≤ 1.2 s (runs: {runs} s)",
            )
        )
    return lines


def _latency_targets(lex: Measurement | None, baseline: Measurement | None) -> list[str]:
    if lex is None:
        return []
    lines = [
        _check(lex.latency.p50_ms <= 2.0, f"CMRC 3,507 pool, lexical: warm p50 {lex.latency.p50_ms:.2f} ms ≤ 2 ms")
    ]
    if baseline is not None:
        ratio = baseline.latency.p50_ms / lex.latency.p50_ms
        lines.append(
            _check(
                ratio >= 20,
                f"CMRC 3,507 pool, lexical p50 {ratio:.1f}× faster than the baseline's "
                f"{baseline.latency.p50_ms:.2f} ms (≥ 20×)",
            )
        )
    return lines


def _check(ok: bool, text: str) -> str:
    return f"- {'✅' if ok else '❌'} {text}"


def notes(results: Sequence[Measurement]) -> list[str]:
    lines = [
        "How to read it:",
        "",
        "- Quality is over answerable questions: a speech question is a hit at rank r when the r-th passage "
        "(for the baseline, chunk) contains a gold span, both NFKC-normalised without whitespace, as in "
        "`embeddings/evaluate.py`; a CMRC question is a hit when the r-th passage is its `passage_id`.",
        "- Latency is warm: after 5 untimed questions, each question is timed alone around the whole search call "
        "(tokenising, scoring, ranking the top 10).",
        "- Build is from passages in memory to a finished index: for speechqa tokenising, BM25, the query "
        "dictionary and the atomic commit on disk (hybrid: plus embedding every passage and calibrating the dense "
        "weight); for the baseline chunking, `jieba.lcut` and `BM25Okapi`. Both include loading jieba's dictionary.",
        "- Peak RSS is the high-water mark of the process that built the index and ran the questions; every row "
        "runs in its own process.",
        "- The baseline never declines: plain BM25 has no notion of a question the corpus does not answer.",
    ]
    for m in results:
        if m.system != "hybrid":
            continue
        rate = f"{m.embed_passages_per_s:.1f}" if m.embed_passages_per_s else "?"
        weight = "?" if m.dense_weight is None else f"{m.dense_weight:.2f}"
        extra = f"; {m.note}" if m.note else ""
        lines.append(
            f"- Hybrid on {LABELS[m.dataset]}: calibrated dense weight {weight}, "
            f"model load {m.model_load_s or 0:.1f} s (not in build), {rate} passages/s embedded{extra}."
        )
    return lines


def update_readme(readme: Path, block: str) -> None:
    """Replace what lies between the bench markers; refuse when they are missing or out of order."""
    text = readme.read_text("utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} lacks {START} … {END}; add both markers where the table belongs")
    updated = text[: start + len(START)] + "\n" + block.rstrip("\n") + "\n" + text[end:]
    handle, temporary = tempfile.mkstemp(dir=readme.parent, prefix=".README.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(updated)
    Path(temporary).chmod(readme.stat().st_mode & 0o7777)
    Path(temporary).replace(readme)
