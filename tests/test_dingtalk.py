"""The DingTalk bot through the official dingtalk-stream SDK against a local fake of DingTalk (no network)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import Config
from tests.fakechat import FakeDingTalk, dingtalk_bot


@pytest.fixture
def fake() -> FakeDingTalk:
    server = FakeDingTalk().start()
    yield server
    server.stop()


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path) -> Config:
    base = config_factory()
    return replace(base, dingtalk=replace(base.dingtalk, feedback_db=str(tmp_path / "dingtalk.sqlite3")))


def test_a_question_gets_the_cited_answer(fake: FakeDingTalk, config: Config) -> None:
    with dingtalk_bot(config, fake):
        message = fake.ask("alice", "工匠日是怎么设立的？")
        reply = fake.reply_for(message)
        fake.wait(lambda: fake.messages[message].acked)
    assert "**答：**" in reply.text and "出处" in reply.text
    assert "《" in reply.text and "第" in reply.text
    assert "dtmd://dingtalkclient/sendMessage" in reply.text
    assert fake.problems == []
