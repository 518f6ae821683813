"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests of the real PTB HTTP stack.

    api = FakeBotApi(TOKEN).start()
    app = build_application(config, TOKEN, api.base_url, timeout=2)
    async with running(app):
        question = api.send_text(ALICE, "工匠日是怎么设立的？")
        reply = await api.until(lambda: api.reply_to(question))

It routes `/bot<token>/<method>` and `/file/bot<token>/<path>` (anything else: 404 "Not Found",
a wrong token: 401), long-polls getUpdates with offset semantics, records every call, answers with
Telegram's own error shapes, and itself checks what the bot sends: every text is Telegram HTML
(allowed tags, balanced, entities) of at most 4,096 UTF-16 units, callback data at most 64 bytes,
notification texts at most 200 characters, inline result ids 1-64 bytes and distinct. A violation
is answered with Telegram's 400 and listed in `problems`, which tests assert is empty. A user in
`blocked` gets 403 "bot was blocked by the user" for messages, chat actions and edits. Its repr
leaves out the token, which a failing test's traceback would otherwise print.
Faults are injected per method (`fail`, `drop`, `delay`, `slow`, `hold`, `park`) or at random with a
seed (`random_faults`); `clear_faults` ends them. Like Telegram, getUpdates returns every update
from the requested offset on, so an update is delivered again until a later getUpdates confirms it.

How each fault relates to the request's effect, which decides whether a retry can duplicate:
- status (429, 5xx) and `drop`: answered or cut off *before* the request has any effect;
- `delay`: waits, then executes and answers (slow but within the client's patience);
- `slow`: executes at once, then answers only after `slow_seconds` — longer than the client's
  read timeout — as when Telegram delivered a message but its response is lost on the way back;
- `hold`: parks the request unexecuted until `release()`, which executes it or drops it (a bot
  killed while a request is parked never gets its effect);
- `park`: executes at once and parks the *response* until `release()` (a reply Telegram delivered
  to a bot that died before hearing so).

`bot_id`, `first_id` and `update_ids_from` make another bot, or the same one after Telegram
started its update ids again. `BotProcess` runs the real `speechqa bot` against the fake.
"""

from .harness import drive, everything_said, running
from .htmlcheck import LIMIT, TAGS, parse_html, utf16_len
from .process import BotProcess
from .server import BLOCKED, BOT_ID, NOT_MODIFIED, TOO_OLD, FakeBotApi, Fault, Sent

__all__ = [
    "BLOCKED",
    "BOT_ID",
    "LIMIT",
    "NOT_MODIFIED",
    "TAGS",
    "TOO_OLD",
    "BotProcess",
    "FakeBotApi",
    "Fault",
    "Sent",
    "drive",
    "everything_said",
    "parse_html",
    "running",
    "utf16_len",
]
