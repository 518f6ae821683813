"""The DingTalk and Feishu bots end to end: the official SDKs against local fakes of each platform (no network).

Every test runs once per platform. The bot runs in a thread of the test's process (`fakechat.
harness`); the fake delivers a message again until it is acked, as the platforms do.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot import inbox as inbox_module
from bot.config import Config
from bot.delivery import Backoff
from bot.replies import HELP, NO_QUESTION, ONLY_TEXT, REFUSED
from tests.fakechat import FakeDingTalk, FakeFeishu, FakePlatform, dingtalk_bot, feishu_bot
from tests.fakechat import dingtalk as fake_dingtalk
from tests.fakechat import feishu as fake_feishu

PLATFORMS = ("dingtalk", "feishu")
QUESTION = "工匠日是怎么设立的？"


class Chat:
    """One platform's fake and a way to run the bot against it."""

    def __init__(self, platform: str, config: Config) -> None:
        self.platform, self.config = platform, config
        self.fake: FakePlatform = (FakeDingTalk() if platform == "dingtalk" else FakeFeishu()).start()

    @contextlib.contextmanager
    def bot(self, **settings: Any) -> Iterator[None]:
        section = getattr(self.config, self.platform)
        config = replace(self.config, **{self.platform: replace(section, **settings)})
        runner = dingtalk_bot if self.platform == "dingtalk" else feishu_bot
        with runner(config, self.fake):  # type: ignore[arg-type]
            yield

    def ask(self, user: str, text: str, **kwargs: Any) -> str:
        user = user if self.platform == "dingtalk" else f"ou_{user}"
        return self.fake.ask(user, text, **kwargs)  # type: ignore[attr-defined]

    @property
    def secret(self) -> str:
        return fake_dingtalk.CLIENT_SECRET if self.platform == "dingtalk" else fake_feishu.APP_SECRET


@pytest.fixture(params=PLATFORMS)
def chat(request: pytest.FixtureRequest, config_factory: Callable[..., Config], tmp_path: Path) -> Iterator[Chat]:
    base = config_factory()
    sections = {
        name: replace(getattr(base, name), feedback_db=str(tmp_path / f"{name}.sqlite3"), rate_limit_per_minute=100)
        for name in PLATFORMS
    }
    chat = Chat(request.param, replace(base, **sections))
    yield chat
    chat.fake.stop()
    assert chat.fake.problems == []


def test_a_question_gets_the_cited_answer_then_more_and_a_full_paragraph(chat: Chat) -> None:
    with chat.bot():
        first = chat.fake.reply_for(chat.ask("alice", QUESTION)).text
        more = chat.fake.reply_for(chat.ask("alice", "更多")).text
        paragraph = chat.fake.reply_for(chat.ask("alice", "全文 1")).text
        ordinal = chat.fake.reply_for(chat.ask("alice", "第二条的全文")).text
    assert first.startswith("**答：**") and "[1]" in first and "**出处：**" in first
    assert "《" in first and "第" in first and "段" in first  # 《title》 › section · 第N段
    assert "全文" in first
    assert "第 6–" in more  # the next page goes on numbering
    assert paragraph.startswith("**[1]**") and "\n\n> " in paragraph
    assert paragraph.splitlines()[-1].startswith("引用：《")  # the citation as one line to copy
    assert ordinal.startswith("**[2]**")


def test_not_in_the_speeches_and_help_read_as_in_telegram(chat: Chat) -> None:
    with chat.bot():
        missing = chat.fake.reply_for(chat.ask("alice", "火星基地的氧气够用多久？")).text
        helped = chat.fake.reply_for(chat.ask("alice", "帮助")).text
        nothing = chat.fake.reply_for(chat.ask("carol", "更多")).text
    assert missing.startswith("讲话中没有找到这个问题的答案。")
    assert helped == HELP
    assert nothing == NO_QUESTION


def test_a_redelivered_message_is_answered_once(chat: Chat) -> None:
    with chat.bot():
        message = chat.ask("alice", QUESTION)
        chat.fake.reply_for(message)
        chat.fake.wait(lambda: chat.fake.messages[message].acked)
        pending = chat.fake.messages[message]
        pending.acked = False  # as if the ack had been lost: the platform delivers it again
        chat.fake.call(chat.fake._deliver(chat.fake.sockets[0][1], pending))
        chat.fake.wait(lambda: pending.acked and len(pending.deliveries) == 2)
        chat.fake.reply_for(chat.ask("bob", QUESTION))  # a later question is answered: the copy went by
    assert len(chat.fake.replies_to(message)) == 1


def test_a_dropped_connection_reconnects_and_nothing_is_skipped(chat: Chat) -> None:
    with chat.bot():
        chat.fake.reply_for(chat.ask("alice", QUESTION))
        before = chat.fake.connections
        chat.fake.drop()
        asked = [chat.ask(f"user{n}", QUESTION) for n in range(5)]  # while the bot is away
        for message in asked:
            chat.fake.reply_for(message, within=30)
        chat.fake.drop()
        again = chat.ask("alice", "好干部的标准是什么？")
        chat.fake.reply_for(again, within=30)
    assert chat.fake.connections >= before + 2
    assert all(len(chat.fake.replies_to(message)) == 1 for message in [*asked, again])


def test_a_reply_that_cannot_get_through_is_answered_by_the_next_run(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "SEND_BACKOFF", Backoff(first=0.01, cap=0.01, total=0.03))
    chat.fake.fail_replies(1000)
    with chat.bot():
        message = chat.ask("alice", QUESTION)
        chat.fake.wait(lambda: chat.fake.messages[message].acked)
        chat.fake.wait(lambda: chat.fake.failing < 997)  # every try failed
    assert chat.fake.replies_to(message) == []
    chat.fake.fail_replies(0)
    with chat.bot():  # the platform does not deliver it again (it was acked): the journal does
        chat.fake.reply_for(message)
    assert len(chat.fake.replies_to(message)) == 1


def test_groups_get_answers_only_when_the_bot_is_mentioned(chat: Chat) -> None:
    group = "cid-group" if chat.platform == "dingtalk" else "oc_group"
    with chat.bot():
        ignored = chat.ask("alice", QUESTION, group=group, mentioned=False)
        answered = chat.ask("alice", QUESTION, group=group, mentioned=True)
        reply = chat.fake.reply_for(answered)
        chat.fake.wait(lambda: chat.fake.messages[ignored].acked)
    assert reply.chat_id == group
    assert chat.fake.replies_to(ignored) == []


def test_allow_lists_refuse_others_and_keep_nothing_of_theirs(chat: Chat) -> None:
    allowed = "alice" if chat.platform == "dingtalk" else "ou_alice"
    with chat.bot(allowed_user_ids=(allowed,)):
        welcome = chat.fake.reply_for(chat.ask("alice", QUESTION)).text
        refused = chat.fake.reply_for(chat.ask("mallory", "秘密问题？")).text
    assert welcome.startswith("**答：**")
    assert refused == REFUSED
    database = getattr(chat.config, chat.platform).feedback_db
    with sqlite3.connect(database) as db:
        kept = [row[0] or "" for row in db.execute("SELECT payload FROM updates")]
        kept += [row[0] for row in db.execute("SELECT question FROM questions")]
    assert len(kept) == 3 and not any("秘密" in text for text in kept)  # ids only for the refused one


def test_a_user_over_the_rate_limit_is_told_when_to_come_back(chat: Chat) -> None:
    with chat.bot(rate_limit_per_minute=2):
        replies = [chat.fake.reply_for(chat.ask("alice", QUESTION)).text for _ in range(3)]
    assert replies[2].startswith("您提问有点频繁，请 ")


@pytest.mark.parametrize(
    "text",
    [
        "工" * 100_000,  # huge
        "**粗体** [链接](http://evil.example) <at id=all></at> <font color=red>x</font> `code` 工匠日",
        "\x00\u202e\ufeff",  # control characters only
    ],
)
def test_hostile_text_gets_a_clear_reply_and_never_markup(chat: Chat, text: str) -> None:
    with chat.bot():
        reply = chat.fake.reply_for(chat.ask("alice", text)).text
        after = chat.fake.reply_for(chat.ask("bob", QUESTION)).text
    assert reply  # a reply, not a crash
    assert "http://evil" not in reply and "<at" not in reply and "<font" not in reply
    if len(text) > 1000:
        assert reply.startswith("问题太长了（100000 字）")
    assert after.startswith("**答：**")


def test_other_message_types_and_broken_frames_are_answered_or_ignored(chat: Chat) -> None:
    with chat.bot():
        if chat.platform == "dingtalk":
            picture = chat.fake.ask("alice", "", msgtype="picture", content={"downloadCode": "x"})  # type: ignore[attr-defined]
            chat.fake.send_raw("not json{")  # type: ignore[attr-defined]
            chat.fake.send_raw('{"type": "CALLBACK", "headers": {"topic": "/unknown"}, "data": "{}"}')  # type: ignore[attr-defined]
            chat.fake.push("broken", {"msgtype": "text"})  # no ids at all
        else:
            picture = chat.fake.ask("ou_alice", "", message_type="image")  # type: ignore[attr-defined]
            chat.fake.send_raw(b"\xff\x00not a frame")  # type: ignore[attr-defined]
            chat.fake.send_raw(fake_feishu.data_frame("frame-x", b"{not json"))  # type: ignore[attr-defined]
            chat.fake.push("broken", {"schema": "2.0", "header": {"event_type": "im.message.receive_v1"}, "event": {}})
        assert chat.fake.reply_for(picture).text == ONLY_TEXT
        assert chat.fake.reply_for(chat.ask("bob", QUESTION)).text.startswith("**答：**")
    chat.fake.problems[:] = [p for p in chat.fake.problems if "unknown frame" not in p]


def test_the_secret_is_never_logged_nor_sent_anywhere_but_the_platform(
    chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with chat.bot():
        chat.fake.reply_for(chat.ask("alice", QUESTION))
        chat.fake.drop()
        chat.fake.reply_for(chat.ask("alice", "好干部的标准是什么？"), within=30)
    assert chat.secret in chat.fake.seen_secrets  # it was used, where it belongs
    assert chat.secret not in caplog.text
    assert all(chat.secret not in reply.text and chat.secret not in str(reply.body) for reply in chat.fake.replies)


def test_dingtalk_answers_through_the_robot_api_once_the_session_webhook_has_expired(
    config_factory: Callable[..., Config], tmp_path: Path
) -> None:
    base = config_factory()
    config = replace(base, dingtalk=replace(base.dingtalk, feedback_db=str(tmp_path / "d.sqlite3")))
    fake = FakeDingTalk(webhook_ttl=-1.0).start()  # as for a question journaled by a bot down for hours
    try:
        with dingtalk_bot(config, fake):
            private = fake.reply_for(fake.ask("alice", QUESTION))
            group = fake.reply_for(fake.ask("bob", QUESTION, group="cid-group"))
    finally:
        fake.stop()
    assert private.text.startswith("**答：**") and private.body["userIds"] == ["alice"]
    assert group.body["openConversationId"] == "cid-group"
    assert fake.problems == []
