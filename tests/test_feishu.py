"""The Feishu bot through the official lark-oapi SDK against a local fake of Feishu (no network)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import Config
from tests.fakechat import FakeFeishu, feishu_bot


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    server = FakeFeishu().start()
    yield server
    server.stop()


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path) -> Config:
    base = config_factory()
    return replace(base, feishu=replace(base.feishu, feedback_db=str(tmp_path / "feishu.sqlite3")))


def test_a_question_gets_the_cited_answer_as_a_card(fake: FakeFeishu, config: Config) -> None:
    with feishu_bot(config, fake):
        message = fake.ask("ou_alice", "工匠日是怎么设立的？")
        reply = fake.reply_for(message)
        fake.wait(lambda: fake.messages[message].acked)
    assert "**答：**" in reply.text and "出处" in reply.text
    assert json.loads(reply.body["content"])["header"]["title"]["content"] == "讲话问答"
    assert fake.problems == []
