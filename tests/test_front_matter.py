"""What a speech says about itself: the subtitle, date and speaker lines are paragraph 0, found and cited as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.answer import compose
from bot.config import AnswerSettings
from bot.render import render_answer
from bot.session import paragraph_view
from embeddings.engine import open_retriever
from embeddings.index.units import corpus_units
from embeddings.ingest.segment import segment_speech
from embeddings.passage import FRONT_MATTER, Passage, Speech
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import SegmentSettings
from tests.conftest import make_config
from tests.test_ingest_structure import speech_of

OCCASION = "这篇讲话是在什么会上讲的？"
LEAD_GOOSE_ID = "lead-goose-annual-review-speech"
LEAD_GOOSE_TITLE = "当头雁 争一流 全力打造优秀工会组织"
LEAD_GOOSE_SUBTITLE = "——在各县（市）区总工会年度工作交流会上的讲话"
TITLE = "关于工会工作的讲话"
FRONT = ("——在全市工会工作会议上的讲话", "2019年5月10日", "张  三")
BODY = (
    "同志们：",
    "今天我们召开全市工会工作会议，主要任务是总结去年的工作。",
    "一、总体要求",
    "工作要抓实，组建要推进。",
)


def front_passages(speech: Speech) -> list[Passage]:
    return [p for p in segment_speech(speech, SegmentSettings()) if p.paragraph_no == FRONT_MATTER]


# --- ingest: where paragraph 0 lies, and that nothing else moves


def test_subtitle_date_and_speaker_are_paragraph_0_at_their_offsets() -> None:
    speech = speech_of(TITLE, *FRONT, *BODY)
    front = speech.front_matter
    assert front is not None and front.number == FRONT_MATTER and front.section_path == ()
    assert speech.text[front.start : front.end] == "\n".join(FRONT)  # the lines themselves, in the cleaned text
    passages = front_passages(speech)
    assert [(p.passage_id, p.text) for p in passages] == [(f"x:0.{n}", line) for n, line in enumerate(FRONT, 1)]
    assert all(speech.text[p.start : p.end] == p.text for p in passages)


def test_body_paragraphs_keep_their_numbers() -> None:
    """Citations already copied (`第1段`) must still point at the same words."""
    with_front = speech_of(TITLE, *FRONT, *BODY)
    without = speech_of(TITLE, *BODY)
    assert without.front_matter is None

    def numbered(speech: Speech) -> list[tuple[int, str]]:
        return [(p.number, speech.text[p.start : p.end]) for p in speech.paragraphs]

    assert numbered(with_front) == numbered(without) == [(1, BODY[1]), (2, BODY[3])]
    assert [p.passage_id for p in segment_speech(with_front, SegmentSettings()) if p.paragraph_no] == [
        p.passage_id for p in segment_speech(without, SegmentSettings())
    ]


@pytest.mark.parametrize(
    "lines",
    [
        (TITLE, *BODY),  # a bare title: it is in every passage's search text already
        ("某市工会组建工作推进会讲话稿同志们，今天我们召开会议。", "工作要抓实。"),  # a title glued to the body
        (TITLE, "——", *BODY),  # a dash with no words
    ],
)
def test_a_speech_without_subtitle_gets_no_empty_unit(lines: tuple[str, ...]) -> None:
    speech = speech_of(*lines)
    assert speech.front_matter is None
    assert front_passages(speech) == []
    assert speech.paragraphs[0].number == 1


def test_a_subtitle_on_the_title_line_is_quoted_from_its_own_line() -> None:
    speech = speech_of(TITLE + "——在全市工会工作会议上的讲话", *BODY)
    assert [p.text for p in front_passages(speech)] == ["——在全市工会工作会议上的讲话"]
    assert all(speech.text[p.start : p.end] == p.text for p in front_passages(speech))


def test_each_front_matter_line_is_a_sentence_unit() -> None:
    """What the model embeds: each line, never a "sentence" running across the line breaks."""
    speech = speech_of(TITLE, *FRONT, *BODY)
    passages = segment_speech(speech, SegmentSettings())
    units, texts = corpus_units(passages, [speech], SegmentSettings().max_chars)
    assert texts[:3] == list(FRONT)
    for (row, start, end), text in zip(units.table.tolist()[:3], texts[:3], strict=True):
        assert speech.text[start:end] == text and passages[row].text == text


# --- citation


def test_the_front_matter_is_cited_as_the_subtitle_not_as_paragraph_0() -> None:
    front = front_passages(speech_of(TITLE, *FRONT, *BODY))[0]
    assert front.place == "副标题"
    assert front.citation == f"《{TITLE}》 · 副标题"
    assert "第0段" not in front.citation
    body = segment_speech(speech_of(TITLE, *BODY), SegmentSettings())[-1]
    assert body.citation == f"《{TITLE}》 › 一、总体要求 · 第2段"


# --- the shipped speeches, end to end


def test_the_occasion_question_finds_the_subtitle(shipped_retriever: Retriever) -> None:
    result = shipped_retriever.search(OCCASION)
    top = result.hits[0]
    assert result.answerable
    assert (top.passage.passage_id, top.passage.text) == (f"{LEAD_GOOSE_ID}:0.1", LEAD_GOOSE_SUBTITLE)
    speech = shipped_retriever.speeches[LEAD_GOOSE_ID]
    assert speech.text[top.passage.start : top.passage.end] == LEAD_GOOSE_SUBTITLE
    assert top.paragraph is not None and top.paragraph.text == LEAD_GOOSE_SUBTITLE  # the whole paragraph 0
    answer = compose(result, AnswerSettings())
    assert [s.text for s in answer.direct] == [LEAD_GOOSE_SUBTITLE]
    hit = answer.to_dict()["hits"][0]
    assert hit["citation"] == f"《{LEAD_GOOSE_TITLE}》 · 副标题"
    assert hit["paragraph_no"] == FRONT_MATTER and hit["section_path"] == []
    assert speech.text[hit["start"] : hit["end"]] == hit["text"] == LEAD_GOOSE_SUBTITLE
    assert speech.text[hit["paragraph_start"] : hit["paragraph_end"]] == LEAD_GOOSE_SUBTITLE
    rendered = render_answer(answer)
    assert f"[1] 《{LEAD_GOOSE_TITLE}》 · 副标题\n    {LEAD_GOOSE_SUBTITLE}" in rendered
    assert "第0段" not in rendered


def test_the_shipped_body_paragraphs_keep_their_numbers(shipped_retriever: Retriever) -> None:
    speech = shipped_retriever.speeches[LEAD_GOOSE_ID]  # as read back from the index
    assert speech.front_matter is not None and speech.front_matter.number == FRONT_MATTER
    assert speech.paragraphs[0].number == 1
    first = shipped_retriever.passage(f"{LEAD_GOOSE_ID}:1.1")
    assert first is not None and first.text.startswith("召开今天交流会主要有三个目的")
    union = shipped_retriever.speeches["union-building-campaign-speech"]  # a bare title
    assert union.front_matter is None
    assert shipped_retriever.passage("union-building-campaign-speech:0.1") is None


def test_opening_the_front_matter_shows_it_then_paragraph_1(shipped_retriever: Retriever) -> None:
    speech = shipped_retriever.speeches[LEAD_GOOSE_ID]
    front = shipped_retriever.passage(f"{LEAD_GOOSE_ID}:0.1")
    first = shipped_retriever.passage(f"{LEAD_GOOSE_ID}:1.1")
    assert front is not None and first is not None
    view = paragraph_view(shipped_retriever, front, 1)
    paragraph_1 = speech.text[speech.paragraphs[0].start : speech.paragraphs[0].end]
    assert (view.text, view.before, view.after, view.note) == (LEAD_GOOSE_SUBTITLE, "", paragraph_1, "")
    assert view.citation == f"《{LEAD_GOOSE_TITLE}》 · 副标题"
    assert paragraph_view(shipped_retriever, first, 1).before == ""  # the subtitle is no paragraph of the body


def test_who_and_when_are_answered_from_the_lines_under_the_title(tmp_path: Path) -> None:
    corpus = tmp_path / "speeches"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n".join((TITLE, *FRONT, *BODY)) + "\n", "utf-8")
    (corpus / "b.txt").write_text("工会组建讲话\n同志们，今天的会议时间虽然不长，但是效果很好。\n", "utf-8")
    config = make_config(corpus, tmp_path / "index")
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    speech = retriever.speeches["a"]
    for question, first in (("这篇讲话是谁讲的？", FRONT[0]), ("这篇讲话是什么时候讲的？", FRONT[1])):
        result = retriever.search(question)
        top = result.hits[0]
        assert top.passage.paragraph_no == FRONT_MATTER, question
        assert top.paragraph is not None and top.paragraph.text == "\n".join(FRONT)
        assert speech.text[top.passage.start : top.passage.end] == top.passage.text
        direct = [s.text for s in compose(result, AnswerSettings()).direct]
        assert direct[0] == first and direct == list(FRONT[FRONT.index(first) :]), question


@pytest.mark.parametrize("question", ["什么人可以当劳模？", "时间过得怎么样？", "会议时间是多久？"])
def test_questions_about_other_people_or_times_do_not_bring_up_the_subtitle(
    shipped_retriever: Retriever, question: str
) -> None:
    """Its search line names the occasion and the date, not `时间` or `人`, which half the questions hold."""
    assert all(hit.passage.paragraph_no != FRONT_MATTER for hit in shipped_retriever.search(question).hits)
