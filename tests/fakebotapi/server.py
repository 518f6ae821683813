"""The fake Bot API itself: routing, Telegram's methods and errors, simulated users, fault injection.

See the package docstring for usage and for what each fault does to the request's effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

from .htmlcheck import LIMIT, parse_html, utf16_len

T = TypeVar("T")
BOT_ID = 7_000_000_001
JSON_PARAMS = {
    "chat_id", "message_id", "offset", "limit", "timeout", "reply_markup", "reply_parameters", "results", "commands",
    "scope", "entities", "allowed_updates", "show_alert", "cache_time", "is_personal", "button", "user_id",
    "message_thread_id", "drop_pending_updates", "link_preview_options", "disable_notification", "protect_content",
}  # fmt: skip
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@\w+)?")
_MENTION = re.compile(r"@\w{5,32}")
BLOCKED = "Forbidden: bot was blocked by the user"
TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
NOT_FOUND = {"ok": False, "error_code": 404, "description": "Not Found"}
CALLBACK_TEXT_LIMIT = 200  # characters of an answerCallbackQuery notification
RESULT_ID_LIMIT = 64  # bytes of an inline result id
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)


@dataclass
class Sent:
    """A message the bot sent (or its latest edit)."""

    chat_id: int
    message_id: int
    html: str
    text: str
    reply_to: int | None
    markup: dict[str, Any] | None
    at: float
    edits: int = 0

    def buttons(self) -> list[dict[str, Any]]:
        return [b for row in (self.markup or {}).get("inline_keyboard", []) for b in row]


@dataclass
class Fault:
    method: str
    kind: str  # "status", "drop", "delay", "slow", "hold" or "park"
    times: int
    status: int = 0
    description: str = ""
    parameters: dict[str, Any] | None = None
    seconds: float = 0.0
    when: Callable[[dict[str, Any]], bool] | None = None  # only requests with these parameters
    released: threading.Event = field(default_factory=threading.Event)
    execute: bool = True  # what a held request does once released


@dataclass
class FakeBotApi:
    token: str = field(repr=False)  # a failing test's traceback shows the fake's repr
    username: str = "SpeechQABot"
    seed: int = 0
    bot_id: int = BOT_ID
    first_id: int = 1  # where message, query and (unless `update_ids_from`) update ids start
    update_ids_from: int | None = None  # number updates on their own from here, as after Telegram reset them
    calls: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    callback_answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    inline_answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    chat_actions: list[tuple[int, str, float]] = field(default_factory=list)
    enqueued_at: dict[int, float] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    slow_seconds: float = 2.5  # a `slow` response: keep above the client's read timeout
    held: int = 0  # requests parked by `hold` right now
    injected: Counter[str] = field(default_factory=Counter)  # random faults served, by kind

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._ids = itertools.count(self.first_id)
        self._update_ids = self._ids if self.update_ids_from is None else itertools.count(self.update_ids_from)
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._files: dict[str, bytes] = {}
        self._faults: list[Fault] = []
        self._random: tuple[float, tuple[str, ...], tuple[str, ...]] | None = None
        self._rng = random.Random(self.seed)
        self._closing = False
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeBotApi:
        api = self

        class Handler(_Handler):
            fake = api

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # ---- simulated users ------------------------------------------------------------------------
    def user(self, user_id: int, name: str = "用户") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": name, "language_code": "zh-hans"}

    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "讲话问答", "username": self.username}

    def send_text(
        self, user_id: int, text: str, chat: dict[str, Any] | None = None, reply_to: Sent | None = None
    ) -> dict[str, Any]:
        """A user's message; commands and @mentions get the entities Telegram would add."""
        entities = []
        if command := _COMMAND.match(text):
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group())})
        for mention in _MENTION.finditer(text):
            offset = utf16_len(text[: mention.start()])
            entities.append({"type": "mention", "offset": offset, "length": utf16_len(mention.group())})
        extra: dict[str, Any] = {"text": text}
        if entities:
            extra["entities"] = entities
        if reply_to is not None:
            extra["reply_to_message"] = self._messages[(reply_to.chat_id, reply_to.message_id)]
        return self._user_message(user_id, chat, extra)

    def send_document(self, user_id: int, file_name: str, content: bytes) -> dict[str, Any]:
        file_id = f"file-{len(self._files) + 1}"
        self._files[file_id] = content
        document = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": file_name}
        return self._user_message(user_id, None, {"document": {**document, "file_size": len(content)}})

    def press(self, message: Sent, data: str, user_id: int) -> str:
        """Press a button the message really has (a client cannot send other data)."""
        assert any(b.get("callback_data") == data for b in message.buttons()), f"no button {data!r}"
        query_id = f"cq{next(self._ids)}"
        stored = self._messages[(message.chat_id, message.message_id)]
        self.callback_answers[query_id] = {}
        payload = {"id": query_id, "from": self.user(user_id), "chat_instance": "ci", "message": stored, "data": data}
        self._enqueue({"callback_query": payload})
        return query_id

    def inline(self, user_id: int, query: str) -> str:
        query_id = f"iq{next(self._ids)}"
        self.inline_answers[query_id] = {}
        self._enqueue({"inline_query": {"id": query_id, "from": self.user(user_id), "query": query, "offset": ""}})
        return query_id

    def _user_message(self, user_id: int, chat: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
        chat = chat or {"id": user_id, "type": "private", "first_name": "用户"}
        with self._cond:
            message: dict[str, Any] = {"message_id": next(self._ids), "date": int(time.time()), "chat": chat}
            message |= {"from": self.user(user_id), **extra}
            self._messages[(chat["id"], message["message_id"])] = message
            self._chats[chat["id"]] = chat
        self._enqueue({"message": message})
        return message

    def _enqueue(self, update: dict[str, Any]) -> None:
        with self._cond:
            update["update_id"] = next(self._update_ids)
            self.enqueued_at[update["update_id"]] = time.perf_counter()
            self._updates.append(update)
            self._cond.notify_all()

    # ---- faults ---------------------------------------------------------------------------------
    def fail(
        self,
        method: str,
        status: int,
        description: str,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
        **parameters: Any,
    ) -> None:
        """Answer `times` matching requests with this error, before they have any effect."""
        self._faults.append(Fault(method, "status", times, status, description, parameters or None, when=when))

    def clear_faults(self) -> None:
        """Serve no more faults, random or set; holds stay, and parked requests wait for `release`."""
        with self._cond:
            self._faults = [fault for fault in self._faults if fault.kind in ("hold", "park")]
            self._random = None

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        self.fail(method, 429, f"Too Many Requests: retry after {retry_after}", times, retry_after=retry_after)

    def drop(self, method: str, times: int = 1) -> None:
        """Close the connection without an answer, before the request has any effect."""
        self._faults.append(Fault(method, "drop", times))

    def delay(self, method: str, seconds: float, times: int = 1) -> None:
        """Wait `seconds`, then execute and answer."""
        self._faults.append(Fault(method, "delay", times, seconds=seconds))

    def slow(self, method: str, times: int = 1) -> None:
        """Execute at once but answer only after `slow_seconds`: the client times out on a done request."""
        self._faults.append(Fault(method, "slow", times))

    def hold(self, method: str, when: Callable[[dict[str, Any]], bool] | None = None, times: int = 1_000) -> None:
        """Park matching requests, unexecuted, until `release()`."""
        self._faults.append(Fault(method, "hold", times, when=when))

    def park(self, method: str, when: Callable[[dict[str, Any]], bool] | None = None, times: int = 1_000) -> None:
        """Execute matching requests at once but park their responses until `release()`.

        As when Telegram delivered a reply and the bot died before hearing so; a parked response
        released with `execute=False` is never sent (the connection is closed).
        """
        self._faults.append(Fault(method, "park", times, when=when))

    def release(self, execute: bool) -> None:
        """Let parked requests go: executed and answered, or dropped without effect."""
        with self._cond:
            holds = [fault for fault in self._faults if fault.kind in ("hold", "park")]
            self._faults = [fault for fault in self._faults if fault.kind not in ("hold", "park")]
        for fault in holds:
            fault.execute = execute
            fault.released.set()

    def random_faults(
        self, rate: float, methods: tuple[str, ...], kinds: tuple[str, ...] = ("429", "500", "drop", "slow")
    ) -> None:
        self._random = (rate, methods, kinds)

    def _fault_for(self, method: str, params: dict[str, Any]) -> Fault | None:
        with self._cond:
            for fault in self._faults:
                if fault.method.lower() != method.lower() or fault.times <= 0:
                    continue
                if fault.when is None or fault.when(params):
                    fault.times -= 1
                    return fault
            if self._random and method in self._random[1] and self._rng.random() < self._random[0]:
                kind = self._rng.choice(self._random[2])
                self.injected[kind] += 1
                if kind == "429":
                    return Fault(method, "status", 1, 429, "Too Many Requests: retry after 1", {"retry_after": 1})
                if kind == "500":
                    return Fault(method, "status", 1, 500, "Internal Server Error")
                return Fault(method, kind, 1)
        return None

    # ---- observation ----------------------------------------------------------------------------
    async def until(self, probe: Callable[[], T | None], within: float = 10.0) -> T:
        """Wait (without blocking the event loop) until `probe()` returns something."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self._cond:
                found = probe()
            if found:
                return found
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out after {within} s; sent so far: {[s.text[:40] for s in self.sent]}")

    async def reply_for(self, message: dict[str, Any], within: float = 10.0, number: int = 1) -> Sent:
        """The bot's `number`th reply quoting `message`, once it arrives."""

        def probe() -> Sent | None:
            found = self.replies_to(message)
            return found[number - 1] if len(found) >= number else None

        return await self.until(probe, within)

    def replies_to(self, message: dict[str, Any]) -> list[Sent]:
        chat = message["chat"]["id"]
        return [s for s in self.sent if s.chat_id == chat and s.reply_to == message["message_id"]]

    def reply_to(self, message: dict[str, Any]) -> Sent | None:
        found = self.replies_to(message)
        return found[0] if found else None

    def in_chat(self, chat_id: int) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == chat_id]

    def count(self, method: str) -> int:
        return sum(1 for name, _, _ in self.calls if name == method)

    def pending_updates(self) -> int:
        with self._cond:
            return len(self._updates)

    # ---- Bot API methods ------------------------------------------------------------------------
    def handle(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        handler = getattr(self, f"_api_{method.lower()}", None)
        if handler is None:
            return 404, dict(NOT_FOUND)
        try:
            result = handler(params)
        except _ApiError as error:
            body = {"ok": False, "error_code": error.status, "description": error.description}
            return error.status, body
        return 200, {"ok": True, "result": result}

    def _checked_text(self, method: str, text: str, parse_mode: str | None) -> str:
        plain, problem = parse_html(text) if (parse_mode or "").upper() == "HTML" else (text, "")
        if not problem and not plain.strip():
            problem = "message text is empty"
        elif not problem and utf16_len(plain) > LIMIT:
            problem = "message is too long"
        if problem:
            self.problems.append(f"{method}: {problem}: {text[:60]!r}")
            raise _ApiError(400, f"Bad Request: {problem}")
        return plain

    def _checked_markup(self, method: str, markup: dict[str, Any] | None) -> None:
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                if len(button.get("callback_data", "").encode()) > 64:
                    self.problems.append(f"{method}: callback_data over 64 bytes")
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")

    def _api_getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot_user() | {"can_join_groups": True, "supports_inline_queries": True}

    def _api_deletewebhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates"):
            with self._cond:
                self._updates.clear()
        return True

    def _api_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset, limit = int(params.get("offset") or 0), int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._closing and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.1))
            return self._updates[:limit]

    def _api_sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        if chat_id in self.blocked:
            raise _ApiError(403, BLOCKED)
        plain = self._checked_text("sendMessage", params.get("text", ""), params.get("parse_mode"))
        self._checked_markup("sendMessage", params.get("reply_markup"))
        reply = (params.get("reply_parameters") or {}).get("message_id")
        with self._cond:
            chat = self._chats.get(chat_id, {"id": chat_id, "type": "private", "first_name": "用户"})
            message: dict[str, Any] = {"message_id": next(self._ids), "date": int(time.time()), "chat": chat}
            message["from"] = self.bot_user()
            message["text"] = plain
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            self._messages[(chat_id, message["message_id"])] = message
            sent = Sent(chat_id, message["message_id"], params["text"], plain, reply, params.get("reply_markup"), 0)
            sent.at = time.perf_counter()
            self.sent.append(sent)
        return message

    def _api_editmessagetext(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key[0] in self.blocked:
            raise _ApiError(403, BLOCKED)
        plain = self._checked_text("editMessageText", params.get("text", ""), params.get("parse_mode"))
        self._checked_markup("editMessageText", params.get("reply_markup"))
        with self._cond:
            message = self._messages.get(key)
            if message is None or message["from"]["id"] != self.bot_id:
                raise _ApiError(400, "Bad Request: message to edit not found")
            if message.get("text") == plain and message.get("reply_markup") == params.get("reply_markup"):
                raise _ApiError(400, NOT_MODIFIED)
            message["text"] = plain
            message["reply_markup"] = params.get("reply_markup")
            for sent in self.sent:
                if (sent.chat_id, sent.message_id) == key:
                    sent.html, sent.text, sent.markup, sent.edits = (
                        params["text"],
                        plain,
                        message["reply_markup"],
                        sent.edits + 1,
                    )
        return message

    def _api_answercallbackquery(self, params: dict[str, Any]) -> bool:
        if len(params.get("text") or "") > CALLBACK_TEXT_LIMIT:
            self.problems.append(f"answerCallbackQuery: text over {CALLBACK_TEXT_LIMIT} characters")
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        with self._cond:
            if self.callback_answers.get(params["callback_query_id"]) != {}:
                raise _ApiError(400, TOO_OLD)
            self.callback_answers[params["callback_query_id"]] = {"text": params.get("text"), **params}
        return True

    def _api_answerinlinequery(self, params: dict[str, Any]) -> bool:
        results = params.get("results") or []
        if len(results) > 50:
            self.problems.append("answerInlineQuery: more than 50 results")
            raise _ApiError(400, "Bad Request: RESULTS_TOO_MUCH")
        ids = [str(result.get("id", "")) for result in results]
        if any(not 1 <= len(result_id.encode()) <= RESULT_ID_LIMIT for result_id in ids):
            self.problems.append(f"answerInlineQuery: a result id is empty or over {RESULT_ID_LIMIT} bytes")
            raise _ApiError(400, "Bad Request: RESULT_ID_INVALID")
        if len(set(ids)) < len(ids):
            self.problems.append("answerInlineQuery: two results share an id")
            raise _ApiError(400, "Bad Request: RESULT_ID_DUPLICATE")
        for result in results:
            content = result.get("input_message_content") or {}
            self._checked_text("answerInlineQuery", content.get("message_text", ""), content.get("parse_mode"))
        with self._cond:
            if self.inline_answers.get(params["inline_query_id"]) != {}:
                raise _ApiError(400, TOO_OLD)
            self.inline_answers[params["inline_query_id"]] = params
        return True

    def _api_sendchataction(self, params: dict[str, Any]) -> bool:
        if int(params["chat_id"]) in self.blocked:
            raise _ApiError(403, BLOCKED)
        self.chat_actions.append((int(params["chat_id"]), params["action"], time.perf_counter()))
        return True

    def _api_setmycommands(self, params: dict[str, Any]) -> bool:
        for command in params["commands"]:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command["command"]) or not 1 <= len(command["description"]) <= 256:
                self.problems.append(f"setMyCommands: bad command {command}")
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        self.commands[json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True)] = params["commands"]
        return True

    def _api_getfile(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["file_id"] not in self._files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        size = len(self._files[params["file_id"]])
        return {"file_id": params["file_id"], "file_unique_id": "u", "file_size": size, "file_path": params["file_id"]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A bot killed mid-request resets its connections: expected, and no reason for a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeBotApi

    def log_message(self, format: str, *args: Any) -> None:  # the request line holds the token
        return

    def do_GET(self) -> None:
        prefix, path = f"/file/bot{self.fake.token}/", unquote(self.path)  # PTB percent-encodes the file URL
        content = self.fake._files.get(path.removeprefix(prefix)) if path.startswith(prefix) else None
        if content is None:
            self._reply(404, NOT_FOUND)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", self.path)
        if not match:
            self._reply(404, NOT_FOUND)
            return
        if match.group(1) != self.fake.token:
            self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        method, params = match.group(2), _decode(body, self.headers.get("Content-Type", ""))
        fault = self.fake._fault_for(method, params)
        if fault and fault.kind == "park":
            status, payload = self.fake.handle(method, params)
            self.fake.calls.append((method, params, status))
            if self._park(fault):
                self._reply(status, payload)
            return
        if fault and fault.kind == "hold":
            fault = None if self._park(fault) else Fault(method, "drop", 1)
        if fault and fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self.fake.calls.append((method, params, 0))
            return
        if fault and fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault and fault.kind == "status":
            status, payload = fault.status, {"ok": False, "error_code": fault.status, "description": fault.description}
            if fault.parameters:
                payload["parameters"] = fault.parameters
        else:
            status, payload = self.fake.handle(method, params)
        self.fake.calls.append((method, params, status))
        if fault and fault.kind == "slow":  # done; the client gives up before hearing so
            # a long poll's read timeout includes its own `timeout`, so a slow getUpdates must outlast both
            time.sleep(self.fake.slow_seconds + float(params.get("timeout") or 0))
            self.close_connection = True
        self._reply(status, payload)

    def _park(self, fault: Fault) -> bool:
        """Wait for `release`; whether the request may go on (else its connection has been closed)."""
        with self.fake._cond:
            self.fake.held += 1
        while not fault.released.wait(0.05) and not self.fake._closing:
            pass
        with self.fake._cond:
            self.fake.held -= 1
        if fault.execute and not self.fake._closing:
            return True
        if fault.kind == "park":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        return False

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)


def _decode(body: bytes, content_type: str) -> dict[str, Any]:
    """PTB sends strings raw and everything else JSON-encoded, so decode by parameter name."""
    if "json" in content_type:
        return dict(json.loads(body or b"{}"))
    params: dict[str, Any] = dict(parse_qsl(body.decode(), keep_blank_values=True))
    for name in JSON_PARAMS & params.keys():
        with contextlib.suppress(ValueError):
            params[name] = json.loads(params[name])
    return params
