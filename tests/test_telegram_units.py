"""Pieces of the Telegram front-end that need no server: HTML rendering and splitting, access policy,
rate limiting, token redaction, deep-link payloads, how `run_bot` reads its environment, and
that our package `bot.telegram` never stands in for the library `telegram`.
"""

from __future__ import annotations

import ast
import http.client
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import telegram
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.access import Access, RateLimiter, RedactToken, protect_handlers, redact
from bot.answer import compose
from bot.config import Config, TelegramSettings
from bot.session import Conversation
from bot.telegram import app
from bot.telegram.app import api_base_url, file_url, read_token
from bot.telegram.handlers import decode_payload, encode_payload
from bot.telegram.render import (
    MESSAGE_LIMIT,
    Block,
    answer_blocks,
    highlighted,
    split_message,
    styled,
    to_html,
    utf16_len,
)
from embeddings.errors import SpeechQAError
from embeddings.retrieval.retrieve import Retriever
from tests.fakebotapi import FakeBotApi, parse_html

TOKEN = "123456:TEST-TOKEN-abcdef"
TEXT = st.text(alphabet=st.sampled_from("讲话工会。！？；，\n<>&\"'a 𠌕”"), max_size=400)
RUNS = st.lists(st.tuples(TEXT, st.sampled_from([(), ("b",), ("i",), ("blockquote",), ("blockquote", "b")])))


@settings(max_examples=200, deadline=None)
@given(st.lists(RUNS, min_size=1, max_size=6), st.integers(min_value=60, max_value=600))
def test_every_piece_is_valid_html_within_the_limit_and_nothing_is_lost(blocks: list[Block], limit: int) -> None:
    pieces = split_message(blocks, limit)
    texts = []
    for piece in pieces:
        text, problem = parse_html(piece)
        assert problem == "" and utf16_len(piece) <= limit and text.strip()
        texts.append(text)
    original = "".join(t for block in blocks for t, _ in block)
    assert "".join("".join(texts).split()) == "".join(original.split())


def test_long_text_is_cut_at_sentence_ends_and_counted_in_utf16() -> None:
    sentence = "𠌕" * 30 + "。"  # 31 characters, 61 UTF-16 units
    pieces = split_message([[("".join(sentence for _ in range(200)), ("blockquote",))]])
    assert len(pieces) == 4 and all(utf16_len(p) <= MESSAGE_LIMIT for p in pieces)
    assert all(p.startswith("<blockquote>") and p.endswith("。</blockquote>") for p in pieces)


def test_speech_and_user_text_is_escaped_and_highlights_are_bold() -> None:
    assert to_html(highlighted("<b>春风</b> & 行动", [(3, 5)])) == "&lt;b&gt;<b>春风</b>&lt;/b&gt; &amp; 行动"
    assert to_html([styled("x", "blockquote"), styled("y", "blockquote", "b")]) == "<blockquote>x<b>y</b></blockquote>"


def test_answer_matches_the_terminal_layout(
    shipped_retriever: Retriever, config_factory: Callable[..., Config]
) -> None:
    settings_ = config_factory().answer
    answer = compose(shipped_retriever.search("“春风行动”坚持了多少年？", top_k=5), settings_)
    html = split_message(answer_blocks(answer))[0]
    assert html.startswith("<b>答：</b>\n") and "一吹就是20年" in html and "<b>出处：</b>\n<b>[1]</b>" in html
    assert parse_html(html)[1] == ""
    later = Conversation(shipped_retriever, settings_)
    later.ask("工匠日是怎么设立的？")
    page = later.more()
    assert page is not None
    assert to_html(answer_blocks(page, 30)[0]).startswith("<b>第 6–10 条结果（共 30 条）：</b>")


def test_allow_lists_deny_by_default_once_set() -> None:
    open_to_all = Access.from_settings(TelegramSettings())
    assert open_to_all.allows(5, 5) and not open_to_all.restricted
    policy = Access.from_settings(TelegramSettings(allowed_user_ids=(1,), allowed_chat_ids=(-100,), admin_ids=(9,)))
    assert policy.allows(1, 1) and policy.allows(2, -100) and policy.allows(9, 9)
    assert not policy.allows(2, 2) and not policy.allows(None, None) and not policy.allows(2, None)
    assert policy.is_admin(9) and not policy.is_admin(1)


def test_rate_limiter_uses_a_sliding_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.check("a") == 0 and limiter.check("a") == 0
    assert limiter.check("a") == pytest.approx(60) and limiter.check("b") == 0
    now[0] = 59.5
    assert limiter.check("a") == pytest.approx(0.5)
    now[0] = 60.0
    assert limiter.check("a") == 0


def test_token_is_redacted_from_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    protect_handlers(TOKEN, [caplog.handler])
    log = logging.getLogger("httpx")
    with caplog.at_level(logging.INFO, logger="httpx"):
        log.info('HTTP Request: POST %s "HTTP/1.1 200 OK"', f"https://api.telegram.org/bot{TOKEN}/getUpdates")
        try:
            raise RuntimeError(f"The token `{TOKEN}` was rejected by the server.")
        except RuntimeError:
            log.exception("failed")
    assert "TEST-TOKEN" not in caplog.text and "bot<redacted>/getUpdates" in caplog.text
    real_shape = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
    assert redact(f"url /bot{real_shape}/getMe") == "url /bot<redacted>/getMe"
    assert isinstance(caplog.handler.filters[0], RedactToken)


def test_deep_link_payloads_round_trip_and_stay_within_64_characters() -> None:
    payload = encode_payload("好干部的标准是什么？")
    assert len(payload) <= 64 and decode_payload(payload) == "好干部的标准是什么？"
    assert encode_payload("很长的问题" * 20) == "inline-help"
    assert decode_payload("ask-!!!") is None and decode_payload("inline-help") is None


def test_base_url_from_environment_or_config(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(telegram=TelegramSettings(api_base_url="http://localhost:8081/"))
    assert api_base_url(config) == "http://localhost:8081/bot"
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "http://127.0.0.1:9000/bot")
    assert api_base_url(config) == "http://127.0.0.1:9000/bot"
    assert api_base_url(Config()) == "http://127.0.0.1:9000/bot"
    monkeypatch.delenv("TELEGRAM_API_BASE_URL")
    assert api_base_url(Config()) is None
    assert file_url("http://127.0.0.1:9000/bot") == "http://127.0.0.1:9000/file/bot"
    assert file_url("http://h/x/bot{token}/test") == "http://h/x/file/bot{token}/test"


def test_the_token_comes_from_the_environment_and_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpeechQAError, match="TELEGRAM_BOT_TOKEN is not set") as missing:
        read_token()
    assert "@BotFather" in missing.value.hint
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "not a token TEST-TOKEN")
    with pytest.raises(SpeechQAError) as malformed:
        read_token()
    assert "TEST-TOKEN" not in str(malformed.value) + malformed.value.hint
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", f" {TOKEN}\n")
    assert read_token() == TOKEN


def test_the_fake_server_refuses_what_telegram_refuses() -> None:
    assert parse_html("<b>a</b> &amp; &lt;i&gt; &#128512;") == ("a & <i> 😀", "")
    for bad in (
        "<div>x</div>",
        "<b>x",
        "<b>x</i>",
        "a < b",
        "a & b",
        "x > y",
        '<b class="x">y</b>',
        "<code><b>x</b></code>",
    ):
        assert parse_html(bad)[1].startswith("can't parse entities: "), bad
    api = FakeBotApi(TOKEN)
    status, body = api.handle("sendMessage", {"chat_id": 1, "text": "<b>x", "parse_mode": "HTML"})
    assert status == 400 and body["description"].startswith("Bad Request: can't parse entities: Can't find end tag")
    status, body = api.handle("sendMessage", {"chat_id": 1, "text": "𠌕" * 2049})
    assert (status, body["description"]) == (400, "Bad Request: message is too long")
    status, body = api.handle("sendMessage", {"chat_id": 1, "text": "讲" * 4096})
    assert status == 200 and body["result"]["text"] == "讲" * 4096
    markup = {"inline_keyboard": [[{"text": "x", "callback_data": "字" * 22}]]}
    assert api.handle("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": markup})[0] == 400
    assert len(api.problems) == 3


def test_the_fake_server_answers_with_telegrams_own_errors() -> None:
    api = FakeBotApi(TOKEN)
    assert TOKEN not in repr(api) and "TEST-TOKEN" not in repr(api)  # a failing test prints it
    sent = api.handle("sendMessage", {"chat_id": 5, "text": "x"})[1]["result"]
    api.blocked.add(5)
    edit = {"chat_id": 5, "message_id": sent["message_id"], "text": "y"}
    assert api.handle("editMessageText", edit) == (
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    )
    api.callback_answers.update({"q1": {}, "q2": {}})
    assert api.handle("answerCallbackQuery", {"callback_query_id": "q1", "text": "字" * 201})[1] == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: MESSAGE_TOO_LONG",
    }
    assert api.handle("answerCallbackQuery", {"callback_query_id": "q2", "text": "字" * 200})[0] == 200
    content = {"message_text": "x"}
    api.inline_answers.update({"i1": {}, "i2": {}, "i3": {}})
    results = [{"type": "article", "id": "字" * 22, "title": "t", "input_message_content": content}]  # 66 bytes
    assert api.handle("answerInlineQuery", {"inline_query_id": "i1", "results": results})[1]["description"] == (
        "Bad Request: RESULT_ID_INVALID"
    )
    twice = [{**results[0], "id": "1"}, {**results[0], "id": "1"}]
    assert api.handle("answerInlineQuery", {"inline_query_id": "i2", "results": twice})[1]["description"] == (
        "Bad Request: RESULT_ID_DUPLICATE"
    )
    fits = [{**results[0], "id": "a" * 64}]
    assert api.handle("answerInlineQuery", {"inline_query_id": "i3", "results": fits})[0] == 200
    assert len(api.problems) == 3


def test_the_fake_server_routes_like_telegram() -> None:
    api = FakeBotApi(TOKEN).start()
    try:

        def post(path: str) -> tuple[int, dict[str, object]]:
            connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
            try:
                connection.request("POST", path, body=b"", headers={"Content-Length": "0"})
                response = connection.getresponse()
                return response.status, json.loads(response.read())
            finally:
                connection.close()

        not_found = {"ok": False, "error_code": 404, "description": "Not Found"}
        assert post(f"/bot{TOKEN}/getMe")[0] == 200
        assert post(f"/bot{TOKEN}/noSuchMethod") == (404, not_found)
        assert post(f"/bot{TOKEN}/") == (404, not_found)
        assert post("/favicon.ico") == (404, not_found)
        assert post("/bot123456:WRONG/getMe") == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    finally:
        api.stop()


def test_the_front_end_package_and_the_library_of_the_same_name_stay_apart() -> None:
    """Both are called `telegram`: the package imports the library absolutely and itself as `bot.telegram.…`."""
    package = Path(app.__file__).parent
    assert Path(telegram.__file__).parent != package and app.Update is telegram.Update
    relative = [
        f"{path.name}:{node.lineno}"
        for path in sorted(package.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []
