"""ONNX export: the file passes onnx.checker and onnxruntime computes the same logits as scratchcnn."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")  # in the dev extra: CI always has it
ort = pytest.importorskip("onnxruntime")

from scratchcnn.export import OPSET, main, to_onnx  # noqa: E402
from scratchcnn.errors import ConfigError  # noqa: E402
from scratchcnn.nn.losses import SoftmaxCrossEntropy  # noqa: E402
from scratchcnn.nn.optimizers import Adam  # noqa: E402
from scratchcnn.nn.presets import build_model  # noqa: E402
from scratchcnn.files.serialization import load_model, save_model  # noqa: E402
from scratchcnn.engine.inference import predict_logits  # noqa: E402
from scratchcnn.engine.training import Trainer  # noqa: E402

TOLERANCE = 1e-5  # of the largest |logit|, as the issue asks
TEST_IMAGES = 256


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=["classic", "vgg-small", "resnet8"])
def exported(request, fashion_subset, tmp_path_factory):
    """A preset trained for one short epoch on real Fashion-MNIST (so BatchNorm's running statistics
    are real ones), saved as a run's model.npz and exported by the CLI."""
    d = fashion_subset
    model = build_model(request.param, d.input_shape, 10, seed=0, backend="cpu")
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    Trainer(model, batch_size=64, seed=0, progress=False, log=lambda _: None).fit(
        d.x_train[:1024], d.y_train[:1024], 1)
    run = tmp_path_factory.mktemp(request.param)
    norm = {"mean": d.mean, "std": d.std, "scale": 255.0}
    save_model(run / "model.npz", model, d.class_names, norm, dataset="fashion", epoch=1)
    assert main([str(run), str(run / "model.onnx"), "--softmax"]) == 0
    return request.param, run, d


def test_onnxruntime_logits_match_scratchcnn_on_real_test_images(exported):
    preset, run, d = exported
    model, _ = load_model(run / "model.npz")
    x = d.x_test[:TEST_IMAGES]
    expected = predict_logits(model, x)
    logits, probabilities = _session(run / "model.onnx").run(["logits", "probabilities"], {"images": x})
    assert logits.shape == (TEST_IMAGES, 10) and logits.dtype == np.float32
    error = np.abs(logits - expected).max() / np.abs(expected).max()
    assert error <= TOLERANCE, (preset, error)
    softmax = np.exp(expected - expected.max(1, keepdims=True))
    np.testing.assert_allclose(probabilities, softmax / softmax.sum(1, keepdims=True), atol=1e-6)
    # A trained model, not noise (chance is 0.1; after these 16 steps vgg-small is right on 0.39).
    assert (logits.argmax(1) == d.y_test[:TEST_IMAGES]).mean() > 0.3


def test_the_file_passes_the_checker_and_says_what_it_is(exported):
    preset, run, d = exported
    m = onnx.load(str(run / "model.onnx"))
    onnx.checker.check_model(m, full_check=True)
    assert [(o.domain, o.version) for o in m.opset_import] == [("", OPSET)]
    ops = {node.op_type for node in m.graph.node}
    expected = {"Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"}
    if preset == "resnet8":  # no pooling but the global average; each block ends in Add + Relu
        expected = expected - {"MaxPool"} | {"BatchNormalization", "Add", "GlobalAveragePool"}
        assert sum(node.op_type == "Add" for node in m.graph.node) == 3
    assert ops == (expected | {"BatchNormalization"} if preset == "vgg-small" else expected)
    meta = {p.key: json.loads(p.value) for p in m.metadata_props}
    assert meta["class_names"][0] == "T-shirt/top" and meta["normalization"]["mean"] == pytest.approx(d.mean)
    batch = m.graph.input[0].type.tensor_type.shape.dim
    assert batch[0].dim_param == "N" and [dim.dim_value for dim in batch[1:]] == [1, 28, 28]


@pytest.mark.parametrize("preset", ["classic", "vgg-small", "resnet8"])
def test_colour_models_export_too(preset):
    model = build_model(preset, (3, 32, 32), 10, seed=1, backend="numpy")
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    onnx_model = to_onnx(model)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": x})[0]
    expected = predict_logits(model, x)
    assert np.abs(logits - expected).max() <= TOLERANCE * np.abs(expected).max()


def test_export_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main([str(tmp_path / "nothing"), str(tmp_path / "x.onnx")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the onnx extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'scratchcnn\[onnx\]'"):
        to_onnx(build_model("classic", (1, 28, 28), 10, seed=0, backend="numpy"))
    assert not (tmp_path / "x.onnx").exists()
