"""Foundation: the shipped speeches become clean, correctly segmented, exactly cited passages."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import docx
import pytest

from embeddings.errors import CorpusError, UnreadableSpeech
from embeddings.ingest.clean import collapse_stray_spaces, drop_boilerplate, ends_sentence, rejoin_page_markers
from embeddings.ingest.corpus import load_corpus
from embeddings.ingest.load import RawDocument, RawLine, read_document
from embeddings.ingest.segment import segment_speech, sentence_spans
from embeddings.ingest.structure import build_speech
from embeddings.passage import FRONT_MATTER, Speech
from embeddings.settings import SegmentSettings
from tests.conftest import DEV_QUESTIONS, LEAD_GOOSE, SPEECHES, UNION

SETTINGS = SegmentSettings()
BOILERPLATE = "本文系作者原创投稿，仅供学习参考，请勿照搬照抄！"


@pytest.fixture(scope="module")
def shipped():
    return load_corpus(SPEECHES, SETTINGS)


def speech_of(corpus, source):
    return next(s for s in corpus.speeches if s.source == source)


def normalised(text: str) -> str:
    import unicodedata

    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def test_titles_and_subtitle(shipped):
    lead = speech_of(shipped, LEAD_GOOSE)
    union = speech_of(shipped, UNION)
    assert lead.title == "当头雁 争一流 全力打造优秀工会组织"
    assert lead.subtitle == "——在各县（市）区总工会年度工作交流会上的讲话"
    # The title arrives glued to the first sentence: "…讲话稿范文同志们,今天…".
    assert union.title == "某市全市工会组建百日攻坚行动比学赶超活动讲话稿范文"
    assert union.text.splitlines()[1].startswith("同志们,今天的会议")


def test_no_page_marker_or_boilerplate_in_any_passage(shipped):
    for passage in shipped.passages:
        assert BOILERPLATE not in passage.text
        assert "本文系作者原创投稿" not in passage.text
    union_text = speech_of(shipped, UNION).text
    for line in union_text.splitlines():
        assert not re.match(r"^\d{1,2}、(?!做事情|占先机|不放弃|抓到底|干成事|形成|互比|行动)", line), line
    # The markers cut sentences; rejoined they read whole again.
    assert "服务有温度,就是无论业务培训还是其他各项工作,都动之以情" in union_text
    assert "道是无情却有情" in union_text


def test_real_enumerations_stay(shipped):
    union_text = speech_of(shipped, UNION).text
    for item in ("1、做事情的干劲。", "2、占先机的冲劲。", "5、干成事的巧劲。", "3、行动实干至上。"):
        assert item in union_text


def test_stray_spaces_removed_but_punctuation_kept(shipped):
    union_text = speech_of(shipped, UNION).text
    assert "4月3日" in union_text and "4月 3 日" not in union_text
    assert "854家" in union_text and "854 家" not in union_text
    assert "5.87万" in union_text
    lead_text = speech_of(shipped, LEAD_GOOSE).text
    assert "，" in lead_text and "　" not in lead_text  # full-width comma kept, full-width indentation gone


def test_every_passage_is_its_slice_of_the_cleaned_text(shipped):
    for passage in shipped.passages:
        speech = next(s for s in shipped.speeches if s.speech_id == passage.speech_id)
        assert speech.text[passage.start : passage.end] == passage.text
        assert passage.text.strip() == passage.text and passage.text


def test_no_passage_starts_or_ends_inside_a_sentence(shipped):
    """Paragraph ends are held to it too: a page marker that cut a sentence would end a paragraph mid-sentence."""
    cut_off = speech_of(shipped, UNION)  # the source itself stops mid-sentence, in its last paragraph
    for passage in shipped.passages:
        speech = next(s for s in shipped.speeches if s.speech_id == passage.speech_id)
        if passage.paragraph_no == FRONT_MATTER:  # cut at line ends instead: a subtitle has no full stop
            front = speech.front_matter
            assert front is not None and passage.text in speech.text[front.start : front.end].split("\n")
            continue
        paragraph = speech.paragraphs[passage.paragraph_no - 1]
        body = speech.text[paragraph.start : paragraph.end]
        long_sentences = [(start, end) for start, end in sentence_spans(body) if end - start > SETTINGS.max_chars]
        inside_long = any(
            start <= passage.start - paragraph.start < end or start < passage.end - paragraph.start <= end
            for start, end in long_sentences
        )
        starts_clean = passage.start == paragraph.start or ends_sentence(speech.text[paragraph.start : passage.start])
        ends_clean = ends_sentence(passage.text) or (speech is cut_off and paragraph == speech.paragraphs[-1])
        assert (starts_clean and ends_clean) or inside_long, passage.passage_id


def test_passages_respect_the_bound(shipped):
    assert max(len(p.text) for p in shipped.passages) <= SETTINGS.max_chars


def test_every_gold_span_is_whole_inside_a_passage(shipped):
    texts = [normalised(p.text) for p in shipped.passages]
    for line in DEV_QUESTIONS.read_text("utf-8").splitlines():
        question = json.loads(line)
        for gold in question["gold"]:
            assert any(normalised(gold) in text for text in texts), (question["id"], gold)


def test_sections_and_citations(shipped):
    lead = speech_of(shipped, LEAD_GOOSE)
    assert lead.sections[:2] == ("一、充分肯定，高度评价", "（一）地位不一样")
    passage = next(p for p in shipped.passages if "一吹就是20年" in p.text)
    assert passage.section_path == ("二、明确要求，寄予厚望", "（三）创品牌")
    assert passage.citation == f"《{lead.title}》 › 二、明确要求，寄予厚望 › （三）创品牌 · 第{passage.paragraph_no}段"
    lead_in = next(p for p in shipped.passages if p.text.startswith("一要融大局"))
    assert lead_in.section_path[-1] == "一要融大局"
    union = speech_of(shipped, UNION)
    assert "一、“工匠日”的设立及启示" in union.sections  # a heading glued to the next sentence
    assert "二、用工匠精神抓好工会组建工作" in union.sections


def test_indentation_of_any_width_is_removed_before_structure_is_read():
    """Web copies indent with `&emsp;` (U+2003) and tabs, which the stray-space rule does not touch."""
    lines = (
        "\u2003\u2003工会工作会议讲话",
        "\u2003\u2003一、总体要求",
        "\t同志们，今天我们召开会议。\u2003",
        "\u2002\u2002工作要抓实。",
    )
    speech = build_speech(RawDocument(Path("x.txt"), tuple(RawLine(line) for line in lines), "utf-8"), "x", "x.txt")
    assert speech.title == "工会工作会议讲话"
    assert speech.sections == ("一、总体要求",)
    assert [speech.text[p.start : p.end] for p in speech.paragraphs] == ["同志们，今天我们召开会议。", "工作要抓实。"]
    assert speech.rules_fired["indentation"] == 4


def test_long_paragraph_is_split_with_sentence_overlap(shipped):
    parts = [p for p in shipped.passages if p.speech_id == "lead-goose-annual-review-speech" and p.paragraph_no == 24]
    assert len(parts) > 1
    for first, second in itertools.pairwise(parts):
        last_sentence = first.text[sentence_spans(first.text)[-1][0] :]
        assert second.text.startswith(last_sentence)


def test_regression_overlap_never_makes_a_passage_of_nothing_new():
    """segment.py: with sentences of 49, 241 and 271 characters and a bound of 300, the second passage was the
    241-character overlap sentence alone, wholly inside the first passage."""
    sentences = ["甲" * 48 + "。", "乙" * 240 + "。", "丙" * 270 + "。"]
    speech = build_speech(
        RawDocument(Path("x.txt"), (RawLine("标题"), RawLine("".join(sentences))), "utf-8"), "x", "x.txt"
    )
    passages = segment_speech(speech, SegmentSettings(max_chars=300, overlap_sentences=1))
    assert [p.text for p in passages] == [sentences[0] + sentences[1], sentences[2]]


def test_overlong_sentence_is_cut_at_clauses():
    text = "，".join(["这是一个没有句号的很长的分句"] * 40) + "。"
    speech = build_speech(RawDocument(Path("x.txt"), (RawLine("标题"), RawLine(text)), "utf-8"), "x", "x.txt")
    passages = segment_speech(speech, SegmentSettings(max_chars=100, overlap_sentences=1))
    assert len(passages) > 1
    assert all(len(p.text) <= 100 for p in passages)
    assert "".join(p.text for p in passages) == text  # no overlap across pieces of one sentence


def test_page_marker_rule_keeps_short_enumerations():
    fired: Counter[str] = Counter()
    lines = [RawLine("1、张三"), RawLine("2、李四"), RawLine("3、王五")]
    assert rejoin_page_markers(lines, fired) == lines
    assert not fired


def test_boilerplate_and_space_rules_report_what_they_did():
    fired: Counter[str] = Counter()
    kept = drop_boilerplate([RawLine(BOILERPLATE), RawLine("正文。")], fired)
    assert [line.text for line in kept] == ["正文。"] and fired["boilerplate"] == 1
    assert collapse_stray_spaces("4月 3 日, 人民日报 Python 3", fired) == "4月3日,人民日报Python 3"


def _write_variants(folder: Path, source: Path) -> None:
    text = source.read_text("utf-8")
    (folder / "copy-gbk.txt").write_bytes(text.encode("gb18030"))
    (folder / "copy-utf16.txt").write_bytes(text.encode("utf-16"))


def _word_copy(speech: Speech, path: Path) -> None:
    """The speech as its author would format it in Word: Title and Subtitle styles, Heading 1/2 for 一、/（一）."""
    document = docx.Document()
    starts = {paragraph.start for paragraph in speech.paragraphs}
    offset = 0
    in_front = True
    for line in speech.text.split("\n"):
        in_front = in_front and offset not in starts and line not in speech.sections
        if in_front:
            document.add_paragraph(line, style="Subtitle" if line == speech.subtitle else "Title")
        elif offset not in starts and line in speech.sections:
            document.add_heading(line, level=2 if line.startswith("（") else 1)
        else:
            document.add_paragraph(line)
        offset += len(line) + 1
    document.save(str(path))


@pytest.mark.parametrize("name", [UNION, LEAD_GOOSE])
def test_other_encodings_ingest_to_the_same_passages(tmp_path: Path, name: str):
    original = build_speech(read_document(SPEECHES / name), "s", name)
    _write_variants(tmp_path, SPEECHES / name)
    for variant in ("copy-gbk.txt", "copy-utf16.txt"):
        speech = build_speech(read_document(tmp_path / variant), "s", name)
        assert segment_speech(speech, SETTINGS) == segment_speech(original, SETTINGS), variant
        assert speech.title == original.title


@pytest.mark.parametrize("name", [UNION, LEAD_GOOSE])
def test_word_copy_with_heading_styles_ingests_to_the_same_structure(tmp_path: Path, name: str):
    original = build_speech(read_document(SPEECHES / name), "s", name)
    _word_copy(original, tmp_path / "copy.docx")
    document = read_document(tmp_path / "copy.docx")
    assert sum(1 for line in document.lines if line.heading_level is not None) >= 2  # real Word headings
    assert sum(1 for line in document.lines if line.is_title) >= 1
    speech = build_speech(document, "s", name)
    assert (speech.title, speech.subtitle, speech.sections) == (original.title, original.subtitle, original.sections)

    def cited(passages):
        return [(p.section_path, p.paragraph_no, p.text) for p in passages]

    assert cited(segment_speech(speech, SETTINGS)) == cited(segment_speech(original, SETTINGS))


def test_word_heading_styles_become_sections(tmp_path: Path):
    document = docx.Document()
    document.add_heading("工会工作会议讲话", level=0)
    document.add_heading("总体要求", level=1)
    document.add_paragraph("同志们，今天我们召开会议。工作要抓实。")
    document.save(str(tmp_path / "speech.docx"))
    speech = build_speech(read_document(tmp_path / "speech.docx"), "s", "speech.docx")
    assert speech.title == "工会工作会议讲话"
    assert speech.paragraphs[0].section_path == ("总体要求",)


def test_bad_files_are_reported_and_do_not_stop_the_rest(tmp_path: Path):
    shutil.copy(SPEECHES / LEAD_GOOSE, tmp_path / LEAD_GOOSE)
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\u3000\n\t\n", "utf-8")
    (tmp_path / "broken.docx").write_bytes(b"PK not really a zip")
    corpus = load_corpus(tmp_path, SETTINGS)
    assert [s.source for s in corpus.speeches] == [LEAD_GOOSE]
    reasons = {p.path: p.reason for p in corpus.problems}
    assert set(reasons) == {"binary.txt", "empty.txt", "blank.md", "broken.docx"}
    assert "binary" in reasons["binary.txt"]
    assert "empty" in reasons["empty.txt"] and "empty" in reasons["blank.md"]
    assert "docx" in reasons["broken.docx"]
    assert all("\n" not in reason for reason in reasons.values())


def test_mojibake_is_refused_not_guessed(tmp_path: Path):
    path = tmp_path / "big5.txt"
    path.write_bytes("總工會召開會議，討論工匠精神與勞模精神的傳承。".encode("big5") * 20)
    with pytest.raises(UnreadableSpeech) as refused:
        read_document(path)
    assert str(refused.value).startswith(f"{path}: ")  # names the file
    assert "GB18030" in str(refused.value) and "unlikely characters" in str(refused.value)  # says why
    assert "save it as UTF-8" in str(refused.value)  # and what to do
    with pytest.raises(CorpusError, match="no readable speech"):
        load_corpus(tmp_path, SETTINGS)
    shutil.copy(SPEECHES / LEAD_GOOSE, tmp_path / LEAD_GOOSE)
    corpus = load_corpus(tmp_path, SETTINGS)
    assert [(p.path, p.reason) for p in corpus.problems] == [("big5.txt", str(refused.value).removeprefix(f"{path}: "))]


def test_missing_corpus_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope", SETTINGS)
