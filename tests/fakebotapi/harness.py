"""Running the production application against the fake server inside a test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from .server import FakeBotApi


@contextlib.asynccontextmanager
async def running(app: Any, poll_timeout: float = 1.0) -> AsyncIterator[Any]:
    """What `Application.run_polling` does, step by step, inside a test's own event loop."""
    await app.initialize()
    if app.post_init:
        await app.post_init(app)

    def to_error_handlers(error: Exception) -> None:  # as run_polling does: polling errors reach on_error
        app.create_task(app.process_error(error=error, update=None))

    await app.updater.start_polling(
        timeout=poll_timeout,
        allowed_updates=["message", "callback_query", "inline_query"],
        drop_pending_updates=False,
        error_callback=to_error_handlers,
    )
    await app.start()
    try:
        yield app
    finally:
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)


def drive(api: FakeBotApi, config: Any, scenario: Callable[[Any], Any], timeout: float = 2.0) -> None:
    """Run the bot built by production code against `api` while `scenario(app)` plays the users."""
    from bot.telegram.app import build_application

    async def main() -> None:
        app = build_application(config, api.token, api.base_url, timeout=timeout)
        async with running(app):
            await scenario(app)

    asyncio.run(main())


def everything_said(api: FakeBotApi) -> list[str]:
    """Every piece of text the bot sent to Telegram, for checks such as "the token never appears"."""
    said = [s.html for s in api.sent]
    said += [json.dumps(params, ensure_ascii=False) for _, params, _ in api.calls]
    return said
