"""What makes an answer trustworthy beyond the dev set: answer shapes, coordination, abstention, snippets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.answer import compose
from bot.config import AnswerSettings
from embeddings.ingest.segment import statements
from embeddings.passage import Hit, Passage, SearchResult
from embeddings.retrieval.evaluate import evaluate, load_questions, scoring_form
from embeddings.text.expect import AnswerKind, asks_for_work, expected_answer
from embeddings.text.textnorm import matching_form
from tests.conftest import REPO

HELD_OUT = REPO / "benchmarks/questions/speeches-heldout.jsonl"


@pytest.mark.parametrize(
    ("question", "kind", "unit"),
    [
        ("截至3月底全市新建了多少家基层工会？", AnswerKind.COUNT, "家"),
        ("周江勇书记的讲话有几层意思？", AnswerKind.COUNT, "层"),
        ("组建工作发展了多少会员？", AnswerKind.COUNT, ""),
        ("劳模工匠展示厅什么时候建成？", AnswerKind.WHEN, ""),
        ("工匠日是哪一天？", AnswerKind.WHEN, ""),
        ("劳模工匠绿道有多长？", AnswerKind.LENGTH, ""),
        ("春风行动坚持了多久？", AnswerKind.DURATION, ""),
        ("建德的工会组建率是多少？", AnswerKind.SHARE, ""),
        ("启动仪式是几月几号办的？", AnswerKind.DAY, ""),
        ("协会的会长是谁？", AnswerKind.PERSON, ""),
        ("省总哪位副主席肯定了建德的组建工作？", AnswerKind.PERSON, ""),
        ("陈列室选址在哪里？", AnswerKind.PLACE, ""),
    ],
)
def test_questions_asking_for_a_number_or_date_say_so(question, kind, unit):
    expectation = expected_answer(matching_form(question))
    assert expectation is not None and expectation.kind is kind and expectation.unit == unit


@pytest.mark.parametrize(
    "question",
    [
        "领导班子有哪几种类型？",
        "设立工匠日带来了哪五个方面的启示？",
        "好干部的标准是什么？",
        "设立工匠节的议案是谁提出的？",  # who, but not an office holder: an answer may be a group
        "总书记在新年献词中最牵挂谁？",
    ],
)
def test_other_questions_expect_no_shape(question):
    assert expected_answer(matching_form(question)) is None


def test_an_answer_shape_is_recognised_in_the_speakers_own_forms():
    count = expected_answer("今天参加会议的有多少人")
    assert count is not None and count.met_by("今天参加会议的同志将近一百人") and not count.met_by("大家都很守纪律")
    when = expected_answer("什么时候建成")
    assert when is not None and when.met_by("确保明年“X”前建成展出") and not when.met_by("要与陈列室同步起来")
    length = expected_answer("绿道有多长")
    assert length is not None and length.met_by("全长12公里") and not length.met_by("开辟了全国首条绿道，2019年")


def test_a_finer_shape_is_not_met_by_a_looser_one():
    day = expected_answer("启动仪式是几月几号办的")
    assert day is not None and day.met_by("4月3日，常委会全票通过") and day.met_by("九月下旬")
    assert not day.met_by("今年承办了启动仪式") and not day.met_by("工会组建百日攻坚行动")
    person = expected_answer("协会的会长是谁")
    assert person is not None and person.met_by("省总张兆都副主席给予充分肯定") and person.met_by("X书记对工会的要求")
    assert not person.met_by("成立了全国首家市级劳模工匠协会") and not person.met_by("市总工会主席出席")
    place = expected_answer("陈列室选址在哪里")
    assert place is not None and place.met_by("办公室设在总工会") and place.met_by("推进会在建德召开")
    assert not place.met_by("工运史资料陈列室建设有序推进") and not place.met_by("要组织宣讲团到县（市）区宣讲")


@pytest.mark.parametrize(
    "question",
    [
        "劳模工匠绿道有多长？",
        "职工疗休养一年可以休几天？",
        "农民工圆梦行动资助了多少人？",
        "工会会员每个月要交多少会费？",
    ],
)
def test_a_topic_named_without_the_number_asked_for_is_not_an_answer(shipped_retriever, question):
    assert not shipped_retriever.search(question).answerable


def test_a_request_for_work_is_not_answered_from_the_speeches(shipped_retriever):
    for request in ("帮我把“工匠精神”翻译成英文", "给我写一段关于工匠日的发言稿", "请帮我润色：工匠日的设立意义重大"):
        assert asks_for_work(matching_form(request))
        assert not shipped_retriever.search(request).answerable
    for question in ("帮我找一下讲工匠日设立过程的段落", "翻译工作怎么开展？", "工匠日是怎么设立的？"):
        assert not asks_for_work(matching_form(question))
    assert shipped_retriever.search("工匠日是怎么设立的？").answerable


@pytest.mark.parametrize(
    ("question", "gold"),
    [("“春风行动”坚持了多少年？", "一吹就是20年"), ("中国工会第十七次代表大会什么时候召开？", "2018年10月22日")],
)
def test_the_number_asked_for_is_found(shipped_retriever, question, gold):
    result = shipped_retriever.search(question)
    assert result.answerable and gold in result.hits[0].passage.text


def test_held_out_questions_of_the_same_kind(shipped_retriever):
    """Questions written apart from the dev set, so tuning on the dev set cannot pass this by itself."""
    report = evaluate(shipped_retriever, load_questions(HELD_OUT)).quality
    assert report.answerable == 63 and report.unanswerable == 24
    assert report.hit_at_1 >= 0.93 and report.hit_at_5 >= 0.98
    assert report.declined_unanswerable >= 20
    assert report.wrongly_declined_answerable <= 1


def test_a_passage_with_every_question_word_outranks_one_repeating_some(shipped_retriever):
    # Paragraph 5 says 设立 and 工匠节 many times; paragraph 6 holds 设立, 工匠节 and 议案.
    hit = shipped_retriever.search("设立工匠节的议案是谁提出的？").hits[0]
    assert "余杭区18位市人大代表提出了设立“xx工匠节”的议案" in hit.passage.text


def test_possibly_related_passages_share_the_question_s_words(shipped_retriever):
    result = shipped_retriever.search("怎么用Python写一个网络爬虫？")
    assert not result.answerable and result.hits == ()
    on_topic = shipped_retriever.search("工会会员每个月要交多少会费？")
    assert not on_topic.answerable and on_topic.hits
    assert all("工会" in hit.passage.search_text for hit in on_topic.hits)


def _result(text: str, question: str, terms: tuple[tuple[str, float, bool], ...]) -> SearchResult:
    passage = Passage("s:1.1", "s", "标题", ("一、要求",), 1, 1, 0, len(text), text)
    hit = Hit(1, passage, 1.0, 1.0, None, "lexical")
    return SearchResult(question, (hit,), 1.0, True, "lexical", terms=terms)


def test_a_short_point_is_answered_by_the_sentences_that_make_it():
    text = "第四要好共事。一是要学会欣赏，学会赞赏别人的优点。二是要学会放弃。第五要干成事。"
    answer = compose(_result(text, "怎样才能好共事？", (("好共事", 3.0, True),)), AnswerSettings())
    said = [s.text for s in answer.direct]
    assert said[0] == "第四要好共事。" and "一是要学会欣赏，学会赞赏别人的优点。" in said


def test_a_list_is_the_answer_only_where_the_best_sentence_announces_it():
    text = "人民日报做了报道。法制日报也刊登了消息。书记讲了几点。一是提高站位。二是依法推进。三是强化宣传。"
    terms = (("报纸", 2.0, True), ("法制日报", 3.0, True), ("消息", 1.0, True))
    answer = compose(_result(text, "还有哪些报纸刊登了消息？", terms), AnswerSettings())
    said = [s.text for s in answer.direct]
    assert "法制日报也刊登了消息。" in said and not any(item in said for item in ("二是依法推进。", "三是强化宣传。"))
    # Announced by the best sentence itself, the items are the answer.
    text = "法制日报也刊登了消息，有三点要求。一是提高站位。二是依法推进。三是强化宣传。"
    said = [s.text for s in compose(_result(text, "有哪些要求？", (("要求", 2.0, True),)), AnswerSettings()).direct]
    assert said == ["法制日报也刊登了消息，有三点要求。", "一是提高站位。", "二是依法推进。", "三是强化宣传。"]


def test_a_run_in_heading_is_never_the_direct_answer():
    text = "（三）创品牌。创品牌就是要持之以恒、久久为功、持续发力，然后做出品牌。"
    answer = compose(_result(text, "创品牌需要什么？", (("创品牌", 3.0, True),)), AnswerSettings())
    assert answer.direct and all(s.text != "（三）创品牌。" for s in answer.direct)


def test_an_enumeration_joined_by_semicolons_stays_one_statement():
    text = "主要有三个目的，一是相互交流；二是加深了解；三是贯彻落实。时间过得很快。"
    assert [text[a:b] for a, b in statements(text)] == [
        "主要有三个目的，一是相互交流；二是加深了解；三是贯彻落实。",
        "时间过得很快。",
    ]


def test_long_neighbours_do_not_shrink_a_snippet_to_one_short_sentence():
    text = "甲" * 150 + "。工匠日的魂。" + "乙" * 150 + "。"
    answer = compose(_result(text, "工匠日的魂", (("工匠日", 3.0, True),)), AnswerSettings(snippet_chars=160))
    snippet = answer.citations[0].snippet
    assert "工匠日的魂。" in snippet and len(snippet) >= 150


def test_single_letters_and_question_frames_are_not_highlighted():
    text = "X书记对xx工会提出了15字要求。"
    terms = (("x", 2.0, True), ("书记", 2.0, True), ("要求", 1.0, False))
    citation = compose(_result(text, "X书记提出的要求", terms), AnswerSettings()).citations[0]
    marked = [citation.snippet[a:b] for a, b in citation.highlights]
    assert marked == ["书记"]


def test_direct_answer_holds_the_gold_span_for_most_held_out_questions(shipped_retriever):
    questions = [q for q in load_questions(HELD_OUT) if q.answerable]
    held = 0
    for question in questions:
        answer = compose(shipped_retriever.search(question.question), AnswerSettings())
        said = scoring_form("".join(s.text for s in answer.direct))
        held += any(scoring_form(g) in said for g in question.gold)
    # Of 63, lexical-only (the tests' mode): 53 when answers began drawing on whole paragraphs
    # (55 before); with the bundled model, the default, 57.
    assert held >= 52


def test_coordination_is_a_share_per_row():
    from embeddings.index.lexical import LexicalIndex

    index = LexicalIndex.build([["a", "b"], ["a"], ["c"]], k1=1.2, b=0.75)
    share = index.coordination(["a", "b"], np.array([0, 1, 2]))
    assert share[0] == pytest.approx(1.0) and 0 < share[1] < 1 and share[2] == 0


def test_held_out_file_is_well_formed():
    questions = load_questions(Path(HELD_OUT))
    assert len({q.id for q in questions}) == len(questions)
