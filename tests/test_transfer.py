"""Transfer learning: freezing layers (no update, backward stops early) and loading matching layers."""
from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.errors import ConfigError
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.files.serialization import save_model
from scratchcnn.files.transfer import init_from, parse_layer_choice, select_layers
from tests.conftest import host_backends


def _batch(shape=(1, 28, 28), n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, 10, n)


def _grads(model):
    return {key: np.array(model.K.to_numpy(grad)) for key, _, grad in model.parameters()}


CASES = [(b, "classic", 6) for b in host_backends()] + [("numpy", "classic", 4), (host_backends()[-1], "vgg-small", 8)]


@pytest.mark.parametrize("backend,preset,frozen", CASES)
def test_frozen_layers_get_no_update_and_the_rest_the_same_gradients(backend, preset, frozen):
    x, y = _batch()
    full = build_model(preset, (1, 28, 28), 10, seed=0, backend=backend)
    part = build_model(preset, (1, 28, 28), 10, seed=0, backend=backend).freeze(frozen)
    for model in (full, part):
        model.compile(Adam(1e-2), SoftmaxCrossEntropy())
    before = part.named_arrays()
    calls = []
    for step in part.plan:  # record every backward that reaches a frozen layer (or fused block of them)
        layers = step.layers if hasattr(step, "layers") else (step,)
        if all(layer.name in part.frozen for layer in layers):
            step.backward = lambda dout, _name=layers[0].name: calls.append(_name)
    assert len(part.plan) < len(part.layers) or backend == "numpy" or preset != "classic"  # cpu: fused blocks
    for model in (full, part):
        model.train_step(model.K.asarray(x), model.K.asarray(y))
    assert calls == []  # backward stopped at the first trainable layer
    # The trainable layers' gradients are those of the whole network (same weights, same batch).
    trainable = _grads(part)
    assert trainable and all(not key.startswith(tuple(part.frozen)) for key in trainable)
    reference = _grads(full)
    for key, grad in trainable.items():
        np.testing.assert_allclose(grad, reference[key], rtol=1e-5, atol=1e-6, err_msg=key)
    after = part.named_arrays()
    for key in before:
        layer = key.split(".")[0]
        if layer in part.frozen and not key.endswith(("running_mean", "running_var")):
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
        elif key.endswith((".W", ".gamma")):
            assert not np.array_equal(after[key], before[key]), key
    assert sorted(part.optimizer.state) == sorted(trainable)  # no moments kept for frozen parameters


def test_freeze_by_name_keeps_backprop_through_a_frozen_middle_layer():
    x, y = _batch()
    model = build_model("classic", (1, 28, 28), 10, seed=0, backend="numpy").freeze(["conv2d_1"])
    model.compile(Adam(1e-2), SoftmaxCrossEntropy())
    w0, w1 = (np.array(model.layers[i].params["W"]) for i in (0, 3))
    model.train_step(x, y)
    assert model.frozen == ["conv2d_1"]
    assert not np.array_equal(model.layers[0].params["W"], w0)  # below the frozen layer: still learns
    np.testing.assert_array_equal(model.layers[3].params["W"], w1)


def test_saliency_still_reaches_the_input_of_a_frozen_model():
    from scratchcnn.engine.explain import saliency

    x, _ = _batch(n=2)
    model = build_model("classic", (1, 28, 28), 10, seed=0, backend="numpy")
    grad, _, _ = saliency(model, x)
    frozen_grad, _, _ = saliency(model.freeze(6), x)
    np.testing.assert_array_equal(frozen_grad, grad)


def test_freeze_errors_and_round_trip_through_the_config():
    model = build_model("classic", (1, 28, 28), 10, seed=0, backend="numpy")
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        model.freeze(["conv9"])
    with pytest.raises(ValueError, match="N = 12, expected 0..11"):
        model.freeze(12)
    with pytest.raises(ValueError, match="leaves no layer with parameters to train"):
        model.freeze(11)
    model.freeze(3)
    again = Sequential.from_config(model.get_config(), backend="numpy")
    assert again.frozen == ["conv2d_0", "relu_0", "maxpool2d_0"]
    assert model.freeze(0).frozen == [] and "frozen" not in model.get_config()


def test_parse_and_select_layers():
    model = build_model("classic", (1, 28, 28), 10, seed=0, backend="numpy")
    assert parse_layer_choice("6") == 6 and parse_layer_choice("conv2d_0, dense_1") == ["conv2d_0", "dense_1"]
    assert select_layers(model, 2) == ["conv2d_0", "relu_0"]
    assert select_layers(model, ["dense_1", "conv2d_0"]) == ["conv2d_0", "dense_1"]
    with pytest.raises(ConfigError, match="unknown layer 'dense_7'"):
        select_layers(model, ["dense_7"])
    with pytest.raises(ConfigError, match="12 layers asked for, but the model has 11"):
        select_layers(model, 12)
    with pytest.raises(ConfigError, match="expected a number of layers"):
        parse_layer_choice(" , ")


def test_init_from_loads_matching_layers_and_names_the_others(tmp_path):
    grey = build_model("classic", (1, 28, 28), 10, seed=1, backend="numpy")
    save_model(tmp_path / "model.npz", grey, [str(i) for i in range(10)], {"mean": 0.1, "std": 0.3, "scale": 255.0})
    colour = build_model("classic", (3, 32, 32), 10, seed=2, backend="numpy")
    fresh = colour.named_arrays()
    report = init_from(colour, tmp_path / "model.npz")
    # conv2d_0 takes 3 channels here, dense_0 takes 2304 features: those two keep their fresh weights.
    assert report.loaded == ["conv2d_1", "dense_1"]
    assert [name for name, _ in report.skipped] == ["conv2d_0", "dense_0"]
    assert "W is (32, 1, 3, 3) float32 there, (32, 3, 3, 3) float32 here" in report.summary()
    loaded = colour.named_arrays()
    np.testing.assert_array_equal(loaded["conv2d_1.W"], grey.named_arrays()["conv2d_1.W"])
    np.testing.assert_array_equal(loaded["conv2d_0.W"], fresh["conv2d_0.W"])
    only = build_model("classic", (1, 28, 28), 10, seed=3, backend="numpy")
    assert init_from(only, tmp_path / "model.npz", layers=["conv2d_0", "conv2d_1"]).loaded == ["conv2d_0", "conv2d_1"]
    vgg = build_model("vgg-small", (1, 28, 28), 10, seed=0, backend="numpy")
    with pytest.raises(ConfigError, match="no layer matches this model"):
        init_from(vgg, tmp_path / "model.npz", layers=["batchnorm2d_0"])


def test_the_main_job_starts_from_another_run_and_resumes_frozen(tmp_path, capsys):
    from scratchcnn.files.serialization import load_model
    from scratchcnn.train import main

    common = ["--dataset", "digits", "--backend", "cpu", "--no-progress"]
    assert main(common + ["--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--epochs", "1", "--init-from", str(tmp_path / "a"), "--init-layers", "6",
                          "--freeze", "conv2d_0,relu_0,maxpool2d_0,conv2d_1", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "initialised conv2d_0, conv2d_1 from" in out and "backpropagation stops at dense_0" in out
    assert main(["--resume", str(tmp_path / "b"), "--epochs", "3", "--no-progress"]) == 0
    a, _ = load_model(tmp_path / "a" / "model.npz")
    b, meta = load_model(tmp_path / "b" / "model.npz")
    a_arrays, b_arrays = a.named_arrays(), b.named_arrays()
    for key in ("conv2d_0.W", "conv2d_0.b", "conv2d_1.W", "conv2d_1.b"):  # frozen through the resume too
        np.testing.assert_array_equal(b_arrays[key], a_arrays[key], err_msg=key)
    assert not np.array_equal(b_arrays["dense_0.W"], a_arrays["dense_0.W"])
    assert meta["architecture"]["frozen"] == ["conv2d_0", "relu_0", "maxpool2d_0", "conv2d_1"]


@pytest.mark.parametrize("argv,message", [
    (["--init-layers", "3"], "--init-layers needs --init-from"),
    (["--init-from", "nowhere"], "nowhere: no such file or folder"),
    (["--freeze", ","], "--freeze: expected a number of layers or comma-separated layer names"),
    (["--freeze", "dense_9"], "unknown layer 'dense_9'"),
    (["--freeze", "11"], "--freeze 11: freeze: that leaves no layer with parameters to train"),
])
def test_transfer_option_errors_are_one_line(tmp_path, capsys, argv, message):
    from scratchcnn.train import main

    code = main(["--dataset", "digits", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r")] + argv)
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()
