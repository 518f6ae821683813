"""The DingTalk bot over Stream mode: the official `dingtalk-stream` client and one question handler.

Usage::

    export DINGTALK_CLIENT_ID=ding…  DINGTALK_CLIENT_SECRET=…   # the app's Client ID and Secret
    speechqa dingtalk                                             # Ctrl-C or SIGTERM stops it cleanly

The handler journals each message before its ack goes back (`bot.inbox`), then answers it off
the connection's loop. `StreamClient` is the SDK's client with its reconnect loop replaced: the
SDK waits a fixed 10 s after a dropped connection and opens the next one with a blocking request
on the event loop; ours waits with doubling, jittered pauses (`bot.delivery.Reconnects`) and opens
it on a thread, so answers in hand keep going out meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
from typing import Any
from urllib.parse import quote_plus

import dingtalk_stream
import websockets
from dingtalk_stream import AckMessage, CallbackMessage, ChatbotMessage

from bot.config import Config
from bot.delivery import Reconnects
from bot.dingtalk import send
from bot.inbox import Inbox, new_loop, open_inbox

logger = logging.getLogger(__name__)

ENDPOINT_ENV = "DINGTALK_OPENAPI_ENDPOINT"  # the SDK's own variable
DEFAULT_ENDPOINT = "https://api.dingtalk.com"


class QuestionHandler(dingtalk_stream.ChatbotHandler):
    """Robot messages: journaled, acknowledged, then answered by the inbox."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__()
        self.inbox = inbox

    async def process(self, callback: CallbackMessage) -> tuple[int, str]:
        # A journal that cannot be written raises here: no ack goes back, and DingTalk delivers it again.
        await self.inbox.receive(callback.data if isinstance(callback.data, dict) else {})
        return AckMessage.STATUS_OK, "OK"


class StreamClient(dingtalk_stream.DingTalkStreamClient):
    """The SDK's client, reconnecting by itself with backoff until cancelled."""

    def __init__(self, credential: dingtalk_stream.Credential, endpoint: str, reconnects: Reconnects) -> None:
        super().__init__(credential, logger=logging.getLogger("dingtalk_stream.client"))
        # `open_connection` reads the URL from the class, not the instance: one client per process
        dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API = (
            endpoint.rstrip("/") + "/v1.0/gateway/connections/open"
        )
        self.reconnects = reconnects
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.pre_start()
        try:
            while True:
                connection = await asyncio.to_thread(self.open_connection)
                if connection:
                    await self._serve(connection)
                pause = self.reconnects.pause()
                logger.info("DingTalk connection lost; connecting again in %.1f s", pause)
                await asyncio.sleep(pause)
        finally:
            for task in self._tasks:
                task.cancel()

    async def _serve(self, connection: dict[str, Any]) -> None:
        uri = f"{connection['endpoint']}?ticket={quote_plus(connection['ticket'])}"
        try:
            # frames are small JSON: compressing each (websockets' default) costs more CPU than it saves
            async with websockets.connect(uri, compression=None) as websocket:
                self.websocket = websocket
                self.reconnects.connected()
                logger.info("connected to DingTalk")
                self._spawn(self.keepalive(websocket))
                async for raw in websocket:
                    try:
                        frame = json.loads(raw)
                    except ValueError:
                        logger.warning("ignored a frame that is not JSON")
                        continue
                    if isinstance(frame, dict):
                        self._spawn(self.background_task(frame))
        except (OSError, websockets.WebSocketException) as error:
            logger.warning("DingTalk connection failed: %s", error)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def endpoint(config: Config) -> str:
    return (os.environ.get(ENDPOINT_ENV) or config.dingtalk.endpoint or DEFAULT_ENDPOINT).rstrip("/")


async def serve(config: Config, client_id: str, secret: str, ready: threading.Event | None = None) -> None:
    """Answer DingTalk until cancelled; `ready` is set once the journal is replayed (tests wait on it)."""
    outbox = send.WebhookOutbox(endpoint(config), client_id, secret)
    inbox = await open_inbox(
        config,
        "dingtalk",
        settings=config.dingtalk,
        app_id=client_id,
        outbox=outbox,
        decode=send.decode,
        link=send.link,
        limit=send.LIMIT,
    )
    client = StreamClient(dingtalk_stream.Credential(client_id, secret), endpoint(config), Reconnects())
    client.register_callback_handler(ChatbotMessage.TOPIC, QuestionHandler(inbox))
    running = asyncio.create_task(client.start())
    if ready is not None:
        ready.set()
    try:
        await running
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await inbox.close()
        await outbox.close()


def run(config: Config, client_id: str, secret: str) -> None:
    """Run until SIGINT or SIGTERM; the caller has set up logging (`bot.cli`)."""

    async def main() -> None:
        task = asyncio.create_task(serve(config, client_id, secret))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main())
