"""Running the app under uvicorn: bind first (so a taken port is a one-line error), stop gracefully on SIGTERM."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from types import FrameType

from embeddings.errors import SpeechQAError
from embeddings.retrieval.retrieve import Retriever

from ..config import Config
from .guard import TOKEN_ENV

logger = logging.getLogger(__name__)

# Requests still running when SIGTERM arrives get this long to finish.
GRACE_SECONDS = 10


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on `host:port`, or a `SpeechQAError` saying what to do instead."""
    if not 0 <= port <= 65535:
        raise SpeechQAError(f"port {port} does not exist", "use a port from 1024 to 65535, e.g. --port 8000")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise SpeechQAError(
            f"cannot serve on host {host!r} ({error})", "use an address of this machine, e.g. --host 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise SpeechQAError(
                f"port {port} on {host} is already in use", f"stop what is using it, or pass --port {port + 1}"
            ) from None
        if error.errno == errno.EACCES:
            raise SpeechQAError(
                f"not allowed to serve on port {port}", "use a port above 1023, e.g. --port 8000"
            ) from None
        raise SpeechQAError(
            f"cannot serve on {host}:{port} ({error.strerror})", "use an address of this machine, e.g. --host 127.0.0.1"
        ) from None
    return sock


def read_token() -> str:
    return os.environ.get(TOKEN_ENV, "").strip()


def serve(config: Config, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C; in-flight requests finish first."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as error:
        raise SpeechQAError(f"the web server needs FastAPI and uvicorn ({error})", 'pip install -e ".[web]"') from error

    sock = bind(host, port)
    token = read_token()

    def opener() -> Retriever:
        from embeddings.engine import open_retriever

        retriever, report = open_retriever(
            config.corpus_path,
            config.index_path,
            config.engine,
            allow_network=True,
            on_rebuild=lambda why: logger.info("building the index (%s); questions get 503 until it is ready", why),
        )
        if report is not None:
            for problem in report.problems:
                logger.warning("skipped %s: %s", problem.path, problem.reason)
        if retriever.notice:
            logger.warning("%s", retriever.notice)
        return retriever

    app = create_app(config, opener, token)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,  # the CLI's logging; uvicorn's access log would print query strings
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
    )
    # uvicorn re-raises a signal it handled once it has shut down; these make that a normal return.
    stopped: list[int] = []

    def note(signum: int, _: FrameType | None) -> None:
        stopped.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    logger.info("serving http://%s:%d/ (access token %s)", shown, bound_port, "required" if token else "off")
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    logger.info("stopped")
