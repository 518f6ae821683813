"""Fusing the lexical and dense rankings, and how much to trust the dense side.

Scores are fused as a convex combination of per-question min-max normalised scores, which keeps
each side's margins (RRF throws them away: a near-tie and a landslide look the same). The dense
weight is either configured or calibrated per index: held-out sentences of the corpus, each with
a third of its words dropped at random, are searched with each weight, and the weight that finds
their passages best wins. A model that is weak on the corpus earns a weight near zero, so hybrid
ranking is not worse than lexical alone; a strong one earns its share.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
CALIBRATION_QUERIES = 200


def normalise(scores: np.ndarray) -> np.ndarray:
    low, high = float(scores.min(initial=0.0)), float(scores.max(initial=0.0))
    if high - low <= 1e-9:
        return np.zeros_like(scores)
    return (scores - low) / (high - low)


def fuse(lexical: np.ndarray, dense: np.ndarray, dense_weight: float) -> np.ndarray:
    """Fused scores over the same candidate rows; both inputs are raw scores for those rows."""
    return (1.0 - dense_weight) * normalise(lexical) + dense_weight * normalise(dense)


def calibration_queries(
    texts: Sequence[str], split: Callable[[str], list[str]], seed: int = 13
) -> list[tuple[str, int]]:
    """(pseudo-question, row) pairs: a sentence of the passage with a third of its words dropped."""
    rng = random.Random(seed)
    rows = list(range(len(texts)))
    rng.shuffle(rows)
    queries = []
    for row in rows[: CALIBRATION_QUERIES * 2]:
        sentences = [s for s in texts[row].replace("！", "。").replace("？", "。").split("。") if len(s) >= 12]
        if not sentences:
            continue
        words = split(rng.choice(sentences))
        kept = [w for w in words if rng.random() > 1 / 3]
        if len(kept) >= 3:
            queries.append(("".join(kept), row))
        if len(queries) == CALIBRATION_QUERIES:
            break
    return queries


def choose_dense_weight(
    queries: Sequence[tuple[str, int]],
    lexical_scores: Callable[[str], np.ndarray],
    dense_scores: Callable[[str], np.ndarray],
    candidates: int,
) -> float:
    """The grid weight with the best mean reciprocal rank on `queries`; ties go to the smaller weight."""
    if not queries:
        return 0.0
    totals = dict.fromkeys(WEIGHT_GRID, 0.0)
    for text, row in queries:
        lexical, dense = lexical_scores(text), dense_scores(text)
        pool = np.union1d(np.argsort(-lexical)[:candidates], np.argsort(-dense)[:candidates])
        for weight in WEIGHT_GRID:
            fused = fuse(lexical[pool], dense[pool], weight)
            order = pool[np.argsort(-fused, kind="stable")]
            position = np.flatnonzero(order == row)
            totals[weight] += 1.0 / (position[0] + 1) if len(position) else 0.0
    best = max(totals.values())
    return min(weight for weight, total in totals.items() if total >= best - 1e-9)
