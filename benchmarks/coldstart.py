"""CLI cold start: wall time of `speechqa ask` as a fresh process against an index already built.

The config is the repository's `config.toml` with `[dense] mode = "off"`, every path made
absolute, and the index (and feedback database) in a temporary folder, so the run neither reads
nor disturbs the repository's own `data/index`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.systems import REPO

QUESTION = "工匠日是怎么设立的？"
RUNS = 5
_REPO_RELATIVE = (
    ("corpus", "path"),
    ("lexical", "user_dict"),
    ("lexical", "stopwords"),
    ("lexical", "question_frames"),
)


@dataclass(frozen=True, slots=True)
class ColdStart:
    question: str
    runs_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)


def measure_cold_start(runs: int = RUNS) -> ColdStart:
    speechqa = Path(sys.executable).with_name("speechqa")
    with tempfile.TemporaryDirectory(prefix="speechqa-cold-") as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(to_toml(benchmark_config(REPO / "config.toml", Path(tmp))), "utf-8")
        _run([str(speechqa), "--config", str(config), "index"])
        # One untimed ask first: it proves the index is fresh (a timed run must never rebuild) and
        # reads the files into the OS cache, as on any machine where the bot has been used before.
        _run([str(speechqa), "--config", str(config), "ask", QUESTION])
        times = tuple(_timed([str(speechqa), "--config", str(config), "ask", QUESTION]) for _ in range(runs))
    return ColdStart(QUESTION, times)


def benchmark_config(source: Path, workdir: Path) -> dict[str, Any]:
    config = tomllib.loads(source.read_text("utf-8"))
    for section, key in _REPO_RELATIVE:
        value = Path(config[section][key]).expanduser()
        config[section][key] = str(value if value.is_absolute() else (source.parent / value).resolve())
    config["corpus"]["index_dir"] = str(workdir / "index")
    config["telegram"]["feedback_db"] = str(workdir / "feedback.sqlite3")
    config["dense"]["mode"] = "off"
    return config


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for a config of tables of scalars and lists (tomllib reads but cannot write)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    _run(command)
    return time.perf_counter() - started
