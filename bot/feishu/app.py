"""The Feishu bot over WebSocket events: the official `lark-oapi` client and one message handler.

Usage::

    export FEISHU_APP_ID=cli_…  FEISHU_APP_SECRET=…   # from the app's 凭证与基础信息 page
    speechqa feishu                                     # Ctrl-C or SIGTERM stops it cleanly

The handler journals each message before the SDK acknowledges it (`bot.inbox`), then answers it
off the connection. The SDK reconnects by itself after a drop, after a jittered first pause and
then at the interval Feishu's endpoint sets. It keeps its event loop in a module global taken when
it is imported, so `FeishuBot.run` makes a loop of its own, hands it to the SDK, and runs the inbox
on that same loop. Replies are sent without the SDK (`send.CardOutbox`), so the journal's
unanswered questions go out while the SDK is still being imported.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import threading
from typing import Any

from bot.config import Config
from bot.feishu import send
from bot.inbox import Inbox, new_loop, open_inbox
from embeddings.errors import SpeechQAError

logger = logging.getLogger(__name__)

ID_ENV, SECRET_ENV, DOMAIN_ENV = "FEISHU_APP_ID", "FEISHU_APP_SECRET", "FEISHU_DOMAIN"


class FeishuBot:
    """One bot: the SDK's WebSocket client and the inbox, on one event loop (`run` blocks; `stop` from anywhere)."""

    def __init__(self, config: Config, app_id: str, secret: str) -> None:
        self.config, self.app_id, self.secret = config, app_id, secret
        self.domain = (os.environ.get(DOMAIN_ENV) or config.feishu.domain).rstrip("/")
        self.loop = new_loop()
        self.ready = threading.Event()
        self.inbox: Inbox | None = None
        self.lark: Any = None  # the SDK, once imported
        self.bot_open_id = ""

    def on_message(self, data: Any) -> None:
        """A message event (`P2ImMessageReceiveV1`): journaled and queued before the SDK acks it.

        An error here makes the SDK answer 500, and Feishu sends the event again.
        """
        assert self.inbox is not None and self.lark is not None
        payload: dict[str, Any] = json.loads(self.lark.JSON.marshal(data))
        if self.bot_open_id:
            payload["bot_open_id"] = self.bot_open_id
        self.inbox.admit(payload)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        outbox = send.CardOutbox(self.domain, self.app_id, self.secret)
        # The journal's unanswered questions are replayed first; the SDK (about 3 s to import) loads
        # on a thread meanwhile, so a restarted bot answers them while it is still starting.
        self.inbox = self.loop.run_until_complete(
            open_inbox(
                self.config,
                "feishu",
                settings=self.config.feishu,
                app_id=self.app_id,
                outbox=outbox,
                decode=send.decode,
                link=None,
                limit=send.LIMIT,
            )
        )
        self.lark = lark = self.loop.run_until_complete(asyncio.to_thread(importlib.import_module, "lark_oapi"))
        # lark-oapi logs to stdout through a handler of its own: its lines go through the application's
        # handlers instead, where the secret is redacted
        logging.getLogger("Lark").handlers.clear()
        lark.ws.client.loop = self.loop  # the SDK runs on its module's loop: make it this one
        self.bot_open_id = self.loop.run_until_complete(outbox.bot_open_id())
        handler = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(self.on_message).build()
        client = lark.ws.Client(
            self.app_id, self.secret, event_handler=handler, domain=self.domain, log_level=lark.LogLevel.WARNING
        )
        self.ready.set()
        try:
            client.start()  # connects, then runs the loop until `stop`
        except lark.ws.exception.ClientException as error:
            hint = f"check {ID_ENV} and {SECRET_ENV}"
            raise SpeechQAError(f"Feishu refused the connection ({error})", hint) from None
        except RuntimeError:  # "Event loop stopped before Future completed": `stop` was called
            pass
        finally:
            self.loop.run_until_complete(self.inbox.close())
            self.loop.run_until_complete(outbox.close())
            self._cancel_the_rest()

    def _cancel_the_rest(self) -> None:
        """Cancel the SDK's tasks (receiving, pinging), so nothing runs on once `run` returns."""
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def run(config: Config, app_id: str, secret: str) -> None:
    """Run until SIGINT or SIGTERM; the caller has set up logging (`bot.cli`)."""
    bot = FeishuBot(config, app_id, secret)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: bot.stop())
    bot.run()
