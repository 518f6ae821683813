"""A corpus folder as users really have one: mixed encodings, Word files, copies, edits, junk and links.

Index builds use a deterministic fake embedder defined here, which counts every passage it embeds,
so "only the edited speech is re-embedded" is measured, not assumed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import docx
import numpy as np
import pytest

from embeddings.engine import IndexState, index_status, rebuild
from embeddings.errors import UnreadableSpeech
from embeddings.index.build import BuildReport
from embeddings.index.store import open_stored
from embeddings.ingest.corpus import Corpus, load_corpus
from embeddings.ingest.load import read_document
from embeddings.retrieval.retrieve import Retriever
from embeddings.settings import EngineSettings, SegmentSettings
from tests.conftest import LEAD_GOOSE, SPEECHES, UNION, make_config

SEGMENT = SegmentSettings()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

UTF16_SPEECH = """在职工技能大赛总结会上的讲话
——市总工会主席
同志们：
今天我们召开职工技能大赛总结会，表彰在大赛中涌现出来的优秀选手。
一、大赛取得了明显成效
本届大赛共设焊工、电工、数控车工等十二个工种，参赛职工达三千余人。
二、下一步工作安排
要把技能大赛办成常态化的练兵平台，让更多一线职工在比赛中成长成才。
"""

DOCX_TITLE = "在工会干部培训班开班仪式上的讲话"
DOCX_BODY = [
    ("heading", "一、提高政治站位", 1),
    ("text", "同志们，工会干部要把学习放在首位。培训班为期五天，课程安排紧凑。", None),
    ("heading", "（一）加强理论学习", 2),
    ("text", "每一位学员都要认真听讲，做好笔记，结合岗位实际思考问题。", None),
    ("heading", "二、改进工作作风", 1),
    ("text", "工会干部要多到基层去，多听职工的呼声，为职工办实事、解难事。", None),
]


class CountingEmbedder:
    """Hashed character bigrams in 64 L2-normalised float32 dimensions; counts the passages it embeds."""

    def __init__(self) -> None:
        self.passage_texts: list[str] = []

    @property
    def name(self) -> str:
        return "counting-bigram-embedder"

    @property
    def dimension(self) -> int:
        return 64

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(64, dtype=np.float32)
        for i in range(max(len(text) - 1, 1)):
            digest = hashlib.blake2b(text[i : i + 2].encode("utf-8", "surrogatepass"), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % 64] += 1.0
        return vector / max(float(np.linalg.norm(vector)), 1e-9)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 64), dtype=np.float32)
        return np.stack([self._vector(text) for text in texts]).astype(np.float32)

    def embed_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        self.passage_texts.extend(texts)
        return self.embed_queries(texts)


def _word_file(path: Path) -> None:
    document = docx.Document()
    document.add_heading(DOCX_TITLE, level=0)
    for kind, text, level in DOCX_BODY:
        if kind == "heading":
            document.add_heading(text, level=level)
        else:
            document.add_paragraph(text)
    document.save(str(path))


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """The messy folder; every test gets its own copy."""
    root = tmp_path / "speeches"
    (root / "2024").mkdir(parents=True)
    (root / "copies").mkdir()
    (root / "junk").mkdir()
    shutil.copy(SPEECHES / UNION, root / "union-utf8.txt")
    lead = (SPEECHES / LEAD_GOOSE).read_text("utf-8")
    (root / "2024" / "lead-goose-gbk.txt").write_bytes(lead.encode("gbk"))
    (root / "copies" / "头雁讲话 副本.txt").write_bytes(lead.encode("utf-8"))  # the same speech under another name
    (root / "2024" / "skills-contest-utf16.txt").write_bytes(UTF16_SPEECH.encode("utf-16"))
    _word_file(root / "training-course.docx")
    (root / "2024" / "loop").symlink_to(root, target_is_directory=True)  # a symlink loop: reported, walked once
    (root / "junk" / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "junk" / "empty.txt").write_bytes(b"")
    (root / "junk" / "whitespace.md").write_text(" \r\n\u3000\u3000\n\t\n\u2003\n", "utf-8")
    (root / "junk" / "moved-away.txt").symlink_to(root / "no-such-file.txt")  # unreadable: dangling link
    (root / "notes.pdf").write_bytes(b"%PDF-1.4 not a speech format")  # unsupported: reported with the way out
    (root / "~$training-course.docx").write_bytes(b"Word's lock file")  # skipped silently, like hidden files
    (root / ".notes.txt").write_text("隐藏文件。", "utf-8")
    return root


def _settings() -> EngineSettings:
    engine = make_config(Path("unused"), Path("unused")).engine
    # A fixed weight: the counting embedder's calibrated weight may be 0, which would skip the dense side.
    return replace(engine, dense=replace(engine.dense, mode="auto"), fusion=replace(engine.fusion, dense_weight=0.5))


def _speech(corpus: Corpus, source: str):
    return next(s for s in corpus.speeches if s.source == source)


EXPECTED_PROBLEMS = {
    "junk/binary.txt",
    "junk/empty.txt",
    "junk/whitespace.md",
    "junk/moved-away.txt",
    "2024/loop",
    "notes.pdf",
}


def test_every_readable_file_loads_whatever_its_encoding(world: Path) -> None:
    corpus = load_corpus(world, SEGMENT)
    encodings = {s.source: s.encoding for s in corpus.speeches}
    assert encodings == {
        "2024/lead-goose-gbk.txt": "gb18030",
        "2024/skills-contest-utf16.txt": "utf-16",
        "training-course.docx": "docx",
        "union-utf8.txt": "utf-8",
    }
    # The GBK copy reads exactly like the shipped UTF-8 file.
    shipped = load_corpus(SPEECHES, SEGMENT)
    lead = _speech(corpus, "2024/lead-goose-gbk.txt")
    assert lead.text == _speech(shipped, LEAD_GOOSE).text
    assert lead.title == "当头雁 争一流 全力打造优秀工会组织"
    contest = _speech(corpus, "2024/skills-contest-utf16.txt")
    assert contest.title == "在职工技能大赛总结会上的讲话"
    assert contest.subtitle == "——市总工会主席"
    assert contest.sections == ("一、大赛取得了明显成效", "二、下一步工作安排")
    for speech in corpus.speeches:
        for passage in (p for p in corpus.passages if p.speech_id == speech.speech_id):
            assert speech.text[passage.start : passage.end] == passage.text
    assert len({p.passage_id for p in corpus.passages}) == len(corpus.passages)


def test_word_heading_styles_give_title_and_sections(world: Path) -> None:
    speech = _speech(load_corpus(world, SEGMENT), "training-course.docx")
    assert speech.title == DOCX_TITLE
    assert speech.sections == ("一、提高政治站位", "（一）加强理论学习", "二、改进工作作风")
    paths = [p.section_path for p in speech.paragraphs]
    assert paths == [("一、提高政治站位",), ("一、提高政治站位", "（一）加强理论学习"), ("二、改进工作作风",)]


def test_duplicate_under_another_name_is_indexed_once_and_cited_under_both(world: Path) -> None:
    corpus = load_corpus(world, SEGMENT)
    lead_like = [s for s in corpus.speeches if s.title == "当头雁 争一流 全力打造优秀工会组织"]
    assert len(lead_like) == 1
    (lead,) = lead_like
    assert lead.source == "2024/lead-goose-gbk.txt"  # first in walk order: 2024/ before copies/
    assert lead.aliases == ("copies/头雁讲话 副本.txt",)
    passages = [p for p in corpus.passages if p.speech_id == lead.speech_id]
    assert passages and all(p.aliases == ("copies/头雁讲话 副本.txt",) for p in passages)
    texts = [p.text for p in corpus.passages]
    assert all(texts.count(p.text) == 1 for p in passages)  # each paragraph of the copy is there once
    assert not any(p.source.startswith("copies/") for p in corpus.passages)


def test_bad_files_each_give_one_clear_problem_and_do_not_stop_the_rest(world: Path) -> None:
    corpus = load_corpus(world, SEGMENT)
    reasons = {problem.path: problem.reason for problem in corpus.problems}
    assert set(reasons) == EXPECTED_PROBLEMS  # no lock or hidden file among them
    assert len(corpus.problems) == len(EXPECTED_PROBLEMS)  # one problem per file, one line for the loop
    assert "binary" in reasons["junk/binary.txt"]
    assert "empty" in reasons["junk/empty.txt"]
    assert "empty" in reasons["junk/whitespace.md"]
    assert "cannot be read" in reasons["junk/moved-away.txt"]
    assert reasons["2024/loop"] == "is a symlink loop back to the corpus folder; its files are read once, from there"
    assert reasons["notes.pdf"].startswith("PDF is not supported; save the speech as .docx")
    for reason in reasons.values():
        assert reason and "\n" not in reason and not reason.startswith(str(world))
    assert len(corpus.speeches) == 4
    assert not any("loop" in s.source for s in corpus.speeches)


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode; the dangling link covers this case")
def test_file_without_read_permission_is_a_problem(world: Path) -> None:
    locked = world / "locked.txt"
    locked.write_text("标题\n正文。", "utf-8")
    locked.chmod(0)
    try:
        corpus = load_corpus(world, SEGMENT)
    finally:
        locked.chmod(0o644)
    reasons = {problem.path: problem.reason for problem in corpus.problems}
    assert "cannot be read" in reasons["locked.txt"]
    assert len(corpus.speeches) == 4


def _stored_sources(index_root: Path) -> set[str]:
    return {p.source for p in open_stored(index_root).read_passages()}


def _build(world: Path, index_root: Path, embedder: CountingEmbedder) -> BuildReport:
    return rebuild(world, index_root, _settings(), embedder=embedder, note="", progress=False)


def test_edit_rebuild_and_remove(world: Path, tmp_path: Path) -> None:
    index_root = tmp_path / "index"
    settings = _settings()
    embedder = CountingEmbedder()

    first = _build(world, index_root, embedder)
    corpus = load_corpus(world, SEGMENT)
    assert first.passages == len(corpus.passages)
    assert first.embedded == len(embedder.passage_texts) > len(corpus.passages)
    assert first.reused == 0
    assert _stored_sources(index_root) == {s.source for s in corpus.speeches}
    status = index_status(world, index_root, settings, embedder.name)
    assert status.state is IndexState.FRESH

    # Nothing changed: nothing is embedded again.
    embedder.passage_texts.clear()
    again = _build(world, index_root, embedder)
    assert (again.embedded, again.reused) == (0, first.units)
    assert embedder.passage_texts == []

    # One paragraph of the UTF-16 speech is edited: only its passages are embedded again.
    path = world / "2024" / "skills-contest-utf16.txt"
    edited = UTF16_SPEECH.replace("参赛职工达三千余人。", "参赛职工达五千余人，创历年新高。")
    path.write_bytes(edited.encode("utf-16"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert index_status(world, index_root, settings, embedder.name).state is IndexState.STALE
    embedder.passage_texts.clear()
    after_edit = _build(world, index_root, embedder)
    assert after_edit.embedded == 1
    assert embedder.passage_texts == ["本届大赛共设焊工、电工、数控车工等十二个工种，参赛职工达五千余人，创历年新高。"]
    assert after_edit.reused == after_edit.units - 1
    stored = open_stored(index_root).read_passages()
    assert any("五千余人" in p.text for p in stored)
    assert not any("三千余人" in p.text for p in stored)

    # A file is removed: its passages leave the index, nothing new is embedded, search no longer finds it.
    (world / "training-course.docx").unlink()
    embedder.passage_texts.clear()
    after_removal = _build(world, index_root, embedder)
    assert after_removal.embedded == 0
    assert after_removal.passages == after_edit.passages - 3
    assert "training-course.docx" not in _stored_sources(index_root)
    retriever = Retriever(open_stored(index_root), settings, embedder)
    assert retriever.mode == "hybrid"
    result = retriever.search("工会干部培训班开班仪式")
    assert all(hit.passage.source != "training-course.docx" for hit in result.hits)
    found = retriever.search("技能大赛参赛职工有多少人")
    assert found.hits and found.hits[0].passage.source == "2024/skills-contest-utf16.txt"
    assert "五千余人" in found.hits[0].passage.text


def test_duplicate_is_cited_under_both_names_after_indexing(world: Path, tmp_path: Path) -> None:
    index_root = tmp_path / "index"
    _build(world, index_root, CountingEmbedder())
    stored = open_stored(index_root).read_passages()
    lead = [p for p in stored if p.source == "2024/lead-goose-gbk.txt"]
    assert lead and all(p.aliases == ("copies/头雁讲话 副本.txt",) for p in lead)
    assert not any(p.source == "copies/头雁讲话 副本.txt" for p in stored)


# --- regressions --------------------------------------------------------------------------------------


def _unblock_readers(fifo: Path, stop: threading.Event) -> None:
    """Give any reader of `fifo` an end of file: open the write end whenever a reader waits, then close it."""
    while not stop.wait(0.05):
        try:
            descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue  # no reader waiting (ENXIO)
        os.close(descriptor)


def test_regression_fifo_named_like_a_speech_is_a_problem_not_a_hang(world: Path) -> None:
    """load.py: a FIFO `x.txt` passed the size check (0 bytes) and `read_bytes` blocked forever."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(world / "pipe.txt")
    stop = threading.Event()
    unblocker = threading.Thread(target=_unblock_readers, args=(world / "pipe.txt", stop), daemon=True)
    unblocker.start()  # so that a loader which does read the FIFO fails this test instead of hanging it
    try:
        with pytest.raises(UnreadableSpeech, match="not a regular file"):
            read_document(world / "pipe.txt")
        corpus = load_corpus(world, SEGMENT)
    finally:
        stop.set()
        unblocker.join()
    assert {p.path: p.reason for p in corpus.problems}["pipe.txt"] == "is not a regular file"
    assert len(corpus.speeches) == 4


def test_regression_over_large_file_is_a_problem_and_the_rest_loads(world: Path, monkeypatch) -> None:
    """load.py: the size limit had no test, and its message said "0 MiB is over the 20 MiB limit" for any
    other limit. The limit is lowered here rather than writing 20 MiB."""
    limit = max(path.stat().st_size for path in world.rglob("*") if path.is_file() and not path.is_symlink())
    monkeypatch.setattr("embeddings.ingest.load.MAX_FILE_BYTES", limit)
    data = ("标题\n" + "正文很长。" * (limit // 15 + 1)).encode("utf-8")
    (world / "huge.txt").write_bytes(data)
    corpus = load_corpus(world, SEGMENT)
    reasons = {problem.path: problem.reason for problem in corpus.problems}
    assert reasons["huge.txt"] == f"{len(data):,} bytes is over the {limit:,} bytes limit for a speech"
    assert len(corpus.speeches) == 4  # the speeches under the limit still load


def test_regression_speech_ids_of_similar_names_do_not_collide(tmp_path: Path) -> None:
    """corpus.py: `讲话 1.txt`, `讲话-1.txt` and `讲话-1.md` all got id `讲话-1`, so passage ids collided
    and retrieval (one hit per speech id and paragraph) hid two of the three speeches."""
    (tmp_path / "讲话 1.txt").write_text("标题甲\n正文甲。", "utf-8")
    (tmp_path / "讲话-1.txt").write_text("标题乙\n正文乙。", "utf-8")
    (tmp_path / "讲话-1.md").write_text("标题丙\n正文丙。", "utf-8")
    corpus = load_corpus(tmp_path, SEGMENT)
    ids = {s.source: s.speech_id for s in corpus.speeches}
    assert ids == {"讲话 1.txt": "讲话-1", "讲话-1.md": "讲话-1-2", "讲话-1.txt": "讲话-1-3"}
    assert len({p.passage_id for p in corpus.passages}) == len(corpus.passages) == 3
