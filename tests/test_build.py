"""The build step: the one place a model's backend is chosen, and an explicit choice always wins."""
from __future__ import annotations

import json

import numpy as np
import pytest

import kernels
from scratchcnn import train
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model, classic, vgg_small
from scratchcnn.engine.profiling import synthetic_batch
from tests.conftest import host_backends


def _unusable_backend() -> str:
    """A $SCRATCHCNN_BACKEND value that cannot run here: cuda without a GPU, else an unknown name."""
    return "cuda" if "cuda" not in kernels.available() else "tpu"


def test_an_explicit_backend_wins_over_an_unusable_environment_variable(monkeypatch):
    monkeypatch.setenv("SCRATCHCNN_BACKEND", _unusable_backend())
    model = build_model("classic", (1, 8, 8), 10, seed=0, backend="numpy")
    assert model.K.name == "numpy"
    assert all(isinstance(param, np.ndarray) for _, param, _ in model.parameters())
    # Without an explicit choice the environment variable is obeyed, and fails with its reason.
    with pytest.raises(kernels.BackendUnavailable, match="is not available"):
        build_model("classic", (1, 8, 8), 10, seed=0)


def test_the_cli_backend_option_wins_over_an_unusable_environment_variable(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SCRATCHCNN_BACKEND", _unusable_backend())
    code = train.main(["--dataset", "digits", "--epochs", "1", "--train-limit", "300", "--backend", "numpy",
                       "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model.npz").is_file()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["backend"] == "numpy" and metrics["compile_seconds"] == 0.0  # numpy compiles nothing


def test_constructors_touch_no_backend(monkeypatch):
    """Layers, the loss and the optimizers make host arrays only: the backend is build's business."""
    from scratchcnn.nn.layers import LAYER_CLASSES
    from scratchcnn.nn.losses import SoftmaxCrossEntropy
    from scratchcnn.nn.optimizers import SGD, Adam

    def refuse(*args, **kwargs):
        raise AssertionError("a constructor called kernels.get()")

    monkeypatch.setattr(kernels, "get", refuse)
    from scratchcnn.nn.presets import resnet8

    layers = vgg_small((1, 8, 8), 10) + resnet8((1, 8, 8), 10)
    assert {type(layer).__name__ for layer in layers} == set(LAYER_CLASSES)
    for layer in layers:
        assert all(isinstance(a, np.ndarray) for a in (*layer.params.values(), *layer.buffers.values()))
    SoftmaxCrossEntropy(), Adam(), SGD(0.1)


@pytest.mark.parametrize("backend", host_backends())
def test_build_places_every_array_and_the_compiled_parts_on_one_backend(backend):
    model = Sequential(classic((1, 8, 8), 10), seed=0)
    assert not model.built  # no input shape and no backend: built later, as in Keras
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    model.build((1, 8, 8), backend=backend)
    K = kernels.get(backend)
    assert model.K is K and model.optimizer.K is K and model.loss.K is K
    assert all(layer.K is K for layer in model.layers)
    assert model.input_shape == (1, 8, 8)
    assert [type(step).__name__ for step in model.plan][:1] == (
        ["ConvReLUPool"] if K.FUSE_BY_DEFAULT else ["Conv2D"])
    x, y = synthetic_batch((1, 8, 8), 4, 10)
    model.train_step(K.asarray(x), K.asarray(y))
    # Moving a trained model keeps its weights and optimizer moments, cast to the new dtype.
    before = model.named_arrays()
    model.build(backend="numpy", dtype=np.float64)
    assert model.K.name == "numpy" and model.optimizer.K.name == "numpy"
    for key, value in model.named_arrays().items():
        assert value.dtype == np.float64 and np.array_equal(value, before[key].astype(np.float64))
    assert all(a.dtype == np.float64 for slots in model.optimizer.state.values() for a in slots.values())


def test_an_unbuilt_model_builds_on_first_use_and_build_checks_the_input_shape():
    model = Sequential(classic((1, 8, 8), 10), seed=0)
    with pytest.raises(ValueError, match="cannot take input"):
        model.build((1, 28, 28), backend="numpy")  # Dense(64*1*1 ...) does not fit 28x28 images
    assert not model.built
    out = model.forward(np.zeros((2, 1, 8, 8), np.float32), training=False)
    assert model.built and out.shape == (2, 10)


@pytest.mark.parametrize("backend", host_backends())
def test_warm_up_leaves_the_model_its_optimizer_and_random_streams_untouched(backend):
    model = build_model("vgg-small", (1, 8, 8), 10, seed=0, backend=backend)
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    x, y = synthetic_batch((1, 8, 8), 4, 10)
    model.train_step(model.K.asarray(x), model.K.asarray(y))
    before = (model.named_arrays(), model.optimizer.state_arrays(), model.optimizer.t, model.layer_states())
    seconds = model.warm_up(4, eval_batch_size=8, log=lambda line: None)
    assert seconds >= 0.0 and (seconds == 0.0 or model.K.COMPILES)
    after = (model.named_arrays(), model.optimizer.state_arrays(), model.optimizer.t, model.layer_states())
    for got, want in zip(after[:2], before[:2]):
        assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
    assert after[2:] == before[2:]
