"""scratchcnn.engine.explain: saliency against central differences, feature maps and unit breakdowns
against the framework's own outputs."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host_backends
from scratchcnn.engine import explain
from scratchcnn.nn.gradcheck import numerical_grad, rel_error
from scratchcnn.nn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D,
                               ReLU)
from scratchcnn.nn.model import Sequential


def small_model(backend, dtype=np.float64, seed=0):
    """Every layer kind the presets use, BN with non-trivial running statistics."""
    layers = [Conv2D(2, 3, 3, padding=1), BatchNorm2D(3), ReLU(), MaxPool2D(2),
              Conv2D(3, 4, 3, stride=1), ReLU(), Flatten(),
              Dense(4 * 2 * 2, 6, bias=False), BatchNorm1D(6), ReLU(), Dropout(0.5), Dense(6, 5)]
    model = Sequential(layers, input_shape=(2, 8, 8), seed=seed, backend=backend)
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:
        if isinstance(layer, (BatchNorm1D, BatchNorm2D)):
            c = layer.num_features
            layer.params["gamma"] = rng.uniform(0.5, 1.5, c)
            layer.params["beta"] = rng.normal(0, 0.2, c)
            layer.buffers["running_mean"] = rng.normal(0, 0.3, c)
            layer.buffers["running_var"] = rng.uniform(0.5, 2.0, c)
        elif "b" in layer.params:
            layer.params["b"] = rng.normal(0, 0.1, layer.params["b"].shape)
    return model.to(backend, dtype)


def test_saliency_matches_central_differences():
    model = small_model("numpy")
    x = np.random.default_rng(7).normal(size=(2, 2, 8, 8))
    for target in (None, [3, 1]):
        grad, tgt, logits = explain.saliency(model, x, target)
        assert grad.shape == x.shape and grad.dtype == np.float64
        dout = np.zeros_like(logits)
        dout[np.arange(2), tgt] = 1
        numeric = numerical_grad(lambda: explain.trace(model, x).logits, x, dout, h=1e-6)
        assert rel_error(grad, numeric) < 1e-7
        assert np.abs(grad).max() > 0
        if target is None:
            np.testing.assert_array_equal(tgt, logits.argmax(axis=1))
    assert not model.layers[0].requires_input_grad  # left as it was


@pytest.mark.parametrize("backend", [b for b in host_backends() if b != "numpy"])
def test_saliency_matches_the_reference_backend(backend):
    x = np.random.default_rng(7).normal(size=(2, 2, 8, 8))
    expected, _, _ = explain.saliency(small_model("numpy"), x)
    grad, _, _ = explain.saliency(small_model(backend), x)
    assert rel_error(grad, expected) < 1e-10


def test_saliency_rejects_a_bad_target():
    with pytest.raises(ValueError, match="out of range"):
        explain.saliency(small_model("numpy"), np.zeros((1, 2, 8, 8)), target=5)


@pytest.mark.parametrize("backend", host_backends())
def test_trace_and_feature_maps_match_the_model(backend):
    # float32 and the model's own (on "cpu": fused) forward pass.
    model = small_model(backend, np.float32)
    x = np.random.default_rng(3).normal(size=(3, 2, 8, 8)).astype(np.float32)
    traced = explain.trace(model, x)
    expected = np.array(model.K.to_numpy(model.forward(model.K.asarray(x), training=False)))
    np.testing.assert_allclose(traced.logits, expected, rtol=1e-5, atol=1e-6)
    maps = explain.feature_maps(model, traced=traced)
    assert list(maps) == ["conv2d_0", "conv2d_1"]
    assert maps["conv2d_0"].shape == (3, 3, 8, 8) and maps["conv2d_1"].shape == (3, 4, 2, 2)
    # conv2d_0 goes through BN before its ReLU: the map is that ReLU's output.
    np.testing.assert_array_equal(maps["conv2d_0"], traced.outputs[traced.index("relu_0")])
    np.testing.assert_array_equal(maps["conv2d_1"], traced.outputs[traced.index("relu_1")])
    assert all(m.min() >= 0 for m in maps.values())
    assert maps["conv2d_0"].max() > 0


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_conv_breakdown_sums_to_the_conv_output(dtype, tol):
    model = small_model("numpy", dtype)
    x = np.random.default_rng(5).normal(size=(2, 2, 8, 8)).astype(dtype)
    traced = explain.trace(model, x)
    for name, channel, row, col in [("conv2d_0", 1, 0, 0), ("conv2d_0", 2, 7, 3), ("conv2d_1", 3, 1, 0)]:
        for image in (0, 1):
            b = explain.conv_unit_breakdown(model, traced, name, channel, row, col, image=image)
            conv_out = traced.outputs[traced.index(name)][image, channel, row, col]
            assert b["output"] == pytest.approx(float(conv_out), rel=tol, abs=tol)
            assert b["output"] == pytest.approx(b["framework_output"], rel=tol, abs=tol)
            np.testing.assert_allclose(b["products"], b["patch"] * b["kernels"])
            assert b["sum"] == pytest.approx(b["channel_sums"].sum())
            assert b["after"][-1][1] == "ReLU"
            assert b["after"][-1][2] == pytest.approx(max(0.0, b["after"][-2][2] if len(b["after"]) > 1
                                                          else b["output"]), rel=tol, abs=tol)
    corner = explain.conv_unit_breakdown(model, traced, "conv2d_0", 0, 0, 0)
    assert corner["origin"] == (-1, -1)
    assert np.all(corner["patch"][:, 0, :] == 0) and np.all(corner["patch"][:, :, 0] == 0)  # padding


def test_pool_breakdown_names_the_winner():
    model = small_model("numpy")
    traced = explain.trace(model, np.random.default_rng(9).normal(size=(1, 2, 8, 8)))
    pooled = traced.outputs[traced.index("maxpool2d_0")]
    relu = traced.outputs[traced.index("relu_0")]
    for channel, row, col in [(0, 0, 0), (2, 3, 1)]:
        b = explain.pool_unit_breakdown(model, traced, "maxpool2d_0", channel, row, col)
        u, v = b["winner"]
        assert b["output"] == b["framework_output"] == pooled[0, channel, row, col]
        assert relu[0, channel, 2 * row + u, 2 * col + v] == b["output"] == b["window"].max()


def test_breakdown_errors_name_the_problem():
    model = small_model("numpy")
    traced = explain.trace(model, np.zeros((1, 2, 8, 8)))
    with pytest.raises(KeyError, match="conv2d_9"):
        explain.conv_unit_breakdown(model, traced, "conv2d_9", 0, 0, 0)
    with pytest.raises(ValueError, match="not a Conv2D"):
        explain.conv_unit_breakdown(model, traced, "relu_0", 0, 0, 0)
    with pytest.raises(ValueError, match="row 8 out of range"):
        explain.conv_unit_breakdown(model, traced, "conv2d_0", 0, 8, 0)
    with pytest.raises(ValueError, match="not a MaxPool2D"):
        explain.pool_unit_breakdown(model, traced, "conv2d_0", 0, 0, 0)


def test_a_resnets_feature_maps_are_its_stem_and_each_block_and_saliency_runs_through_the_blocks(rng):
    from scratchcnn.nn.presets import build_model

    model = build_model("resnet8", (1, 12, 12), 10, seed=0, backend="numpy")
    x = rng.standard_normal((2, 1, 12, 12)).astype(np.float32)
    maps = explain.feature_maps(model, x)
    assert {name: m.shape for name, m in maps.items()} == {
        "conv2d_0": (2, 16, 12, 12), "residual_0": (2, 16, 12, 12), "residual_1": (2, 32, 6, 6),
        "residual_2": (2, 64, 3, 3)}
    np.testing.assert_array_equal(maps["residual_2"], model.layers[5].forward(model.layers[4].forward(
        model.layers[3].forward(model.layers[2].forward(model.layers[1].forward(model.layers[0].forward(
            x, False), False), False), False), False), False))
    grad, target, logits = explain.saliency(model, x)
    assert grad.shape == x.shape and np.abs(grad).max() > 0
