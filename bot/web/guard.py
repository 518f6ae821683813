"""What every request passes on its way in: size limit, access token, per-client rate, and one log line.

A plain ASGI middleware rather than `BaseHTTPMiddleware`, which would add a task per request. The
log line names the method, path (never the query string, which may hold a question), status,
client, time and what the endpoint adds (an answer's length and outcome); questions and the token
never reach the INFO log.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

TOKEN_ENV = "SPEECHQA_WEB_TOKEN"
Refusal = Callable[[Send], Awaitable[None]]
MAX_CLIENTS = 10000
OPEN_PATHS = ("/api/health",)
# The page is self-contained: no CDN, no inline script, nothing framed, no Referer carrying a question.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class RateLimiter:
    """A token bucket per client: `per_minute` requests in a burst, refilled evenly over the minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait(self, client: str) -> float:
        """0 when `client` may go ahead (and that request is counted), else the seconds until it may."""
        now = self._clock()
        if len(self._buckets) >= MAX_CLIENTS:
            # A bucket untouched for a full refill is full again: forgetting it changes nothing.
            refill = self.capacity / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}
        tokens, last = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate


def error_body(code: str, message: str, hint: str = "") -> dict[str, Any]:
    """The one shape of every API error."""
    return {"error": {"code": code, "message": message, "hint": hint}}


class Guard:
    def __init__(self, app: ASGIApp, *, token: str, limiter: RateLimiter, max_body_bytes: int) -> None:
        self.app = app
        self._token = token.encode()
        self._limiter = limiter
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path: str = scope["path"]
        client = scope["client"][0] if scope.get("client") else "-"

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), *SECURITY_HEADERS]
                if path.startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal, receive = await self._check(scope, receive, path, client)
            if refusal is None:
                await self.app(scope, receive, send_with_headers)
            else:
                await refusal(send_with_headers)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            outcome = scope.get("state", {}).get("outcome", "")
            # As received, still percent-encoded: a decoded %0A would forge a log line.
            shown = scope.get("raw_path", b"").decode("latin-1") or path
            line = f"request method={scope['method']} path={shown} status={status} ms={elapsed:.1f} client={client}"
            logger.info("%s", f"{line} {outcome}" if outcome else line)

    async def _check(self, scope: Scope, receive: Receive, path: str, client: str) -> tuple[Refusal | None, Receive]:
        """A refusal to send instead of the app's response, or None; and the body to hand the app."""
        if path.startswith("/api/") and path not in OPEN_PATHS:
            # Counted before the token is checked, so guessing tokens is rate limited too.
            wait = self._limiter.wait(client)
            if wait:
                retry = str(int(wait) + 1).encode()
                return _refuse(
                    429,
                    "rate_limited",
                    "too many requests from this client",
                    "wait and retry",
                    [(b"retry-after", retry)],
                ), receive
            if self._token and not self._authorized(scope):
                return _refuse(
                    401,
                    "unauthorized",
                    "an access token is required",
                    "send Authorization: Bearer <token>",
                    [(b"www-authenticate", b"Bearer")],
                ), receive
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max_body):
            return self._too_large(), receive
        if scope["method"] in ("GET", "HEAD"):
            return None, receive
        # Bodies are small (a question); reading one whole, up to the limit, also catches chunked uploads.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return self._too_large(), receive
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return None, replay

    def _authorized(self, scope: Scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._token)

    def _too_large(self) -> Refusal:
        return _refuse(
            413, "too_large", f"the request is larger than {self._max_body} bytes", "send a shorter question"
        )


def _refuse(
    status: int, code: str, message: str, hint: str, headers: list[tuple[bytes, bytes]] | None = None
) -> Refusal:
    body = json.dumps(error_body(code, message, hint), ensure_ascii=False).encode()

    async def respond(send: Send) -> None:
        start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": start_headers + (headers or [])})
        await send({"type": "http.response.body", "body": body})

    return respond
