"""DingTalk's side of a message: decoding a robot message, and replying in DingTalk markdown.

A reply goes to the message's `sessionWebhook`, the URL DingTalk hands the robot with each
message (valid for about 90 minutes), or through the robot API once that has expired. The SDK's
own `reply_markdown` posts to the webhook too, but without a timeout, blocking the event loop, and
swallowing the error: a reply has to tell "never arrived" (try again) from "arrived, the response
was lost" (do not send twice), so the post is our own. Links in the reply use DingTalk's
`dtmd://dingtalkclient/sendMessage` scheme: a tap sends the text for the user, so "更多" and
"全文 N" are one tap away.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.inbox import Refused, Unreachable
from bot.platform_api import PlatformApi
from bot.replies import Incoming

logger = logging.getLogger(__name__)

LIMIT = 3500  # characters of markdown per message; DingTalk cuts longer ones off
TITLE = "讲话问答"  # what the notification and the chat list show
_TRANSIENT = {130101, 130102, -1}  # DingTalk's "sent too fast" codes and "system busy"


def decode(payload: dict[str, Any]) -> Incoming:
    """A robot message (the JSON of `ChatbotMessage`) as the shared layer sees it."""
    private = str(payload.get("conversationType", "1")) == "1"
    kind = str(payload.get("msgtype") or "unknown")
    text = ""
    if kind == "text":
        text = str(payload["text"]["content"])
    elif kind == "richText":  # text with pictures: its text parts are the question
        parts = payload.get("content", {}).get("richText", [])
        text = "".join(str(part.get("text", "")) for part in parts if isinstance(part, dict))
        kind = "text" if text.strip() else kind
    return Incoming(
        message_id=str(payload["msgId"]),
        user_id=str(payload.get("senderStaffId") or payload["senderId"]),
        chat_id=str(payload["conversationId"]),
        private=private,
        # in a group DingTalk delivers only the messages that @ the robot, and says so
        addressed=private or bool(payload.get("isInAtList")),
        kind=kind,
        text=text,
        payload=payload,
    )


def link(label: str, says: str) -> str:
    """A link that, tapped in DingTalk, sends `says` as the user."""
    return f"[{label}](dtmd://dingtalkclient/sendMessage?content={quote(says)})"


class WebhookOutbox(PlatformApi):
    """Replies through each message's session webhook, or the robot API once that has expired.

    With aiohttp, which dingtalk-stream brings. The robot API (`/v1.0/robot/oToMessages/batchSend`
    and `/v1.0/robot/groupMessages/send`) answers a question journaled by a bot that stayed down
    longer than the webhook lives; it needs the app's access token and the 企业内机器人发送消息权限
    permission.
    """

    async def send(self, incoming: Incoming, text: str, part: int) -> None:
        webhook = incoming.payload.get("sessionWebhook")
        expires = incoming.payload.get("sessionWebhookExpiredTime")
        if not webhook or (expires and int(expires) / 1000 < time.time() + 5):
            await self._post(*await self._robot_api(incoming, text))
            return
        body: dict[str, Any] = {"msgtype": "markdown", "markdown": {"title": TITLE, "text": text}}
        if not incoming.private:
            body["at"] = {"atUserIds": [incoming.user_id]}
        await self._post(str(webhook), body, {})

    async def _robot_api(self, incoming: Incoming, text: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        """The robot API's request for a reply to `incoming`: to the user, or to the group."""
        robot = str(incoming.payload.get("robotCode") or self.app_id)
        message = {
            "msgKey": "sampleMarkdown",
            "msgParam": json.dumps({"title": TITLE, "text": text}),
            "robotCode": robot,
        }
        credentials = {"appKey": self.app_id, "appSecret": self._secret}
        token = await self.token("/v1.0/oauth2/accessToken", credentials, "accessToken", "expireIn")
        headers = {"x-acs-dingtalk-access-token": token}
        if incoming.private:
            url, body = "/v1.0/robot/oToMessages/batchSend", {**message, "userIds": [incoming.user_id]}
        else:
            url, body = "/v1.0/robot/groupMessages/send", {**message, "openConversationId": incoming.chat_id}
        return self.base + url, body, headers

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            async with self.session.post(url, json=body, headers=headers) as response:
                status, answer = response.status, await response.text()
        except aiohttp.SocketTimeoutError:  # the request went out whole: DingTalk has almost surely posted it
            logger.warning("no response from DingTalk to a reply; assuming it arrived")
            return
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unreachable(type(error).__name__) from error
        if status == 429 or status >= 500:
            raise Unreachable(f"HTTP {status}")
        if status >= 400:
            raise Refused(f"HTTP {status}: {answer[:200]}")
        try:
            code = int(json.loads(answer).get("errcode", 0))
        except (ValueError, AttributeError):
            code = 0  # a 2xx that is not DingTalk's JSON: the post was taken
        if code in _TRANSIENT:
            raise Unreachable(f"errcode {code}")
        if code:
            raise Refused(f"errcode {code}")
