"""Scoring retrieval on a question set, exactly as `shared/eval/README.md` defines it.

A question is answered at rank r when the r-th passage contains one of its gold spans, both sides
NFKC-normalised with all whitespace removed. hit@1/3/5 and MRR@10 are over answerable questions;
unanswerable ones count as declined when the engine is not confident enough to answer. Latency is
timed after a few untimed warm-up questions, so p95 measures answering, not the first query's setup.
"""

from __future__ import annotations

import json
import re
import statistics
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from embeddings.errors import SpeechQAError
from embeddings.retrieval.retrieve import Retriever

_WHITESPACE = re.compile(r"\s+")
WARM_UP_QUESTIONS = 3


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    id: str
    question: str
    gold: tuple[str, ...]
    answerable: bool
    kind: str = ""  # the paraphrase set's kind of question (paraphrase, list, number, …), where given


@dataclass(frozen=True, slots=True)
class EvalRow:
    id: str
    question: str
    answerable: bool
    rank: int | None
    declined: bool
    confidence: float
    latency_ms: float
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Quality:
    """hit@k and MRR@10 over the answerable questions; abstention over both kinds."""

    questions: int
    answerable: int
    hit_at_1: float
    hit_at_3: float
    hit_at_5: float
    mrr_at_10: float
    unanswerable: int
    declined_unanswerable: int
    wrongly_declined_answerable: int


class Scored(Protocol):
    @property
    def answerable(self) -> bool: ...

    @property
    def rank(self) -> int | None: ...

    @property
    def declined(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class EvalReport:
    quality: Quality
    mode: str  # "hybrid" or "lexical": what the figures were measured with
    notice: str  # why the dense side is off, when it is
    latency_p50_ms: float
    latency_p95_ms: float
    rows: tuple[EvalRow, ...]

    def by_kind(self) -> dict[str, Quality]:
        """The figures per kind of question, for question files that name kinds."""
        kinds = sorted({row.kind for row in self.rows if row.kind})
        return {kind: score([row for row in self.rows if row.kind == kind]) for kind in kinds}

    def to_dict(self) -> dict[str, Any]:
        by_kind = {kind: asdict(quality) for kind, quality in self.by_kind().items()}
        return {
            **asdict(self.quality),
            **{k: v for k, v in asdict(self).items() if k != "quality"},
            "by_kind": by_kind,
        }


def score(rows: Sequence[Scored]) -> Quality:
    """The figures of `shared/eval/README.md` for questions already ranked (shared with the benchmarks)."""
    answerable = [r for r in rows if r.answerable]
    unanswerable = [r for r in rows if not r.answerable]

    def hit_at(k: int) -> float:
        return sum(1 for r in answerable if r.rank is not None and r.rank <= k) / len(answerable) if answerable else 0.0

    return Quality(
        questions=len(rows),
        answerable=len(answerable),
        hit_at_1=hit_at(1),
        hit_at_3=hit_at(3),
        hit_at_5=hit_at(5),
        mrr_at_10=statistics.fmean([1 / r.rank if r.rank else 0.0 for r in answerable]) if answerable else 0.0,
        unanswerable=len(unanswerable),
        declined_unanswerable=sum(1 for r in unanswerable if r.declined),
        wrongly_declined_answerable=sum(1 for r in answerable if r.declined),
    )


def scoring_form(text: str) -> str:
    return _WHITESPACE.sub("", unicodedata.normalize("NFKC", text))


def load_questions(path: Path) -> list[EvalQuestion]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SpeechQAError(f"question file {path} cannot be read ({error})") from error
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            questions.append(
                EvalQuestion(
                    id=str(record.get("id", number)),
                    question=str(record["question"]),
                    gold=tuple(str(g) for g in record.get("gold") or ()),
                    answerable=bool(record.get("answerable", bool(record.get("gold")))),
                    kind=str(record.get("kind") or ""),
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            raise SpeechQAError(
                f"{path}:{number}: not a question record ({error})",
                'each line is JSON like {"id": "q1", "question": "…", "gold": ["…"], "answerable": true}',
            ) from error
    if not questions:
        raise SpeechQAError(f"{path} holds no questions")
    return questions


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def evaluate(retriever: Retriever, questions: Sequence[EvalQuestion]) -> EvalReport:
    for question in questions[:WARM_UP_QUESTIONS]:
        retriever.search(question.question, top_k=10)
    rows = []
    for question in questions:
        started = time.perf_counter()
        result = retriever.search(question.question, top_k=10)
        latency = (time.perf_counter() - started) * 1000
        golds = [scoring_form(g) for g in question.gold]
        rank = next(
            (hit.rank for hit in result.hits if any(g in scoring_form(hit.passage.text) for g in golds)),
            None,
        )
        rows.append(
            EvalRow(
                question.id,
                question.question,
                question.answerable,
                rank,
                not result.answerable,
                result.confidence,
                latency,
                question.kind,
            )
        )
    latencies = [r.latency_ms for r in rows]
    return EvalReport(
        quality=score(rows),
        mode=retriever.mode,
        notice=retriever.notice,
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p95_ms=percentile(latencies, 0.95),
        rows=tuple(rows),
    )
