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
from benchmarks.measure import Figures, Measurement
from benchmarks.systems import LABELS as SYSTEM_LABELS
from benchmarks.targets import targets

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
    "Direct answer holds gold",
    "Build (s)",
    "p50 (ms)",
    "p95 (ms)",
    "Peak RSS (MiB)",
)
KIND_DATASETS = ("speeches-paraphrase", "corpus-69", "reports-reworded")
# The default first, then the same engine with the untrained model it was fine-tuned from.
TABLE_ORDER = ("hybrid", "hybrid-bundled", "lexical", "tutorial-hybrid", "baseline", "hybrid-minilm")


@dataclass(frozen=True, slots=True)
class RunContext:
    machine: str
    date: str
    command: str
    seconds: float
    quick: bool


def render(
    context: RunContext,
    results: Sequence[Measurement],
    skipped: dict[tuple[str, str], str],
    cold: ColdStart | None,
    uncached: dict[str, dict[str, float | str]] | None = None,
) -> str:
    parts = [
        f"Measured {context.date} on {context.machine}, in {context.seconds / 60:.1f} min, with `{context.command}`"
        + (" (quick subset: not comparable with a full run)" if context.quick else "")
        + ".",
        "",
        table(results, skipped),
        "",
    ]
    for dataset in KIND_DATASETS:
        if any(m.dataset == dataset and m.by_kind for m in results):
            parts += [f"**{LABELS[dataset]}, by kind of question**", "", kind_table(dataset, results), ""]
    parts += [
        "**Targets** (issue 10's floors; they are set on held-out questions of the same kinds, "
        "which this benchmark does not have: the reworded rows here are the dev questions)",
        "",
        *targets(results, cold),
        "",
        *notes(results, uncached or {}),
    ]
    return "\n".join(parts) + "\n"


def table(results: Sequence[Measurement], skipped: dict[tuple[str, str], str]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    by_key = {(m.dataset, m.system): m for m in results}
    for dataset in DATASETS:
        for system in TABLE_ORDER:
            measured = by_key.get((dataset, system))
            if measured is not None:
                lines.append(_row(measured))
            elif not skipped.get((dataset, system), "not run (").startswith("not run ("):  # not left out by an option
                cells = [LABELS[dataset], SYSTEM_LABELS[system], skipped[(dataset, system)]]
                lines.append("| " + " | ".join(cells + [""] * (len(COLUMNS) - len(cells))) + " |")
    return "\n".join(lines)


def _row(m: Measurement) -> str:
    q = m.quality
    cells = [
        LABELS[m.dataset],
        SYSTEM_LABELS[m.system],
        f"{m.indexed:,} {m.indexed_unit}",
        f"{q.hit_at_1:.3f}",
        f"{q.hit_at_5:.3f}",
        f"{q.mrr_at_10:.3f}",
        *_declines(m.figures, m.system),
        _direct(m.figures),
        f"{m.build_s:.1f}" + ("*" if _reused_cache(m) else ""),
        _ms(m.latency.p50_ms),
        _ms(m.latency.p95_ms),
        f"{m.peak_rss_mib:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def _declines(f: Figures, system: str) -> list[str]:
    q = f.quality
    never = system in ("baseline", "tutorial-hybrid")  # they have no notion of "not answered here"
    declined = f"{q.declined_unanswerable}/{q.unanswerable}" if q.unanswerable else "—"
    # Every CMRC question is answerable, so declining one is always wrong: worth showing there too.
    wrongly = f"{q.wrongly_declined_answerable}/{q.answerable}" if q.answerable and not never else "—"
    return [declined + (" (never declines)" if never and q.unanswerable else ""), wrongly]


def _direct(f: Figures) -> str:
    if f.direct_holds_gold is None or not f.direct_of:
        return "n/a"
    return f"{f.direct_holds_gold}/{f.direct_of} ({f.direct_holds_gold / f.direct_of:.0%})"


def _reused_cache(m: Measurement) -> bool:
    return m.cache_state in ("warm", "partial")


def kind_table(dataset: str, results: Sequence[Measurement]) -> str:
    """Kinds as rows, systems as columns: hit@1 / hit@5 for answerable kinds, declines for the others."""
    rows = [m for m in results if m.dataset == dataset and m.by_kind]
    rows.sort(key=lambda m: TABLE_ORDER.index(m.system))
    kinds = sorted({k for m in rows for k in m.by_kind}, key=lambda k: (k.startswith("unanswerable"), k))
    header = ["Kind (questions)", *(SYSTEM_LABELS[m.system] for m in rows)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for kind in kinds:
        count = next(m.by_kind[kind].quality.questions for m in rows if kind in m.by_kind)
        cells = [f"{kind} ({count})", *(_kind_cell(m.by_kind.get(kind), m.system) for m in rows)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _kind_cell(f: Figures | None, system: str) -> str:
    if f is None:
        return ""
    q = f.quality
    if not q.answerable:
        return f"declined {q.declined_unanswerable}/{q.unanswerable}"
    parts = [f"hit@1 {q.hit_at_1:.2f}", f"hit@5 {q.hit_at_5:.2f}"]
    if system not in ("baseline", "tutorial-hybrid"):
        parts.append(f"wrongly declined {q.wrongly_declined_answerable}")
    if f.direct_holds_gold is not None and f.direct_of:
        parts.append(f"direct {f.direct_holds_gold}/{f.direct_of}")
    return ", ".join(parts)


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def notes(results: Sequence[Measurement], uncached: dict[str, dict[str, float | str]]) -> list[str]:
    lines = [
        "How to read it:",
        "",
        "- Quality is over answerable questions: a speech question is a hit at rank r when the r-th hit's shown text "
        "(speechqa: the hit's passage text; the baselines: the chunk) contains a gold span, both NFKC-normalised "
        "without whitespace, scored by `embeddings/retrieval/evaluate.py`; a CMRC question is a hit when the r-th "
        "passage is its `passage_id`. The 69-document corpus is asked the paraphrase dev questions; gold spans are "
        "only in the two speeches.",
        "- Direct answer holds gold: the answer composed by `bot.answer.compose` exactly as `speechqa ask` does "
        "(top_k and sentences from `config.toml`); a hit when its direct-answer sentences, joined, NFKC-normalised "
        "and without whitespace, contain a gold span; a declined answerable question counts as a miss. n/a for the "
        "baselines, which compose no answer.",
        "- Latency is warm: after 5 untimed questions, each question is timed alone around the whole search call "
        "(tokenising, embedding the question, scoring, ranking the top 10).",
        "- Build is from text in memory to a finished index: for speechqa tokenising, BM25, the query dictionary, "
        "the atomic commit on disk (hybrid: plus embedding every sentence unit, not the model load); for the "
        "baseline chunking, `jieba.lcut` and `BM25Okapi`; for the tutorial ensemble chunking, BM25, embedding every "
        "chunk and the FAISS index. * = built from embeddings cached by an earlier run (see below).",
        "- Peak RSS is the high-water mark of the process that built the index and ran the questions; every row "
        "runs in its own process.",
        "- The baseline and the tutorial ensemble never decline: they have no notion of a question the corpus "
        "does not answer. The tutorial ensemble is LangChain's recipe reproduced in `benchmarks/tutorial.py` "
        "(RecursiveCharacterTextSplitter 300/50, BM25Retriever over `jieba.lcut`, FAISS, EnsembleRetriever "
        "0.5/0.5 = weighted reciprocal rank fusion with c = 60), with each retriever returning its top 10 instead "
        "of LangChain's default 4, so that hit@5 and MRR@10 can be measured.",
        "- speechqa hybrid runs the default config's model, speechqa's own (`data/models/speechqa-e5-small-zh`, "
        "fine-tuned from the bundled model, run by onnxruntime in fp32); the bundled row is the same engine with the "
        "4-bit multilingual-e5-small it was trained from, as before training. Each applies its own measured profile "
        "(dense weight, answer similarity) and keeps its own embedding cache.",
        "- The MiniLM hybrid (an English model, dense weight calibrated per index) is the check that a weak model "
        "never makes hybrid worse than lexical; it runs on the speeches sets and the 848 pool only. An embedding "
        "row on the 3,507 pool runs only when embedding it is projected within the run's budget.",
    ]
    for m in results:
        if m.model_load_s is None:
            continue
        rate = f"{m.embed_chars_per_s:,.0f} characters/s embedded" if m.embed_chars_per_s else "nothing embedded"
        weight = "" if m.dense_weight is None else f"dense weight {m.dense_weight:.2f}, "
        extra = f"; {m.note}" if m.note else ""
        lines.append(
            f"- {SYSTEM_LABELS[m.system]} on {LABELS[m.dataset]}: {weight}model load {m.model_load_s:.1f} s "
            f"(not in build), {rate}{extra}."
        )
        first = uncached.get(f"{m.dataset}/{m.system}")
        if first is not None and _reused_cache(m) and first.get("model", m.model) == m.model:
            lines.append(
                f"  Built from nothing (empty embedding cache), this row's build took {float(first['build_s']):.0f} s "
                f"(≈ {float(first['chars_per_s']):,.0f} characters embedded per second), measured {first['date']}."
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
