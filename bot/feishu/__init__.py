"""The Feishu (Lark) front-end: questions to an app bot, answered over its WebSocket events (`speechqa feishu`).

`app` runs the official `lark-oapi` WebSocket client (an outbound connection: no public callback
URL) with a message handler in the shape of the SDK's examples; `send` decodes Feishu's message
events and replies with interactive cards (plain HTTPS calls, so replies need no SDK). Journaling, dedupe,
access and the answer itself are the shared layer's (`bot.inbox`, `bot.replies`, `bot.markdown`).
"""
