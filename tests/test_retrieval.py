"""Retrieval: tokenisation and normalisation, BM25 quality on the dev set, abstention, fusion, reranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.errors import BadQuestion
from embeddings.models.rerank import rerank_order
from embeddings.retrieval.evaluate import evaluate, load_questions
from embeddings.retrieval.fusion import choose_dense_weight, fuse
from embeddings.text.textnorm import has_searchable_text, matching_form
from embeddings.text.tokenize import BIGRAM_PREFIX, passage_tokenizer
from tests.conftest import DEV_QUESTIONS, REPO


@pytest.fixture(scope="module")
def tokenizer():
    return passage_tokenizer(REPO / "data/jieba/userdict.txt", REPO / "data/jieba/stopwords.txt", True)


@pytest.mark.parametrize("term", ["工匠日", "百日攻坚", "比学赶超", "劳模工匠", "工青妇", "群团组织"])
def test_domain_terms_stay_whole(tokenizer, term):
    words = [t for t in tokenizer(f"关于{term}的讲话") if not t.startswith(BIGRAM_PREFIX)]
    assert term in words


def test_tokens_are_words_then_bigrams_without_stop_words(tokenizer):
    tokens = tokenizer("工匠日是怎么设立的？")
    assert "工匠日" in tokens and "设立" in tokens
    assert "怎么" not in tokens and "的" not in tokens
    assert f"{BIGRAM_PREFIX}匠日" in tokens


def test_matching_form_folds_width_script_case_and_spaces():
    assert matching_form("西湖區總工會") == "西湖区总工会"
    assert matching_form("ＡＢＣ１２３，") == "abc123,"
    assert matching_form("4月 3 日") == "4月3日"
    assert matching_form("a\x00b\u200bc") == "a b c"


def test_traditional_question_finds_simplified_passage(shipped_retriever):
    result = shipped_retriever.search("西湖區總工會在建會工作中有哪些特點？")
    assert "认识有高度" in result.hits[0].passage.text


def test_full_width_and_spaced_question_matches(shipped_retriever):
    result = shipped_retriever.search("截至３月底 全市新建了 多少家 基层工会")
    assert "854家" in result.hits[0].passage.text


def test_dev_set_lexical_quality_and_abstention(shipped_retriever):
    report = evaluate(shipped_retriever, load_questions(DEV_QUESTIONS)).quality
    assert report.hit_at_1 >= 0.94
    assert report.hit_at_5 == 1.0
    assert report.declined_unanswerable == report.unanswerable == 2
    assert report.wrongly_declined_answerable == 0


@pytest.mark.parametrize("question", ["杭州的GDP是多少？", "怎么用Python写一个网络爬虫？", "明天会下雨吗？"])
def test_unrelated_questions_are_declined(shipped_retriever, question):
    assert not shipped_retriever.search(question).answerable


@pytest.mark.parametrize("question", ["", "   ", "？？！！", "😀👍", "x" * 2001])
def test_questions_with_nothing_to_search_are_refused(shipped_retriever, question):
    with pytest.raises(BadQuestion):
        shipped_retriever.search(question)


def test_searchable_text_detection():
    assert has_searchable_text("工会")
    assert has_searchable_text("GDP")
    assert not has_searchable_text("？！…… 😀")


def test_one_hit_per_paragraph(shipped_retriever):
    hits = shipped_retriever.search("工匠日", top_k=10).hits
    keys = [(h.passage.speech_id, h.passage.paragraph_no) for h in hits]
    assert len(keys) == len(set(keys))
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_fuse_is_convex_and_weight_zero_is_lexical_order():
    lexical = np.array([3.0, 2.0, 1.0])
    dense = np.array([0.1, 0.9, 0.5])
    assert np.argsort(-fuse(lexical, dense, 0.0)).tolist() == [0, 1, 2]
    assert np.argsort(-fuse(lexical, dense, 1.0)).tolist() == [1, 2, 0]
    assert fuse(lexical, dense, 0.5).max() <= 1.0


def test_calibration_gives_a_useless_dense_side_no_weight():
    rng = np.random.default_rng(0)
    queries = [(f"q{i}", i) for i in range(20)]

    def lexical(text: str) -> np.ndarray:
        scores = np.zeros(20)
        scores[int(text[1:])] = 5.0
        return scores

    def noise(text: str) -> np.ndarray:
        return rng.random(20)

    assert choose_dense_weight(queries, lexical, noise, candidates=10) == 0.0


def test_calibration_rewards_a_dense_side_that_finds_what_lexical_misses():
    queries = [(f"q{i}", i) for i in range(20)]

    def lexical(text: str) -> np.ndarray:
        return np.linspace(1.0, 0.5, 20)  # the same order for every question: right only for q0

    def oracle(text: str) -> np.ndarray:
        scores = np.zeros(20)
        scores[int(text[1:])] = 1.0
        return scores

    assert choose_dense_weight(queries, lexical, oracle, candidates=20) > 0.0


def test_rerank_reorders_the_head_only():
    assert rerank_order([7, 8, 9], np.array([0.1, 0.9, 0.5])) == [8, 9, 7]
    assert rerank_order([7, 8], np.array([0.5, 0.5])) == [7, 8]


class _ReverseReranker:
    name = "reverse"

    def score(self, question: str, texts: list[str]) -> np.ndarray:
        return np.arange(len(texts), dtype=np.float32)  # prefers the last candidate


def test_reranker_seam_changes_the_order(config_factory):
    from embeddings.engine import open_retriever
    from embeddings.retrieval.retrieve import Retriever

    config = config_factory()
    plain, _ = open_retriever(Path(config.corpus.path), Path(config.corpus.index_dir), config.engine)
    reranked = Retriever(plain.stored, config.engine, reranker=_ReverseReranker())
    # Words every passage has: the reversed order still counts as an answer, so no hit is filtered out.
    question = "全市工会的工作"
    before = [h.passage.passage_id for h in plain.search(question, top_k=20).hits]
    after = [h.passage.passage_id for h in reranked.search(question, top_k=20).hits]
    assert sorted(before) == sorted(after) and before != after
    assert after[0] == before[-1]


def test_an_index_of_bare_passages_opens_and_searches(tmp_path: Path):
    """As the benchmark builds CMRC: passages with no speech records behind them."""
    from embeddings.index.build import build_index
    from embeddings.index.store import open_stored
    from embeddings.ingest.corpus import Corpus
    from embeddings.passage import Passage
    from embeddings.retrieval.retrieve import Retriever
    from embeddings.settings import EngineSettings, LexicalSettings

    texts = ["西湖区总工会组建工作有高度。", "春风行动一吹就是20年。"]
    passages = tuple(
        Passage(f"p{i}", f"p{i}", f"标题{i}", (), 1, 1, 0, len(text), text) for i, text in enumerate(texts)
    )
    settings = EngineSettings(
        lexical=LexicalSettings(
            user_dict=str(REPO / "data/jieba/userdict.txt"),
            stopwords=str(REPO / "data/jieba/stopwords.txt"),
            question_frames=str(REPO / "data/jieba/question_frames.txt"),
        )
    )
    build_index(Corpus(tmp_path, (), passages, ()), settings, tmp_path / "index", embedder=None)
    retriever = Retriever(open_stored(tmp_path / "index"), settings)
    assert retriever.search("春风行动坚持了多少年？").hits[0].passage.passage_id == "p1"


def test_top_rows_is_a_stable_argsort_cut_short():
    from embeddings.retrieval.fusion import top_rows

    rng = np.random.default_rng(7)
    for size in (3, 50, 51, 400):
        for _ in range(50):
            scores = rng.integers(0, 5, size).astype(np.float32)  # many ties, also at the cut
            for count in (1, 10, 50):
                assert top_rows(scores, count).tolist() == np.argsort(-scores, kind="stable")[:count].tolist()


def test_matching_forms_are_kept_within_bounds(monkeypatch):
    from embeddings.retrieval import coverage

    monkeypatch.setattr(coverage, "FORM_CACHE", 3)
    asked: list[int] = []

    def text_of(key: int) -> str:
        asked.append(key)
        return f"Ｔｅｘｔ {key}"

    forms = coverage.FormCache(text_of)
    assert [forms[k] for k in (1, 1, 2)] == ["text 1", "text 1", "text 2"] and asked == [1, 2]
    for key in range(10):
        forms[key]
    assert len(forms._forms) <= 3  # a bot that stays up asks about ever new passages
