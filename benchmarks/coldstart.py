"""CLI cold start: `speechqa index` into an empty folder, then `speechqa ask` as a fresh process, timed.

The config is the repository's `config.toml` as shipped (the default: `[dense] mode = "auto"` with
speechqa's trained model, the bundled one when that cannot be had), with every path made absolute
(the model's too, when it names a folder beside the config) and the index (and feedback database)
in a temporary folder, so the run neither reads nor disturbs the repository's own `data/index`.
That folder starts empty, as on a first `make ask` (the vectors shipped for the shipped speeches,
when the config names them, are used as a user gets them); a second build, into another empty
folder without the shipped vectors, embeds every sentence: the build from nothing. The
environment is the caller's.
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
from bot.config import model_beside

# One in the speech's own words, one reworded (it leans on the model more); timed in turn.
QUESTIONS = ("工匠日是怎么设立的？", "西湖区建会之所以推得动，背后靠什么撑着？")
RUNS = 6
_REPO_RELATIVE = (
    ("corpus", "path"),
    ("lexical", "user_dict"),
    ("lexical", "stopwords"),
    ("lexical", "question_frames"),
    ("dense", "shipped_vectors"),
)


@dataclass(frozen=True, slots=True)
class ColdStart:
    questions: tuple[str, ...]
    runs_s: tuple[float, ...]
    index_s: float = 0.0  # `speechqa index` into an empty folder, as shipped (with the shipped vectors, if any)
    index_from_nothing_s: float = 0.0  # the same without the shipped vectors: every sentence embedded
    mode: str = ""  # what `speechqa ask --json` says it answered with
    model: str = ""  # the embedding model the index was built with (its manifest), or "no model"

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)


def measure_cold_start(runs: int = RUNS) -> ColdStart:
    speechqa = Path(sys.executable).with_name("speechqa")
    with tempfile.TemporaryDirectory(prefix="speechqa-cold-") as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(to_toml(benchmark_config(REPO / "config.toml", Path(tmp))), "utf-8")
        index_s = _timed([str(speechqa), "--config", str(config), "index"])
        nothing = Path(tmp) / "from-nothing"
        nothing.mkdir()
        bare = benchmark_config(REPO / "config.toml", nothing)
        bare.get("dense", {})["shipped_vectors"] = ""
        (nothing / "config.toml").write_text(to_toml(bare), "utf-8")
        from_nothing_s = _timed([str(speechqa), "--config", str(nothing / "config.toml"), "index"])
        # One untimed ask first: it proves the index is fresh (a timed run must never rebuild) and
        # reads the files into the OS cache, as on any machine where the bot has been used before.
        answer = json.loads(_run([str(speechqa), "--config", str(config), "ask", "--json", QUESTIONS[0]]))
        times = tuple(
            _timed([str(speechqa), "--config", str(config), "ask", QUESTIONS[i % len(QUESTIONS)]]) for i in range(runs)
        )
        model = _manifest_model(Path(tmp) / "index")
    return ColdStart(QUESTIONS, times, index_s, from_nothing_s, str(answer.get("mode", "")), model)


def _manifest_model(index: Path) -> str:
    models = set()
    for manifest in index.glob("*/manifest.json"):
        dense = json.loads(manifest.read_text("utf-8")).get("dense") or {}
        models.add(str(dense.get("model") or "no model"))
    return ", ".join(sorted(models)) or "no manifest found"


def benchmark_config(source: Path, workdir: Path) -> dict[str, Any]:
    config = tomllib.loads(source.read_text("utf-8"))
    for section, key in _REPO_RELATIVE:
        if not config.get(section, {}).get(key):
            continue
        value = Path(config[section][key]).expanduser()
        config[section][key] = str(value if value.is_absolute() else (source.parent / value).resolve())
    if model := config.get("dense", {}).get("model"):
        config["dense"]["model"] = model_beside(source.parent, model)
    config["corpus"]["index_dir"] = str(workdir / "index")
    config["telegram"]["feedback_db"] = str(workdir / "feedback.sqlite3")
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


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    _run(command)
    return time.perf_counter() - started
