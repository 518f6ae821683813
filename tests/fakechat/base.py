"""What the two fakes share: an aiohttp server in a thread of its own, and a platform's delivery rules.

A message stays pending until the bot acknowledges it, and is delivered again on every new
connection and, over a live one, after `redeliver_after` seconds without an ack: what DingTalk and
Feishu do. Every delivery and every reply is recorded with the server's clock, so a test (or the
benchmark) counts answers and duplicates per message and measures frame-sent → reply-posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from aiohttp import web

from bot.inbox import new_loop

T = TypeVar("T")


@dataclass
class Reply:
    message_id: str
    chat_id: str
    text: str
    at: float
    body: dict[str, Any]


@dataclass
class Pending:
    message_id: str
    payload: dict[str, Any]
    deliveries: list[float] = field(default_factory=list)
    acked: bool = False


class FakePlatform:
    """The shared machinery; subclasses add the platform's routes, frames and acks."""

    def __init__(self, redeliver_after: float = 5.0) -> None:
        self.redeliver_after = redeliver_after
        self.app = web.Application()
        self.loop = new_loop()  # uvloop where installed: the fake then takes less of the CPU it shares
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fake-platform")
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.messages: dict[str, Pending] = {}
        self.replies: list[Reply] = []
        self.sockets: list[tuple[web.Request, web.WebSocketResponse]] = []
        self.connections = 0
        self.failing = 0  # replies to answer with `fail_status` before taking them again
        self.fail_status = 500
        self.problems: list[str] = []
        self.seen_secrets: list[str] = []  # credentials the bot sent, to check they never show elsewhere
        self._counter = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.thread.start()
        self.call(self._start())
        self.redelivery = self.call(self._spawn_redelivery())
        return self

    async def _spawn_redelivery(self) -> asyncio.Task[None]:
        return asyncio.create_task(self._redeliver_loop())

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server  # an asyncio.Server: the port it was given
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            self.redelivery.cancel()
            for _, ws in list(self.sockets):
                await ws.close()
            if self.runner is not None:
                await self.runner.cleanup()

        with contextlib.suppress(Exception):
            self.call(shutdown(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def call(self, coroutine: Awaitable[T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:06d}"

    # -- delivery ----------------------------------------------------------------------------------
    def push(self, message_id: str, payload: dict[str, Any]) -> None:
        """A user's message: pending until acked, delivered now over every live connection."""
        pending = Pending(message_id, payload)

        async def deliver() -> None:
            self.messages[message_id] = pending
            for _, ws in list(self.sockets):
                await self._deliver(ws, pending)

        self.call(deliver())

    async def _deliver(self, ws: web.WebSocketResponse, pending: Pending) -> None:
        if ws.closed:
            return
        pending.deliveries.append(time.perf_counter())
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.send_frame(ws, pending)

    async def send_frame(self, ws: web.WebSocketResponse, pending: Pending) -> None:
        raise NotImplementedError

    def acked(self, message_id: str) -> None:
        pending = self.messages.get(message_id)
        if pending is None:
            self.problems.append(f"ack for a message never sent: {message_id}")
        else:
            pending.acked = True

    async def _redeliver_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.perf_counter()
            for pending in list(self.messages.values()):
                if not pending.acked and pending.deliveries and now - pending.deliveries[-1] > self.redeliver_after:
                    for _, ws in list(self.sockets):
                        await self._deliver(ws, pending)

    async def serve_socket(
        self, request: web.Request, on_frame: Callable[[Any], Awaitable[None]]
    ) -> web.WebSocketResponse:
        """A connection: every pending message is delivered again on it, then frames are read until it ends."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self.sockets.append((request, ws))
        for pending in list(self.messages.values()):
            if not pending.acked:
                await self._deliver(ws, pending)
        try:
            async for frame in ws:
                await on_frame(frame)
        finally:
            self.sockets = [(r, w) for r, w in self.sockets if w is not ws]
        return ws

    def drop(self) -> None:
        """Cut every connection without a closing handshake, as a broken network does."""

        async def cut() -> None:
            for request, _ in list(self.sockets):
                if request.transport is not None:
                    request.transport.abort()

        self.call(cut())

    def fail_replies(self, count: int, status: int = 500) -> None:
        self.failing, self.fail_status = count, status

    def take_failure(self) -> int | None:
        if self.failing > 0:
            self.failing -= 1
            return self.fail_status
        return None

    # -- what the tests read -----------------------------------------------------------------------
    def replies_to(self, message_id: str) -> list[Reply]:
        return [reply for reply in list(self.replies) if reply.message_id == message_id]

    def wait(self, what: Callable[[], bool], within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not what():
            assert time.monotonic() < deadline, f"timed out; replies so far: {[r.text[:60] for r in self.replies]}"
            time.sleep(0.01)

    def reply_for(self, message_id: str, within: float = 20.0) -> Reply:
        self.wait(lambda: bool(self.replies_to(message_id)), within)
        return self.replies_to(message_id)[0]

    def latencies(self) -> dict[str, tuple[float, float]]:
        """Per answered message: (its last delivery before its first reply, that reply), on this clock."""
        out = {}
        for message_id, pending in list(self.messages.items()):
            replies = self.replies_to(message_id)
            if not replies or not pending.deliveries:
                continue
            first = min(reply.at for reply in replies)
            before = [at for at in pending.deliveries if at <= first]
            out[message_id] = (before[-1] if before else pending.deliveries[0], first)
        return out
