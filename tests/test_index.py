"""The index on disk: manifest, verification, staleness, incremental embedding, the real dense path."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from embeddings.engine import IndexState, index_status, open_retriever, rebuild
from embeddings.errors import IndexError_, ModelUnavailable
from embeddings.index.store import CURRENT, INDEX_FORMAT, open_stored
from embeddings.models.dense import model_fingerprint
from embeddings.settings import DenseSettings, FusionSettings
from tests.conftest import LEAD_GOOSE, SPEECHES, UNION
from tests.fakes import FakeEmbedder


def _paths(config):
    return Path(config.corpus.path), Path(config.corpus.index_dir)


def test_manifest_records_what_shaped_the_index(config_factory):
    config = config_factory()
    corpus, index = _paths(config)
    retriever, report = open_retriever(corpus, index, config.engine)
    manifest = retriever.stored.manifest
    assert report is not None and report.passages == len(retriever.passages)
    assert manifest["counts"]["passages"] == len(retriever.passages) == retriever.lexical.num_docs
    assert manifest["counts"]["speeches"] == 2
    assert manifest["config_hash"] == config.engine.index_hash()
    assert manifest["dense"] is None
    assert manifest["package_version"] and manifest["format"] == INDEX_FORMAT
    assert len(manifest["corpus_hash"]) == 64
    assert {"passages.jsonl", "speeches.jsonl", "query_dict.txt"} <= set(manifest["files"])
    assert not any(p.suffix == ".pkl" for p in retriever.stored.directory.rglob("*"))


def test_second_open_reuses_the_index(config_factory):
    config = config_factory()
    corpus, index = _paths(config)
    open_retriever(corpus, index, config.engine)
    _, report = open_retriever(corpus, index, config.engine)
    assert report is None
    assert index_status(corpus, index, config.engine, None).state is IndexState.FRESH


def test_changed_corpus_config_or_dictionary_is_stale_and_rebuilt(config_factory, tmp_path):
    config = config_factory()
    corpus, index = _paths(config)
    open_retriever(corpus, index, config.engine)
    (corpus / UNION).unlink()
    assert index_status(corpus, index, config.engine, None).state is IndexState.STALE
    retriever, report = open_retriever(corpus, index, config.engine)
    assert report is not None and {p.speech_id for p in retriever.passages} == {"lead-goose-annual-review-speech"}

    smaller = replace(config.engine, segment=replace(config.engine.segment, max_chars=200))
    status = index_status(corpus, index, smaller, None)
    assert status.state is IndexState.STALE and "configuration" in status.reason

    stopwords = tmp_path / "stop.txt"
    stopwords.write_text("的\n", "utf-8")
    other_words = replace(config.engine, lexical=replace(config.engine.lexical, stopwords=str(stopwords)))
    assert index_status(corpus, index, other_words, None).state is IndexState.STALE


def test_touched_but_unchanged_corpus_stays_fresh(config_factory):
    config = config_factory()
    corpus, index = _paths(config)
    open_retriever(corpus, index, config.engine)
    path = corpus / UNION
    path.write_bytes(path.read_bytes())  # new mtime, same content
    assert index_status(corpus, index, config.engine, None).state is IndexState.FRESH


@pytest.mark.parametrize("damage", ["truncate", "delete", "garble-manifest", "bad-pointer"])
def test_damaged_index_is_refused_then_rebuilt(config_factory, damage):
    config = config_factory()
    corpus, index = _paths(config)
    retriever, _ = open_retriever(corpus, index, config.engine)
    directory = retriever.stored.directory
    if damage == "truncate":
        target = directory / "passages.jsonl"
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "delete":
        (directory / "lexical" / "data.csc.index.npy").unlink()
    elif damage == "garble-manifest":
        (directory / "manifest.json").write_text("{", "utf-8")
    else:
        (index / CURRENT).write_text("gen-does-not-exist\n", "utf-8")
    with pytest.raises(IndexError_) as raised:
        open_stored(index)
    assert "speechqa index" in raised.value.hint
    rebuilt, report = open_retriever(corpus, index, config.engine)
    assert report is not None and len(rebuilt.passages) == len(retriever.passages)


def test_incremental_add_and_remove_embed_only_what_changed(config_factory):
    config = config_factory(dense=DenseSettings(mode="auto", model="fake-bigram-embedder"))
    corpus, index = _paths(config)
    (corpus / LEAD_GOOSE).rename(corpus.parent / "held-back.txt")
    embedder = FakeEmbedder()
    first = rebuild(corpus, index, config.engine, embedder=embedder, note="", progress=False)
    assert first.embedded + first.reused == first.units > first.passages and first.embedded > 0

    (corpus.parent / "held-back.txt").rename(corpus / LEAD_GOOSE)  # add a speech
    first_texts = set(embedder.embedded)
    embedder.embedded.clear()
    second = rebuild(corpus, index, config.engine, embedder=embedder, note="", progress=False)
    assert second.reused >= first.units and second.embedded == len(set(embedder.embedded)) > 0
    assert not first_texts & set(embedder.embedded)

    (corpus / UNION).unlink()  # remove one
    embedder.embedded.clear()
    third = rebuild(corpus, index, config.engine, embedder=embedder, note="", progress=False)
    assert third.embedded == 0 and third.passages == second.passages - first.passages
    assert third.units == second.units - first.units
    assert open_stored(index).manifest["counts"]["speeches"] == 1


def test_whole_dense_path_with_a_tiny_real_model(config_factory, tiny_model):
    dense = DenseSettings(mode="required", model=str(tiny_model), query_instruction="")
    config = config_factory(dense=dense, fusion=FusionSettings(dense_weight=0.5))
    corpus, index = _paths(config)
    retriever, report = open_retriever(corpus, index, config.engine)
    assert retriever.mode == "hybrid" and report is not None and report.embedded + report.reused == report.units
    built = retriever.stored.manifest["dense"]
    assert (built["model"], built["dimension"], built["index"]) == (str(tiny_model), 32, "flat")
    assert built["fingerprint"] == model_fingerprint(str(tiny_model)) and 0 <= built["weight"] <= 1
    assert retriever.dense_weight == 0.5  # the configured weight, not the calibrated one in the manifest
    assert retriever.sentences is not None
    assert retriever.sentences.count == len(retriever.units) > len(retriever.passages)
    assert (retriever.stored.directory / "dense.faiss").stat().st_size > 0

    result = retriever.search("“春风行动”坚持了多少年？")
    assert result.mode == "hybrid" and result.hits[0].dense_score is not None
    assert "一吹就是20年" in " ".join(h.passage.text for h in result.hits[:3])

    reopened, again = open_retriever(corpus, index, config.engine)  # load from disk, no rebuild
    assert again is None and reopened.mode == "hybrid"
    assert [h.passage.passage_id for h in reopened.search("春风行动").hits] == [
        h.passage.passage_id for h in retriever.search("春风行动").hits
    ]

    other = replace(config.engine, dense=replace(dense, model=str(tiny_model) + "-missing"))
    assert index_status(corpus, index, other, other.dense.model).state is IndexState.STALE
    with pytest.raises(ModelUnavailable):
        open_retriever(corpus, index, other)


def test_unavailable_model_in_auto_mode_falls_back_to_lexical_with_a_notice(config_factory):
    config = config_factory(dense=DenseSettings(mode="auto", model="BAAI/bge-small-zh-v1.5", fallback="none"))
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    assert retriever.mode == "lexical"
    assert "BAAI/bge-small-zh-v1.5" in retriever.notice and "HF_ENDPOINT" in retriever.notice
    assert "\n" not in retriever.notice


def test_lexical_only_never_imports_torch_nor_pkg_resources(config_factory, tmp_path):
    import subprocess
    import sys

    config = config_factory()
    corpus, index = _paths(config)
    open_retriever(corpus, index, config.engine)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.conftest import make_config\n"
        "from embeddings.engine import open_retriever\n"
        f"config = make_config(Path({str(corpus)!r}), Path({str(index)!r}))\n"
        "r, _ = open_retriever(config.corpus_path, config.index_path, config.engine)\n"
        "r.search('工匠日')\n"
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules, 'faiss' in sys.modules)\n"
        # jieba imports it only to open its own files: ~60 ms of a cold question
        "print('pkg_resources' in sys.modules)\n"
    )
    command = [sys.executable, "-c", script]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=SPEECHES.parents[1])
    assert out.stdout.split() == ["False"] * 4


def test_manifest_is_json_with_digests(config_factory):
    config = config_factory()
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    manifest = json.loads((retriever.stored.directory / "manifest.json").read_text("utf-8"))
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64 and entry["size"] >= 0


def test_a_rebuild_keeps_only_the_live_generation_and_the_one_before(config_factory):
    config = config_factory()
    corpus, index = _paths(config)
    built = [rebuild(corpus, index, config.engine, embedder=None, note="", progress=False) for _ in range(3)]
    assert sorted(index.glob("gen-*")) == sorted(report.directory for report in built[1:])
    assert open_stored(index).directory == built[-1].directory
