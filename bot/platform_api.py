"""What the DingTalk and Feishu outboxes share: one platform's HTTPS API, from the bot's side.

One kept-alive aiohttp session (made on the running loop, at the first call) and the app's access
token, fetched with the app's secret and renewed five minutes before it expires. The secret is kept
out of `repr` and never logged; a token that cannot be had makes the reply `Unreachable`, so it is
tried again later.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from bot.inbox import Unreachable

TOKEN_MARGIN_S = 300.0  # renew a token this long before the platform says it expires


class PlatformApi:
    def __init__(self, base: str, app_id: str, secret: str, timeout: float = 10.0) -> None:
        self.base, self.app_id, self._secret = base.rstrip("/"), app_id, secret
        self.timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._token: tuple[str, float] = ("", 0.0)  # the token, and when to fetch a new one

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}({self.base!r}, {self.app_id!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def token(self, path: str, body: dict[str, Any], field: str, lifetime_field: str) -> str:
        """The app's token from `path` (posted `body`, which holds the secret), cached until near its end."""
        token, renew_at = self._token
        if token and time.monotonic() < renew_at:
            return token
        try:
            async with self.session.post(self.base + path, json=body) as response:
                status, answer = response.status, await response.text()
            found = json.loads(answer) if status == 200 else {}
            token, lives = str(found[field]), float(found.get(lifetime_field, 7200))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as error:
            raise Unreachable(f"no access token ({type(error).__name__})") from None
        self._token = (token, time.monotonic() + lives - TOKEN_MARGIN_S)
        return token

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
