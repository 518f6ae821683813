"""Getting replies out: pauses between tries, and the pace a platform allows.

Shared by every chat bot. `Backoff` spaces the tries of a request that failed on its way (and the
reconnects of a dropped long connection); `Pacer` keeps replies within a platform's send limits
by waiting for a turn, never by dropping a reply.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bot.access import Lru


@dataclass(frozen=True)
class Backoff:
    """Pauses between tries: doubling from `first`, capped at `cap`, within `total` seconds in all."""

    first: float = 0.25
    cap: float = 8.0
    total: float = 60.0

    def pauses(self) -> Iterator[float]:
        pause, spent = self.first, 0.0
        while spent + pause <= self.total:
            yield pause
            spent += pause
            pause = min(pause * 2, self.cap)


class Reconnects:
    """Pauses before reconnecting: doubling with jitter up to `cap`, back to `first` after a connection held."""

    def __init__(self, first: float = 0.5, cap: float = 30.0, steady: float = 30.0, seed: int | None = None) -> None:
        self.first, self.cap, self.steady = first, cap, steady
        self._next = first
        self._random = random.Random(seed)
        self._connected_at: float | None = None

    def connected(self) -> None:
        self._connected_at = time.monotonic()

    def pause(self) -> float:
        """The pause before the next try; a connection that held `steady` seconds starts the doubling again."""
        if self._connected_at is not None and time.monotonic() - self._connected_at >= self.steady:
            self._next = self.first
        self._connected_at = None
        pause = self._next * (0.5 + self._random.random() / 2)  # jitter: bots dropped together do not return together
        self._next = min(self._next * 2, self.cap)
        return pause


class Pacer:
    """At most `per_second` sends in all and `per_chat_per_minute` to one chat; a send waits for its turn."""

    def __init__(self, per_second: int, per_chat_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self.per_chat = per_second, per_chat_per_minute
        self.clock = clock
        self._all: deque[float] = deque()
        self._chats: Lru[str, deque[float]] = Lru(10_000)
        self._lock = asyncio.Lock()

    def wait_for(self, chat: str) -> float:
        """Seconds until a send to `chat` is allowed (0: now, and it is counted)."""
        now = self.clock()
        sent = self._chats.get(chat)
        if sent is None:
            sent = deque()
            self._chats.put(chat, sent)
        for window, events, most in ((1.0, self._all, self.per_second), (60.0, sent, self.per_chat)):
            while events and now - events[0] >= window:
                events.popleft()
            if len(events) >= most:
                return window - (now - events[0])
        self._all.append(now)
        sent.append(now)
        return 0.0

    async def turn(self, chat: str) -> None:
        """Wait until a send to `chat` is allowed, in the order sends asked."""
        async with self._lock:
            while wait := self.wait_for(chat):  # noqa: ASYNC110 (waiting for time to pass, not for an event)
                await asyncio.sleep(wait)
