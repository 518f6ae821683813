"""The shared pieces of the DingTalk and Feishu bots, without a network or an SDK connection."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot import markdown
from bot.access import Access, RateLimiter
from bot.answer import compose
from bot.config import load_config
from bot.delivery import Pacer, Reconnects
from bot.dingtalk import send as dingtalk_send
from bot.feedback import FeedbackLog
from bot.feishu import send as feishu_send
from bot.inbox import Inbox
from bot.journal import Journal
from bot.replies import SEARCH_UNAVAILABLE, Incoming, Replies
from bot.session import Conversation
from embeddings.errors import SearchUnavailable
from embeddings.retrieval.retrieve import Retriever
from tests.conftest import REPO


def test_escape_shows_markup_and_mentions_as_text() -> None:
    hostile = "**粗** [链接](http://evil) <at id=all></at> `x` ~~删~~ # 标题 | 表 \\ &amp;"
    escaped = markdown.escape(hostile)
    for raw in ("**", "[", "]", "<at", "`", "~~", "|", "\\", "&amp;"):
        assert raw not in escaped
    assert markdown.escape("- 列表\n+ 项") == "&#45; 列表\n&#43; 项"
    assert markdown.escape("工匠日是怎么设立的？") == "工匠日是怎么设立的？"


def test_pack_keeps_messages_under_the_limit_and_never_cuts_a_reference() -> None:
    blocks = ["**答：**", "> " + markdown.escape("句子*[]。" * 400), "短"]
    messages = markdown.pack(blocks, 500)
    assert all(len(message) <= 500 for message in messages)
    assert all(message.startswith("> ") for message in messages[1:-1])
    joined = "".join(messages)
    assert joined.count("&#42;") == 400 and "&#4\n" not in joined


def test_pack_keeps_a_closing_quote_with_its_sentence_and_a_heading_with_what_it_heads(
    shipped_retriever: Retriever,
) -> None:
    messages = markdown.pack(["> " + "他说：“我们要干实事。”" * 30], 100)
    assert len(messages) > 1 and not any(message.startswith("> ”") for message in messages)
    settings = load_config(str(REPO / "config.toml")).answer
    answer = compose(shipped_retriever.search("工匠日是怎么设立的？", top_k=5), settings)
    blocks = markdown.answer_blocks(answer, None, more=True)
    for limit in range(200, 2000, 50):
        assert not any(message.endswith("**出处：**") for message in markdown.pack(blocks, limit))


def test_answers_render_with_numbered_citations_and_links(shipped_retriever: Retriever) -> None:
    settings = load_config(str(REPO / "config.toml")).answer
    answer = compose(shipped_retriever.search("工匠日是怎么设立的？", top_k=5), settings)
    blocks = markdown.answer_blocks(answer, dingtalk_send.link, more=True)
    text = "\n\n".join(blocks)
    assert text.startswith("**答：**") and "**[1]**" in text and " › " in text and "第" in text
    assert "dtmd://dingtalkclient/sendMessage?content=%E5%85%A8%E6%96%87%201" in text  # 全文 1
    plain = markdown.answer_blocks(answer, None, more=True)[-1]
    assert plain.startswith("发送“更多”查看更多结果；发送“全文 N”")
    conversation = Conversation(shipped_retriever, settings)
    conversation.ask("工匠日是怎么设立的？")
    view = conversation.open(1)
    assert view is not None
    assert markdown.paragraph_blocks(view)[-1] == "引用：" + markdown.escape(view.citation)


def test_pacer_waits_for_the_platforms_limits() -> None:
    now = [0.0]
    pacer = Pacer(per_second=3, per_chat_per_minute=2, clock=lambda: now[0])
    assert [pacer.wait_for("a"), pacer.wait_for("a")] == [0.0, 0.0]
    assert pacer.wait_for("a") == pytest.approx(60.0)  # the chat's minute is full
    assert pacer.wait_for("b") == 0.0
    assert pacer.wait_for("c") == pytest.approx(1.0)  # three in this second already
    now[0] = 1.0
    assert pacer.wait_for("c") == 0.0


def test_pacer_turn_sleeps_until_allowed() -> None:
    async def main() -> float:
        pacer = Pacer(per_second=1, per_chat_per_minute=100)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await pacer.turn("a")
        await pacer.turn("a")
        return loop.time() - start

    assert 0.9 <= asyncio.run(main()) < 2.0


def test_reconnects_double_with_jitter_and_start_again_after_a_steady_connection() -> None:
    reconnects = Reconnects(first=1.0, cap=8.0, steady=30.0, seed=1)
    pauses = [reconnects.pause() for _ in range(6)]
    assert all(0.5 * bound <= pause <= bound for pause, bound in zip(pauses, [1, 2, 4, 8, 8, 8], strict=True))
    reconnects.connected()
    reconnects._connected_at = -100.0  # held long ago: steady
    assert reconnects.pause() <= 1.0


def dingtalk_message(**fields: object) -> dict[str, object]:
    message: dict[str, object] = {
        "msgId": "m1",
        "senderStaffId": "alice",
        "senderId": "$:x",
        "conversationId": "c1",
        "conversationType": "1",
        "msgtype": "text",
        "text": {"content": " 问题 "},
    }
    message.update(fields)
    return message


def test_dingtalk_decode_reads_text_rich_text_and_groups() -> None:
    private = dingtalk_send.decode(dingtalk_message())
    assert (private.message_id, private.user_id, private.private, private.addressed) == ("m1", "alice", True, True)
    group = dingtalk_send.decode(dingtalk_message(conversationType="2", isInAtList=False))
    assert not group.private and not group.addressed
    rich = dingtalk_send.decode(
        dingtalk_message(msgtype="richText", content={"richText": [{"text": "工匠日"}, {"downloadCode": "x"}]})
    )
    assert (rich.kind, rich.text) == ("text", "工匠日")
    assert dingtalk_send.decode(dingtalk_message(msgtype="audio")).kind == "audio"
    with pytest.raises(KeyError):
        dingtalk_send.decode({"msgtype": "text"})


def test_feishu_decode_strips_mentions_and_tells_the_bot_from_others() -> None:
    def event(text: str, mentions: list[dict[str, object]], chat_type: str = "group") -> dict[str, object]:
        message = {
            "message_id": "om_1",
            "chat_id": "oc_1",
            "chat_type": chat_type,
            "message_type": "text",
            "content": json.dumps({"text": text}),
            "mentions": mentions,
        }
        return {"event": {"message": message, "sender": {"sender_id": {"open_id": "ou_a"}}}, "bot_open_id": "ou_bot"}

    to_bot = feishu_send.decode(event("@_user_1 工匠日？", [{"key": "@_user_1", "id": {"open_id": "ou_bot"}}]))
    assert to_bot.addressed and to_bot.text == "工匠日？"
    to_other = feishu_send.decode(event("@_user_1 你好", [{"key": "@_user_1", "id": {"open_id": "ou_x"}}]))
    assert not to_other.addressed
    assert feishu_send.decode(event("问题", [], "p2p")).addressed


def test_feishu_cards_mention_only_well_formed_ids() -> None:
    assert "<at id=ou_abc></at>" in feishu_send.card("x", "ou_abc")
    assert "<at" not in feishu_send.card("x", "ou_a></at><at id=all")


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        ("dingtalk", ("DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET")),
        ("feishu", ("FEISHU_APP_ID", "FEISHU_APP_SECRET")),
    ],
)
def test_missing_credentials_are_one_line_with_the_next_step(
    command: str, variables: tuple[str, str], tmp_path: Path
) -> None:
    secret = "s3cret-value-never-echoed"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), variables[1]: secret}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"speechqa: error: {variables[0]} not set")
    assert "next: copy them from" in result.stderr and "Traceback" not in result.stderr
    assert secret not in result.stderr + result.stdout


def test_config_sections_load_and_check_ranges(tmp_path: Path) -> None:
    config = load_config(str(REPO / "config.toml"))
    assert config.dingtalk.sends_per_chat_per_minute == 20 and config.feishu.sends_per_second == 50
    bad = tmp_path / "bad.toml"
    bad.write_text("[feishu]\nsends_per_second = 0\n", "utf-8")
    with pytest.raises(Exception, match=r"\[feishu\] sends_per_second = 0 is out of range"):
        load_config(str(bad))


def _replies(retriever: Retriever, log: Path) -> Replies:
    """Replies as a chat bot makes them, with its feedback in `log` and no limits in the way."""
    return Replies(
        retriever,
        settings=load_config(str(REPO / "config.toml")).answer,
        access=Access.of((), ()),
        questions=RateLimiter(100),
        feedback=FeedbackLog(log),
        link=None,
        limit=3000,
    )


def test_a_failure_on_the_way_out_leaves_the_message_in_the_journal(
    shipped_retriever: Retriever, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def send(self, incoming: Incoming, text: str, part: int) -> None:
            raise RuntimeError("boom")

    async def main() -> list[dict[str, object]]:
        log = tmp_path / "log.sqlite3"
        replies = _replies(shipped_retriever, log)
        inbox = Inbox(
            "dingtalk",
            Journal(log, 1),
            replies,
            outbox=Broken(),
            decode=dingtalk_send.decode,
            pacer=Pacer(100, 100),
        )
        await inbox.receive(dingtalk_message(text={"content": "工匠日是怎么设立的？"}))
        await asyncio.wait(set(inbox.tasks))
        left = inbox.journal.stalled(0)
        await inbox.close()
        return left

    left = asyncio.run(main())
    assert [payload["msgId"] for payload in left] == ["m1"]
    assert "could not answer message m1; it stays in the journal" in caplog.text


def test_a_question_asked_while_search_is_unavailable_waits_in_the_journal(tmp_path: Path) -> None:
    class Down:
        def search(self, question: str, top_k: int = 5) -> None:
            raise SearchUnavailable("Milvus at http://milvus:19530 did not answer")

    class Recording:
        def __init__(self) -> None:
            self.sent: list[tuple[str, int]] = []

        async def send(self, incoming: Incoming, text: str, part: int) -> None:
            self.sent.append((text, part))

    async def main() -> tuple[list[dict[str, object]], list[tuple[str, int]]]:
        log = tmp_path / "log.sqlite3"
        replies = _replies(Down(), log)  # type: ignore[arg-type]
        outbox = Recording()
        inbox = Inbox(
            "dingtalk", Journal(log, 1), replies, outbox=outbox, decode=dingtalk_send.decode, pacer=Pacer(100, 100)
        )
        message = dingtalk_message(text={"content": "工匠日是怎么设立的？"})
        await inbox.receive(message)
        await asyncio.wait(set(inbox.tasks))
        inbox._schedule(dingtalk_send.decode(message))  # tried again, as `_requeue` does, while search is down
        await asyncio.wait(set(inbox.tasks))
        left = inbox.journal.stalled(0)
        await inbox.close()
        return left, outbox.sent

    left, sent = asyncio.run(main())
    assert [payload["msgId"] for payload in left] == ["m1"]
    assert sent == [(SEARCH_UNAVAILABLE, -1)]
