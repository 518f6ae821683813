"""Scale: the streamed BM25 equals bm25s's, an open index reads records on demand, embedding resumes."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import jieba
import numpy as np
import pytest

from embeddings.engine import IndexState, IndexStatus, index_status, open_retriever, pending_notice, rebuild
from embeddings.errors import IndexError_
from embeddings.index import bm25build, densebuild, store, wordsbuild
from embeddings.index.lexical import LexicalIndex
from embeddings.index.store import open_stored
from embeddings.index.units import corpus_units
from embeddings.index.vectors import EmbeddingCache
from embeddings.ingest.corpus import load_corpus
from embeddings.passage import Passage
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import DenseSettings, FusionSettings
from embeddings.text import tokenize
from embeddings.text.textnorm import matching_form
from embeddings.text.tokenize import passage_tokenizer
from tests.conftest import REPO, SHARED, SPEECHES, make_config
from tests.fakes import FakeEmbedder

REPORTS = SHARED / "corpus-reports"


def _bm25s_columns(token_lists: list[list[str]], k1: float, b: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What the index held before it was streamed: bm25s's own arrays, by token."""
    import bm25s

    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index([tokens or [""] for tokens in token_lists], show_progress=False)
    data, indices, indptr = (retriever.scores[k] for k in ("data", "indices", "indptr"))
    return {
        token: (indices[indptr[i] : indptr[i + 1]], data[indptr[i] : indptr[i + 1]])
        for token, i in retriever.vocab_dict.items()
        if token and i < len(indptr) - 1
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_the_streamed_bm25_arrays_equal_bm25s_on_the_shipped_corpus(tmp_path, monkeypatch, workers):
    config = make_config(SPEECHES, tmp_path / "index")
    lexical = config.engine.lexical
    corpus = load_corpus(SPEECHES, config.engine.segment)
    tokenizer = passage_tokenizer(Path(lexical.user_dict), Path(lexical.stopwords), lexical.bigrams)
    expected = _bm25s_columns([tokenizer(p.search_text) for p in corpus.passages], lexical.k1, lexical.b)

    # Chunks of 7 passages, on two workers: boundaries and order across processes are exercised too.
    monkeypatch.setattr(bm25build, "CHUNK_PASSAGES", 7)
    monkeypatch.setattr(wordsbuild, "CHUNK_PASSAGES", 7)
    monkeypatch.setattr(bm25build.os, "cpu_count", lambda: workers)
    report = rebuild(SPEECHES, tmp_path / "index", config.engine, embedder=None, note="", progress=False)
    index = LexicalIndex.load(report.directory / "lexical")
    assert index.num_docs == len(corpus.passages) and len(index.vocab) == len(expected)
    for token, (rows, scores) in expected.items():
        got_rows, got_scores = index.column(index.vocab[token])
        assert np.array_equal(got_rows, rows) and np.array_equal(got_scores, scores), token


def test_an_open_index_reads_passages_and_speeches_only_when_asked(config_factory, monkeypatch):
    config = config_factory()
    corpus = load_corpus(config.corpus_path, config.engine.segment)
    open_retriever(config.corpus_path, config.index_path, config.engine)
    parsed: list[str] = []
    real = Passage.from_dict

    def counted(cls: type[Passage], record: dict[str, Any]) -> Passage:
        parsed.append(record["passage_id"])
        return real(record)

    monkeypatch.setattr(Passage, "from_dict", classmethod(counted))
    retriever, report = open_retriever(config.corpus_path, config.index_path, config.engine)
    assert report is None and len(parsed) <= 2  # the first and last rows, checked on opening

    passages = retriever.passages
    assert len(passages) == len(corpus.passages) and list(passages) == list(corpus.passages)
    assert passages[-1] == corpus.passages[-1] and passages[1:3] == list(corpus.passages[1:3])
    with pytest.raises(IndexError):
        passages[len(passages)]
    speeches = retriever.speeches
    assert len(speeches) == len(corpus.speeches) and list(speeches) == [s.speech_id for s in corpus.speeches]
    assert list(speeches.values()) == list(corpus.speeches)
    assert dict(speeches.items()) == {s.speech_id: s for s in corpus.speeches}
    first = corpus.speeches[0]
    assert speeches[first.speech_id] == first and speeches.get(first.speech_id) == first
    assert first.speech_id in speeches and "no-such-speech" not in speeches and speeches.get("no-such") is None
    assert retriever.search("工匠日是怎么设立的？").hits

    # Counting a speech's passages or finding one by id reads that speech's passages only.
    parsed.clear()
    retriever.passages.row.cache_clear()  # type: ignore[attr-defined]
    last = corpus.passages[-1]
    assert retriever.passage(last.passage_id) == last
    assert set(parsed) <= {p.passage_id for p in corpus.passages if p.speech_id == last.speech_id}
    for speech in corpus.speeches:
        own = [p.passage_id for p in corpus.passages if p.speech_id == speech.speech_id]
        assert [passages[row].passage_id for row in speeches.passage_rows(speech.speech_id)] == own
    for unknown in ("no-such-speech:1.1", f"{first.speech_id}:999.1", "", first.speech_id):
        assert retriever.passage(unknown) is None
    assert speeches.passage_rows("no-such-speech") == range(0)


def test_a_killed_embedding_keeps_what_it_embedded_and_the_next_build_carries_on(config_factory, monkeypatch):
    config = config_factory()
    engine = replace(config.engine, dense=DenseSettings(mode="auto", model=FakeEmbedder().name, shipped_vectors=""))
    engine = replace(engine, fusion=FusionSettings(0.5))
    monkeypatch.setattr(densebuild, "EMBED_CHUNK", 20)

    class Killed(Exception):
        pass

    class DiesOnThirdChunk(FakeEmbedder):
        calls = 0

        def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
            DiesOnThirdChunk.calls += 1
            if DiesOnThirdChunk.calls == 3:
                raise Killed
            return super().embed_passages(texts, show_progress)

    with pytest.raises(Killed):
        rebuild(config.corpus_path, config.index_path, engine, embedder=DiesOnThirdChunk(), note="", progress=False)
    corpus = load_corpus(config.corpus_path, engine.segment)
    _, texts = corpus_units(corpus.passages, corpus.speeches, engine.segment.max_chars)
    caches = list((config.index_path / "cache").iterdir())
    assert len(caches) == 1
    cache = EmbeddingCache(caches[0], FakeEmbedder().dimension)
    assert len(cache) == 40  # two chunks of 20 sentences, saved before the third was attempted

    embedder = FakeEmbedder()
    report = rebuild(config.corpus_path, config.index_path, engine, embedder=embedder, note="", progress=False)
    distinct = len({hashlib.sha256(t.encode()).hexdigest() for t in texts})
    assert report.embedded == distinct - 40 and report.reused == len(texts) - report.embedded
    assert len(embedder.embedded) == distinct - 40


def test_a_passage_record_has_every_field(shipped_retriever):
    passage = shipped_retriever.passages[0]
    record = passage.to_dict()
    assert list(record) == [f.name for f in fields(Passage)] and Passage.from_dict(record) == passage


def test_words_only_answers_while_a_long_embedding_runs_then_the_whole_index(config_factory, monkeypatch):
    config = config_factory()
    engine = replace(config.engine, dense=DenseSettings(mode="auto", model=FakeEmbedder().name, shipped_vectors=""))
    engine = replace(engine, fusion=FusionSettings(0.5))
    monkeypatch.setattr(densebuild, "PROVISIONAL_FROM", 1)
    seen: list[tuple[IndexStatus, Retriever]] = []

    class Peeking(FakeEmbedder):
        def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
            if not seen:  # the build holds the lock and has sealed the words-only index
                status = index_status(config.corpus_path, config.index_path, engine, self.name)
                assert status.stored is not None
                seen.append((status, Retriever(status.stored, engine, None, pending_notice(status.stored))))
            return super().embed_passages(texts, show_progress)

    rebuild(config.corpus_path, config.index_path, engine, embedder=Peeking(), note="", progress=False)
    status, meanwhile = seen[0]
    assert status.state is IndexState.FRESH and status.dense_pending
    assert meanwhile.mode == "lexical" and "still being built" in meanwhile.notice
    assert meanwhile.search("工匠日是怎么设立的？").hits

    after = index_status(config.corpus_path, config.index_path, engine, FakeEmbedder().name)
    assert after.state is IndexState.FRESH and not after.dense_pending
    assert after.stored is not None and after.stored.manifest["dense"]["model"] == FakeEmbedder().name

    # Killed after sealing the words-only index: with no build running, it is stale and rebuilt.
    class Killed(Exception):
        pass

    class Dies(FakeEmbedder):
        def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
            raise Killed

    (config.corpus_path / "extra.txt").write_text("补充讲话\n\n　　工会要服务职工。\n", "utf-8")
    with pytest.raises(Killed):
        rebuild(config.corpus_path, config.index_path, engine, embedder=Dies(), note="", progress=False)
    stale = index_status(config.corpus_path, config.index_path, engine, FakeEmbedder().name)
    assert stale.state is IndexState.STALE and not stale.dense_pending


def test_a_large_index_is_checked_by_size_on_load_and_by_digest_at_build_and_doctor(config_factory, monkeypatch):
    config = config_factory()
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine)
    target = retriever.stored.directory / "passages.jsonl"
    target.write_text(target.read_text("utf-8").replace("工会", "公司", 1), "utf-8")  # same size, other bytes
    with pytest.raises(IndexError_, match="damaged"):
        open_stored(config.index_path)  # small: every digest on every load
    monkeypatch.setattr(store, "DIGEST_ON_LOAD_BYTES", 0)
    open_stored(config.index_path)  # large: sizes only, so a cold start does not hash gigabytes
    with pytest.raises(IndexError_, match="damaged"):
        open_stored(config.index_path, verify=True)  # what `speechqa doctor` runs


def _texts_to_cut() -> list[str]:
    """The shipped speeches, every 20th passage of the official reports when present, and seeded noise
    (rare CJK blocks, Latin, digits, emoji, blanks), each as is and in matching form."""
    config = make_config(SPEECHES, Path("unused"))
    passages = list(load_corpus(SPEECHES, config.engine.segment).passages)
    if REPORTS.is_dir():
        passages += load_corpus(REPORTS, config.engine.segment).passages[::20]
    texts = [p.search_text for p in passages]
    alphabet = sorted(set("".join(texts))) + list("abcXYZ0123456789.+-#&%_ \t\n\r")
    alphabet += ["㐀", "䶵", "鿖", "𠀀", "😀", "\u3000"]
    chooser = random.Random(12)
    texts += ["".join(chooser.choices(alphabet, k=chooser.randint(1, 60))) for _ in range(3000)]
    return texts + [matching_form(text) for text in texts]


def test_jieba_rs_cuts_passages_exactly_as_jieba_does():
    pytest.importorskip("rjieba")
    user_dict = str(REPO / "data/jieba/userdict.txt")
    fast, reference = tokenize._passage_cut(user_dict, True), tokenize._full_segmenter(user_dict)
    assert isinstance(fast, partial) and not isinstance(getattr(fast.func, "__self__", None), jieba.Tokenizer)
    differing = [text for text in _texts_to_cut() if fast(text) != reference.lcut(text, HMM=False)]
    assert differing == []


def test_without_jieba_rs_passages_are_cut_by_jieba_and_questions_never_load_it(monkeypatch):
    user_dict = REPO / "data/jieba/userdict.txt"
    stopwords = REPO / "data/jieba/stopwords.txt"
    with_rs = passage_tokenizer(user_dict, stopwords, True, tokenize.RUST_FROM_PASSAGES)
    monkeypatch.setattr(tokenize, "_rust_jieba", lambda: None)
    monkeypatch.setattr(tokenize, "_passage_cut", tokenize._passage_cut.__wrapped__)
    without = passage_tokenizer(user_dict, stopwords, True, tokenize.RUST_FROM_PASSAGES)
    question = "工匠日是怎么设立的？劳模工匠绿道有多长"
    assert without.tokens_and_words(question) == with_rs.tokens_and_words(question)
    assert without.words(question)[0] == "工匠日"
    # Its import loads a dictionary of its own: a cold question, or a small build, must not pay for it.
    script = (
        "import sys, embeddings.retrieval.retrieve, bot.cli\n"
        "from pathlib import Path\n"
        "from embeddings.text.tokenize import passage_tokenizer\n"
        "passage_tokenizer(Path('data/jieba/userdict.txt'), Path('data/jieba/stopwords.txt'), True, 63)\n"
        "assert 'rjieba' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO)
