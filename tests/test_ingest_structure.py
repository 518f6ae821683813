"""Structure without losing words: numbered items that are not headings, and what stands above the speech."""

from __future__ import annotations

from pathlib import Path

import pytest

from embeddings.ingest.load import RawDocument, RawLine
from embeddings.ingest.segment import segment_speech
from embeddings.ingest.structure import build_speech
from embeddings.passage import Speech
from embeddings.settings import SegmentSettings


def speech_of(*lines: str) -> Speech:
    return build_speech(RawDocument(Path("x.txt"), tuple(RawLine(line) for line in lines), "utf-8"), "x", "x.txt")


def cited(speech: Speech) -> list[tuple[tuple[str, ...], str]]:
    return [(p.section_path, p.text) for p in segment_speech(speech, SegmentSettings())]


# --- numbered items (structure.py lost them: a short `N、…` piece became a heading, and headings are in no passage)


def test_regression_inline_enumeration_of_short_sentences_stays_in_its_paragraph() -> None:
    speech = speech_of(
        "标题", "同志们，今天召开会议。工作有三点要求。1、要讲政治。2、要抓落实。3、要重实效。", "最后，希望大家努力。"
    )
    assert speech.sections == ()
    assert cited(speech) == [
        ((), "同志们，今天召开会议。工作有三点要求。1、要讲政治。2、要抓落实。3、要重实效。"),
        ((), "最后，希望大家努力。"),  # was cited under `3、要重实效`
    ]


def test_regression_number_before_a_digit_is_no_heading() -> None:
    """`5、6月份` is May and June, not item 5: it became a section and its sentence vanished."""
    speech = speech_of("标题", "同志们，今天召开会议。5、6月份是组建的关键期，大家要抓紧。7、8月份要总结。")
    assert speech.sections == ()
    assert cited(speech) == [((), "同志们，今天召开会议。5、6月份是组建的关键期，大家要抓紧。7、8月份要总结。")]
    long_item = "5、6月份是组建的关键期，各单位要倒排时间、挂图作战，确保按期完成全年的组建任务。"
    for lines in (
        ["同志们，今天召开会议。" + long_item],
        ["同志们，今天召开会议。", "7、8月份要总结。", "大家要抓紧。"],
    ):
        speech = speech_of("标题", *lines)
        assert speech.sections == ()
        assert [text for _, text in cited(speech)] == lines


@pytest.mark.parametrize("items", [["1、要讲政治。", "2、要抓落实。", "3、要重实效。"], ["1、张三", "2、李四"]])
def test_regression_list_on_lines_of_its_own_is_body_text(items: list[str]) -> None:
    at_the_end = speech_of("标题", "同志们，今天召开会议。有几点要求：", *items)
    assert at_the_end.sections == ()
    assert [text for _, text in cited(at_the_end)] == ["同志们，今天召开会议。有几点要求：", *items]
    in_the_middle = speech_of("标题", "一、总体要求", "有几点要求：", *items, "最后，希望大家努力。")
    assert in_the_middle.sections == ("一、总体要求",)
    assert cited(in_the_middle) == [
        (("一、总体要求",), text) for text in ["有几点要求：", *items, "最后，希望大家努力。"]
    ]


def test_headings_on_lines_of_their_own_stay_headings() -> None:
    speech = speech_of(
        "标题",
        "一、总体要求",
        "（一）指导思想",
        "要坚持党的领导。",
        "（二）目标任务",
        "1、加强组建",
        "今年要新建工会一百家。",
        "二、保障措施",
        "要加强组织领导。",
    )
    assert speech.sections == ("一、总体要求", "（一）指导思想", "（二）目标任务", "1、加强组建", "二、保障措施")
    assert cited(speech) == [
        (("一、总体要求", "（一）指导思想"), "要坚持党的领导。"),
        (("一、总体要求", "（二）目标任务", "1、加强组建"), "今年要新建工会一百家。"),
        (("二、保障措施",), "要加强组织领导。"),
    ]


def test_a_numbered_line_that_ends_the_speech_heads_nothing() -> None:
    speech = speech_of("标题", "一、总体要求", "要坚持党的领导。", "二、其他事项")
    assert speech.sections == ("一、总体要求",)
    assert [text for _, text in cited(speech)] == ["要坚持党的领导。", "二、其他事项"]


# --- what stands above the speech: title, subtitle, date, speaker, salutation


def test_regression_date_and_speaker_are_not_the_title() -> None:
    """structure.py took up to three short lines as the title: `在…讲话 （2019年12月20日） 张三`."""
    speech = speech_of("在全市工会工作会议上的讲话", "（2019年12月20日）", "张三", "同志们：", "今天我们召开会议。")
    assert speech.title == "在全市工会工作会议上的讲话"
    assert speech.subtitle == "（2019年12月20日） 张三"
    assert [speech.text[p.start : p.end] for p in speech.paragraphs] == ["今天我们召开会议。"]
    assert speech.text.splitlines() == [
        "在全市工会工作会议上的讲话",
        "（2019年12月20日）",
        "张三",
        "同志们：",
        "今天我们召开会议。",
    ]
    assert speech.rules_fired["front_matter"] == 2 and speech.rules_fired["salutation_lines"] == 1


def test_subtitle_then_date_and_a_spaced_name() -> None:
    speech = speech_of(
        "关于工会工作的讲话", "——在全市工会工作会议上", "2019年12月20日", "张  三", "同志们，今天召开会议。"
    )
    assert speech.title == "关于工会工作的讲话"
    assert speech.subtitle == "——在全市工会工作会议上 2019年12月20日 张 三"
    assert [p.number for p in speech.paragraphs] == [1]


def test_a_date_above_the_title_keeps_its_place_in_the_text() -> None:
    lines = ["2019年12月20日", "关于工会工作的讲话", "同志们：", "今天我们召开会议。"]
    speech = speech_of(*lines)
    assert (speech.title, speech.subtitle) == ("关于工会工作的讲话", "2019年12月20日")
    assert speech.text.splitlines() == lines
    assert speech_of("2019年12月20日", "当头雁", "争一流", "今天我们召开会议。").title == "当头雁 争一流"


def test_a_short_second_title_line_is_not_taken_for_a_name() -> None:
    speech = speech_of("当头雁 争一流", "全力打造", "——在年度工作交流会上的讲话", "今天召开会议。")
    assert speech.title == "当头雁 争一流 全力打造"


@pytest.mark.parametrize("salutation", ["尊敬的各位领导", "尊敬的各位领导、各位来宾：", "同志们，大家好！"])
def test_regression_salutation_never_joins_the_title(salutation: str) -> None:
    speech = speech_of("关于工会工作的讲话", salutation, "今天我们召开会议。")
    assert speech.title == "关于工会工作的讲话"
    assert salutation in speech.text.splitlines()  # kept in the text, but no passage of its own
    assert [speech.text[p.start : p.end] for p in speech.paragraphs] == ["今天我们召开会议。"]


def test_salutation_with_content_is_a_paragraph() -> None:
    speech = speech_of("关于工会工作的讲话", "同志们，今天我们召开会议", "工作要抓实。")
    assert [speech.text[p.start : p.end] for p in speech.paragraphs] == ["同志们，今天我们召开会议", "工作要抓实。"]


def test_subtitle_on_the_title_line_is_split_off() -> None:
    speech = speech_of("关于工会工作的讲话——在全市工会工作会议上", "同志们：", "今天我们召开会议。")
    assert (speech.title, speech.subtitle) == ("关于工会工作的讲话", "——在全市工会工作会议上")
    assert speech.rules_fired["glued_subtitle"] == 1


@pytest.mark.parametrize(
    "title", ["关于工会工作的讲话材料", "工会工作讲话提纲", "在组建工作会上的动员讲话", "在全市工会会议上的讲话"]
)
def test_glued_title_with_other_endings_is_found(title: str) -> None:
    speech = speech_of(f"{title}同志们，今天召开会议，主要是部署组建工作。", "工作要抓实。")
    assert speech.title == title
    assert speech.text.splitlines()[1] == "同志们，今天召开会议，主要是部署组建工作。"
    assert speech.paragraphs[0].number == 1 and speech.rules_fired["glued_title"] == 1
