"""Running the real bots against the fakes: in a thread of the test's process, or as `speechqa` child processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.config import Config

from . import dingtalk, feishu

REPO = Path(__file__).resolve().parents[2]


def pointed_at(config: Config, fake: Any) -> Config:
    """`config` with the platform's endpoint at `fake`."""
    if isinstance(fake, dingtalk.FakeDingTalk):
        return replace(config, dingtalk=replace(config.dingtalk, endpoint=fake.url))
    return replace(config, feishu=replace(config.feishu, domain=fake.url))


@contextlib.contextmanager
def dingtalk_bot(config: Config, fake: dingtalk.FakeDingTalk) -> Iterator[None]:
    """`speechqa dingtalk`'s `serve` on a thread, connected to `fake`, until the block ends."""
    from bot.dingtalk.app import serve

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    task = loop.create_task(serve(pointed_at(config, fake), dingtalk.CLIENT_ID, dingtalk.CLIENT_SECRET, ready))
    thread = threading.Thread(target=lambda: loop.run_until_complete(asyncio.wait([task])), daemon=True)
    connections = fake.connections
    thread.start()
    try:
        assert ready.wait(60), "the DingTalk bot did not start"
        fake.wait(lambda: fake.connections > connections or task.done(), within=30)
        assert not task.done(), task.exception()
        yield
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
        loop.close()


@contextlib.contextmanager
def feishu_bot(config: Config, fake: feishu.FakeFeishu) -> Iterator[Any]:
    """`speechqa feishu`'s `FeishuBot` on a thread, connected to `fake`, until the block ends."""
    from bot.feishu.app import FeishuBot

    bot = FeishuBot(pointed_at(config, fake), feishu.APP_ID, feishu.APP_SECRET)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            bot.run()
        except BaseException as error:
            errors.append(error)

    connections = fake.connections
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert bot.ready.wait(60), errors
        fake.wait(lambda: fake.connections > connections or bool(errors), within=30)
        assert not errors, errors
        yield bot
    finally:
        bot.stop()
        thread.join(30)


class BotProcess:
    """`python -m bot.cli … dingtalk|feishu` against a fake, logging to `run<N>.log` in `folder`; killed at will."""

    def __init__(self, platform: str, fake: Any, folder: Path, config: Path) -> None:
        self.platform, self.folder, self.config, self.runs = platform, folder, config, 0
        credentials = (
            {
                "DINGTALK_CLIENT_ID": dingtalk.CLIENT_ID,
                "DINGTALK_CLIENT_SECRET": dingtalk.CLIENT_SECRET,
                "DINGTALK_OPENAPI_ENDPOINT": fake.url,
            }
            if platform == "dingtalk"
            else {"FEISHU_APP_ID": feishu.APP_ID, "FEISHU_APP_SECRET": feishu.APP_SECRET, "FEISHU_DOMAIN": fake.url}
        )
        self.env = {**os.environ, **credentials}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        with (self.folder / f"run{self.runs}.log").open("wb") as log:
            command = [sys.executable, "-m", "bot.cli", "--config", str(self.config), self.platform]
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return "\n".join(p.read_text("utf-8", errors="replace") for p in sorted(self.folder.glob("run*.log")))

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.logs()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cleanup(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)
