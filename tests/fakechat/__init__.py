"""Local fakes of DingTalk's and Feishu's bot endpoints, and ways to run the real bots against them.

Each fake is an aiohttp server on 127.0.0.1 (`base.FakePlatform`) serving what the official SDK
calls: the connection set-up, the long connection with the platform's own frames and acks, and
the reply API. It delivers a message again until acked, records every delivery and reply with
its clock, can drop its connections (`drop`) and fail replies (`fail_replies`), and lists in
`problems` anything the bot sent that the platform would refuse.
"""

from .base import FakePlatform, Reply
from .dingtalk import FakeDingTalk
from .feishu import FakeFeishu
from .harness import BotProcess, dingtalk_bot, feishu_bot, pointed_at

__all__ = [
    "BotProcess",
    "FakeDingTalk",
    "FakeFeishu",
    "FakePlatform",
    "Reply",
    "dingtalk_bot",
    "feishu_bot",
    "pointed_at",
]
