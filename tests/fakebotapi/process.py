"""The real `speechqa bot` as a child process against the fake Bot API, to be killed and restarted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .server import FakeBotApi

REPO = Path(__file__).resolve().parents[2]


class BotProcess:
    """`python -m bot.cli … bot`, each run logging to `run<N>.log` in `folder` (a full pipe would stall it)."""

    def __init__(self, api: FakeBotApi, folder: Path, config: Path, verbose: bool = True) -> None:
        self.folder, self.config, self.runs, self.verbose = folder, config, 0, verbose
        self.db = folder / "log.sqlite3"
        self.env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": api.token,
            "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{api.port}",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        log = (self.folder / f"run{self.runs}.log").open("wb")
        command = [sys.executable, "-m", "bot.cli", "--config", str(self.config), *(["-v"] * self.verbose), "bot"]
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self) -> str:
        return (self.folder / f"run{self.runs}.log").read_text("utf-8", errors="replace")

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)

    def answered(self) -> set[int]:
        """Update ids the bot's journal calls answered (read from this process, as an operator would)."""
        if not self.db.exists():
            return set()
        with sqlite3.connect(self.db) as db:
            try:
                rows = db.execute("SELECT update_id FROM updates WHERE answered_at IS NOT NULL").fetchall()
            except sqlite3.OperationalError:  # the bot has not created the table yet
                return set()
        return {row[0] for row in rows}

    def wait(self, what: Callable[[], bool], within: float = 60.0, every: float = 0.05) -> None:
        """Until `what()`; fails, showing the run's log, if the bot dies or `within` seconds pass."""
        deadline = time.monotonic() + within
        while not what():
            assert self.process is not None and self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(every)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
