"""End to end: the real python-telegram-bot HTTP stack against the fake Bot API on loopback.

Each test plays users through `tests.fakebotapi`; the fake itself rejects (and lists in
`problems`) any text that is not valid Telegram HTML within 4,096 UTF-16 units.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import re
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.access import protect_handlers
from bot.config import Config, TelegramSettings
from bot.replies import WARM_UP_QUESTION
from bot.session import CHANGED_SINCE, POOL, Conversation
from bot.telegram import admin as telegram_admin
from bot.telegram.admin import SAVE_FAILED
from bot.telegram.handlers import decode_payload, encode_payload
from bot.telegram.send import TYPING_AFTER
from bot.telegram.state import STATE_KEY
from embeddings.retrieval.retrieve import Retriever
from tests.conftest import LEAD_GOOSE, UNION
from tests.fakebotapi import FakeBotApi, Sent, drive, everything_said, utf16_len

TOKEN = "123456:TEST-TOKEN-abcdef"
ALICE, BOB = 1001, 1002
SPRING = "“春风行动”坚持了多少年？"
GROUP = {"id": -1001234, "type": "supergroup", "title": "工会学习群"}


@pytest.fixture
def api(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[FakeBotApi]:
    caplog.set_level(logging.DEBUG)  # PTB and httpx put request URLs (with the token) in debug lines
    protect_handlers(TOKEN, [caplog.handler])  # as `speechqa bot` does for its log handlers
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


def answered(config: Config, update_id: int) -> bool:
    return any(r["update_id"] == update_id and r["answered_at"] is not None for r in rows(config, "updates"))


def first_citation(answer: Sent) -> str:
    """`《标题》 … · 第N段` of source [1] in an answer."""
    match = re.search(r"\[1\] (《.+?· 第\d+段)", answer.text)
    assert match, answer.text
    return match.group(1)


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


def test_a_fast_answer_goes_out_without_a_typing_indicator(
    api: FakeBotApi, config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, shipped_retriever: Retriever
) -> None:
    ready = shipped_retriever.search(SPRING, top_k=POOL)
    monkeypatch.setattr(Retriever, "search", lambda self, question, top_k=5: ready)  # instant, on any machine

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


def test_source_and_follow_ups_in_words(api: FakeBotApi, config: Callable[..., Config], corpus_dir: Path) -> None:
    shutil.copy(corpus_dir / UNION, corpus_dir / "工会讲话-副本.txt")  # the same speech under another name

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
        assert "收录的讲话（2 篇" in docs.text  # indexed once…
        assert f"{UNION}（另存为：工会讲话-副本.txt）" in docs.text  # …and both names shown

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


def test_admin_upload_becomes_searchable(api: FakeBotApi, config: Callable[..., Config], tmp_path: Path) -> None:
    speech = "蓝海湾论坛上的讲话\n\n同志们，蓝海湾计划的核心是建设三座珊瑚研究站，共投入九千万元。\n\n谢谢大家。\n"
    gbk = "红树林保护会议上的讲话\n\n同志们，红树林计划今年种植六百亩幼苗，由渔港工会组织志愿者。\n"
    long_name = "关于" + "蓝海湾" * 29 + "的讲话.txt"  # 90 characters + .txt: 274 bytes, over any file system's 255

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
        big5 = api.send_document(ALICE, "big5.txt", "總工會召開會議，討論工匠精神與勞模精神的傳承。".encode("big5") * 3)
        assert "无法读取" in (await api.until(lambda: api.reply_to(big5))).text  # would be mojibake as GBK
        upload = api.send_document(ALICE, long_name, speech.encode())
        done = await api.reply_for(upload, number=2)
        assert "《蓝海湾论坛上的讲话》已加入，现在可以检索了" in done.text
        after = await api.reply_for(api.send_text(ALICE, "蓝海湾计划建设几座珊瑚研究站？"))
        assert "三座珊瑚研究站" in after.text and "《蓝海湾论坛上的讲话》" in after.text
        gbk_upload = api.send_document(ALICE, "红树林.txt", gbk.encode("gbk"))  # a common encoding, read as such
        assert "现在可以检索了" in (await api.reply_for(gbk_upload, number=2)).text
        mangroves = await api.reply_for(api.send_text(ALICE, "红树林计划今年种植多少亩？"))
        assert "种植六百亩幼苗" in mangroves.text
        refused = await api.reply_for(api.send_text(BOB, "/reindex"))
        assert "只有管理员" in refused.text
        reindex = api.send_text(ALICE, "/reindex")
        rebuilt = await api.reply_for(reindex, number=2)
        assert rebuilt.text.startswith("索引已重建")
        corpus = cfg.corpus_path
        corpus.rename(tmp_path / "corpus-away")  # the corpus folder cannot be written: it is a file now
        corpus.write_text("not a folder", "utf-8")
        unsaved = api.send_document(ALICE, "海港.txt", speech.replace("蓝海湾", "海港").encode())
        assert (await api.reply_for(unsaved, number=2)).text == SAVE_FAILED
        corpus.unlink()
        (tmp_path / "corpus-away").rename(corpus)
        assert "三座珊瑚研究站" in (await api.reply_for(api.send_text(BOB, "蓝海湾计划建设几座珊瑚研究站？"))).text

    cfg = config(admin_ids=(ALICE,), max_upload_bytes=1000)
    drive(api, cfg, scenario, timeout=5.0)
    saved = [path for path in cfg.corpus_path.iterdir() if "蓝海湾" in path.name]
    assert len(saved) == 1 and saved[0].read_text("utf-8") == speech
    assert len(saved[0].name.encode()) <= telegram_admin.MAX_NAME_BYTES and saved[0].name.startswith("关于蓝海湾")
    assert (cfg.corpus_path / "红树林.txt").read_bytes() == gbk.encode("gbk")
    assert not {"junk.txt", "bob.txt", "big5.txt", "海港.txt"} & {path.name for path in cfg.corpus_path.iterdir()}


def test_uploads_and_reindexing_count_as_answered_only_when_done(
    api: FakeBotApi, config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart while the index is being built must handle the update again: its news is not out yet."""
    speech = "蓝海湾论坛上的讲话\n\n同志们，蓝海湾计划的核心是建设三座珊瑚研究站。\n"
    indexing, proceed = threading.Event(), threading.Event()
    reopen = telegram_admin.reopen

    def slow_reopen(config: Config) -> Retriever:
        indexing.set()
        assert proceed.wait(30)
        return reopen(config)

    monkeypatch.setattr(telegram_admin, "reopen", slow_reopen)
    cfg = config(admin_ids=(ALICE,))

    async def scenario(app: Any) -> None:
        for action in ("upload", "/reindex"):
            indexing.clear()
            proceed.clear()
            sent = api.send_document(ALICE, "蓝海湾.txt", speech.encode()) if action == "upload" else None
            asked = sent or api.send_text(ALICE, "/reindex")
            update_id = max(api.enqueued_at)
            progress = await api.reply_for(asked)
            assert progress.text.endswith("……")  # 正在加入索引…… / 正在重建索引……
            await api.until(indexing.is_set)
            assert not answered(cfg, update_id)
            proceed.set()
            done = await api.reply_for(asked, number=2)
            assert "现在可以检索了" in done.text or done.text.startswith("索引已重建")
            await api.until(functools.partial(answered, cfg, update_id))
        saved = cfg.corpus_path / "蓝海湾.txt"
        written = saved.stat().st_mtime_ns
        again = api.send_document(ALICE, "蓝海湾.txt", speech.encode())  # as a replayed upload finds it
        assert "现在可以检索了" in (await api.reply_for(again, number=2)).text
        assert saved.stat().st_mtime_ns == written  # the same bytes are not written again

    try:
        drive(api, cfg, scenario, timeout=5.0)
    finally:
        proceed.set()


def test_in_a_group_source_means_your_own_last_answer(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        alice = await api.reply_for(api.send_text(ALICE, f"/ask@SpeechQABot {SPRING}", chat=GROUP))
        bob = await api.reply_for(api.send_text(BOB, "/ask@SpeechQABot 工匠日是怎么设立的？", chat=GROUP))
        assert first_citation(alice) != first_citation(bob)
        alice_source = await api.reply_for(api.send_text(ALICE, "/source@SpeechQABot 1", chat=GROUP))
        bob_source = await api.reply_for(api.send_text(BOB, "/source@SpeechQABot 1", chat=GROUP))
        assert first_citation(alice) in alice_source.text and first_citation(bob) in bob_source.text
        carol = await api.reply_for(api.send_text(1003, "/source@SpeechQABot 1", chat=GROUP))
        assert "没有第 1 条出处" in carol.text  # someone else's answer is not yours
        alice_more = await api.reply_for(api.send_text(ALICE, "还有呢？", chat=GROUP, reply_to=alice))
        private = await api.reply_for(api.send_text(ALICE, "/source 1"))
        assert alice_more.text.startswith("第 6–10 条结果") and "没有第 1 条出处" in private.text

    drive(api, config(), scenario)


def test_reindex_frees_the_old_index_and_old_answers_still_work(
    api: FakeBotApi, config: Callable[..., Config], corpus_dir: Path
) -> None:
    async def scenario(app: Any) -> None:
        answer = await api.reply_for(api.send_text(ALICE, SPRING))
        cited = first_citation(answer)
        old = weakref.ref(app.bot_data[STATE_KEY].retriever)
        assert (await api.reply_for(api.send_text(ALICE, "/reindex"), number=2)).text.startswith("索引已重建")
        gc.collect()
        assert old() is None  # the cached answer does not keep the replaced index in memory
        full = next(b["callback_data"] for b in answer.buttons() if b["text"] == "全文[1]")
        api.press(answer, full, ALICE)
        paragraph = await api.until(lambda: api.reply_to({"chat": {"id": ALICE}, "message_id": answer.message_id}))
        assert "一吹就是20年" in paragraph.text and "（上一段）" in paragraph.text
        page = next(b["callback_data"] for b in answer.buttons() if b["text"] == "更多结果 »")
        api.press(answer, page, ALICE)
        await api.until(lambda: answer.edits == 1)
        assert answer.text.startswith("第 6–10 条结果")
        # The cited speech is edited (a paragraph added at the top moves every passage) and reindexed.
        path = corpus_dir / LEAD_GOOSE
        title, _, body = path.read_text("utf-8").partition("\n\n")
        path.write_text(f"{title}\n\n开场白：同志们好。\n\n{body}", "utf-8")
        assert (await api.reply_for(api.send_text(ALICE, "/reindex"), number=2)).text.startswith("索引已重建")
        source = await api.reply_for(api.send_text(ALICE, "/source 1"))
        assert CHANGED_SINCE in source.text and "一吹就是20年" in source.text and "（上一段）" not in source.text
        assert source.text.startswith(f"[1] {cited}")

    drive(api, config(admin_ids=(ALICE,)), scenario, timeout=5.0)


def test_slow_questions_do_not_hold_up_help(
    api: FakeBotApi, config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    search = Retriever.search

    def stuck(self: Retriever, question: str, top_k: int = 5) -> Any:
        assert question == WARM_UP_QUESTION or release.wait(30)  # the bot's own warm-up at start is not held
        return search(self, question, top_k)

    monkeypatch.setattr(Retriever, "search", stuck)
    askers = [2001 + n for n in range(8)]
    questions: list[dict[str, Any]] = []

    async def scenario(app: Any) -> None:
        questions.extend(api.send_text(user, SPRING) for user in askers)
        # Every question is past the gate and waiting for retrieval: each chat shows "typing…".
        await api.until(lambda: {chat for chat, _, _ in api.chat_actions} >= set(askers))
        help_text = await api.reply_for(api.send_text(ALICE, "/help"))
        assert "/source N" in help_text.text
        assert not any(api.replies_to(question) for question in questions)  # still stuck
        release.set()
        for question in questions:
            await api.reply_for(question)

    try:
        drive(api, config(), scenario)
    finally:
        release.set()
    assert [len(api.replies_to(question)) for question in questions] == [1] * len(askers)
    assert all("一吹就是20年" in api.replies_to(question)[0].text for question in questions)


def test_per_user_rate_limit_replies_politely(api: FakeBotApi, config: Callable[..., Config]) -> None:
    async def scenario(app: Any) -> None:
        for _ in range(2):
            assert "答" in (await api.reply_for(api.send_text(ALICE, SPRING))).text
        third = await api.reply_for(api.send_text(ALICE, SPRING))
        assert "提问有点频繁" in third.text and "秒后再试" in third.text
        other = await api.reply_for(api.send_text(BOB, SPRING))
        assert "一吹就是20年" in other.text

    drive(api, config(rate_limit_per_minute=2), scenario)
