"""Reading speech files: `.txt`/`.md` in the encodings Chinese users really have, and `.docx`.

Decoding is strict: a file is either read as what it is or refused with the reason. A guess that
turns bytes into mojibake is worse than a clear "cannot read", because users quote what we show.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from embeddings.errors import UnreadableSpeech
from embeddings.text.textnorm import to_simplified

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx")
# Formats people keep speeches in that we cannot read: reported with the way out, never skipped silently.
UNSUPPORTED_FORMATS = {
    ".doc": "legacy Word .doc is not supported; save it as .docx",
    ".wps": "WPS .wps is not supported; save it as .docx",
    ".rtf": "RTF is not supported; save it as .docx or .txt",
    ".odt": "OpenDocument .odt is not supported; save it as .docx",
    ".pdf": "PDF is not supported; save the speech as .docx or copy its text into a .txt file",
}
MAX_FILE_BYTES = 20 * 1024 * 1024

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Greek, Cyrillic, box drawing, kana, bopomofo, Hangul, private use and beyond the BMP: what Big5 and other
# non-GB bytes turn into when decoded as GB18030, and what Chinese speeches hardly ever contain.
_UNLIKELY = re.compile(
    r"[\u0370-\u04ff\u2500-\u259f\u3040-\u30ff\u3100-\u312f\uac00-\ud7af\ue000-\uf8ff\U00010000-\U0010ffff]"
)
# Whatever python-docx and the zip, zlib and XML readers under it raise on a damaged or odd file.
_DOCX_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    SyntaxError,  # lxml's XMLSyntaxError: a part that is not well-formed XML
    KeyError,
    ValueError,  # UnicodeDecodeError included
    AttributeError,
    TypeError,
    IndexError,
    OSError,
    EOFError,
    NotImplementedError,  # a zip compression method Python cannot read
    RuntimeError,  # an encrypted zip entry
)
_DOCX_HEADING = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RawLine:
    """A physical line (or Word paragraph); `heading_level` comes from a Word heading style."""

    text: str
    heading_level: int | None = None
    is_title: bool = False


@dataclass(frozen=True, slots=True)
class RawDocument:
    path: Path
    lines: tuple[RawLine, ...]
    encoding: str


def read_document(path: Path) -> RawDocument:
    """Read one speech file, or raise `UnreadableSpeech` naming the file and the reason."""
    if (unsupported := UNSUPPORTED_FORMATS.get(path.suffix.lower())) is not None:
        raise UnreadableSpeech(f"{path}: {unsupported}")
    try:
        status = path.stat()
    except OSError as error:
        raise UnreadableSpeech(f"{path}: cannot be read ({error.strerror or error})") from error
    if not stat.S_ISREG(status.st_mode):
        # A FIFO or device named `x.txt` would block the read forever.
        raise UnreadableSpeech(f"{path}: is not a regular file")
    size = status.st_size
    if size > MAX_FILE_BYTES:
        raise UnreadableSpeech(f"{path}: {_size(size)} is over the {_size(MAX_FILE_BYTES)} limit for a speech")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableSpeech(f"{path}: cannot be read ({error.strerror or error})") from error
    if path.suffix.lower() == ".docx":
        document = RawDocument(path, _docx_lines(path, data), "docx")
    else:
        text, encoding = decode_text(data, path)
        document = RawDocument(path, tuple(RawLine(line) for line in text.splitlines()), encoding)
    if not any(line.text.strip() for line in document.lines):
        raise UnreadableSpeech(f"{path}: is empty (no text to index)")
    return document


def decode_text(data: bytes, path: Path) -> tuple[str, str]:
    """Decode by BOM, then strict UTF-8, then GB18030 (a superset of GBK and GB2312)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _checked(data.decode(encoding), path, encoding), encoding
            except UnicodeDecodeError as error:
                raise UnreadableSpeech(f"{path}: starts with a {encoding} BOM but is not valid {encoding}") from error
    if b"\x00" in data:
        raise UnreadableSpeech(f"{path}: looks like a binary file, not text (NUL bytes, no UTF-16 BOM)")
    try:
        return _checked(data.decode("utf-8"), path, "utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as error:
        raise UnreadableSpeech(
            f"{path}: is neither UTF-8 nor GB18030/GBK text; save it as UTF-8 and try again"
        ) from error
    if not _plausible_gb_text(text):
        raise UnreadableSpeech(
            f"{path}: decodes as GB18030 only into unlikely characters; save it as UTF-8 and try again"
        )
    return _checked(text, path, "gb18030"), "gb18030"


def _checked(text: str, path: Path, encoding: str) -> str:
    controls = len(_CONTROL.findall(text))
    if controls > max(2, len(text) // 100):
        raise UnreadableSpeech(f"{path}: decodes as {encoding} but is full of control characters (binary?)")
    return text


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MiB" if count >= 1024 * 1024 else f"{count:,} bytes"


def _plausible_gb_text(text: str) -> bool:
    """Real GBK text, Simplified or Traditional, is common characters; other bytes decoded as GB18030 are not.

    Measured on the shipped speeches, also converted to Traditional, cut into slices of 20 to 1,000
    characters: once Traditional is folded to Simplified, at least 94% of a slice's Chinese characters
    are GB2312 ones when it is GBK; from 100 characters up, at most 77% when it is Big5 and 84% when it
    is random bytes. Big5 also turns 16% or more of the non-ASCII characters into `_UNLIKELY` ones,
    which catches short files too; real text had none.
    """
    wide = sum(1 for ch in text if ord(ch) > 0x7F and not ch.isspace())
    if len(_UNLIKELY.findall(text)) > 0.05 * wide:
        return False
    cjk = Counter(_CJK.findall(to_simplified(text)))
    if not cjk:
        return all(ch.isprintable() or ch.isspace() for ch in text)
    common = sum(count for ch, count in cjk.items() if _is_gb2312(ch))
    return common / cjk.total() >= 0.9


def _is_gb2312(ch: str) -> bool:
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def _docx_lines(path: Path, data: bytes) -> tuple[RawLine, ...]:
    import io

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    lines: list[RawLine] = []
    try:
        # Parts and styles are parsed lazily, so a damaged part can fail anywhere in here.
        for paragraph in docx.Document(io.BytesIO(data)).paragraphs:
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            match = _DOCX_HEADING.match(style.strip())
            # A soft line break (Shift+Enter) comes through as "\n": each piece is a line of its own.
            lines.extend(
                RawLine(
                    text=text,
                    heading_level=int(match.group(1)) if match else None,
                    is_title=style.strip().lower() in ("title", "subtitle", "标题"),
                )
                for text in paragraph.text.splitlines() or [""]
            )
    except (PackageNotFoundError, *_DOCX_ERRORS) as error:
        detail = " ".join(str(error).split()) or "no detail"
        raise UnreadableSpeech(
            f"{path}: is not a readable Word .docx file ({type(error).__name__}: {detail}); "
            "open it in Word or WPS and save it again as .docx"
        ) from error
    return tuple(lines)
