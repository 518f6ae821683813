"""What a hit shows: its part grown by whole sentences of its paragraph, the following ones first."""

from __future__ import annotations

from embeddings.passage import Paragraph, Passage, Speech
from embeddings.retrieval.paragraphs import widened
from embeddings.retrieval.retrieve import SHOWN_CHARS, Retriever

SENTENCES = ["一是选点好。", "二是交流好。", "三是服务有温度，都动之以情、晓之以理。", "四是典型有亮度。"]
TEXT = "".join(SENTENCES)


def _spans() -> list[tuple[int, int]]:
    spans, start = [], 0
    for sentence in SENTENCES:
        spans.append((start, start + len(sentence)))
        start += len(sentence)
    return spans


def _passage(start: int, end: int, speech_id: str = "s") -> Passage:
    return Passage(f"{speech_id}:1.1", speech_id, "题目", (), 1, 1, start, end, TEXT[start:end])


SPEECH = Speech("s", "s.txt", "题目", "", TEXT, (Paragraph(1, 0, len(TEXT), ()),), ())


def test_the_part_grows_by_the_sentences_that_follow_it_first_then_those_before() -> None:
    spans = _spans()
    second = _passage(*spans[1])
    grown = widened(second, SPEECH, spans, limit=spans[2][1] - spans[1][0])
    assert grown.text == SENTENCES[1] + SENTENCES[2] and grown.passage_id == second.passage_id
    everything = widened(second, SPEECH, spans, limit=len(TEXT))
    assert (everything.start, everything.end, everything.text) == (0, len(TEXT), TEXT)
    assert widened(second, SPEECH, spans, limit=len(SENTENCES[1])) is second  # no whole sentence fits


def test_a_bare_passage_is_shown_as_it_is() -> None:
    spans = _spans()
    bare = _passage(*spans[0], speech_id="cmrc-1")
    assert widened(bare, None, spans, limit=len(TEXT)) is bare


def test_every_hit_shows_its_part_within_its_paragraph_and_the_limit(shipped_retriever: Retriever) -> None:
    grown = 0
    for question in ("西湖区是怎么把大家的思想工作做通的？", "工匠日是怎么设立的？", "工会组建工作怎么做？"):
        for hit in shipped_retriever.search(question, top_k=10).hits:
            stored = shipped_retriever.passage(hit.passage.passage_id)
            assert stored is not None and stored.text in hit.passage.text
            assert len(hit.passage.text) <= max(SHOWN_CHARS, len(stored.text))
            assert hit.paragraph is not None and hit.passage.text in hit.paragraph.text
            assert shipped_retriever.passage(hit.passage.passage_id, shown=True) == hit.passage
            grown += hit.passage.text != stored.text
    assert grown  # the shipped speeches have paragraphs longer than a part
