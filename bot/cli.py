"""`speechqa`: ask the speeches from the command line.

    speechqa ask "工匠日是怎么设立的？"      a cited answer (builds the index on first use)
    speechqa chat                          an interactive session (/more, /open N, /help, /quit)
    speechqa ingest [PATH] [--json]        what cleaning and segmentation make of the speeches
    speechqa index                         build or refresh the index
    speechqa eval QUESTIONS.jsonl          hit@k, MRR, abstention and latency on a question set
    speechqa doctor                        what is installed, configured and built, and what to fix
    speechqa bot                           the Telegram bot (token from TELEGRAM_BOT_TOKEN)
    speechqa dingtalk                      the DingTalk bot (Stream mode; DINGTALK_CLIENT_ID/_SECRET)
    speechqa feishu                        the Feishu bot (WebSocket events; FEISHU_APP_ID/_SECRET)
    speechqa serve [--host H] [--port P]   the web page and JSON API (default http://127.0.0.1:8000/)

Output is for people by default and JSON with --json. Errors are one line on stderr with the next
step, and a non-zero exit code; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embeddings.errors import SpeechQAError

from .config import Config, load_config
from .render import print_error, render_answer, render_paragraph, use_colour

if TYPE_CHECKING:
    from embeddings.index.build import BuildReport
    from embeddings.ingest.corpus import Problem
    from embeddings.retrieval.retrieve import Retriever

    from .session import Conversation

logger = logging.getLogger("speechqa")

CHAT_HELP = """输入问题直接提问；也可以说“还有呢？”或“第二条的全文”。
  /more     下一页结果        /open N   打开第 N 条出处的整段（含上下文）
  /help     显示帮助          /quit     退出（也可按 Ctrl-D）"""


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _open(config: Config, *, force: bool = False) -> tuple[Retriever, BuildReport | None]:
    """The retriever, after building or refreshing the index when needed (saying why on stderr)."""
    from embeddings.engine import open_retriever

    def announce(reason: str) -> None:
        print(f"building the index ({reason}) …", file=sys.stderr)

    retriever, report = open_retriever(
        config.corpus_path,
        config.index_path,
        config.engine,
        progress=sys.stderr.isatty(),
        allow_network=True,
        force=force,
        on_rebuild=announce,
    )
    if report is not None:
        logger.info(
            "index built: %d passages (%d embedded, %d reused)", report.passages, report.embedded, report.reused
        )
        _print_problems(report.problems)
    return retriever, report


def _print_problems(problems: Iterable[Problem]) -> None:
    for problem in problems:
        print(f"skipped {problem.path}: {problem.reason}", file=sys.stderr)


def _print_notice(notice: str) -> None:
    """The lexical-only (or rerank-off) notice: once, on stderr, so stdout holds only the answer."""
    if notice:
        print(f"note: {notice}", file=sys.stderr)


def cmd_ask(args: argparse.Namespace, config: Config) -> int:
    from embeddings.retrieval.retrieve import validate_question

    from .answer import compose

    question = validate_question(args.question, config.answer.max_question_chars)
    retriever, _ = _open(config)
    settings = config.answer if args.top_k is None else _with_top_k(config, args.top_k)
    answer = compose(retriever.search(question, top_k=settings.top_k), settings)
    if args.json:
        _print_json(answer.to_dict())
    else:
        print(render_answer(answer, use_colour(sys.stdout)))
        _print_notice(retriever.notice)
    return 0


def _with_top_k(config: Config, top_k: int) -> Any:
    from dataclasses import replace

    if not 1 <= top_k <= 50:
        raise SpeechQAError(f"--top-k {top_k} is out of range", "use a number from 1 to 50")
    return replace(config.answer, top_k=top_k)


def cmd_chat(args: argparse.Namespace, config: Config) -> int:
    import contextlib

    from .session import Conversation

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())

    retriever, _ = _open(config)
    conversation = Conversation(retriever, config.answer)
    colour = use_colour(sys.stdout)
    counts = f"{len(retriever.speeches)} 篇讲话 · {len(retriever.passages)} 个片段"
    print(f"speechqa chat · {counts} · {retriever.mode} · /help 查看帮助")
    _print_notice(retriever.notice)
    while True:
        try:
            line = input("问> ").strip()
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            continue
        if not line:
            continue
        if line.split()[0] in ("/quit", "/exit", "/q"):
            return 0
        print(_chat_reply(line, conversation, colour))
        print()


def _chat_reply(line: str, conversation: Conversation, colour: bool) -> str:
    """What the chat says to one line: a command, a follow-up on the last answer, or a new question."""
    from embeddings.errors import BadQuestion

    from .session import follow_up

    command, _, rest = line.partition(" ")
    action = follow_up(line)
    if command in ("/help", "/?"):
        return CHAT_HELP
    if command.startswith("/") and command not in ("/more", "/open"):
        return f"未知命令 {command}。\n{CHAT_HELP}"
    if (command == "/more" or action == ("more", 0)) and conversation.result is None:
        return "请先提一个问题。"
    if command == "/more" or action == ("more", 0):
        more = conversation.more()
        return render_answer(more, colour) if more else "没有更多结果了。"
    if command == "/open" or (action and action[0] == "open"):
        if action is None and not rest.strip().isdigit():
            return "用法：/open N（N 为出处编号，例如 /open 1）。"
        number = action[1] if action else int(rest)
        view = conversation.open(number)
        if view is not None:
            return render_paragraph(view, colour)
        return f"没有第 {number} 条出处。" + ("" if conversation.result else "请先提一个问题。")
    limit = conversation.settings.max_question_chars
    if len(line) > limit:
        return f"问题太长了（{len(line)} 字），请控制在 {limit} 字以内。"
    try:
        return render_answer(conversation.ask(line), colour)
    except BadQuestion:
        return "问题里没有可以检索的文字，请用文字提问。"


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    from embeddings.ingest.corpus import load_corpus

    corpus = load_corpus(Path(args.path) if args.path else config.corpus_path, config.segment)
    if args.json:
        _print_json(
            {
                "speeches": [
                    {
                        "speech_id": s.speech_id,
                        "title": s.title,
                        "subtitle": s.subtitle,
                        "source": s.source,
                        "aliases": list(s.aliases),
                        "encoding": s.encoding,
                        "sections": len(s.sections),
                        "paragraphs": len(s.paragraphs),
                        "front_matter": None if s.front_matter is None else [s.front_matter.start, s.front_matter.end],
                        "rules_fired": s.rules_fired,
                    }
                    for s in corpus.speeches
                ],
                "passages": [p.to_dict() for p in corpus.passages],
                "problems": [{"path": p.path, "reason": p.reason} for p in corpus.problems],
            }
        )
        return 0
    for speech in corpus.speeches:
        count = sum(1 for p in corpus.passages if p.speech_id == speech.speech_id)
        rules = ", ".join(f"{rule}×{n}" for rule, n in speech.rules_fired.items()) or "none"
        print(f"{speech.source}  ({speech.encoding})")
        print(f"  title:      《{speech.title}》" + (f" {speech.subtitle}" if speech.subtitle else ""))
        if speech.aliases:
            print(f"  also as:    {', '.join(speech.aliases)}")
        front = " + front matter" if speech.front_matter is not None else ""
        print(f"  sections {len(speech.sections)} · paragraphs {len(speech.paragraphs)}{front} · passages {count}")
        print(f"  cleaning:   {rules}")
    _print_problems(corpus.problems)
    print(f"{len(corpus.speeches)} speech(es), {len(corpus.passages)} passages, {len(corpus.problems)} skipped")
    return 0


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    retriever, report = _open(config, force=args.force)
    _print_notice(retriever.notice)
    _sync_milvus(retriever, config)
    if report is None:
        print(f"index in {config.index_path} is up to date ({len(retriever.passages)} passages, {retriever.mode})")
        return 0
    weight = "" if report.dense_weight is None else f", dense weight {report.dense_weight:.2f}"
    words = "all cut into words" if report.cut == report.passages else f"{report.cut} cut into words, others as before"
    print(
        f"index ready in {config.index_path}: {report.passages} passages ({words}), "
        f"{report.embedded} sentences embedded, {report.reused} reused from cache{weight}"
    )
    return 0


def _sync_milvus(retriever: Retriever, config: Config) -> None:
    """With the Milvus backend: bring its collections in step (raises when Milvus is down) and say what was written."""
    words = retriever.remote_words
    if words is None:
        return
    words.ready(progress=sys.stderr.isatty())
    where = f"Milvus collection {config.backend.collection!r} at {config.backend.uri}"
    done = words.ready.report
    if done is None:
        print(f"{where} is up to date")
    else:
        print(
            f"{where}: {done.written} speech(es) written ({done.rows} rows) in {done.seconds:.1f} s, "
            f"{done.deleted} deleted, {done.kept} unchanged" + (" (collections made anew)" if done.recreated else "")
        )


def cmd_eval(args: argparse.Namespace, config: Config) -> int:
    from embeddings.retrieval.evaluate import evaluate, load_questions

    questions = load_questions(Path(args.questions))
    report = evaluate(_open(config)[0], questions)
    if args.json:
        _print_json(report.to_dict())
        return 0
    _print_notice(report.notice)
    quality = report.quality
    print(f"mode {report.mode}")
    print(f"questions {quality.questions} (answerable {quality.answerable}, unanswerable {quality.unanswerable})")
    hits = f"hit@1 {quality.hit_at_1:.3f}  hit@3 {quality.hit_at_3:.3f}  hit@5 {quality.hit_at_5:.3f}"
    print(f"{hits}  MRR@10 {quality.mrr_at_10:.3f}")
    print(
        f"declined unanswerable {quality.declined_unanswerable}/{quality.unanswerable}  "
        f"wrongly declined answerable {quality.wrongly_declined_answerable}/{quality.answerable}"
    )
    print(f"latency p50 {report.latency_p50_ms:.2f} ms  p95 {report.latency_p95_ms:.2f} ms")
    for kind, figures in report.by_kind().items():
        if figures.answerable:
            shown = f"hit@1 {figures.hit_at_1:.2f}  hit@5 {figures.hit_at_5:.2f}"
            print(f"  {kind} ({figures.questions}): {shown}  wrongly declined {figures.wrongly_declined_answerable}")
        else:
            print(f"  {kind} ({figures.questions}): declined {figures.declined_unanswerable}/{figures.unanswerable}")
    for row in report.rows:
        if (row.answerable and row.rank != 1) or row.answerable == row.declined:
            declined = " declined" if row.declined else ""
            print(f"  {row.id}: rank {row.rank} confidence {row.confidence:.2f}{declined} {row.question}")
    return 0


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from .doctor import diagnose

    findings = diagnose(config)
    if args.json:
        _print_json(findings)
    else:
        for item in findings["checks"]:
            mark = "ok " if item["ok"] else "!! "
            print(f"{mark} {item['name']}: {item['detail']}")
            if not item["ok"] and item.get("fix"):
                print(f"    fix: {item['fix']}")
    return 0 if all(item["ok"] for item in findings["checks"] if item.get("required", True)) else 1


def cmd_bot(args: argparse.Namespace, config: Config) -> int:
    try:
        from .telegram.app import read_token, run_bot
    except ImportError as error:
        raise SpeechQAError(
            f"the Telegram bot needs python-telegram-bot ({error})", 'pip install -e ".[bot]"'
        ) from error
    token = read_token()
    _bot_logging(token, "bot")
    run_bot(config, token)
    return 0


def cmd_dingtalk(args: argparse.Namespace, config: Config) -> int:
    from .access import read_credentials

    client_id, secret = read_credentials("DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET")
    try:
        from .dingtalk.app import run
    except ImportError as error:
        hint = 'pip install -e ".[dingtalk]"'
        raise SpeechQAError(f"the DingTalk bot needs dingtalk-stream ({error})", hint) from error
    _bot_logging(secret, "bot", "dingtalk_stream")
    run(config, client_id, secret)
    return 0


def cmd_feishu(args: argparse.Namespace, config: Config) -> int:
    from .access import read_credentials

    app_id, secret = read_credentials("FEISHU_APP_ID", "FEISHU_APP_SECRET")
    try:
        from .feishu.app import run
    except ImportError as error:
        raise SpeechQAError(f"the Feishu bot needs lark-oapi ({error})", 'pip install -e ".[feishu]"') from error
    _bot_logging(secret, "bot")
    run(config, app_id, secret)
    return 0


def _bot_logging(secret: str, *loggers: str) -> None:
    """A bot's log: the secret redacted from every line, times on each, and its own lines from INFO."""
    from .access import protect_handlers

    # Telegram's request URLs hold the token: httpx and httpcore stay quiet, and each handler redacts
    # whatever still carries a secret (tracebacks, an SDK's debug lines).
    root = logging.getLogger()
    protect_handlers(secret, root.handlers)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # A bot runs for days: its lines need times, and start-up, refusals and reindexing are worth a
    # line each even without -v.
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if root.getEffectiveLevel() > logging.INFO:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.INFO)


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from .web.serve import serve

    # A server runs for days: its lines need times, and start-up and requests are worth a line each.
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("bot.web").setLevel(logging.INFO)
    serve(config, args.host or config.web.host, config.web.port if args.port is None else args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechqa", description="Cited answers from a corpus of Chinese speeches.")
    parser.add_argument("--config", help="config file (default: $SPEECHQA_CONFIG or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Also accepted after the command (`speechqa ask --config x.toml …`); SUPPRESS keeps a value
    # given before the command when none is given after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def add(name: str, handler: Callable[[argparse.Namespace, Config], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    ask = add("ask", cmd_ask, "answer one question, e.g. speechqa ask '工匠日是怎么设立的？'")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, help="number of cited passages (default from config)")
    ask.add_argument("--json", action="store_true", help="machine-readable output")
    add("chat", cmd_chat, "interactive questions with /more, /open N, /help, /quit")
    ingest = add("ingest", cmd_ingest, "show how the speeches are cleaned and cut into passages")
    ingest.add_argument("path", nargs="?", help="corpus folder (default from config)")
    ingest.add_argument("--json", action="store_true", help="emit speeches, passages and problems as JSON")
    index = add("index", cmd_index, "build or refresh the index")
    index.add_argument("--force", action="store_true", help="rebuild from the speeches alone, even when up to date")
    evaluation = add("eval", cmd_eval, "score retrieval on a JSONL question set with gold spans")
    evaluation.add_argument("questions")
    evaluation.add_argument("--json", action="store_true")
    doctor = add("doctor", cmd_doctor, "check installation, model, corpus and index; say how to fix problems")
    doctor.add_argument("--json", action="store_true")
    add("bot", cmd_bot, "run the Telegram bot (long polling; token from TELEGRAM_BOT_TOKEN)")
    add("dingtalk", cmd_dingtalk, "run the DingTalk bot (Stream mode; DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET)")
    add("feishu", cmd_feishu, "run the Feishu bot (WebSocket events; FEISHU_APP_ID and FEISHU_APP_SECRET)")
    serve = add("serve", cmd_serve, "serve the web page and JSON API (access token from SPEECHQA_WEB_TOKEN)")
    serve.add_argument("--host", help="address to listen on (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8000; 0 picks a free one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        format="%(levelname)s %(name)s: %(message)s", level=logging.INFO if args.verbose else logging.WARNING
    )
    for noisy in ("httpx", "faiss.loader", "sentence_transformers", "transformers", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        config = load_config(args.config)
        return int(args.handler(args, config))
    except SpeechQAError as error:
        print_error(str(error), error.hint)
        return 1
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as error:
        # A read-only checkout, a full disk, an index_dir that is a file: the user can fix these.
        logger.info("file system error", exc_info=True)
        where = f" ({error.filename})" if error.filename else ""
        print_error(
            f"{error.strerror or error}{where}",
            "check that path, its permissions and free space (paths come from the config file); -v shows details",
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
