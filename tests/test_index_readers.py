"""What a reader of the index needs: survives rebuilds, takes the configured weight, leaves no files behind."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import replace

import jieba
import pytest

from bot.session import paragraph_view
from embeddings.engine import IndexState, index_status, open_retriever, rebuild
from embeddings.index.atomic import atomic_write_text
from embeddings.index.store import CURRENT, MANIFEST, open_stored
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import DenseSettings
from embeddings.text import tokenize
from embeddings.text.textnorm import matching_form
from tests.conftest import REPO, SPEECHES, make_config
from tests.fakes import FakeEmbedder

QUESTION = "工匠日是怎么设立的？"


def test_a_running_reader_survives_rebuilds_that_delete_its_generation(config_factory):
    config = config_factory()
    corpus, index = config.corpus_path, config.index_path
    reader, _ = open_retriever(corpus, index, config.engine)
    first = reader.stored.directory
    open_retriever(corpus, index, config.engine, force=True)
    assert first.is_dir()  # the generation just replaced is kept for readers still opening it
    open_retriever(corpus, index, config.engine, force=True)  # e.g. `speechqa index --force` elsewhere
    assert not first.exists()

    passage = reader.search(QUESTION).hits[0].passage
    view = paragraph_view(reader, passage, 1)  # `/open 1` in a running chat or bot
    speech = reader.speeches[passage.speech_id]
    assert passage.text[:20] in view.text and view.text in speech.text


@pytest.fixture(scope="module")
def fake_hybrid(tmp_path_factory: pytest.TempPathFactory):
    """An index built with the fake embedder, shared by the tests that only read it; (config, embedder)."""
    root = tmp_path_factory.mktemp("fake-hybrid")
    shutil.copytree(SPEECHES, root / "speeches")
    config = make_config(root / "speeches", root / "index", dense=DenseSettings(mode="auto", model=FakeEmbedder().name))
    embedder = FakeEmbedder()
    rebuild(config.corpus_path, config.index_path, config.engine, embedder=embedder, note="", progress=False)
    return config, embedder


def _with_weight(config, weight):
    return replace(config.engine, fusion=replace(config.engine.fusion, dense_weight=weight))


@pytest.mark.parametrize("weight", [0.3, 0.6])
def test_a_configured_dense_weight_applies_without_a_rebuild(fake_hybrid, weight):
    config, embedder = fake_hybrid
    settings = _with_weight(config, weight)
    assert index_status(config.corpus_path, config.index_path, settings, embedder.name).state is IndexState.FRESH
    retriever = Retriever(open_stored(config.index_path), settings, embedder)
    assert retriever.dense_weight == weight and retriever.mode == "hybrid"
    embedder.queries.clear()
    assert retriever.search(QUESTION).mode == "hybrid"
    assert embedder.queries == [QUESTION]


def test_auto_takes_the_calibrated_weight_from_the_manifest(fake_hybrid):
    config, embedder = fake_hybrid
    calibrated = open_stored(config.index_path).manifest["dense"]["weight"]
    retriever = Retriever(open_stored(config.index_path), _with_weight(config, "auto"), embedder)
    assert retriever.dense_weight == calibrated
    assert retriever.mode == ("hybrid" if calibrated > 0 else "lexical")


def test_a_configured_weight_of_zero_embeds_no_question(fake_hybrid):
    config, embedder = fake_hybrid
    retriever = Retriever(open_stored(config.index_path), _with_weight(config, 0.0), embedder)
    embedder.queries.clear()
    result = retriever.search(QUESTION)
    assert retriever.mode == result.mode == "lexical" and result.hits
    assert embedder.queries == []


def test_questions_are_cut_without_jieba_temp_cache_exactly_as_jieba_would(config_factory, tmp_path, monkeypatch):
    config = config_factory()
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where jieba puts its marshal caches
    reader = Retriever(open_stored(config.index_path), config.engine)
    assert list(temp.iterdir()) == []

    reference = jieba.Tokenizer(dictionary=str(reader.stored.directory / "query_dict.txt"))
    reference.tmp_dir = str(tmp_path / "reference")
    (tmp_path / "reference").mkdir()
    reference.initialize()
    for question in (QUESTION, "“春风行动”坚持了多少年？", "头雁效应是什么意思", "工会组织如何服务职工群众"):
        assert reader.tokenize.words(question) == reference.lcut(matching_form(question), HMM=False)
        assert reader.tokenize(question) == retriever.tokenize(question)


def test_the_full_dictionary_cache_goes_to_the_user_cache_folder(tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    segmenter = tokenize._full_segmenter.__wrapped__(str(REPO / "data/jieba/userdict.txt"))
    assert segmenter.lcut("工匠日是怎么设立的", HMM=False)[0] == "工匠日"
    assert list(temp.iterdir()) == []
    assert [p.name for p in (tmp_path / "cache" / "speechqa" / "jieba").iterdir()] == ["jieba.cache"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_index_files_respect_the_umask(config_factory, umask, mode):
    config = config_factory()
    previous = os.umask(umask)
    try:
        retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
        atomic_write_text(config.index_path / "probe.txt", "x")
    finally:
        os.umask(previous)
    for path in (config.index_path / CURRENT, retriever.stored.directory / MANIFEST, config.index_path / "probe.txt"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_the_fused_ranking_moves_with_the_configured_weight(fake_hybrid):
    config, embedder = fake_hybrid
    stored = open_stored(config.index_path)
    scores = {
        weight: [h.score for h in Retriever(stored, _with_weight(config, weight), embedder).search(QUESTION).hits]
        for weight in (0.1, 0.9)
    }
    assert scores[0.1] != scores[0.9]
