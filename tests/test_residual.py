"""Residual blocks in a model: dotted parameter keys, model files, freezing and loading by block, summary."""
from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.errors import ModelFileError
from scratchcnn.files.serialization import load_model, read_archive, save_model, write_archive
from scratchcnn.files.transfer import init_from
from scratchcnn.nn.layers import Conv2D, GlobalAvgPool2D, Residual, ReLU, basic_block
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.optimizers import SGD
from scratchcnn.nn.presets import build_model
from tests.conftest import host_backends

SHAPE = (1, 12, 12)  # 12 -> 6 -> 3 through the two strided stages
NAMES = [f"class {i}" for i in range(10)]
NORM = {"mean": 0.3, "std": 0.4, "scale": 255.0}


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *SHAPE)).astype(np.float32), rng.integers(0, 10, n)


def _trained_resnet8(backend="numpy", seed=0):
    model = build_model("resnet8", SHAPE, 10, seed=seed, backend=backend)
    model.compile(SGD(0.1, momentum=0.9), SoftmaxCrossEntropy())
    x, y = _batch()
    for _ in range(2):  # moves the weights and BatchNorm's running statistics off their initial values
        model.train_step(model.K.asarray(x), model.K.asarray(y))
    return model


def test_block_parameters_have_dotted_keys_and_round_trip_through_a_model_file(tmp_path):
    model = _trained_resnet8()
    keys = [key for key, _, _ in model.parameters()]
    assert "residual_0.main.conv2d_0.W" in keys and "residual_1.shortcut.conv2d_0.W" in keys
    assert "residual_1.shortcut.batchnorm2d_0.gamma" in keys and "residual_0.shortcut.conv2d_0.W" not in keys
    assert len(keys) == len(set(keys))
    assert sum(int(np.prod(p.shape)) for _, p, _ in model.parameters()) == model.num_params()
    arrays = model.named_arrays()
    assert arrays["residual_2.main.batchnorm2d_1.running_var"].shape == (64,)
    config = model.get_config()["layers"][3]
    assert config["class"] == "Residual" and config["config"]["main"][0]["class"] == "Conv2D"
    path = save_model(tmp_path / "model.npz", model, NAMES, NORM)
    loaded, _ = load_model(path, backend="numpy")
    assert loaded.get_config() == model.get_config()
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded.named_arrays()[key], value, err_msg=key)
    x, _ = _batch(4, seed=1)
    np.testing.assert_array_equal(loaded.forward(x, training=False), model.forward(x, training=False))


def test_a_model_file_naming_an_unknown_class_inside_a_block_is_refused(tmp_path):
    path = save_model(tmp_path / "model.npz", _trained_resnet8(), NAMES, NORM)
    meta, arrays = read_archive(path, "scratchcnn-model")
    meta["architecture"]["layers"][4]["config"]["shortcut"][0]["class"] = "os.system"
    write_archive(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(ModelFileError, match=r"bad.npz: architecture mismatch: Residual shortcut\[0\]: unknown "
                                             r"class 'os.system'"):
        load_model(tmp_path / "bad.npz")


def test_main_path_and_shortcut_must_agree_in_shape():
    block = Residual([Conv2D(2, 4, 3, padding=1)])
    with pytest.raises(ValueError, match=r"main path gives \(4, 5, 5\) .* shortcut gives \(2, 5, 5\)"):
        Sequential([block], input_shape=(2, 5, 5))
    with pytest.raises(ValueError, match="non-empty list"):
        Residual([])


@pytest.mark.parametrize("backend", host_backends())
def test_a_frozen_block_keeps_its_weights_and_the_rest_trains_as_in_the_whole_network(backend):
    x, y = _batch()
    full = build_model("resnet8", SHAPE, 10, seed=0, backend=backend)
    part = build_model("resnet8", SHAPE, 10, seed=0, backend=backend)
    part.freeze(["conv2d_0", "batchnorm2d_0", "relu_0", "residual_0"])
    assert all(not key.startswith(("residual_0.", "conv2d_0.")) for key, _, _ in part.parameters())
    for model in (full, part):
        model.compile(SGD(0.1), SoftmaxCrossEntropy())
    calls = []
    part.layers[3].backward = lambda dout: calls.append("residual_0")
    before = {key: value for key, value in part.named_arrays().items() if "running" not in key}
    for model in (full, part):
        model.loss(model.forward(model.K.asarray(x)), model.K.asarray(y))
        model.backward(model.loss.backward())
    assert calls == []  # backward stopped at the first trainable layer, the block after the frozen one
    grads = {key: np.array(part.K.to_numpy(g)) for key, _, g in part.parameters()}
    reference = {key: np.array(full.K.to_numpy(g)) for key, _, g in full.parameters()}
    for key, grad in grads.items():
        np.testing.assert_allclose(grad, reference[key], rtol=1e-4, atol=1e-6, err_msg=key)
    part.optimizer.step(part.parameters())
    after = part.named_arrays()
    for key, value in before.items():
        moved = not np.array_equal(after[key], value)
        assert moved == (not key.startswith(("residual_0.", "conv2d_0.", "batchnorm2d_0."))), key


def test_init_from_loads_a_whole_block(tmp_path):
    source = _trained_resnet8(seed=0)
    path = save_model(tmp_path / "model.npz", source, NAMES, NORM)
    target = build_model("resnet8", SHAPE, 10, seed=1, backend="numpy")
    report = init_from(target, path, layers=["residual_1"])
    assert report.loaded == ["residual_1"]
    for key, value in source.named_arrays().items():
        same = np.array_equal(target.named_arrays()[key], value)
        assert same == key.startswith("residual_1."), key


def test_summary_lists_each_block_with_its_layers_and_flops():
    model = build_model("resnet20", (3, 32, 32), 10, seed=0, backend="numpy")
    text = model.summary()
    assert "residual_8 (Residual)" in text and "  residual_3.shortcut.conv2d_0 (Conv2D)" in text
    row = next(line for line in text.splitlines() if line.startswith("residual_0 (Residual)"))
    # Two 3x3 16->16 convolutions on 32x32 (2*16*16*9*1024 each), two BNs (2 per value), the sum.
    assert row.split()[-1] == f"{2 * 2 * 16 * 16 * 9 * 1024 + 2 * 2 * 16 * 1024 + 16 * 1024:,}"
    # He et al. (2016), Section 4.2: 0.27M parameters; plain-20 is exactly the paper's 269,722 (with
    # option-A shortcuts ResNet-20 has the same), the 1x1 projections add 2,752.
    assert build_model("plain20", (3, 32, 32), 10).num_params() == 269_722
    assert model.num_params() == 269_722 + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    convs = sum(isinstance(layer, Conv2D) for layer in build_model("plain20", (1, 28, 28), 10).layers)
    assert convs == 19  # plus the dense layer: 20 weighted layers


def test_a_block_rebuilds_from_its_config_and_runs_on_its_own(rng):
    block = basic_block(2, 4, stride=2)
    twin = Residual(**block.get_config())
    assert twin.get_config() == block.get_config()
    assert twin.param_shapes() == block.param_shapes()
    block.to("numpy", np.float64)
    x = rng.standard_normal((2, 2, 6, 6))
    out = block.forward(x)
    assert out.shape == (2, 4, 3, 3) and (out >= 0).all()
    model = Sequential([Conv2D(1, 2, 3, padding=1), ReLU(), basic_block(2, 2), GlobalAvgPool2D()],
                       input_shape=(1, 5, 5), seed=0, backend="numpy")
    assert model.layers[2].name == "residual_0" and model.layers[2].main[0].name == "residual_0.main.conv2d_0"
