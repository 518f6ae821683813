"""The FAISS index actually built: HNSW and IVF on a corpus big enough for them, flat below that."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from embeddings.engine import rebuild
from embeddings.index.store import open_stored
from embeddings.index.vectors import IVF_MIN_VECTORS, search_vectors
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import DenseSettings, FusionSettings
from tests.conftest import make_config
from tests.fakes import FakeEmbedder

PARAGRAPHS = 160
# Common characters; random strings of them make passages that share bigrams but are each unique.
CHARACTERS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"


def _synthetic_corpus(folder: Path) -> Path:
    """One speech of `PARAGRAPHS` one-passage paragraphs of random text."""
    rng = random.Random(7)

    def sentence() -> str:
        return "".join(rng.choice(CHARACTERS) for _ in range(30)) + "。"

    folder.mkdir()
    lines = ["合成的讲话", *(sentence() + sentence() for _ in range(PARAGRAPHS))]
    (folder / "synthetic.txt").write_text("\n".join(lines) + "\n", "utf-8")
    return folder


@pytest.mark.parametrize(("kind", "faiss_type"), [("hnsw", "IndexHNSWFlat"), ("ivf", "IndexIVFFlat")])
def test_approximate_indexes_are_built_and_find_a_known_passage(tmp_path, kind, faiss_type):
    import faiss

    corpus = _synthetic_corpus(tmp_path / "speeches")
    dense = DenseSettings(mode="auto", model=FakeEmbedder().name, index=kind)
    config = make_config(corpus, tmp_path / "index", dense=dense, fusion=FusionSettings(dense_weight=0.5))
    embedder = FakeEmbedder()
    report = rebuild(corpus, config.index_path, config.engine, embedder=embedder, note="", progress=False)
    assert report.passages == PARAGRAPHS >= IVF_MIN_VECTORS

    stored = open_stored(config.index_path)
    assert stored.manifest["dense"]["index"] == kind
    built = faiss.read_index(str(stored.directory / "dense.faiss"))
    retriever = Retriever(stored, config.engine, embedder)
    assert type(built).__name__ == faiss_type and built.ntotal == len(retriever.units) == 2 * PARAGRAPHS
    target = 97
    sentence = int(np.flatnonzero(retriever.units[:, 0] == target)[0])
    _, found = search_vectors(built, embedder.embed_queries([retriever.unit_text(sentence)])[0], 5)
    assert found[0] == sentence
    assert retriever.search(retriever.passages[target].text[:24]).hits[0].passage == retriever.passages[target]


def test_ivf_on_a_small_corpus_falls_back_to_flat_and_the_manifest_says_so(config_factory):
    import faiss

    dense = DenseSettings(mode="auto", model=FakeEmbedder().name, index="ivf")
    config = config_factory(dense=dense, fusion=FusionSettings(dense_weight=0.5))
    corpus, index = config.corpus_path, config.index_path
    for speech in corpus.iterdir():
        speech.unlink()
    (corpus / "short.txt").write_text("一篇短讲话\n同志们，今天开个短会。\n大家辛苦了。请抓好落实。\n", "utf-8")
    report = rebuild(corpus, index, config.engine, embedder=FakeEmbedder(), note="", progress=False)
    assert report.units < IVF_MIN_VECTORS
    stored = open_stored(config.index_path)
    assert stored.manifest["dense"]["index"] == "flat"
    assert type(faiss.read_index(str(stored.directory / "dense.faiss"))).__name__ == "IndexFlatIP"


def test_hnsw_search_ranks_as_the_exact_index_does_without_a_copy_of_the_vectors(tmp_path):
    corpus = _synthetic_corpus(tmp_path / "speeches")
    rng = random.Random(3)
    noise = ["".join(rng.choice(CHARACTERS) for _ in range(12)) for _ in range(5)]
    # The same hits with the same sentence similarities. Fused scores may differ in the last digits:
    # they are z-scores over the candidate pool, and sentences tied at its edge may be taken in another order.
    ranked: dict[str, list[list[tuple[str, float]]]] = {}
    for kind in ("flat", "hnsw"):
        dense = DenseSettings(mode="auto", model=FakeEmbedder().name, index=kind)
        config = make_config(corpus, tmp_path / kind, dense=dense, fusion=FusionSettings(dense_weight=0.5))
        rebuild(corpus, config.index_path, config.engine, embedder=FakeEmbedder(), note="", progress=False)
        retriever = Retriever(open_stored(config.index_path), config.engine, FakeEmbedder())
        assert retriever.sentences is not None and retriever.sentences.kind == kind
        if kind == "hnsw":
            assert retriever.sentences._matrix is None  # scored from the index's own vectors
        questions = [retriever.passages[row].text[5:25] for row in (3, 77, 150)]
        questions += noise
        ranked[kind] = [
            [(hit.passage.passage_id, round(hit.dense_score or 0.0, 5)) for hit in retriever.search(q).hits]
            for q in questions
        ]
    assert ranked["hnsw"] == ranked["flat"] and all(ranked["flat"])
