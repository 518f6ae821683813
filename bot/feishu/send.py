"""Feishu's side of a message: decoding an `im.message.receive_v1` event, and replying with a card.

A reply is an interactive card holding one markdown element, sent with the SDK's `message.reply`
(the question is quoted above it). Each request carries a `uuid` made from the message and the
part: Feishu posts at most one message per uuid within an hour, so a reply sent again after a
crash or a lost response is not posted twice. The SDK's synchronous call runs on a thread: its
token refresh is a blocking request, which must not hold up the connection's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from typing import Any

import lark_oapi as lark
import requests
from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

from bot.inbox import Refused, Unreachable
from bot.replies import Incoming

logger = logging.getLogger(__name__)

LIMIT = 6000  # characters of markdown per card; Feishu takes cards up to 30 KB of JSON
TITLE = "讲话问答"
_TRANSIENT = {99991400, 99991401, 230020, 1000004, 1000005}  # rate limits and "try again later"
_OPEN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MENTION_KEY = re.compile(r"@_user_\d+")


def decode(payload: dict[str, Any]) -> Incoming:
    """An `im.message.receive_v1` event (as JSON) as the shared layer sees it."""
    event = payload["event"]
    message, sender = event["message"], event["sender"]
    private = message.get("chat_type") == "p2p"
    kind = str(message.get("message_type") or "unknown")
    text = ""
    if kind == "text":
        content = json.loads(message.get("content") or "{}")
        text = _MENTION_KEY.sub("", str(content.get("text", "")) if isinstance(content, dict) else "")
    mentions = message.get("mentions") or []
    bot = payload.get("bot_open_id")  # added by the handler when the bot's own id is known
    mentioned = any((m.get("id") or {}).get("open_id") == bot for m in mentions) if bot else bool(mentions)
    return Incoming(
        message_id=str(message["message_id"]),
        user_id=str(sender["sender_id"]["open_id"]),
        chat_id=str(message["chat_id"]),
        private=private,
        addressed=private or mentioned,
        kind=kind,
        text=text.strip(),
        payload=payload,
    )


def card(text: str, mention: str = "") -> str:
    """An interactive card with one markdown element (and the asker @-mentioned in a group)."""
    at = f"<at id={mention}></at> " if mention and _OPEN_ID.match(mention) else ""
    body = {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": TITLE}, "template": "blue"},
        "elements": [{"tag": "markdown", "content": at + text}],
    }
    return json.dumps(body, ensure_ascii=False)


class CardOutbox:
    """Replies to each message with cards through the SDK's API client."""

    def __init__(self, client: lark.Client) -> None:
        self.client = client

    async def send(self, incoming: Incoming, text: str, part: int) -> None:
        await asyncio.to_thread(self._send, incoming, text, part)

    def _send(self, incoming: Incoming, text: str, part: int) -> None:
        uuid = hashlib.blake2b(f"{incoming.message_id}:{part}".encode(), digest_size=16).hexdigest()
        body = (
            ReplyMessageRequestBody.builder()
            .msg_type("interactive")
            .content(card(text, "" if incoming.private else incoming.user_id))
            .uuid(uuid)
            .build()
        )
        request = ReplyMessageRequest.builder().message_id(incoming.message_id).request_body(body).build()
        try:
            response = self.client.im.v1.message.reply(request)
        except requests.ReadTimeout:  # the request went out whole; its uuid keeps a second try from posting twice
            raise Unreachable("no response from Feishu") from None
        except (requests.RequestException, OSError) as error:
            raise Unreachable(type(error).__name__) from error
        status = response.raw.status_code if response.raw is not None else 200
        if response.code in _TRANSIENT or status == 429 or status >= 500:
            raise Unreachable(f"code {response.code} (HTTP {status})")
        if response.code:
            raise Refused(f"code {response.code}: {response.msg}")
