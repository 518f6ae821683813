"""End to end: the real python-telegram-bot HTTP stack against the fake Bot API on loopback.

Each test plays users through `tests.fakebotapi`; the fake itself rejects (and lists in
`problems`) any text that is not valid Telegram HTML within 4,096 UTF-16 units.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, TelegramSettings
from bot.session import Conversation
from bot.telegram_access import protect_handlers
from bot.telegram_handlers import decode_payload, encode_payload
from bot.telegram_state import TYPING_AFTER
from tests.fakebotapi import FakeBotApi, drive, everything_said, utf16_len

TOKEN = "123456:TEST-TOKEN-abcdef"
ALICE, BOB = 1001, 1002
SPRING = "“春风行动”坚持了多少年？"
GROUP = {"id": -1001234, "type": "supergroup", "title": "工会学习群"}


@pytest.fixture
def api(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[FakeBotApi]:
    caplog.set_level(logging.DEBUG)  # PTB and httpx put request URLs (with the token) in debug lines
    protect_handlers(TOKEN, [caplog.handler])  # as run_bot does for its log handlers
    fake = FakeBotApi(TOKEN).start()
    yield fake
    fake.stop()
    assert fake.problems == []
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err, *everything_said(fake)):
        assert TOKEN not in text and "TEST-TOKEN" not in text
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path) -> Callable[..., Config]:
    def make(**telegram: Any) -> Config:
        return config_factory(telegram=TelegramSettings(feedback_db=str(tmp_path / "fb" / "log.sqlite3"), **telegram))

    return make


def rows(config: Config, table: str) -> list[sqlite3.Row]:
    with sqlite3.connect(config.telegram.feedback_db) as db:
        db.row_factory = sqlite3.Row
        return db.execute(f"SELECT * FROM {table}").fetchall()


def test_start_help_menu_and_deep_link(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        welcome = await api.reply_for(api.send_text(ALICE, "/start"))
        assert "工匠日是怎么设立的？" in welcome.text and "/help" in welcome.text
        help_text = await api.reply_for(api.send_text(ALICE, "/help"))
        assert "/source N" in help_text.text and help_text.html.startswith("<b>使用说明</b>")
        assert "@SpeechQABot 加问题" in help_text.text
        linked = await api.reply_for(api.send_text(ALICE, f"/start {encode_payload(SPRING)}"))
        assert "一吹就是20年" in linked.text
        unknown = await api.reply_for(api.send_text(ALICE, "/frobnicate"))
        assert "/help" in unknown.text

    drive(api, config(admin_ids=(ALICE,)), scenario)
    menu = api.commands['{"type": "default"}']
    assert [c["command"] for c in menu] == ["ask", "source", "docs", "help", "start"]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in c["description"]) for c in menu)
    admin_scope = json.dumps({"chat_id": ALICE, "type": "chat"}, sort_keys=True)
    assert "reindex" in [c["command"] for c in api.commands[admin_scope]]


def test_cited_answer_to_a_dev_question_with_typing_first(
    api: FakeBotApi, config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config()
    real_ask = Conversation.ask

    def slow_ask(self: Conversation, question: str) -> Any:  # slower than TYPING_AFTER: worth an indicator
        time.sleep(TYPING_AFTER + 0.3)
        return real_ask(self, question)

    monkeypatch.setattr(Conversation, "ask", slow_ask)

    async def scenario(app: Any) -> None:
        question = api.send_text(ALICE, SPRING)
        reply = await api.until(lambda: api.reply_to(question))
        assert reply.html.startswith("<b>答：</b>\n")
        assert "一吹就是20年" in reply.text and "[1]" in reply.text
        assert "《当头雁 争一流 全力打造优秀工会组织》" in reply.text and "第12段" in reply.text
        assert "<b>春风行动</b>" in reply.html  # the question's words are highlighted
        typing = [t for chat, action, t in api.chat_actions if chat == ALICE and action == "typing"]
        assert typing and typing[0] < reply.at
        labels = [b["text"] for b in reply.buttons()]
        assert {"更多结果 »", "👍", "👎", "全文[1]"} <= set(labels)
        assert all(len(b["callback_data"].encode()) <= 64 for b in reply.buttons())

    drive(api, cfg, scenario)
    logged = rows(cfg, "questions")
    assert [(r["user_id"], r["question"], r["found"], r["via"]) for r in logged] == [(ALICE, SPRING, 1, "text")]


def test_a_fast_answer_goes_out_without_a_typing_indicator(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        assert "一吹就是20年" in (await api.reply_for(api.send_text(ALICE, SPRING))).text
        await asyncio.sleep(TYPING_AFTER + 0.1)  # a late indicator would land now, under the answer

    drive(api, config(), scenario)
    assert api.count("sendChatAction") == 0 and api.count("sendMessage") == 1


def test_reply_over_4096_units_is_split_at_sentence_ends(
    api: FakeBotApi, config: Callable[..., Config], corpus_dir: Path
) -> None:
    # 𠌕 is outside the BMP: two UTF-16 units, so this paragraph is 4,400 characters but 5,800 units.
    sentence = "绿野仙踪计划要求A<B & C>D，𠌕𠌕𠌕𠌕𠌕𠌕𠌕，第{}句到此为止。"
    paragraph = "".join(sentence.format(i) for i in range(140))
    (corpus_dir / "long.txt").write_text(f"长段落测试讲话\n\n{paragraph}\n\n结尾一段。\n", "utf-8")

    async def scenario(app: Any) -> None:
        question = api.send_text(ALICE, "绿野仙踪计划要求什么？")
        await api.until(lambda: api.reply_to(question))
        first = await api.reply_for(api.send_text(ALICE, "/source 1"))
        await api.until(lambda: any("（下一段）结尾一段。" in s.text for s in api.in_chat(ALICE)))
        pieces = api.in_chat(ALICE)[api.in_chat(ALICE).index(first) :]
        assert len(pieces) >= 2
        assert all(utf16_len(p.text) <= 4096 and utf16_len(p.html) <= 4096 for p in pieces)
        assert all(p.text.rstrip().endswith(("。", "段")) for p in pieces[:-1])  # cut at sentence ends
        joined = "".join(p.text for p in pieces)
        assert joined.count("A<B & C>D") == 140 and "&lt;" in pieces[0].html

    drive(api, config(), scenario)


def test_paging_buttons_edit_in_place_and_feedback(api: FakeBotApi, config: Callable[..., Config]) -> None:
    cfg = config()

    async def scenario(app: Any) -> None:
        question = api.send_text(ALICE, "工匠日是怎么设立的？")
        answer = await api.until(lambda: api.reply_to(question))
        key = next(b["callback_data"] for b in answer.buttons() if b["text"] == "更多结果 »")
        first = api.press(answer, key, ALICE)
        await api.until(lambda: answer.edits == 1)
        assert answer.text.startswith("第 6–10 条结果") and "[6]" in answer.text and "答：" not in answer.text
        assert api.callback_answers[first]
        back = next(b["callback_data"] for b in answer.buttons() if b["text"] == "« 上一页")
        # Two presses on one button before the first is handled: the second edit changes nothing.
        api.press(answer, back, ALICE)
        api.press(answer, back, ALICE)
        await api.until(lambda: answer.edits == 2 and all(api.callback_answers.values()))
        assert answer.text.startswith("答：")
        open_seven = await api.reply_for(api.send_text(ALICE, "/source 7"))
        assert "[7]" in open_seven.text  # numbering runs across pages
        full = next(b["callback_data"] for b in answer.buttons() if b["text"] == "全文[2]")
        api.press(answer, full, ALICE)
        paragraph = await api.until(lambda: api.reply_to({"chat": {"id": ALICE}, "message_id": answer.message_id}))
        assert paragraph.html.startswith("<b>[2]</b>") and "<blockquote>" in paragraph.html
        up = next(b["callback_data"] for b in answer.buttons() if b["text"] == "👍")
        down = next(b["callback_data"] for b in answer.buttons() if b["text"] == "👎")
        thanks = api.press(answer, up, ALICE)
        await api.until(lambda: api.callback_answers[thanks])
        changed = api.press(answer, down, ALICE)
        await api.until(lambda: api.callback_answers[changed])
        assert api.callback_answers[thanks]["text"] == "谢谢反馈！"
        assert api.callback_answers[changed]["text"] == "已更新您的反馈。"

    drive(api, cfg, scenario)
    votes = rows(cfg, "feedback")
    assert [(v["user_id"], v["vote"], v["question"]) for v in votes] == [(ALICE, -1, "工匠日是怎么设立的？")]


def test_source_and_follow_ups_in_words(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        await api.reply_for(api.send_text(ALICE, SPRING))
        source = await api.reply_for(api.send_text(ALICE, "/source 1"))
        assert "一吹就是20年" in source.text and "第12段" in source.text and "（上一段）" in source.text
        second = await api.reply_for(api.send_text(ALICE, "第二条的全文"))
        assert second.text.startswith("[2]")
        more = await api.reply_for(api.send_text(ALICE, "还有呢？"))
        assert more.text.startswith("第 6–10 条结果")
        missing = await api.reply_for(api.send_text(ALICE, "/source 99"))
        assert "没有第 99 条出处" in missing.text
        usage = await api.reply_for(api.send_text(ALICE, "/source"))
        assert usage.text.startswith("用法：/source N")
        docs = await api.reply_for(api.send_text(ALICE, "/docs"))
        assert "收录的讲话（2 篇" in docs.text and "union-building-campaign-speech.txt" in docs.text

    drive(api, config(), scenario)


def test_inline_mode_returns_top_passages(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        query = api.inline(ALICE, "春风行动坚持了多少年")
        answer = await api.until(lambda: api.inline_answers[query])
        results = answer["results"]
        assert 1 <= len(results) <= 50
        assert "一吹就是20年" in results[0]["input_message_content"]["message_text"]
        assert decode_payload(answer["button"]["start_parameter"]) == "春风行动坚持了多少年"
        empty = api.inline(ALICE, "   ")
        assert (await api.until(lambda: api.inline_answers[empty]))["results"] == []

    drive(api, config(), scenario)


def test_group_ask_mentions_and_replies(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        ask = api.send_text(ALICE, "/ask@SpeechQABot 好干部的标准是什么？", chat=GROUP)
        answer = await api.until(lambda: api.reply_to(ask))
        assert answer.chat_id == GROUP["id"] and "好干部" in answer.text
        ignored = [
            api.send_text(BOB, "/ask@OtherBot 好干部的标准是什么？", chat=GROUP),
            api.send_text(BOB, "大家早上好", chat=GROUP),
        ]
        mention = api.send_text(BOB, "@SpeechQABot 工匠日是怎么设立的？", chat=GROUP)
        assert "工匠" in (await api.until(lambda: api.reply_to(mention))).text
        follow = api.send_text(BOB, "还有呢？", chat=GROUP, reply_to=answer)
        assert (await api.until(lambda: api.reply_to(follow))).text.startswith("第 6–10 条结果")
        assert all(not api.replies_to(message) for message in ignored)

    drive(api, config(), scenario)


def test_denied_user_gets_nothing_and_leaves_no_text(api: FakeBotApi, config: Callable[..., Config]) -> None:
    cfg = config(allowed_user_ids=(ALICE,))

    async def scenario(app: Any) -> None:
        refused = await api.reply_for(api.send_text(BOB, "我的秘密问题：春风行动？"))
        assert "只对授权用户开放" in refused.text
        inline = api.inline(BOB, "春风行动")
        assert (await api.until(lambda: api.inline_answers[inline]))["results"] == []
        answer = await api.reply_for(api.send_text(ALICE, SPRING))
        press = api.press(answer, answer.buttons()[0]["callback_data"], BOB)
        assert "只对授权用户开放" in (await api.until(lambda: api.callback_answers[press]))["text"]
        group = api.send_text(BOB, "/ask 春风行动", chat=GROUP)
        await api.until(lambda: api.pending_updates() == 0)
        assert not api.replies_to(group)

    drive(api, cfg, scenario)
    assert [r["user_id"] for r in rows(cfg, "questions")] == [ALICE]
    assert {(r["user_id"], r["kind"]) for r in rows(cfg, "refused")} == {
        (BOB, "message"),
        (BOB, "inline"),
        (BOB, "button"),
    }
    with sqlite3.connect(cfg.telegram.feedback_db) as db:
        dump = "\n".join(db.iterdump())
    assert "秘密" not in dump


def test_admin_upload_becomes_searchable(api: FakeBotApi, config: Callable[..., Config]) -> None:
    speech = "蓝海湾论坛上的讲话\n\n同志们，蓝海湾计划的核心是建设三座珊瑚研究站，共投入九千万元。\n\n谢谢大家。\n"

    async def scenario(app: Any) -> None:
        before = await api.reply_for(api.send_text(ALICE, "蓝海湾计划建设几座珊瑚研究站？"))
        assert "珊瑚研究站" not in before.text
        denied = api.send_document(BOB, "bob.txt", speech.encode())
        assert "只有管理员" in (await api.until(lambda: api.reply_to(denied))).text
        wrong = api.send_document(ALICE, "slides.pdf", b"%PDF-1.4")
        assert ".docx" in (await api.until(lambda: api.reply_to(wrong))).text
        big = api.send_document(ALICE, "big.txt", "讲话".encode() * 400)
        assert "文件太大" in (await api.until(lambda: api.reply_to(big))).text
        junk = api.send_document(ALICE, "junk.txt", b"\x00\x01\x02binary")
        assert "无法读取" in (await api.until(lambda: api.reply_to(junk))).text
        upload = api.send_document(ALICE, "蓝海湾论坛讲话.txt", speech.encode())
        done = await api.reply_for(upload, number=2)
        assert "《蓝海湾论坛上的讲话》已加入，现在可以检索了" in done.text
        after = await api.reply_for(api.send_text(ALICE, "蓝海湾计划建设几座珊瑚研究站？"))
        assert "三座珊瑚研究站" in after.text and "《蓝海湾论坛上的讲话》" in after.text
        refused = await api.reply_for(api.send_text(BOB, "/reindex"))
        assert "只有管理员" in refused.text
        reindex = api.send_text(ALICE, "/reindex")
        rebuilt = await api.reply_for(reindex, number=2)
        assert rebuilt.text.startswith("索引已重建")

    cfg = config(admin_ids=(ALICE,), max_upload_bytes=1000)
    drive(api, cfg, scenario, timeout=5.0)
    assert (cfg.corpus_path / "蓝海湾论坛讲话.txt").read_text("utf-8") == speech
    assert not (cfg.corpus_path / "junk.txt").exists() and not (cfg.corpus_path / "bob.txt").exists()


def test_per_user_rate_limit_replies_politely(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        for _ in range(2):
            assert "答" in (await api.reply_for(api.send_text(ALICE, SPRING))).text
        third = await api.reply_for(api.send_text(ALICE, SPRING))
        assert "提问有点频繁" in third.text and "秒后再试" in third.text
        other = await api.reply_for(api.send_text(BOB, SPRING))
        assert "一吹就是20年" in other.text

    drive(api, config(rate_limit_per_minute=2), scenario)
