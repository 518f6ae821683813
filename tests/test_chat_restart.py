"""The real `speechqa dingtalk` process SIGKILLed with a question journaled and unanswered: the next run answers it.

DingTalk only: its SDK imports in a fraction of a second, Feishu's in three; the journal and the
replay are the same shared code (`bot.inbox`), and `benchmarks/bench_chat.py` kills both.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_config_file
from tests.fakechat import BotProcess, FakeDingTalk
from tests.fakechat import dingtalk as fake_dingtalk


def test_a_question_in_flight_at_a_kill_is_answered_once_after_the_restart(tmp_path: Path, corpus_dir: Path) -> None:
    config = write_config_file(tmp_path, corpus_dir)
    with config.open("a", encoding="utf-8") as extra:
        extra.write(f'[dingtalk]\nfeedback_db = "{tmp_path / "dingtalk.sqlite3"}"\n')
    fake = FakeDingTalk().start()
    bot = BotProcess("dingtalk", fake, tmp_path, config)
    try:
        fake.fail_replies(10_000)  # DingTalk takes no reply: the question stays unanswered in the journal
        bot.start()
        fake.wait(lambda: fake.connections == 1 or not bot.alive(), within=60)
        message = fake.ask("alice", "工匠日是怎么设立的？")
        fake.wait(lambda: fake.messages[message].acked and fake.failing < 10_000)  # journaled, acked, tried
        bot.kill()
        fake.fail_replies(0)
        bot.start()
        reply = fake.reply_for(message, within=60)
        assert bot.stop() == 0
    finally:
        bot.cleanup()
        fake.stop()
    assert reply.text.startswith("**答：**")
    assert len(fake.replies_to(message)) == 1
    assert (
        len(fake.messages[message].deliveries) == 1
    )  # acked before the kill: the journal, not DingTalk, brought it back
    logs = bot.logs()
    assert "answering 1 question(s) left unanswered by the previous run" in logs
    assert fake_dingtalk.CLIENT_SECRET not in logs
    assert fake.problems == []
