"""Training pairs: a question (or a heading, or a paragraph's lead sentence) and the sentence that answers it.

- CMRC 2018 train (CC BY-SA 4.0): the question, the sentence holding its answer, and two hard
  negatives: another sentence of the same paragraph (on topic, does not answer) and the sentence
  of another article that BM25 ranks first for the question (shares its words, does not answer).
- The 67 public reports (`corpus-reports/`, public domain), never the two shipped speeches: a
  section heading with the first sentence under it, and a paragraph's lead sentence ("——经济运行
  保持在合理区间。") with the rest of its paragraph. They teach the register of official Chinese and
  the step from a short summary to the text it sums up, which is how askers word their questions.
- Questions written for this project on those reports in the askers' own words (`training/asked/`):
  each with the verbatim span that answers it; the sentences holding the span are the positive,
  another sentence of its paragraph and BM25's best sentence of another paragraph of the same
  report the hard negatives (the product's usual miss is the wrong paragraph of the right speech).
  A question the report does not answer has no positive; the on-topic sentence its writer named is
  its first negative, and the loss's "no answer" candidate its target (`training/train.py`).

No question of an evaluation set may enter training: every query is checked against them.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from embeddings.index.store import file_digest
from embeddings.ingest.segment import statements
from embeddings.retrieval.evaluate import load_questions, scoring_form

CMRC_SHA256 = "5497aa2f81908e31d6b0e27d99b1f90ab63a8f58fa92fffe5d17cf62eba0c212"
_HEADING = re.compile(r"^(?:[一二三四五六七八九十]+、|（[一二三四五六七八九十]+）|\d+[.．、])\s*")
MAX_PASSAGE_CHARS = 200
MIN_SENTENCE_CHARS = 8


@dataclass(frozen=True, slots=True)
class Example:
    """A query, the sentence that answers it ("" for a question the text does not answer), and hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...]
    source: str

    @property
    def answerable(self) -> bool:
        return bool(self.positive)


def evaluation_questions(paths: Iterable[Path]) -> set[str]:
    """Every question of the evaluation sets, in scoring form: none of them may be a training query."""
    return {
        scoring_form(question.question)
        for path in paths
        if path.suffix == ".jsonl" and path.exists()
        for question in load_questions(path)
    }


def _sentences(text: str) -> list[tuple[int, int]]:
    return [(a, b) for a, b in statements(text) if len(text[a:b].strip()) >= MIN_SENTENCE_CHARS]


def _bigrams(text: str) -> list[str]:
    text = scoring_form(text)
    return [text[i : i + 2] for i in range(len(text) - 1)]


def cmrc_examples(path: Path, rng: random.Random, expected_sha256: str | None = CMRC_SHA256) -> list[Example]:
    if expected_sha256 is not None and file_digest(path) != expected_sha256:
        raise ValueError(f"{path} is not the CMRC 2018 train file this recipe was measured on (SHA-256 differs)")
    articles = json.loads(path.read_text("utf-8"))["data"]
    rows: list[tuple[str, str, list[str], int]] = []  # question, positive, same-paragraph others, article
    pool: list[tuple[str, int]] = []  # every sentence with its article, for BM25
    for number, article in enumerate(articles):
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            spans = _sentences(context)
            pool += [(context[a:b].strip(), number) for a, b in spans]
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                start = int(answer["answer_start"])
                holding = [i for i, (a, b) in enumerate(spans) if a <= start < b]
                if not holding or answer["text"] not in context[spans[holding[0]][0] : spans[holding[0]][1]]:
                    continue  # the answer crosses a sentence end: no single sentence answers
                texts = [context[a:b].strip() for a, b in spans]
                rows.append(
                    (qa["question"].strip(), texts[holding[0]], texts[: holding[0]] + texts[holding[0] + 1 :], number)
                )
    retrieved = _bm25_sentences(pool, [row[0] for row in rows])
    examples = []
    for (question, positive, others, article), candidates in zip(rows, retrieved, strict=True):
        negatives = [rng.choice(others)] if others else []
        other_article = next((pool[i][0] for i in candidates if pool[i][1] != article), None)
        if other_article is not None:
            negatives.append(other_article)
        examples.append(Example(question, positive, tuple(negatives), "cmrc"))
    return examples


def _bm25_sentences(pool: Sequence[tuple[str, int]], questions: Sequence[str], depth: int = 8) -> list[list[int]]:
    import bm25s
    import numpy as np

    index = bm25s.BM25()
    index.index([_bigrams(text) for text, _ in pool], show_progress=False)
    depth = min(depth, len(pool))
    found, _scores = index.retrieve([_bigrams(q) or ["。"] for q in questions], k=depth, show_progress=False)
    return np.asarray(found).tolist()


def report_examples(folder: Path, rng: random.Random) -> list[Example]:
    """Heading → first sentence under it; lead sentence → the rest of its paragraph (cut to a bound)."""
    examples = []
    for path in sorted(folder.glob("*.txt")):
        lines = [line.strip() for line in path.read_text("utf-8").splitlines()[1:] if line.strip()]
        for before, line in itertools.pairwise(lines):
            heading = _HEADING.sub("", before)
            if _HEADING.match(before) and len(before) <= 40 and "。" not in before.rstrip("。") and len(heading) >= 4:
                first = _sentences(line)
                if first:
                    examples.append(Example(heading.rstrip("。"), line[slice(*first[0])].strip(), (), "report-heading"))
        for line in lines:
            spans = _sentences(line)
            if len(spans) < 3 or _HEADING.match(line):
                continue
            lead = line[slice(*spans[0])].strip().lstrip("—-").strip()
            rest = line[spans[1][0] :].strip()[:MAX_PASSAGE_CHARS]
            if MIN_SENTENCE_CHARS <= len(lead) <= 60:
                examples.append(Example(lead, rest, (), "report-lead"))
    rng.shuffle(examples)
    return examples


def asked_examples(path: Path, reports: Path, rng: random.Random, unanswerable: bool = False) -> list[Example]:
    """The written questions with the sentences that answer them.

    An unanswerable question names the nearest on-topic span that does not answer it: with
    `unanswerable`, it comes with no positive and that span's sentences as its first negative, for
    a loss that can say "none of these"; without, it is left out.
    """
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    paragraphs = {
        name: [line.strip() for line in (reports / name).read_text("utf-8").splitlines() if line.strip()]
        for name in sorted({row["report"] for row in rows})
    }
    found: list[tuple[str, str, list[str], str, int]] = []  # question, positive, paragraph's others, report, paragraph
    for row in rows:
        answerable = row["kind"] != "unanswerable"
        if not (answerable or unanswerable):
            continue
        lines = paragraphs[row["report"]]
        answer = row["answer"].strip()
        holding = next((i for i, line in enumerate(lines) if answer in line), None)
        if holding is None:
            raise ValueError(f"{path}: the answer of {row['question']!r} is not in {row['report']}")
        line = lines[holding]
        start = line.index(answer)
        spans = _sentences(line)
        covering = [(a, b) for a, b in spans if a < start + len(answer) and b > start]
        if not covering:
            continue  # the answer lies in a fragment too short to be a sentence
        positive = line[covering[0][0] : covering[-1][1]].strip()[:MAX_PASSAGE_CHARS]
        others = [line[a:b].strip() for a, b in spans if (a, b) not in covering]
        if not answerable:
            positive, others = "", [positive]  # on topic, the nearest the report comes: the hardest negative
        found.append((row["question"].strip(), positive, others, row["report"], holding))
    where = [(name, i) for name in paragraphs for i in range(len(paragraphs[name]))]  # a paragraph's place
    pool = [
        (paragraphs[name][i][a:b].strip(), number)
        for number, (name, i) in enumerate(where)
        for a, b in _sentences(paragraphs[name][i])
    ]
    retrieved = _bm25_sentences(pool, [row[0] for row in found], depth=16)
    examples = []
    for (question, positive, others, report, holding), candidates in zip(found, retrieved, strict=True):
        negatives = [rng.choice(others) if positive else others[0]] if others else []
        same_report = (
            pool[i][0] for i in candidates if where[pool[i][1]] != (report, holding) and where[pool[i][1]][0] == report
        )
        elsewhere = next(same_report, None)
        if elsewhere is not None:
            negatives.append(elsewhere)
        examples.append(Example(question, positive, tuple(negatives), "asked"))
    return examples


def worded_away(example: Example, cut: Callable[[str], list[str]]) -> Example:
    """The question without the words it shares with its answer: what is left must be matched by meaning.

    CMRC questions copy most of their words from the answering sentence, which teaches the model what
    BM25 already does; askers of the product word their questions away from the speech.
    """
    kept = [word for word in cut(example.query) if len(word) < 2 or word not in example.positive]
    reworded = "".join(kept)
    if len(reworded) < 4 or reworded == example.query:
        return example
    return Example(reworded, example.positive, example.negatives, example.source + "-worded-away")


def training_examples(
    cmrc: Path,
    reports: Path | None,
    excluded: set[str],
    *,
    seed: int,
    report_share: float,
    reword_share: float = 0.0,
    asked: Path | None = None,
    asked_share: float = 0.0,
    unanswerable: bool = False,
    cmrc_sha256: str | None = CMRC_SHA256,
) -> list[Example]:
    """The shuffled mix; `report_share` of it from the reports, `reword_share` of CMRC's questions worded away.

    With `asked`, the written questions make `asked_share` of the mix: the rest is drawn from the others;
    with `unanswerable`, the written questions the reports do not answer are among them, without a positive.
    """
    rng = random.Random(seed)
    examples = cmrc_examples(cmrc, rng, cmrc_sha256)
    if reword_share > 0:
        import jieba

        examples = [worded_away(e, jieba.lcut) if rng.random() < reword_share else e for e in examples]
    if reports is not None and report_share > 0:
        wanted = int(len(examples) * report_share / (1 - report_share))
        examples += report_examples(reports, rng)[:wanted]
    if asked_share > 0:
        if asked is None or reports is None:
            raise ValueError("a share of written questions needs their file and the reports they were written on")
        written = asked_examples(asked, reports, rng, unanswerable)
        rng.shuffle(examples)
        examples = written + examples[: int(len(written) * (1 - asked_share) / asked_share)]
    excluded = {scoring_form(question) for question in excluded}
    kept = [e for e in examples if scoring_form(e.query) not in excluded]
    rng.shuffle(kept)
    return kept
