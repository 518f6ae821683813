"""A fake DingTalk on 127.0.0.1: Stream mode's open-connection call, its WebSocket, and session webhooks.

    fake = FakeDingTalk().start()
    config = …  [dingtalk] endpoint = fake.url; the SDK then asks fake.url for its connection
    message = fake.ask("user1", "工匠日是怎么设立的？")
    reply = fake.reply_for(message)

`POST /v1.0/gateway/connections/open` checks the client id and secret (401 otherwise) and hands
out a ticket for `GET /connect`, where each message goes out as a CALLBACK frame on the robot
topic, as DingTalk sends it, and stays pending until its ack (`{"code": 200, "headers":
{"messageId": …}}`) comes back. Each message's `sessionWebhook` points at `POST /robot/send/<msgId>`,
which records the reply (DingTalk's markdown body) and answers `{"errcode": 0}`; once a webhook
has expired (`webhook_ttl`), replies come through the robot API (`/v1.0/oauth2/accessToken`, then
`/v1.0/robot/oToMessages/batchSend` or `/v1.0/robot/groupMessages/send`), also recorded.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import WSMsgType, web

from .base import FakePlatform, Pending, Reply

CLIENT_ID = "dingfakeclientid"
CLIENT_SECRET = "fake-dingtalk-secret-0123456789abcdef"
ACCESS_TOKEN = "fake-access-token"
TOPIC = "/v1.0/im/bot/messages/get"


class FakeDingTalk(FakePlatform):
    def __init__(self, redeliver_after: float = 5.0, webhook_ttl: float = 5400.0) -> None:
        super().__init__(redeliver_after)
        self.webhook_ttl = webhook_ttl
        self.tickets: set[str] = set()
        self.frames: dict[str, str] = {}  # frame message id → msgId
        self.app.router.add_post("/v1.0/gateway/connections/open", self._open)
        self.app.router.add_get("/connect", self._connect)
        self.app.router.add_post("/robot/send/{msg_id}", self._webhook)
        self.app.router.add_post("/v1.0/oauth2/accessToken", self._access_token)
        self.app.router.add_post("/v1.0/robot/oToMessages/batchSend", self._robot_send)
        self.app.router.add_post("/v1.0/robot/groupMessages/send", self._robot_send)

    def ask(
        self, user: str, text: str, *, group: str = "", mentioned: bool = True, msgtype: str = "text", **extra: Any
    ) -> str:
        """A user's message to the robot (in a private chat, or in `group`); its msgId."""
        msg_id = self.next_id("msg")
        payload: dict[str, Any] = {
            "conversationId": group or f"cid-{user}",
            "chatbotCorpId": "corp",
            "chatbotUserId": "robot",
            "msgId": msg_id,
            "senderNick": f"nick-{user}",
            "isAdmin": False,
            "senderStaffId": user,
            "sessionWebhookExpiredTime": int((time.time() + self.webhook_ttl) * 1000),
            "createAt": int(time.time() * 1000),
            "senderCorpId": "corp",
            "conversationType": "2" if group else "1",
            "senderId": f"$:LWCP_v1:${user}",
            "sessionWebhook": f"{self.url}/robot/send/{msg_id}",
            "robotCode": CLIENT_ID,
            "msgtype": msgtype,
        }
        if group:
            payload["isInAtList"] = mentioned
            payload["conversationTitle"] = "group"
        if msgtype == "text":
            payload["text"] = {"content": text}
        payload.update(extra)
        self.push(msg_id, payload)
        return msg_id

    async def send_frame(self, ws: web.WebSocketResponse, pending: Pending) -> None:
        frame_id = self.next_id("frame-")
        self.frames[frame_id] = pending.message_id
        headers = {
            "appId": "app",
            "connectionId": "conn",
            "contentType": "application/json",
            "messageId": frame_id,
            "time": str(int(time.time() * 1000)),
            "topic": TOPIC,
        }
        frame = {"specVersion": "1.0", "type": "CALLBACK", "headers": headers, "data": json.dumps(pending.payload)}
        await ws.send_str(json.dumps(frame, ensure_ascii=False))

    def send_raw(self, text: str) -> None:
        """A frame as it is, over every live connection (for hostile frames)."""

        async def send() -> None:
            for _, ws in list(self.sockets):
                await ws.send_str(text)

        self.call(send())

    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen_secrets.append(str(body.get("clientSecret")))
        if body.get("clientId") != CLIENT_ID or body.get("clientSecret") != CLIENT_SECRET:
            return web.json_response({"code": "InvalidAuthentication", "message": "unauthorized"}, status=401)
        ticket = self.next_id("ticket-")
        self.tickets.add(ticket)
        return web.json_response({"endpoint": f"ws://127.0.0.1:{self.port}/connect", "ticket": ticket})

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self.tickets:
            return web.Response(status=403, text="bad ticket")
        self.tickets.discard(ticket)  # a ticket opens one connection

        async def on_frame(frame: Any) -> None:
            if frame.type != WSMsgType.TEXT:
                return
            ack = json.loads(frame.data)
            msg_id = self.frames.get(str(ack.get("headers", {}).get("messageId")))
            if msg_id is None:
                self.problems.append(f"ack for an unknown frame: {frame.data[:200]}")
            elif ack.get("code") == 200:
                self.acked(msg_id)

        return await self.serve_socket(request, on_frame)

    async def _webhook(self, request: web.Request) -> web.Response:
        msg_id = request.match_info["msg_id"]
        pending = self.messages.get(msg_id)
        if pending is None:
            return web.json_response({"errcode": 300001, "errmsg": "invalid session"}, status=200)
        failure = self.take_failure()
        if failure:
            return web.json_response({"errcode": -1, "errmsg": "system busy"}, status=failure)
        body = await request.json()
        if body.get("msgtype") != "markdown" or not body.get("markdown", {}).get("text"):
            self.problems.append(f"reply is not markdown: {body}")
        elif len(body["markdown"]["text"]) > 5000:
            self.problems.append(f"reply over 5,000 characters: {len(body['markdown']['text'])}")
        text = str(body.get("markdown", {}).get("text", ""))
        self.replies.append(Reply(msg_id, str(pending.payload["conversationId"]), text, time.perf_counter(), body))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _access_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen_secrets.append(str(body.get("appSecret")))
        if body.get("appKey") != CLIENT_ID or body.get("appSecret") != CLIENT_SECRET:
            return web.json_response({"code": "InvalidAuthentication", "message": "unauthorized"}, status=401)
        return web.json_response({"accessToken": ACCESS_TOKEN, "expireIn": 7200})

    async def _robot_send(self, request: web.Request) -> web.Response:
        """The robot API: a reply to the latest message of that user (one-to-one) or that group."""
        if request.headers.get("x-acs-dingtalk-access-token") != ACCESS_TOKEN:
            return web.json_response({"code": "InvalidAuthentication", "message": "bad token"}, status=401)
        body = await request.json()
        if body.get("robotCode") != CLIENT_ID or body.get("msgKey") != "sampleMarkdown":
            self.problems.append(f"robot API body: {body}")
        users, group = body.get("userIds") or [], body.get("openConversationId")
        chat = str(group) if group else f"cid-{users[0]}" if users else ""
        latest = [m for m in self.messages.values() if m.payload["conversationId"] == chat]
        if not latest:
            return web.json_response({"code": "invalidParameter", "message": "no such chat"}, status=400)
        text = str(json.loads(body.get("msgParam", "{}")).get("text", ""))
        self.replies.append(Reply(latest[-1].message_id, chat, text, time.perf_counter(), body))
        return web.json_response({"processQueryKey": self.next_id("pqk")})
