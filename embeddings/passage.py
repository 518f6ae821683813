"""The records that flow through the engine: speeches, their passages, and retrieval hits.

A `Passage` carries its text together with everything a citation needs, so that every
front-end only renders it. Row *i* means the same passage everywhere: line *i* of
`passages.jsonl`, BM25 document *i* and FAISS vector *i*.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from embeddings.text.expect import Expectation

SECTION_SEPARATOR = " › "
# Paragraph 0 of a speech is its front matter, the subtitle, date and speaker lines under the title:
# what the speech says about itself (where, when and by whom it was given) becomes citable. Body
# paragraphs are numbered from 1 as before, so citations already copied stay valid.
FRONT_MATTER = 0
# Its place in a citation, for it is no paragraph of the body. `Speech.subtitle` names the same lines.
FRONT_MATTER_PLACE = "副标题"
# What the front matter is searched with in place of a section path: what it tells, in the words a
# question about the speech itself uses. Its own lines share none with "这篇讲话是在什么会上讲的？"
# (jieba cuts 交流会上 as 交流会/上; 讲话 is a stop word), so without this line no words find it.
# Generic words stay out (时间, 讲话人 → 人): they brought the subtitle up for "什么人可以当劳模？".
FRONT_MATTER_TOPICS = "这篇讲话的副标题：讲话的场合（在什么会上）、日期"


@dataclass(frozen=True, slots=True)
class Passage:
    """A bounded run of whole sentences from one paragraph of one speech."""

    passage_id: str
    speech_id: str
    title: str
    section_path: tuple[str, ...]
    paragraph_no: int
    part: int
    start: int
    end: int
    text: str
    source: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        return SECTION_SEPARATOR.join(self.section_path)

    @property
    def place(self) -> str:
        """Where the passage stands in its speech: `第5段`, or `副标题` for the front matter."""
        return FRONT_MATTER_PLACE if self.paragraph_no == FRONT_MATTER else f"第{self.paragraph_no}段"

    @property
    def citation(self) -> str:
        """The human citation, e.g. `《标题》 › 一、… › （三）… · 第5段`, or `《标题》 · 副标题`."""
        head = f"《{self.title}》"
        if self.section_path:
            head += SECTION_SEPARATOR + self.section
        return f"{head} · {self.place}"

    @property
    def search_text(self) -> str:
        """What both retrievers see: the title and section path (the front matter: what it tells) give context."""
        context = FRONT_MATTER_TOPICS if self.paragraph_no == FRONT_MATTER else self.section
        return f"{self.title}\n{context}\n{self.text}"

    @property
    def content_hash(self) -> str:
        """Identifies what an embedder sees, so unchanged passages are never embedded twice."""
        return hashlib.sha256(self.search_text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        # Field by field: `asdict` deep-copies every value, a third of writing a large index.
        return {
            "passage_id": self.passage_id,
            "speech_id": self.speech_id,
            "title": self.title,
            "section_path": list(self.section_path),
            "paragraph_no": self.paragraph_no,
            "part": self.part,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "source": self.source,
            "aliases": list(self.aliases),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Passage:
        return cls(
            passage_id=str(record["passage_id"]),
            speech_id=str(record["speech_id"]),
            title=str(record["title"]),
            section_path=tuple(str(s) for s in record["section_path"]),
            paragraph_no=int(record["paragraph_no"]),
            part=int(record["part"]),
            start=int(record["start"]),
            end=int(record["end"]),
            text=str(record["text"]),
            source=str(record.get("source", "")),
            aliases=tuple(str(a) for a in record.get("aliases", ())),
        )


@dataclass(frozen=True, slots=True)
class Paragraph:
    """One paragraph of a cleaned speech: `text == speech.text[start:end]`; number 0 is the front matter."""

    number: int
    start: int
    end: int
    section_path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Speech:
    """A cleaned speech: its text, title and paragraph structure, and what cleaning did."""

    speech_id: str
    source: str
    title: str
    subtitle: str
    text: str
    paragraphs: tuple[Paragraph, ...]
    sections: tuple[str, ...]
    rules_fired: dict[str, int] = field(default_factory=dict)
    encoding: str = "utf-8"
    aliases: tuple[str, ...] = ()
    # Paragraph `FRONT_MATTER`: the subtitle, date and speaker lines; None when the title stands alone
    # (the title is in every passage's `search_text` already). Not in `paragraphs`, which is the body.
    front_matter: Paragraph | None = None

    @property
    def indexed_paragraphs(self) -> tuple[Paragraph, ...]:
        """The front matter, if any, then the body paragraphs: every paragraph that has passages, in text order."""
        return self.paragraphs if self.front_matter is None else (self.front_matter, *self.paragraphs)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked answer candidate: the passage and why it ranked where it did."""

    rank: int
    passage: Passage
    score: float
    lexical_score: float
    dense_score: float | None
    source: Literal["lexical", "dense", "hybrid"]
    # The whole paragraph `passage` is part of (part 0): what the citation names and answers draw on.
    paragraph: Passage | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "lexical_score": round(self.lexical_score, 6),
            "dense_score": None if self.dense_score is None else round(self.dense_score, 6),
            "source": self.source,
            **self.passage.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The ranked hits for one question, with the engine's confidence that they answer it."""

    query: str
    hits: tuple[Hit, ...]
    confidence: float
    answerable: bool
    mode: Literal["lexical", "hybrid"]
    notice: str = ""
    # The question's search terms in matching form, with their IDF; `True` marks topic words
    # (highlighted in answers), `False` character bigrams and question-frame words (used only to
    # score sentences).
    terms: tuple[tuple[str, float, bool], ...] = ()
    expectation: Expectation | None = None  # the shape of answer the question asks for, if it has one
    # (speech id, start offset, cosine similarity) of every sentence of the hits' paragraphs, with a model.
    sentence_scores: tuple[tuple[str, int, float], ...] = ()
