"""Files as they arrive: damaged Word files, formats we cannot read, Traditional GBK, and how skips are logged."""

from __future__ import annotations

import io
import logging
import random
import shutil
import zipfile
import zlib
from pathlib import Path

import docx
import opencc
import pytest

from embeddings.errors import UnreadableSpeech
from embeddings.ingest.corpus import load_corpus
from embeddings.ingest.load import read_document
from embeddings.settings import SegmentSettings
from tests.conftest import LEAD_GOOSE, SPEECHES, UNION

SETTINGS = SegmentSettings()
TRADITIONAL = "總工會召開會議，同志們認真討論了工匠精神與勞模精神的傳承，會議取得圓滿成功。"


def _docx_bytes() -> bytes:
    document = docx.Document()
    document.add_heading("在工会工作会议上的讲话", level=0)
    document.add_paragraph("同志们，今天我们召开会议。工作要抓实。")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _with_document_xml(replacement: bytes) -> bytes:
    """A copy of a good .docx whose word/document.xml holds `replacement`."""
    source = zipfile.ZipFile(io.BytesIO(_docx_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = replacement if info.filename == "word/document.xml" else source.read(info)
            target.writestr(info.filename, data)
    return buffer.getvalue()


def _with_corrupt_deflate() -> bytes:
    """A good .docx whose compressed word/document.xml bytes are overwritten: zlib cannot inflate them."""
    good = _docx_bytes()
    xml = zipfile.ZipFile(io.BytesIO(good)).read("word/document.xml")
    archive = _with_document_xml(xml)  # deflated the way zipfile does it, so the stream can be found
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    stream = compressor.compress(xml) + compressor.flush()
    assert archive.count(stream) == 1
    return archive.replace(stream, b"\xff" * len(stream))


def test_regression_damaged_docx_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """load.py: a zip whose document.xml is not XML raised lxml's XMLSyntaxError, a corrupt deflate stream
    zlib.error; neither was caught, so one bad .docx stopped the whole run with a traceback."""
    shutil.copy(SPEECHES / LEAD_GOOSE, tmp_path / LEAD_GOOSE)
    (tmp_path / "bad-xml.docx").write_bytes(_with_document_xml(b"<w:document><w:body><w:p>"))
    (tmp_path / "bad-zlib.docx").write_bytes(_with_corrupt_deflate())
    for name, kind in (("bad-xml.docx", "XMLSyntaxError"), ("bad-zlib.docx", "error")):
        with pytest.raises(UnreadableSpeech) as refused:
            read_document(tmp_path / name)
        message = str(refused.value)
        assert message.startswith(f"{tmp_path / name}: is not a readable Word .docx file ({kind}: ")
        assert message.endswith("save it again as .docx") and "\n" not in message
    corpus = load_corpus(tmp_path, SETTINGS)
    assert [speech.source for speech in corpus.speeches] == [LEAD_GOOSE]
    assert {problem.path for problem in corpus.problems} == {"bad-xml.docx", "bad-zlib.docx"}


def test_unsupported_formats_are_reported_with_the_way_out(tmp_path: Path) -> None:
    shutil.copy(SPEECHES / UNION, tmp_path / UNION)
    names = ("old.doc", "draft.WPS", "scan.pdf", "letter.rtf", "notes.odt", "~$old.doc", ".hidden.pdf", "photo.jpg")
    for name in names:
        (tmp_path / name).write_bytes(b"\xd0\xcf\x11\xe0 not text")
    corpus = load_corpus(tmp_path, SETTINGS)
    assert [speech.source for speech in corpus.speeches] == [UNION]
    reasons = {problem.path: problem.reason for problem in corpus.problems}
    assert reasons == {
        "old.doc": "legacy Word .doc is not supported; save it as .docx",
        "draft.WPS": "WPS .wps is not supported; save it as .docx",
        "scan.pdf": "PDF is not supported; save the speech as .docx or copy its text into a .txt file",
        "letter.rtf": "RTF is not supported; save it as .docx or .txt",
        "notes.odt": "OpenDocument .odt is not supported; save it as .docx",
    }  # lock files, hidden files and pictures stay out of the report


def test_skipped_files_are_logged_at_info_for_front_ends_to_show_once(tmp_path: Path, caplog) -> None:
    """corpus.py logged every skipped file as a warning, and the CLI printed it again: each problem twice."""
    shutil.copy(SPEECHES / UNION, tmp_path / UNION)
    (tmp_path / "empty.txt").write_bytes(b"")
    with caplog.at_level(logging.DEBUG, logger="embeddings"):
        corpus = load_corpus(tmp_path, SETTINGS)
    assert [problem.path for problem in corpus.problems] == ["empty.txt"]
    about_it = [record for record in caplog.records if "empty.txt" in record.getMessage()]
    assert [record.levelno for record in about_it] == [logging.INFO]


def test_traditional_text_in_gbk_loads(tmp_path: Path) -> None:
    """load.py refused GBK text in Traditional characters: fewer than 90% of them are GB2312 ones."""
    path = tmp_path / "traditional.txt"
    path.write_bytes(f"關於工會工作的講話\n{TRADITIONAL}".encode("gbk"))
    document = read_document(path)
    assert document.encoding == "gb18030"
    assert [line.text for line in document.lines] == ["關於工會工作的講話", TRADITIONAL]


@pytest.mark.parametrize("name", [UNION, LEAD_GOOSE])
def test_shipped_speeches_in_traditional_load_from_gbk_and_are_refused_from_big5(tmp_path: Path, name: str) -> None:
    traditional = opencc.OpenCC("s2t").convert((SPEECHES / name).read_text("utf-8"))
    (tmp_path / "gbk.txt").write_bytes(traditional.encode("gbk"))
    (tmp_path / "big5.txt").write_bytes(traditional.encode("big5", "ignore"))
    assert "\n".join(line.text for line in read_document(tmp_path / "gbk.txt").lines) == traditional.rstrip("\n")
    with pytest.raises(UnreadableSpeech, match="unlikely characters"):
        read_document(tmp_path / "big5.txt")


@pytest.mark.parametrize("size", [40, 200, 2000])
def test_big5_and_random_bytes_are_still_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "speech.txt"
    path.write_bytes((TRADITIONAL * (size // len(TRADITIONAL) + 1))[:size].encode("big5"))
    with pytest.raises(UnreadableSpeech, match="unlikely characters"):
        read_document(path)
    generator = random.Random(size)
    for _ in range(20):
        # Bytes from the GBK range decode as GB18030 without error, so only plausibility can refuse them.
        path.write_bytes(bytes(generator.randrange(0x81, 0xFF) for _ in range(size)))
        with pytest.raises(UnreadableSpeech):
            read_document(path)


def test_short_big5_text_whose_characters_look_common_is_refused_for_its_kana(tmp_path: Path) -> None:
    """As GB18030 these Big5 bytes read `囊盢グ喘骋家弘㎝弘…`: 9 of the 10 Chinese characters are common ones,
    which alone would pass; the kana and private-use characters give it away."""
    path = tmp_path / "short.txt"
    path.write_bytes("黨的十九大將弘揚勞模精神和工匠精神寫進報告。".encode("big5"))
    with pytest.raises(UnreadableSpeech, match="unlikely characters"):
        read_document(path)
