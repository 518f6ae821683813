"""The DingTalk front-end: questions to an app robot in DingTalk, answered over Stream mode (`speechqa dingtalk`).

`app` runs the official `dingtalk-stream` client (an outbound WebSocket: no public callback URL)
with a question handler in the shape of the SDK's examples; `send` decodes DingTalk's robot
messages and replies in DingTalk markdown. Journaling, dedupe, access and the answer itself are
the shared layer's (`bot.inbox`, `bot.replies`, `bot.markdown`).
"""
