"""Every layer's gradients against central differences in float64, on every host backend."""
from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.nn.gradcheck import check_layer, numerical_grad, rel_error
from scratchcnn.nn.layers import (LAYER_CLASSES, BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
                               GlobalAvgPool2D, MaxPool2D, ReLU, Residual, basic_block)
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from tests.conftest import host_backends

TOL = 1e-6  # relative error; a correct float64 gradient is typically 1e-8 or better
BACKENDS = host_backends()


def distinct(rng, shape):
    """Inputs whose values are all different and at least ~1e-3 apart: no max-pool ties, no ReLU kinks."""
    values = rng.permutation(np.prod(shape)).astype(np.float64)
    return ((values - values.mean()) / values.size + 1e-3 * np.sign(values - values.mean() + 0.5)).reshape(shape) * 4


# (layer factory, input shape, training mode); each is an edge case named in the issue.
CASES = {
    "conv_basic": (lambda: Conv2D(3, 4, 3), (2, 3, 5, 5)),
    "conv_batch1_one_out_channel": (lambda: Conv2D(2, 1, 3), (1, 2, 6, 5)),
    "conv_stride2_padding1_odd": (lambda: Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 7, 9)),
    "conv_nonsquare_kernel": (lambda: Conv2D(1, 2, (2, 3), padding=1), (2, 1, 5, 4)),
    "conv_1x1": (lambda: Conv2D(3, 2, 1), (2, 3, 3, 3)),
    "conv_1x1_stride2": (lambda: Conv2D(3, 4, 1, stride=2), (2, 3, 5, 6)),  # a ResNet projection shortcut
    "conv_3x3_stride2_even": (lambda: Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 8, 8)),  # drops a border
    "dense": (lambda: Dense(7, 5), (3, 7)),
    "dense_batch1": (lambda: Dense(4, 1), (1, 4)),
    "relu": (lambda: ReLU(), (3, 2, 4, 4)),
    "maxpool_2x2": (lambda: MaxPool2D(2), (2, 3, 6, 6)),
    "maxpool_odd_size_floor": (lambda: MaxPool2D(2), (1, 2, 7, 5)),
    "maxpool_overlapping_3s2": (lambda: MaxPool2D(3, stride=2), (2, 2, 7, 7)),
    "maxpool_stride1": (lambda: MaxPool2D(2, stride=1), (1, 1, 4, 5)),
    "flatten": (lambda: Flatten(), (2, 3, 2, 2)),
    "dropout": (lambda: Dropout(0.4, seed=3), (4, 6)),
    "batchnorm2d": (lambda: BatchNorm2D(3), (4, 3, 3, 3)),
    "batchnorm2d_batch1": (lambda: BatchNorm2D(2), (1, 2, 3, 4)),
    "batchnorm1d": (lambda: BatchNorm1D(5), (6, 5)),
    "global_avg_pool": (lambda: GlobalAvgPool2D(), (2, 3, 4, 5)),
    "global_avg_pool_1x1_map": (lambda: GlobalAvgPool2D(), (3, 2, 1, 1)),
    "residual_identity": (lambda: basic_block(3, 3), (2, 3, 5, 5)),
    "residual_projection_stride2": (lambda: basic_block(2, 4, stride=2), (2, 2, 5, 6)),
    "residual_no_batchnorm": (lambda: Residual([Conv2D(2, 2, 3, padding=1), ReLU(), Conv2D(2, 2, 3, padding=1)]),
                              (2, 2, 4, 4)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_gradients(case, backend, rng):
    factory, shape = CASES[case]
    layer = factory()
    if hasattr(layer, "reset_parameters") and layer.params:
        layer.reset_parameters(rng)
        for key, value in layer.params.items():  # non-trivial gamma/beta for batch norm
            if key.rsplit(".", 1)[-1] in ("gamma", "beta"):
                layer.params[key] = layer.K.asarray(rng.standard_normal(value.shape).astype(np.float32))
    layer.to(backend)
    errors = check_layer(layer, distinct(rng, shape), rng)
    assert set(errors) == {"x", *layer.params}
    worst = max(errors.values())
    assert worst < TOL, f"{case} on {backend}: relative errors {errors}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient(backend, smoothing, rng):
    loss = SoftmaxCrossEntropy(label_smoothing=smoothing).to(backend)
    logits = rng.standard_normal((5, 7))
    labels = rng.integers(0, 7, 5)
    loss(logits, labels)
    analytic = np.array(loss.backward())
    numeric = numerical_grad(lambda: loss(logits, labels), logits, np.ones(()))
    assert rel_error(analytic, numeric) < 1e-7


def _sampled_check(model, x, y, rng, samples=12, h=1e-5):
    """Relative error of dL/dparam at a few random coordinates of every parameter (CS231n grad_check_sparse)."""
    loss = SoftmaxCrossEntropy().to(model.K)

    def total_loss():
        return loss(model.forward(model.K.asarray(x), training=True), y)

    for layer in model.layers:  # hold dropout masks fixed across probes
        if isinstance(layer, Dropout):
            layer.calls = 0
    total_loss()
    model.backward(loss.backward())
    analytic = {key: np.array(model.K.to_numpy(g)) for key, _, g in model.parameters()}
    worst = {}
    for key, param, _ in model.parameters():
        host = np.array(model.K.to_numpy(param))
        numeric, chosen = [], []
        for flat in rng.choice(host.size, size=min(samples, host.size), replace=False):
            idx = np.unravel_index(flat, host.shape)
            old = host[idx]
            values = []
            for sign in (1, -1):
                host[idx] = old + sign * h
                model.K.to_numpy(param)[...] = host  # host backends share memory
                for layer in model.layers:
                    if isinstance(layer, Dropout):
                        layer.calls = 0
                values.append(total_loss())
            host[idx] = old
            model.K.to_numpy(param)[...] = host
            numeric.append((values[0] - values[1]) / (2 * h))
            chosen.append(analytic[key][idx])
        a, b = np.array(chosen), np.array(numeric)
        if np.max(np.abs(a) + np.abs(b)) > 1e-7:
            worst[key] = rel_error(a, b)
        else:  # an exactly-zero gradient (a bias before batch norm): compare absolutely
            worst[key] = 0.0 if np.max(np.abs(a - b)) < 1e-9 else np.inf
    return worst


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", ["classic", "vgg-small", "resnet8"])
def test_whole_network_end_to_end_through_the_loss(preset, backend, rng):
    """The default network (fused on compiled backends) with its loss, parameters sampled, in float64."""
    from scratchcnn.nn.presets import PRESETS

    shape = {"vgg-small": (1, 12, 12), "resnet8": (1, 8, 8)}.get(preset, (1, 16, 16))
    model = Sequential(PRESETS[preset](shape, 10), input_shape=shape, seed=0, backend=backend)
    model.to(backend, np.float64)
    x = rng.standard_normal((3,) + shape)
    y = rng.integers(0, 10, 3)
    worst = _sampled_check(model, x, y, rng)
    assert max(worst.values()) < TOL, worst


def test_every_layer_class_follows_the_protocol(rng):
    """One shared protocol check over every layer class: shapes, grads, dtype, config, overwrite semantics."""
    examples = {"Conv2D": CASES["conv_stride2_padding1_odd"], "Dense": CASES["dense"], "ReLU": CASES["relu"],
                "MaxPool2D": CASES["maxpool_overlapping_3s2"], "Flatten": CASES["flatten"],
                "Dropout": CASES["dropout"], "BatchNorm2D": CASES["batchnorm2d"],
                "BatchNorm1D": CASES["batchnorm1d"], "GlobalAvgPool2D": CASES["global_avg_pool"],
                "Residual": CASES["residual_projection_stride2"]}
    assert set(examples) == set(LAYER_CLASSES), "a layer class has no protocol example"
    for name, (factory, shape) in examples.items():
        layer = factory()
        layer.to("numpy", np.float64)
        x = rng.standard_normal(shape)
        out = layer.forward(x, training=True)
        assert out.shape == (shape[0],) + layer.output_shape(shape[1:]), name
        assert out.dtype == np.float64, name
        dout = rng.standard_normal(out.shape)
        dx = np.array(layer.backward(dout))
        assert dx.shape == x.shape, name
        assert set(layer.grads) == set(layer.params), name
        first = {k: np.array(g) for k, g in layer.grads.items()}
        for k, g in first.items():
            assert g.shape == layer.params[k].shape and g.dtype == np.float64, (name, k)
        # backward overwrites the gradients instead of accumulating them
        if name == "Dropout":
            layer.calls -= 1
        layer.forward(x, training=True)
        layer.backward(dout)
        for k, g in layer.grads.items():
            np.testing.assert_allclose(g, first[k], rtol=1e-12, err_msg=f"{name}.{k} accumulated")
        rebuilt = LAYER_CLASSES[name](**layer.get_config())
        assert rebuilt.get_config() == layer.get_config(), name
        assert rebuilt.output_shape(shape[1:]) == layer.output_shape(shape[1:]), name


def test_layers_reject_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="out_channels"):
        Conv2D(1, 0, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2D(1, 2, (3, 0))
    with pytest.raises(ValueError, match="in_channels = 3"):
        Conv2D(3, 2, 3, rng=np.random.default_rng(0)).forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="in_features"):
        Dense(4, 2).forward(np.zeros((2, 5), np.float32))
