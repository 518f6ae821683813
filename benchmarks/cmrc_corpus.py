"""CMRC 2018 served as a corpus, measured the way a user would: `speechqa index`, then `speechqa eval`.

    .venv/bin/python -m benchmarks.cmrc_corpus [--mode lexical|hybrid] [--questions N] [--keep DIR]

Each CMRC dev paragraph becomes one speech file (its article title, then the paragraph), and each
question an eval line whose gold spans are its answers. So a hit counts only when the answer
itself is inside the part of the paragraph the hit shows, not merely somewhere in its paragraph:
that is what a reader sees. Hybrid uses the bundled model (`[dense] fallback`), embedding ~430,000
characters once (several minutes on 2 cores); the index and its vectors are kept with `--keep`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.systems import REPO

CMRC = REPO.parent / "shared" / "bench" / "cmrc2018-dev"


def write_corpus(folder: Path, questions: int | None) -> Path:
    """The paragraphs as files and the questions as an eval file; returns the eval file."""
    speeches = folder / "speeches"
    speeches.mkdir(parents=True, exist_ok=True)
    for line in (CMRC / "passages.jsonl").read_text("utf-8").splitlines():
        record = json.loads(line)
        title = record["title"] or record["id"]
        (speeches / f"{record['id']}.txt").write_text(f"{title}\n{record['text']}\n", "utf-8")
    rows = [json.loads(line) for line in (CMRC / "questions.jsonl").read_text("utf-8").splitlines()]
    if questions is not None:
        rows = rows[:: max(1, len(rows) // questions)][:questions]
    eval_file = folder / "questions.jsonl"
    with eval_file.open("w", encoding="utf-8") as out:
        for row in rows:
            record = {"id": row["id"], "question": row["question"], "gold": row["answers"], "answerable": True}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return eval_file


def write_config(folder: Path, mode: str) -> Path:
    dense = 'mode = "off"' if mode == "lexical" else 'mode = "auto"\nfallback = "bundled"'
    config = folder / f"config-{mode}.toml"
    config.write_text(
        f"""[corpus]
path = "{folder / "speeches"}"
index_dir = "{folder / f"index-{mode}"}"
[lexical]
user_dict = "{REPO / "data/jieba/userdict.txt"}"
stopwords = "{REPO / "data/jieba/stopwords.txt"}"
question_frames = "{REPO / "data/jieba/question_frames.txt"}"
[dense]
{dense}
""",
        "utf-8",
    )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cmrc_corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("lexical", "hybrid"), default="lexical")
    parser.add_argument("--questions", type=int, help="a spread sample of N questions (default: all 3,219)")
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it (the vectors are reused next time)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        eval_file = write_corpus(folder, args.questions)
        config = write_config(folder, args.mode)
        speechqa = str(Path(sys.executable).parent / "speechqa")
        subprocess.run([speechqa, "--config", str(config), "index"], check=True)
        done = subprocess.run(
            [speechqa, "--config", str(config), "eval", str(eval_file), "--json"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        report = json.loads(done.stdout)
        keys = ("mode", "questions", "hit_at_1", "hit_at_5", "mrr_at_10", "wrongly_declined_answerable")
        print(json.dumps({k: report[k] for k in keys} | {"p50_ms": report["latency_p50_ms"]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
