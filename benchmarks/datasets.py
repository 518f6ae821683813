"""The benchmark datasets in one shape: passages to index, questions, and how a hit is judged.

- `speeches`: the shipped speeches (`data/speeches/`) and the dev questions with gold spans.
- `speeches-paraphrase`: the same speeches and the paraphrase dev questions (asked in the asker's own
  words; each has a `kind`, reported separately too).
- `corpus-69`: the paraphrase dev questions over 69 documents: the two speeches and the 67 official
  reports of `shared/corpus-reports/` as one corpus (gold spans are still only in the two speeches).
- `speeches-heldout`: the same speeches and `benchmarks/questions/speeches-heldout.jsonl`, questions of
  the same kind written apart from the dev set (so tuning on the dev set cannot pass it by itself).
- `reports-reworded`: 364 questions in the askers' own words (the paraphrase dev set's kinds, 22 of them
  unanswerable) written for this project on 22 of the reports, over those 22 reports
  (`benchmarks/questions/reports-reworded.jsonl`). Many more reworded questions than the paraphrase dev
  set's 40, on a second corpus; questions written on the other 45 reports are training data
  (`training/asked/`), never these.
- `cmrc-848`: CMRC 2018 dev questions over their own 848 passages.
- `cmrc-3507`: the same questions over every CMRC 2018 paragraph (train + dev + trial) as distractors.

A CMRC passage becomes one `Passage` (its own "speech" with one paragraph), so the engine indexes it
exactly as it would a paragraph of a speech; a CMRC question is answered by its `passage_id`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from embeddings.ingest.corpus import Corpus, load_corpus
from embeddings.passage import Passage
from embeddings.retrieval.evaluate import load_questions, scoring_form
from embeddings.settings import SegmentSettings

# The shared data sets live outside the repository; another machine points at its copy.
REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SPEECHQA_SHARED", REPO.parent / "shared"))
SPEECH_QUESTIONS = SHARED / "eval" / "speeches-dev.jsonl"
PARAPHRASE_QUESTIONS = SHARED / "eval" / "speeches-paraphrase-dev.jsonl"
REPORTS = SHARED / "corpus-reports"
# Generated and git-ignored: the 69-document corpus folder and the embedding caches of its rows.
CACHE = REPO / "benchmarks" / ".cache"
CORPUS_69 = CACHE / "corpus69" / "speeches"
HELD_OUT_QUESTIONS = REPO / "benchmarks" / "questions" / "speeches-heldout.jsonl"
REWORDED_REPORT_QUESTIONS = REPO / "benchmarks" / "questions" / "reports-reworded.jsonl"
CORPUS_REWORDED_REPORTS = CACHE / "reports-reworded" / "speeches"
CMRC_DEV = SHARED / "bench" / "cmrc2018-dev"
CMRC_ALL_PASSAGES = SHARED / "bench" / "cmrc2018-all-passages.jsonl"

DATASETS = (
    "speeches",
    "speeches-paraphrase",
    "corpus-69",
    "speeches-heldout",
    "reports-reworded",
    "cmrc-848",
    "cmrc-3507",
)
SPEECH_SETS = ("speeches", "speeches-paraphrase", "speeches-heldout")  # the small ones: two speeches each
LABELS = {
    "speeches": "Speeches dev",
    "speeches-paraphrase": "Speeches, reworded (paraphrase dev)",
    "corpus-69": "69-document corpus, reworded",
    "speeches-heldout": "Speeches held-out",
    "reports-reworded": "22 reports, reworded",
    "cmrc-848": "CMRC 2018 dev, 848-passage pool",
    "cmrc-3507": "CMRC 2018 dev, 3,507-passage pool",
}
# --quick keeps every pool whole (index size is what latency and memory depend on) and scores
# an evenly spread sample of this many CMRC questions.
QUICK_QUESTIONS = 300


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    text: str
    answerable: bool
    gold_spans: tuple[str, ...] = ()  # already in scoring form (NFKC, no whitespace)
    gold_passage: str | None = None  # CMRC: the one passage that answers it
    kind: str = ""  # the paraphrase set's `kind`

    def answered_by(self, passage_id: str, text: str) -> bool:
        """Scored as `shared/eval/README.md` says for spans; CMRC has exactly one gold passage."""
        if self.gold_passage is not None:
            return passage_id == self.gold_passage
        form = scoring_form(text)
        return any(span in form for span in self.gold_spans)


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    corpus: Corpus
    questions: tuple[Question, ...]
    # What the tutorial baseline chunks: (document id, text). For the speeches the whole cleaned
    # speeches, ranked chunk by chunk; for CMRC the passages, each ranked by its best chunk.
    baseline_documents: tuple[tuple[str, str], ...]
    baseline_ranks_chunks: bool
    # Embeddings are kept between runs (benchmarks/.cache): on 2 cores the 69 documents take ~20 min to
    # embed, the 848 CMRC passages ~5; the speeches are small enough to embed in every run.
    cached_embeddings: bool = False

    @property
    def label(self) -> str:
        return LABELS[self.name]


def load_dataset(name: str, segment: SegmentSettings, speeches_root: Path, quick: bool) -> Dataset:
    if name == "speeches":
        return _speeches(name, segment, speeches_root, SPEECH_QUESTIONS)
    if name == "speeches-paraphrase":
        return _speeches(name, segment, speeches_root, PARAPHRASE_QUESTIONS)
    if name == "corpus-69":
        return replace(_speeches(name, segment, corpus_69(speeches_root), PARAPHRASE_QUESTIONS), cached_embeddings=True)
    if name == "speeches-heldout":
        return _speeches(name, segment, speeches_root, HELD_OUT_QUESTIONS)
    if name == "reports-reworded":
        folder = _mirrored(CORPUS_REWORDED_REPORTS, [REPORTS / name for name in _reports_asked_about()])
        return replace(_speeches(name, segment, folder, REWORDED_REPORT_QUESTIONS), cached_embeddings=True)
    if name == "cmrc-848":
        return _cmrc(name, CMRC_DEV / "passages.jsonl", quick)
    if name == "cmrc-3507":
        return _cmrc(name, CMRC_ALL_PASSAGES, quick)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def _speeches(name: str, segment: SegmentSettings, root: Path, questions_file: Path) -> Dataset:
    corpus = load_corpus(root, segment)
    kinds = {str(r["id"]): str(r.get("kind", "")) for r in _read_jsonl(questions_file)}
    questions = tuple(
        Question(q.id, q.question, q.answerable, tuple(scoring_form(g) for g in q.gold), kind=kinds.get(q.id, ""))
        for q in load_questions(questions_file)
    )
    documents = tuple((s.speech_id, s.text) for s in corpus.speeches)
    return Dataset(name, corpus, questions, documents, baseline_ranks_chunks=True)


def _cmrc(name: str, passages_file: Path, quick: bool) -> Dataset:
    passages = tuple(_cmrc_passage(record) for record in _read_jsonl(passages_file))
    corpus = Corpus(root=passages_file.parent, speeches=(), passages=passages, problems=())
    questions = [
        Question(str(r["id"]), str(r["question"]), True, gold_passage=str(r["passage_id"]))
        for r in _read_jsonl(CMRC_DEV / "questions.jsonl")
    ]
    if quick:
        questions = questions[:: max(1, len(questions) // QUICK_QUESTIONS)][:QUICK_QUESTIONS]
    documents = tuple((p.passage_id, p.text) for p in passages)
    return Dataset(name, corpus, tuple(questions), documents, baseline_ranks_chunks=False, cached_embeddings=True)


def corpus_69(speeches_root: Path) -> Path:
    """The shipped speeches and the 67 reports as one folder, refreshed when a source file changed."""
    sources = sorted(speeches_root.glob("*.txt")) + sorted(REPORTS.glob("*.txt"))
    if len(sources) != 69:
        raise FileNotFoundError(f"expected 2 speeches in {speeches_root} and 67 reports in {REPORTS}")
    return _mirrored(CORPUS_69, sources)


def _reports_asked_about() -> list[str]:
    return sorted({str(record["doc"]) for record in _read_jsonl(REWORDED_REPORT_QUESTIONS)})


def _mirrored(folder: Path, sources: list[Path]) -> Path:
    """`folder` holding exactly `sources`, refreshed when a source file changed."""
    missing = [source for source in sources if not source.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} is missing: the benchmark needs {len(sources)} files like it")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {source.name for source in sources}
    for stale in folder.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for source in sources:
        target = folder / source.name
        data = source.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
    return folder


def _cmrc_passage(record: dict[str, str]) -> Passage:
    text = str(record["text"])
    return Passage(
        passage_id=str(record["id"]),
        speech_id=str(record["id"]),
        title=str(record["title"]),
        section_path=(),
        paragraph_no=1,
        part=1,
        start=0,
        end=len(text),
        text=text,
    )


def _read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def corpus_chars(name: str) -> int:
    """Characters a big corpus holds: what embedding it costs, to project a run's time."""
    if name == "corpus-69":
        return sum(len(p.read_text("utf-8")) for p in sorted(REPORTS.glob("*.txt"))) + 12_390  # + the speeches
    if name == "reports-reworded":
        return sum(len((REPORTS / name).read_text("utf-8")) for name in _reports_asked_about())
    source = {"cmrc-848": CMRC_DEV / "passages.jsonl", "cmrc-3507": CMRC_ALL_PASSAGES}[name]
    return sum(len(str(record["text"])) for record in _read_jsonl(source))
