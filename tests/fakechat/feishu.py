"""A fake Feishu on 127.0.0.1: the WebSocket endpoint call, its protobuf frames, the token and the reply API.

    fake = FakeFeishu().start()
    config = …  [feishu] domain = fake.url; the SDK then asks fake.url for its connection
    message = fake.ask("ou_user1", "工匠日是怎么设立的？")
    reply = fake.reply_for(message)

`POST /callback/ws/endpoint` checks the app id and secret and hands out the WebSocket URL with
the client settings Feishu sends (reconnect interval and jitter). On `GET /ws` each message goes
out as a DATA frame (`pbbp2.Frame`, type "event") holding an `im.message.receive_v1` event, and
stays pending until the SDK writes the frame back with `{"code": 200}`. `POST
/open-apis/im/v1/messages/<id>/reply` needs the tenant token from
`/open-apis/auth/v3/tenant_access_token/internal`, checks the card and records the reply; like
Feishu, it posts at most one message per `uuid`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import WSMsgType, web
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from .base import FakePlatform, Pending, Reply

APP_ID = "cli_fakeappid0001"
APP_SECRET = "fake-feishu-secret-0123456789abcdef"
TOKEN = "t-fake-tenant-token"
BOT_OPEN_ID = "ou_bot0000000000"
SERVICE_ID = 7


class FakeFeishu(FakePlatform):
    def __init__(self, redeliver_after: float = 5.0, reconnect_interval: int = 1, reconnect_nonce: int = 0) -> None:
        super().__init__(redeliver_after)
        self.reconnect_interval, self.reconnect_nonce = reconnect_interval, reconnect_nonce
        self.uuids: dict[str, str] = {}
        self.frames: dict[str, str] = {}  # frame message id → message id
        self.app.router.add_post("/callback/ws/endpoint", self._endpoint)
        self.app.router.add_get("/ws", self._connect)
        self.app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        self.app.router.add_get("/open-apis/bot/v3/info", self._bot_info)
        self.app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._reply)

    def ask(self, user: str, text: str, *, group: str = "", mentioned: bool = True, message_type: str = "text") -> str:
        """A user's message to the bot (in a private chat, or in `group`); its message id."""
        message_id = self.next_id("om_")
        mentions = []
        if group and mentioned:
            text = f"@_user_1 {text}"
            mentions = [{"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID}, "name": "bot", "tenant_key": "t"}]
        content = json.dumps({"text": text}, ensure_ascii=False) if message_type == "text" else '{"image_key":"img"}'
        event = {
            "schema": "2.0",
            "header": {
                "event_id": self.next_id("ev_"),
                "event_type": "im.message.receive_v1",
                "create_time": str(int(time.time() * 1000)),
                "token": "",
                "app_id": APP_ID,
                "tenant_key": "t",
            },
            "event": {
                "sender": {"sender_id": {"open_id": user}, "sender_type": "user", "tenant_key": "t"},
                "message": {
                    "message_id": message_id,
                    "create_time": str(int(time.time() * 1000)),
                    "chat_id": group or f"oc_{user}",
                    "chat_type": "group" if group else "p2p",
                    "message_type": message_type,
                    "content": content,
                    "mentions": mentions,
                },
            },
        }
        self.push(message_id, event)
        return message_id

    async def send_frame(self, ws: web.WebSocketResponse, pending: Pending) -> None:
        frame_id = self.next_id("frame")
        self.frames[frame_id] = pending.message_id
        await ws.send_bytes(data_frame(frame_id, json.dumps(pending.payload, ensure_ascii=False).encode()))

    def send_raw(self, data: bytes) -> None:
        async def send() -> None:
            for _, ws in list(self.sockets):
                await ws.send_bytes(data)

        self.call(send())

    async def _endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen_secrets.append(str(body.get("AppSecret")))
        if body.get("AppID") != APP_ID or body.get("AppSecret") != APP_SECRET:
            return web.json_response({"code": 403, "msg": "forbidden"})
        config = {
            "ReconnectCount": -1,
            "ReconnectInterval": self.reconnect_interval,
            "ReconnectNonce": self.reconnect_nonce,
            "PingInterval": 120,
        }
        url = f"ws://127.0.0.1:{self.port}/ws?device_id=dev{self.connections}&service_id={SERVICE_ID}"
        return web.json_response({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}})

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        async def on_frame(message: Any) -> None:
            if message.type != WSMsgType.BINARY:
                return
            frame = Frame()
            frame.ParseFromString(message.data)
            headers = {header.key: header.value for header in frame.headers}
            if frame.method != 1:  # CONTROL: pings
                return
            answer = json.loads(frame.payload or b"{}")
            message_id = self.frames.get(headers.get("message_id", ""))
            if message_id is None:
                self.problems.append(f"ack for an unknown frame: {headers}")
            elif answer.get("code") == 200:
                self.acked(message_id)

        return await self.serve_socket(request, on_frame)

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen_secrets.append(str(body.get("app_secret")))
        if body.get("app_id") != APP_ID or body.get("app_secret") != APP_SECRET:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": TOKEN, "expire": 7200})

    async def _bot_info(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"code": 99991663, "msg": "invalid token"}, status=401)
        return web.json_response({"code": 0, "msg": "ok", "bot": {"open_id": BOT_OPEN_ID, "app_name": "speechqa"}})

    async def _reply(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"code": 99991663, "msg": "invalid token"}, status=401)
        message_id = request.match_info["message_id"]
        pending = self.messages.get(message_id)
        if pending is None:
            return web.json_response({"code": 230011, "msg": "message not found"}, status=400)
        failure = self.take_failure()
        if failure:
            return web.json_response({"code": 1000004, "msg": "internal error"}, status=failure)
        body = await request.json()
        uuid = str(body.get("uuid") or "")
        if uuid and uuid in self.uuids:  # Feishu's dedupe: the message posted for this uuid, not another
            return web.json_response({"code": 0, "msg": "ok", "data": {"message_id": self.uuids[uuid]}})
        text = self._card_text(body)
        reply_id = self.next_id("om_reply")
        if uuid:
            self.uuids[uuid] = reply_id
        chat = str(pending.payload["event"]["message"]["chat_id"])
        self.replies.append(Reply(message_id, chat, text, time.perf_counter(), body))
        return web.json_response({"code": 0, "msg": "ok", "data": {"message_id": reply_id}})

    def _card_text(self, body: dict[str, Any]) -> str:
        if body.get("msg_type") != "interactive":
            self.problems.append(f"reply is not a card: {body.get('msg_type')}")
            return ""
        content = str(body.get("content", ""))
        if len(content.encode()) > 30 * 1024:
            self.problems.append(f"card over 30 KB: {len(content.encode())} bytes")
        card = json.loads(content)
        return "\n".join(str(e.get("content", "")) for e in card.get("elements", []) if e.get("tag") == "markdown")


def data_frame(frame_id: str, payload: bytes, kind: str = "event") -> bytes:
    """A DATA frame as Feishu sends an event."""
    frame = Frame()
    frame.SeqID, frame.LogID, frame.service, frame.method = 1, 1, SERVICE_ID, 1
    for key, value in (("type", kind), ("message_id", frame_id), ("trace_id", "trace"), ("sum", "1"), ("seq", "0")):
        header = frame.headers.add()
        header.key, header.value = key, value
    frame.payload = payload
    return frame.SerializeToString()
