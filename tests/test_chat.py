"""`speechqa chat` driven through a pseudo-terminal, as a person would use it."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

from bot.cli import _chat_reply
from bot.config import AnswerSettings
from bot.session import Conversation, follow_up
from tests.conftest import REPO, write_config_file

PROMPT = "问> "


@pytest.fixture
def chat(tmp_path: Path, corpus_dir: Path):
    config = write_config_file(tmp_path, corpus_dir)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "bot.cli", "--config", str(config), "chat"],
        cwd=str(REPO),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
        env={"PATH": "/usr/bin:/bin", "TERM": "xterm", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)},
    )
    child.expect_exact(PROMPT)
    yield child
    child.close(force=True)


def test_question_more_open_quit(chat):
    banner = chat.before
    assert "speechqa chat" in banner and "lexical" in banner

    chat.sendline("工会领导干部需要具备哪些能力？")
    chat.expect_exact(PROMPT)
    screen = chat.before
    assert "答：" in screen and "要有团结动员群众的能力" in screen
    assert "[1] 《当头雁 争一流 全力打造优秀工会组织》" in screen and "[5]" in screen

    chat.sendline("/more")
    chat.expect_exact(PROMPT)
    assert "[6]" in chat.before and "[1] " not in chat.before

    chat.sendline("/open 1")
    chat.expect_exact(PROMPT)
    opened = chat.before
    assert "（上一段）" in opened and "要有团结动员群众的能力" in opened

    chat.sendline("/quit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_follow_ups_in_words_and_bad_input(chat):
    chat.sendline("“春风行动”坚持了多少年？")
    chat.expect_exact(PROMPT)
    assert "一吹就是20年" in chat.before

    chat.sendline("第一条的全文")
    chat.expect_exact(PROMPT)
    assert "一吹就是20年" in chat.before and "（下一段）" in chat.before

    chat.sendline("还有呢？")
    chat.expect_exact(PROMPT)
    assert "[6]" in chat.before

    chat.sendline("/open 99")
    chat.expect_exact(PROMPT)
    assert "没有第 99 条出处" in chat.before

    chat.sendline("？？？")
    chat.expect_exact(PROMPT)
    assert "没有可以检索的文字" in chat.before

    chat.sendline("/help")
    chat.expect_exact(PROMPT)
    assert "/open N" in chat.before

    chat.sendeof()
    chat.expect(pexpect.EOF)


def test_line_editing_history_recalls_the_last_question(chat):
    chat.sendline("好干部的标准是什么？")
    chat.expect_exact(PROMPT)
    chat.send("\x1b[A")  # arrow up: readline history
    chat.send("\r")
    chat.expect_exact(PROMPT)
    assert "忠诚、干净、担当" in chat.before


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("还有呢？", ("more", 0)),
        ("还有其他的吗？", ("more", 0)),
        ("请继续", ("more", 0)),
        ("换一批", ("more", 0)),
        ("第二条的全文", ("open", 2)),
        ("第一条的原文是什么？", ("open", 1)),
        ("把第三条展开", ("open", 3)),
        ("第十二条", ("open", 12)),
        ("看看 3", ("open", 3)),
        ("还有哪些措施？", None),
        ("第三是会风好", None),
        ("2019", None),
    ],
)
def test_follow_ups_are_recognised_and_questions_are_not(line, expected):
    assert follow_up(line) == expected


def test_chat_replies_before_any_question(shipped_retriever):
    conversation = Conversation(shipped_retriever, AnswerSettings())
    assert _chat_reply("还有呢？", conversation, colour=False) == "请先提一个问题。"
    assert _chat_reply("/open", conversation, colour=False).startswith("用法：/open N")
    assert "没有第 1 条出处" in _chat_reply("/open 1", conversation, colour=False)
    assert "请控制在 500 字以内" in _chat_reply("问" * 600, conversation, colour=False)
    assert _chat_reply("/nope", conversation, colour=False).startswith("未知命令 /nope")
