"""The embedding model behind an index: replaced in place, incremental builds with it, how it loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embeddings import engine
from embeddings.engine import IndexState, index_status, open_retriever, rebuild
from embeddings.errors import IndexError_, ModelUnavailable
from embeddings.index import densebuild
from embeddings.index.store import open_stored
from embeddings.index.vectors import EmbeddingCache
from embeddings.models.dense import load_embedder, model_fingerprint, supply_hint
from embeddings.retrieval.meaning import SentenceVectors
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import DenseSettings, FusionSettings
from tests.conftest import LEAD_GOOSE, SPEECHES, UNION
from tests.fakes import build_tiny_sentence_transformer

QUESTION = "“春风行动”坚持了多少年？"


def _hybrid_config(config_factory, model: Path):
    dense = DenseSettings(mode="required", model=str(model), query_instruction="")
    return config_factory(dense=dense, fusion=FusionSettings(dense_weight=0.5))


def _load(model: Path):
    return load_embedder(str(model), "", 16, "cpu", allow_network=False)


def test_a_model_copied_over_the_same_folder_is_detected_and_the_index_rebuilt(
    config_factory, tiny_model, wide_tiny_model, tmp_path
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    config = _hybrid_config(config_factory, folder)
    corpus, index = config.corpus_path, config.index_path
    first, _ = open_retriever(corpus, index, config.engine)
    assert _width(first) == 32

    shutil.copytree(wide_tiny_model, folder, dirs_exist_ok=True)  # `cp -r` of a wider model over the folder
    status = index_status(corpus, index, config.engine, str(folder))
    assert status.state is IndexState.STALE and "model changed" in status.reason

    reasons: list[str] = []
    retriever, report = open_retriever(corpus, index, config.engine, on_rebuild=reasons.append)
    assert reasons and "model changed" in reasons[0]
    # Nothing comes from the 32-dimension cache: it belongs to the model's old files.
    assert report is not None and report.embedded > 0 and report.reused == 0
    assert _width(retriever) == 48 and retriever.stored.manifest["dense"]["dimension"] == 48
    assert retriever.stored.manifest["dense"]["fingerprint"] == model_fingerprint(str(folder))
    assert any(hit.dense_score is not None for hit in retriever.search(QUESTION).hits)

    _, forced = open_retriever(corpus, index, config.engine, force=True)  # `speechqa index --force`
    assert forced is not None and forced.reused == forced.units
    assert len(list((index / "cache").iterdir())) == 1  # the old model version's vectors are gone


def test_other_weights_of_the_same_width_reuse_no_cached_vectors(config_factory, tiny_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    config = _hybrid_config(config_factory, folder)
    corpus, index = config.corpus_path, config.index_path
    open_retriever(corpus, index, config.engine)
    text = (SPEECHES / UNION).read_text("utf-8")[:3000] + "问答工会是什么为何"
    other = build_tiny_sentence_transformer(tmp_path / "other", text)  # 32 wide too, another vocabulary
    shutil.copytree(other, folder, dirs_exist_ok=True)

    retriever, report = open_retriever(corpus, index, config.engine)
    assert report is not None and report.reused == 0 and _width(retriever) == 32
    embedder = _load(folder)
    fresh = embedder.embed_passages([_unit_text(retriever, 0)])[0]
    assert np.allclose(_vectors(retriever).vector(0), fresh, atol=1e-5)


def test_a_wider_model_the_fingerprint_misses_is_never_searched(
    config_factory, tiny_model, wide_tiny_model, tmp_path, monkeypatch
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    config = _hybrid_config(config_factory, folder)
    corpus, index = config.corpus_path, config.index_path
    for module in (densebuild, engine):  # a model whose files look the same to the fingerprint
        monkeypatch.setattr(module, "model_fingerprint", lambda model: "unchanged")
    open_retriever(corpus, index, config.engine)
    shutil.rmtree(folder)
    shutil.copytree(wide_tiny_model, folder)
    old = open_stored(index)

    with pytest.raises(IndexError_) as raised:
        Retriever(old, config.engine, _load(folder))
    assert "dimensions [32, 48]" in str(raised.value) and "speechqa index" in raised.value.hint

    reasons: list[str] = []
    retriever, report = open_retriever(corpus, index, config.engine, on_rebuild=reasons.append)
    assert reasons == [
        f"the embedding model changed: {folder} now gives 48-dimension vectors, the index holds 32-dimension ones"
    ]
    assert report is not None and _width(retriever) == 48
    assert any(hit.dense_score is not None for hit in retriever.search(QUESTION).hits)


def test_the_embedding_cache_drops_vectors_of_another_width(tmp_path):
    cache = EmbeddingCache(tmp_path, 32)
    cache.put("a", np.ones(32, dtype=np.float32))
    cache.save({"a"})
    assert len(EmbeddingCache(tmp_path, 32)) == 1
    assert len(EmbeddingCache(tmp_path, 48)) == 0


def test_fingerprint_of_a_folder_follows_its_files_cheaply(tiny_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    before = model_fingerprint(str(folder))
    assert before == model_fingerprint(str(folder)) and before.startswith("files ")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "download.lock").write_text("x", "utf-8")
    assert model_fingerprint(str(folder)) == before  # tool bookkeeping is not the model
    config = folder / "config.json"
    config.write_text(config.read_text("utf-8").replace("32", "33"), "utf-8")
    assert model_fingerprint(str(folder)) != before
    assert model_fingerprint(str(tmp_path / "absent")) == ""


def test_hub_fingerprint_is_the_cached_revision_main_points_at(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repository = tmp_path / "models--org--model"
    for revision in ("aaa111", "bbb222"):
        (repository / "snapshots" / revision).mkdir(parents=True)
        (repository / "snapshots" / revision / "config.json").write_text("{}", "utf-8")
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text("bbb222", "utf-8")
    assert model_fingerprint("org/model") == "revision bbb222"
    assert model_fingerprint("org/other") == ""


def test_incremental_add_and_remove_with_the_tiny_real_model(config_factory, tiny_model):
    config = _hybrid_config(config_factory, tiny_model)
    corpus, index = config.corpus_path, config.index_path
    embedder = _load(tiny_model)
    (corpus / LEAD_GOOSE).rename(corpus.parent / "held-back.txt")
    first = rebuild(corpus, index, config.engine, embedder=embedder, note="", progress=False)
    assert first.embedded > 0 and first.embedded + first.reused == first.units

    (corpus.parent / "held-back.txt").rename(corpus / LEAD_GOOSE)  # add a speech: only its passages embedded
    second = rebuild(corpus, index, config.engine, embedder=embedder, note="", progress=False)
    assert second.reused >= first.units and second.embedded > 0

    (corpus / UNION).unlink()  # remove one: nothing embedded
    third = rebuild(corpus, index, config.engine, embedder=embedder, note="", progress=False)
    assert third.embedded == 0 and third.reused == third.units == second.units - first.units

    retriever = Retriever(open_stored(index), config.engine, embedder)
    assert retriever.mode == "hybrid" and _vectors(retriever).count == third.units
    # Vectors taken from the cache sit at their sentences' rows.
    for unit in (0, third.units - 1):
        fresh = embedder.embed_passages([_unit_text(retriever, unit)])[0]
        assert np.allclose(_vectors(retriever).vector(unit), fresh, atol=1e-5)
    assert {h.passage.speech_id for h in retriever.search("头雁").hits} == {"lead-goose-annual-review-speech"}


def test_a_missing_local_model_folder_is_named_as_such(tmp_path):
    missing = str(tmp_path / "no-model-here")
    with pytest.raises(ModelUnavailable) as raised:
        load_embedder(missing, "", 8, "cpu", allow_network=False)
    assert "huggingface-cli" not in raised.value.hint
    assert f"the folder {missing} is missing or is not a sentence-transformers model" in raised.value.hint
    assert "huggingface-cli download BAAI/bge-small-zh-v1.5" in supply_hint("BAAI/bge-small-zh-v1.5")


def test_loading_a_model_prints_no_progress_bar(tiny_model, capfd):
    from transformers.utils import logging as transformers_logging

    capfd.readouterr()
    embedder = _load(tiny_model)
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # switched back on for whatever loads next
    assert embedder.embed_queries(["工会"]).shape == (1, 32)


def _unit_text(retriever: Retriever, unit: int) -> str:
    return retriever.unit_text(unit).strip()


def _vectors(retriever: Retriever) -> SentenceVectors:
    assert retriever.sentences is not None, "the index was opened words-only"
    return retriever.sentences


def _width(retriever: Retriever) -> int:
    return _vectors(retriever).dimension
