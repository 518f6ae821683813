"""Admin actions: `/reindex`, and adding a speech by sending the bot a `.txt`, `.md` or `.docx` file.

If the corpus or index folder cannot be written or read (deleted, replaced, read-only, a full
disk), the action fails with a reply saying so and the retriever already in memory keeps
answering; questions never touch the folders after start-up.

A file is read with the engine's own reader before it touches the corpus, so an unreadable file
is refused with the reason instead of silently skipped. It is written atomically and the index is
refreshed in a worker thread; unchanged passages keep their cached embeddings, so only the new
speech is embedded. The new retriever replaces the old one in one assignment: a question being
answered meanwhile finishes on the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import tempfile
from pathlib import Path

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot.config import Config
from bot.telegram.handlers import reply
from bot.telegram.state import bot_state
from embeddings.engine import open_retriever, rebuild, resolve_embedder
from embeddings.errors import SpeechQAError, UnreadableSpeech
from embeddings.index.atomic import atomic_write_bytes
from embeddings.index.build import BuildReport
from embeddings.ingest.corpus import speech_id_for
from embeddings.ingest.load import SUPPORTED_SUFFIXES, read_document
from embeddings.retrieval.retrieve import Retriever

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^\w.\-（）()《》 ]+")
# File systems allow 255 bytes; the atomic write's temporary name adds 14 to it, and 60 Chinese
# characters (180 bytes) are plenty for a speech.
MAX_NAME_BYTES = 180
REINDEX_FAILED = "重建索引失败，仍在使用原来的索引回答问题。请检查索引目录和服务器日志，之后再发送 /reindex。"
UPLOAD_FAILED = "加入索引失败，文件已撤回，仍在使用原来的索引回答问题。请查看服务器日志。"
SAVE_FAILED = "上传失败：文件无法保存到讲话目录（不可写、已满或不存在），仍在使用原来的索引回答问题。请检查讲话目录。"


async def upload(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Add the sent speech to the corpus and say when it can be searched (admins only).

    Only that last reply marks the upload answered: one cut short by a restart is handled again,
    and finding the same bytes already saved it just makes sure they are indexed.
    """
    state, message, user = bot_state(context), update.effective_message, update.effective_user
    if message is None or message.document is None:
        return
    if not state.access.is_admin(user.id if user else None):
        if message.chat.type == ChatType.PRIVATE:
            await reply(update, context, ["只有管理员可以上传讲话稿。"])
        return
    document = message.document
    name = safe_name(document.file_name or "")
    limit = state.config.telegram.max_upload_bytes
    if not name:
        await reply(update, context, [f"只接受 {'、'.join(SUPPORTED_SUFFIXES)} 文件，且文件名不能以点开头。"])
        return
    if (document.file_size or 0) > limit:
        await reply(update, context, [f"文件太大（{_size(document.file_size or 0)}），上限是 {_size(limit)}。"])
        return
    data = bytes(await (await document.get_file()).download_as_bytearray())
    if len(data) > limit:
        await reply(update, context, [f"文件太大（{_size(len(data))}），上限是 {_size(limit)}。"])
        return
    problem = await asyncio.to_thread(unreadable_reason, data, name)
    if problem:
        await reply(update, context, [f"无法读取这个文件：{problem}"])
        return
    await reply(update, context, [f"已收到 {name}，正在加入索引……"], answers=False)
    config, target = state.config, state.config.corpus_path / name
    async with state.rebuilding:
        try:
            previous = await asyncio.to_thread(_read_if_there, target)
            if previous != data:
                await asyncio.to_thread(atomic_write_bytes, target, data)
        except OSError:  # e.g. the corpus folder is read-only, full, or gone
            logger.exception("saving the uploaded speech %s failed", name)
            await reply(update, context, [SAVE_FAILED])
            return
        try:
            retriever = await asyncio.to_thread(reopen, config)
        except (SpeechQAError, OSError):  # e.g. the index folder vanished or became a file
            logger.exception("indexing the uploaded speech %s failed; the file was withdrawn", name)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_restore, target, previous)
            await reply(update, context, [UPLOAD_FAILED])
            return
        state.retriever = retriever
    await reply(update, context, [await asyncio.to_thread(announcement, retriever, name)])


async def reindex(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Rebuild the whole index from the corpus folder (admins only); answered only when it is done."""
    state, user = bot_state(context), update.effective_user
    if not state.access.is_admin(user.id if user else None):
        await reply(update, context, ["只有管理员可以重建索引。"])
        return
    await reply(update, context, ["正在重建索引……"], answers=False)
    async with state.rebuilding:
        try:
            report, retriever = await asyncio.to_thread(full_rebuild, state.config)
        except (SpeechQAError, OSError):  # the loaded retriever stays: questions keep being answered
            logger.exception("rebuilding the index failed; still answering from the loaded index")
            await reply(update, context, [REINDEX_FAILED])
            return
        state.retriever = retriever
    await reply(
        update,
        context,
        [f"索引已重建：共 {report.passages} 段（新计算向量 {report.embedded} 段，复用 {report.reused} 段）。"],
    )


def full_rebuild(config: Config) -> tuple[BuildReport, Retriever]:
    embedder, notice = resolve_embedder(config.engine, allow_network=True)
    report = rebuild(
        config.corpus_path, config.index_path, config.engine, embedder=embedder, note=notice, progress=False
    )
    return report, reopen(config)


def reopen(config: Config) -> Retriever:
    """A retriever over the (refreshed) index; it reads all it needs from disk as it opens."""
    retriever, _ = open_retriever(config.corpus_path, config.index_path, config.engine, False, True)
    return retriever


def safe_name(file_name: str) -> str:
    """A plain file name inside the corpus folder, or "" when the type is not one we read.

    No folders, no leading dot, and short enough to write: a name over `MAX_NAME_BYTES` keeps its
    start and suffix and gets a digest of the whole name, so two long names stay apart.
    """
    name = _UNSAFE.sub("_", Path(file_name.replace("\\", "/")).name).strip()
    suffix = Path(name).suffix.lower()
    if not name or name.startswith(".") or suffix not in SUPPORTED_SUFFIXES:
        return ""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    tag = "-" + hashlib.sha256(name.encode()).hexdigest()[:8] + suffix
    stem = name.encode()[: MAX_NAME_BYTES - len(tag)].decode(errors="ignore").rstrip(" .")
    return stem + tag


def unreadable_reason(data: bytes, name: str) -> str:
    """Why the engine could not read this file, or "" when it can."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            read_document(path)
        except UnreadableSpeech as error:
            return str(error).removeprefix(f"{path}: ")
    return ""


def announcement(retriever: Retriever, name: str) -> str:
    speech_id = speech_id_for(Path(name))
    speech = retriever.speeches.get(speech_id)
    if speech is None:
        twin = next((s for s in retriever.speeches.values() if name in s.aliases), None)
        if twin is not None:
            return f"{name} 与已收录的《{twin.title}》内容相同，已作为它的另一个文件名收录。"
        return f"{name} 已保存，但其中没有可检索的正文。"
    count = len(retriever.speeches.passage_rows(speech_id))
    return f"《{speech.title}》已加入，现在可以检索了（{count} 段；索引共 {len(retriever.passages)} 段）。"


def _read_if_there(target: Path) -> bytes | None:
    return target.read_bytes() if target.exists() else None


def _restore(target: Path, previous: bytes | None) -> None:
    if previous is None:
        target.unlink(missing_ok=True)
    else:
        atomic_write_bytes(target, previous)


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MB" if count >= 1024 * 1024 else f"{max(1, count // 1024)} KB"
