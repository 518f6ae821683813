"""Feishu's side of a message: decoding an `im.message.receive_v1` event, and replying with a card.

A reply is an interactive card holding one markdown element, posted to Feishu's message reply API
(the question is quoted above it). Each request carries a `uuid` made from the message and the
part: Feishu posts at most one message per uuid within an hour, so a reply sent again after a
crash or a lost response is not posted twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.inbox import Refused, Unreachable
from bot.platform_api import PlatformApi
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


class CardOutbox(PlatformApi):
    """Replies to each message with cards, over one kept-alive aiohttp session.

    The tenant token and the reply are two plain HTTPS calls (as the SDK makes them), not the SDK's
    `message.reply`: that opens a new connection for every call, which under 50 questions at once
    cost more CPU than answering them; and without the SDK a restarted bot answers what its journal
    holds while `lark-oapi` (about 3 s to import) is still loading.
    """

    async def send(self, incoming: Incoming, text: str, part: int) -> None:
        uuid = hashlib.blake2b(f"{incoming.message_id}:{part}".encode(), digest_size=16).hexdigest()
        body = {
            "content": card(text, "" if incoming.private else incoming.user_id),
            "msg_type": "interactive",
            "uuid": uuid,
        }
        url = f"{self.base}/open-apis/im/v1/messages/{quote(incoming.message_id, safe='')}/reply"
        try:
            async with self.session.post(url, json=body, headers=await self._headers()) as response:
                status, answer = response.status, await response.text()
        except aiohttp.SocketTimeoutError:  # sent whole; its uuid keeps a second try from posting twice
            raise Unreachable("no response from Feishu") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unreachable(type(error).__name__) from error
        code, message = _code(answer)
        if code in _TRANSIENT or status == 429 or status >= 500:
            raise Unreachable(f"code {code} (HTTP {status})")
        if code:
            raise Refused(f"code {code}: {message}")

    async def bot_open_id(self) -> str:
        """The bot's own open id, to tell an @-mention of it from one of someone else ("" when it cannot be had)."""
        try:
            async with self.session.get(f"{self.base}/open-apis/bot/v3/info", headers=await self._headers()) as got:
                return str(json.loads(await got.text())["bot"]["open_id"])
        except (Unreachable, aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as error:
            logger.warning("could not learn the bot's open id (%s); every @-mention in a group counts", error)
            return ""

    async def _headers(self) -> dict[str, str]:
        body = {"app_id": self.app_id, "app_secret": self._secret}
        path = "/open-apis/auth/v3/tenant_access_token/internal"
        return {"Authorization": f"Bearer {await self.token(path, body, 'tenant_access_token', 'expire')}"}


def _code(answer: str) -> tuple[int, str]:
    """Feishu's `code` and `msg` from a response body (-1 when it is not Feishu's JSON)."""
    try:
        parsed = json.loads(answer)
        return int(parsed.get("code", -1)), str(parsed.get("msg", ""))
    except (ValueError, AttributeError):
        return -1, answer[:200]
