"""Feishu's side of a message: decoding an `im.message.receive_v1` event, and replying with a card.

A reply is an interactive card holding one markdown element, posted to Feishu's `message.reply`
(the question is quoted above it). Each request carries a `uuid` made from the message and the
part: Feishu posts at most one message per uuid within an hour, so a reply sent again after a
crash or a lost response is not posted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from typing import Any
from urllib.parse import quote

import aiohttp
import lark_oapi as lark
from lark_oapi.api.im.v1 import ReplyMessageRequestBody
from lark_oapi.core.token import TokenManager

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
    """Replies to each message with cards: the body built by the SDK, the tenant token from its token manager.

    The request itself goes through one kept-alive aiohttp session: the SDK's `message.reply` opens a
    new connection for every call (requests without a session), which under 50 questions at once
    cost the bot more CPU than answering them.
    """

    def __init__(self, client: lark.Client, timeout: float = 10.0) -> None:
        self.config, self.domain = client.config, client.config.domain.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on the running loop, at the first reply
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def send(self, incoming: Incoming, text: str, part: int) -> None:
        uuid = hashlib.blake2b(f"{incoming.message_id}:{part}".encode(), digest_size=16).hexdigest()
        body = (
            ReplyMessageRequestBody.builder()
            .msg_type("interactive")
            .content(card(text, "" if incoming.private else incoming.user_id))
            .uuid(uuid)
            .build()
        )
        try:  # cached for two hours; fetched (a blocking request) off the loop when it is due
            token = await asyncio.to_thread(TokenManager.get_self_tenant_token, self.config)
        except Exception as error:
            raise Unreachable(f"no tenant token ({type(error).__name__})") from error
        url = f"{self.domain}/open-apis/im/v1/messages/{quote(incoming.message_id, safe='')}/reply"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"}
        try:
            async with self.session.post(url, data=lark.JSON.marshal(body).encode(), headers=headers) as response:
                status, answer = response.status, await response.text()
        except aiohttp.SocketTimeoutError:  # sent whole; its uuid keeps a second try from posting twice
            raise Unreachable("no response from Feishu") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unreachable(type(error).__name__) from error
        try:
            parsed = json.loads(answer)
            code, message = int(parsed.get("code", -1)), str(parsed.get("msg", ""))
        except (ValueError, AttributeError):
            code, message = -1, answer[:200]
        if code in _TRANSIENT or status == 429 or status >= 500:
            raise Unreachable(f"code {code} (HTTP {status})")
        if code:
            raise Refused(f"code {code}: {message}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
