"""Fine-tune the meaning model: `python -m training.train` (or `make train`). Resumes where it stopped.

Contrastive training of question → answering sentence: each question's positive against its hard
negatives (same paragraph, BM25's pick from another paragraph) and every other sentence of the batch,
plus a fixed "no answer" candidate that the written questions the reports do not answer must prefer.
Half of the mix is the questions written in the askers' words (`training/asked/`): CMRC alone,
whose questions copy their answer's words, drifts towards what the words leg already does.
Fixed seeds; the data's checksums, the settings and every checkpoint are written to the run folder,
each write atomic, so a run can stop anywhere and continue in a later session on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from embeddings.index.store import file_digest
from embeddings.models.e5file import E5File, bundled_model_path
from embeddings.models.e5tokens import PASSAGE_PREFIX, QUERY_PREFIX, E5Tokenizer
from training.data import Example, evaluation_questions, training_examples
from training.model import build_encoder, embed, freeze_below

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
EVALUATION_SETS = (*sorted((SHARED / "eval").glob("*.jsonl")), *sorted((REPO / "benchmarks/questions").glob("*.jsonl")))


@dataclass(frozen=True, slots=True)
class Recipe:
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-5
    warmup_steps: int = 10
    temperature: float = 0.05
    first_trained_layer: int = 0
    report_share: float = 0.5
    reword_share: float = 0.5
    asked_share: float = 0.5
    max_query_tokens: int = 48
    max_passage_tokens: int = 96
    seed: int = 17
    save_every: int = 20
    # Above 0: a "no answer" candidate at this similarity for every question; the written questions the
    # reports do not answer must prefer it to every sentence, the others must rank their answer above it.
    no_answer_similarity: float = 0.5


def contrastive_loss(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float,
    repeats: torch.Tensor | None = None,
    *,
    targets: torch.Tensor | None = None,
    no_answer_similarity: float | None = None,
) -> torch.Tensor:
    """Query i's positive is candidate `targets[i]` (default i); every other candidate (hard negatives
    included) is a negative.

    `repeats[i, j]` marks candidate j as the same text as query i's positive: several questions of a
    batch may share their answering sentence, and it must not count against them as a negative.
    With `no_answer_similarity`, one more candidate scores that similarity for every query; its index,
    `len(candidates)`, is the target of a question nothing answers.
    """
    scores = queries @ candidates.T / temperature
    if repeats is not None:
        scores = scores.masked_fill(repeats, float("-inf"))
    if no_answer_similarity is not None:
        none_of_these = torch.full((len(queries), 1), no_answer_similarity / temperature, device=scores.device)
        scores = torch.cat([scores, none_of_these], dim=1)
    if targets is None:
        targets = torch.arange(len(queries), device=queries.device)
    return torch.nn.functional.cross_entropy(scores, targets)


class Run:
    """One training run's folder: settings, data checksums, checkpoints, log."""

    def __init__(self, folder: Path, recipe: Recipe) -> None:
        self.folder = folder
        self.recipe = recipe
        folder.mkdir(parents=True, exist_ok=True)
        settings = folder / "recipe.json"
        if settings.exists():
            stored = json.loads(settings.read_text())
            if stored != asdict(recipe):
                raise SystemExit(f"{folder} was started with other settings ({settings}); use a new --out folder")
        else:
            _write_json(settings, asdict(recipe))

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.safetensors"

    def log(self, record: dict[str, object]) -> None:
        with (self.folder / "log.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _write_json(path: Path, value: object) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False))
    temporary.replace(path)


def save_checkpoint(run: Run, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    tensors = {
        f"model/{name}": p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad
    }
    names = {id(p): name for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in optimizer.state.get(parameter, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    tensors[f"optim/{key}/{names[id(parameter)]}"] = value.detach().cpu().contiguous()
    # One file, its step in the metadata, replaced in one rename: a run killed while saving keeps the last one.
    temporary = run.checkpoint.with_suffix(".tmp")
    save_file(tensors, str(temporary), metadata={"step": str(step)})
    temporary.replace(run.checkpoint)
    # The model alone at each save, so the dev sets can choose the step afterwards.
    snapshots = run.folder / "snapshots"
    snapshots.mkdir(exist_ok=True)
    model_only = {key: value for key, value in tensors.items() if key.startswith("model/")}
    save_file(model_only, str(snapshots / f"step-{step:05d}.safetensors.tmp"))
    (snapshots / f"step-{step:05d}.safetensors.tmp").replace(snapshots / f"step-{step:05d}.safetensors")


def load_checkpoint(run: Run, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """The step the checkpoint was taken after (0 when there is none); model and optimizer restored."""
    if not run.checkpoint.exists():
        return 0
    with safe_open(str(run.checkpoint), framework="pt") as stored:
        step = int(stored.metadata()["step"])
        tensors = {key: stored.get_tensor(key) for key in stored.keys()}  # noqa: SIM118 (no __iter__)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            if key.startswith("model/"):
                parameters[key.removeprefix("model/")].copy_(value)
    if optimizer is not None:
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, slot, name = key.split("/", 2)
                state = optimizer.state[parameters[name]]
                state[slot] = value.to(parameters[name].device)
                state["step"] = torch.tensor(float(step))
    return step


def learning_rate(recipe: Recipe, step: int) -> float:
    if step < recipe.warmup_steps:
        return recipe.learning_rate * (step + 1) / recipe.warmup_steps
    remaining = (recipe.steps - step) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.learning_rate * max(0.0, remaining)


def batch_of(examples: Sequence[Example], recipe: Recipe, step: int) -> list[Example]:
    """The examples of `step`: a fixed permutation per pass over the data, so a resumed run sees the same batches."""
    per_pass = len(examples) // recipe.batch_size
    order = list(range(len(examples)))
    random.Random(recipe.seed * 1000 + step // per_pass).shuffle(order)
    start = (step % per_pass) * recipe.batch_size
    return [examples[i] for i in order[start : start + recipe.batch_size]]


def batch_candidates(batch: Sequence[Example]) -> tuple[list[str], list[int]]:
    """The batch's sentences (the positives first, then every negative) and each question's target among them:
    its positive, or one past the last sentence ("no answer") for a question without one."""
    positives = [e.positive for e in batch if e.answerable]
    candidates = positives + [n for e in batch for n in e.negatives]
    targets, answered = [], 0
    for example in batch:
        targets.append(answered if example.answerable else len(candidates))
        answered += example.answerable
    return candidates, targets


def repeated_positives(batch: Sequence[Example], candidates: Sequence[str], targets: Sequence[int]) -> torch.Tensor:
    return torch.tensor(
        [
            [j != target and example.answerable and text == example.positive for j, text in enumerate(candidates)]
            for example, target in zip(batch, targets, strict=True)
        ]
    )


def train(run: Run, examples: Sequence[Example], source: E5File, device: torch.device, quiet: bool = False) -> int:
    recipe = run.recipe
    torch.manual_seed(recipe.seed)
    tokenizer = E5Tokenizer(source)
    model = build_encoder(source).to(device)
    freeze_below(model, recipe.first_trained_layer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.learning_rate, weight_decay=0.0)
    step = load_checkpoint(run, model, optimizer)
    model.train()
    started = time.monotonic()
    with tqdm(total=recipe.steps, initial=step, desc="training", unit="step", disable=quiet) as bar:
        while step < recipe.steps:
            batch = batch_of(examples, recipe, step)
            queries = tokenizer.batch([e.query for e in batch], QUERY_PREFIX, cut_at=recipe.max_query_tokens)
            candidates, targets = batch_candidates(batch)
            passages = tokenizer.batch(candidates, PASSAGE_PREFIX, cut_at=recipe.max_passage_tokens)
            loss = contrastive_loss(
                embed(model, source, queries, device),
                embed(model, source, passages, device),
                recipe.temperature,
                repeated_positives(batch, candidates, targets).to(device),
                targets=torch.tensor(targets, device=device),
                no_answer_similarity=recipe.no_answer_similarity or None,
            )
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
            value = float(loss.detach())
            run.log({"step": step, "loss": round(value, 5), "seconds": round(time.monotonic() - started, 1)})
            bar.set_postfix(loss=f"{value:.3f}")
            bar.update(1)
            if step % recipe.save_every == 0 or step == recipe.steps:
                save_checkpoint(run, model, optimizer, step)
    return step


def recipe_from(args: argparse.Namespace) -> Recipe:
    values = {f.name: getattr(args, f.name) for f in fields(Recipe) if getattr(args, f.name, None) is not None}
    return Recipe(**values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "training/runs/default", help="run folder (resumed if it exists)"
    )
    parser.add_argument("--cmrc", type=Path, default=SHARED / "train/cmrc2018-train.json")
    parser.add_argument("--reports", type=Path, default=SHARED / "corpus-reports")
    parser.add_argument(
        "--asked",
        type=Path,
        default=REPO / "training/asked/reports-asked.jsonl",
        help="questions written on the reports",
    )
    parser.add_argument("--limit", type=int, default=0, help="train on the first N examples only (tests)")
    for field in fields(Recipe):
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=type(field.default))
    args = parser.parse_args(argv)
    recipe = recipe_from(args)
    if not args.cmrc.exists():
        parser.error(f"no training data at {args.cmrc}: pass --cmrc (CMRC 2018 train, SQuAD format)")
    if recipe.asked_share > 0 and not (args.asked.exists() and args.reports.exists()):
        parser.error(f"--asked-share needs the written questions ({args.asked}) and the reports ({args.reports})")
    if not 0 <= recipe.no_answer_similarity < 1:
        parser.error("--no-answer-similarity is a cosine similarity below 1 (0: no such candidate)")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = E5File(bundled_model_path())
    run = Run(args.out, recipe)
    examples = training_examples(
        args.cmrc,
        args.reports if args.reports.exists() else None,
        evaluation_questions(EVALUATION_SETS),
        seed=recipe.seed,
        report_share=recipe.report_share,
        reword_share=recipe.reword_share,
        asked=args.asked if args.asked.exists() else None,
        asked_share=recipe.asked_share,
        unanswerable=recipe.no_answer_similarity > 0,
    )
    if args.limit:
        examples = examples[: args.limit]
    _write_json(
        run.folder / "data.json",
        {
            "cmrc_sha256": file_digest(args.cmrc),
            "reports": {p.name: file_digest(p) for p in sorted(args.reports.glob("*.txt"))}
            if args.reports.exists()
            else {},
            "asked_sha256": file_digest(args.asked) if args.asked.exists() else None,
            "base_sha256": file_digest(source.path),
            "examples": len(examples),
            "device": str(device),
        },
    )
    steps = train(run, examples, source, device)
    print(f"trained {steps} steps; checkpoint in {run.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
