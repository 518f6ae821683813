"""Who may use a chat bot, how often, and keeping its secret out of every log line.

Shared by the Telegram, DingTalk and Feishu bots. Decisions are made on the platform's stable ids
only (Telegram's numeric ids, DingTalk's staff ids, Feishu's open ids), never on names, which
their owners can change. Nothing here imports a platform's SDK, so the policy is tested without one.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.config import TelegramSettings
from embeddings.errors import SpeechQAError

K = TypeVar("K")
V = TypeVar("V")

# Bot tokens in URLs look like `/bot123456:AA…/getUpdates`; a token may also leak without the prefix.
_TOKEN_SHAPE = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}")
REDACTED = "<redacted>"


Id = int | str  # Telegram's ids are numbers; DingTalk's and Feishu's are strings


@dataclass(frozen=True, slots=True)
class Access:
    allowed_users: frozenset[Id]
    allowed_chats: frozenset[Id]
    admins: frozenset[Id]

    @classmethod
    def of(cls, users: Iterable[Id], chats: Iterable[Id], admins: Iterable[Id] = ()) -> Access:
        return cls(frozenset(users), frozenset(chats), frozenset(admins))

    @classmethod
    def from_settings(cls, settings: TelegramSettings) -> Access:
        return cls.of(settings.allowed_user_ids, settings.allowed_chat_ids, settings.admin_ids)

    @property
    def restricted(self) -> bool:
        """Once either allow-list names anyone, everybody else is refused."""
        return bool(self.allowed_users or self.allowed_chats)

    def allows(self, user_id: Id | None, chat_id: Id | None) -> bool:
        if not self.restricted or self.is_admin(user_id):
            return True
        return (user_id is not None and user_id in self.allowed_users) or (
            chat_id is not None and chat_id in self.allowed_chats
        )

    def is_admin(self, user_id: Id | None) -> bool:
        return user_id is not None and user_id in self.admins


class RateLimiter:
    """At most `per_minute` events per key in any sliding 60-second window."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._events: Lru[object, deque[float]] = Lru(max_keys)

    def check(self, key: object) -> float:
        """0 and count the event when allowed; otherwise the seconds until the next one is."""
        now = self.clock()
        events = self._events.get(key)
        if events is None:
            events = deque()
            self._events.put(key, events)
        while events and now - events[0] >= 60:
            events.popleft()
        if len(events) >= self.per_minute:
            return max(0.1, 60 - (now - events[0]))
        events.append(now)
        return 0.0


class Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry, so chat state cannot grow forever."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def read_credentials(id_env: str, secret_env: str) -> tuple[str, str]:
    """An app's id and secret from the environment (DingTalk's and Feishu's bots); an error never echoes them."""
    app_id, secret = os.environ.get(id_env, "").strip(), os.environ.get(secret_env, "").strip()
    if not app_id or not secret:
        missing = " and ".join(name for name, value in ((id_env, app_id), (secret_env, secret)) if not value)
        raise SpeechQAError(
            f"{missing} not set", f"copy them from the app's 凭证与基础信息 page and export {id_env}=… {secret_env}=…"
        )
    return app_id, secret


def redact(text: str, token: str = "") -> str:
    if token:
        text = text.replace(token, REDACTED)
    return _TOKEN_SHAPE.sub(REDACTED, text)


class RedactToken(logging.Filter):
    """Rewrites a record so neither its message nor its traceback shows the bot token (or app secret)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.token)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.token)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.token)
        return True


def protect_handlers(token: str, handlers: list[logging.Handler]) -> RedactToken:
    """Attach the redaction filter to `handlers`: handler filters see records from every logger."""
    guard = RedactToken(token)
    for handler in handlers:
        if not any(isinstance(f, RedactToken) for f in handler.filters):
            handler.addFilter(guard)
    return guard
