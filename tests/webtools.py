"""For the web tests and benchmark: the app served in a thread, and headless Chromium from Debian's packages.

The driver's path is given, so Selenium Manager never runs and nothing is downloaded; the flags keep
Chromium from calling home (updates, sync, field trials) and from needing a GPU or a sandbox.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from bot.web.serve import bind

if TYPE_CHECKING:
    from selenium import webdriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class ThreadedServer:
    """uvicorn on a free loopback port, in a thread of this process (so without signal handling)."""

    def __init__(self, app: Any) -> None:
        self._sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """What SIGTERM does to `speechqa serve`: stop accepting, finish what is running, shut down."""
        self._server.should_exit = True

    def __exit__(self, *_: object) -> None:
        self.stop()
        self._thread.join(10)
        self._sock.close()


def chromium(user_data: Path, width: int = 1100, height: int = 900) -> webdriver.Chrome:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={user_data}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
