"""Reading speech files: `.txt`/`.md` in the encodings Chinese users really have, and `.docx`.

Decoding is strict: a file is either read as what it is or refused with the reason. A guess that
turns bytes into mojibake is worse than a clear "cannot read", because users quote what we show.
"""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from embeddings.errors import UnreadableSpeech

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx")
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
    try:
        status = path.stat()
    except OSError as error:
        raise UnreadableSpeech(f"{path}: cannot be read ({error.strerror or error})") from error
    if not stat.S_ISREG(status.st_mode):
        # A FIFO or device named `x.txt` would block the read forever.
        raise UnreadableSpeech(f"{path}: is not a regular file")
    size = status.st_size
    if size > MAX_FILE_BYTES:
        raise UnreadableSpeech(f"{path}: {size // 1024 // 1024} MiB is over the 20 MiB limit for a speech")
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


def _plausible_gb_text(text: str) -> bool:
    """Real GBK text is mostly common characters; other bytes decoded as GB18030 are mostly rare ones."""
    cjk = _CJK.findall(text)
    if not cjk:
        return all(ch.isprintable() or ch.isspace() for ch in text)
    common = sum(1 for ch in cjk if _is_gb2312(ch))
    return common / len(cjk) >= 0.9


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

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as error:
        raise UnreadableSpeech(f"{path}: is not a readable Word .docx file ({error})") from error
    lines: list[RawLine] = []
    for paragraph in document.paragraphs:
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
    return tuple(lines)
