"""Whole training steps on the CUDA backend (a GPU, or Numba's simulator) match the NumPy reference.

A tiny network that runs both code paths: Conv2D-ReLU-MaxPool2D fused into one
step, and Conv2D-BatchNorm2D-ReLU, Dense, Dropout unfused. Two SGD steps
through ``Trainer`` (per-step stats rows read back in one go), then
``evaluate`` and ``predict``, then the weights saved and loaded back.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.cudasim.conftest import cuda_problem

if cuda_problem():
    pytest.skip(cuda_problem(), allow_module_level=True)

from scratchcnn.nn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU  # noqa: E402
from scratchcnn.nn.plan import ConvReLUPool  # noqa: E402
from scratchcnn.nn.losses import SoftmaxCrossEntropy  # noqa: E402
from scratchcnn.nn.model import Sequential  # noqa: E402
from scratchcnn.nn.optimizers import SGD, Adam  # noqa: E402
from scratchcnn.engine.training import Trainer  # noqa: E402


def tiny_model(backend, optimizer):
    layers = [Conv2D(1, 4, 3), ReLU(), MaxPool2D(2),                            # 8x8 -> 6x6 -> 3x3
              Conv2D(4, 6, 3, padding=1, bias=False), BatchNorm2D(6), ReLU(),  # 3x3
              Flatten(), Dense(54, 16), ReLU(), Dropout(0.3), Dense(16, 10, init="glorot")]
    model = Sequential(layers, input_shape=(1, 8, 8), seed=7, backend=backend)
    return model.compile(optimizer, SoftmaxCrossEntropy())


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(99)
    return rng.standard_normal((8, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 8)


def test_two_sgd_steps_match_the_reference(data):
    x, y = data
    runs = {}
    for backend in ("numpy", "cuda"):
        model = tiny_model(backend, SGD(0.1, momentum=0.9))
        history = Trainer(model, batch_size=4, seed=3, progress=False, log=lambda _: None).fit(x, y, 1)
        runs[backend] = (model, history)
    (ref, h0), (got, h1) = runs["numpy"], runs["cuda"]
    assert isinstance(got.plan[0], ConvReLUPool)  # the fused path ran on the device
    assert not isinstance(got.layers[0].params["W"], np.ndarray)  # weights stayed on the device
    assert h1["loss"][0] == pytest.approx(h0["loss"][0], rel=1e-5)
    assert h1["accuracy"][0] == h0["accuracy"][0]
    before = tiny_model("numpy", SGD(0.1)).named_arrays()
    for key, want in ref.named_arrays().items():
        have = got.named_arrays()[key]
        assert np.abs(want - before[key]).max() > 1e-4, f"{key} did not train"
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5, err_msg=key)
    assert got.layers[9].calls == ref.layers[9].calls == 2  # one dropout mask per step, same stream
    for key, want in ref.optimizer.state_arrays().items():
        np.testing.assert_allclose(got.optimizer.state_arrays()[key], want, rtol=1e-4, atol=1e-5, err_msg=key)
    # Inference mode: running statistics, no dropout; evaluate reads back one stats array.
    loss0, acc0 = ref.evaluate(x, y, batch_size=5)
    loss1, acc1 = got.evaluate(x, y, batch_size=5)
    assert loss1 == pytest.approx(loss0, rel=1e-5) and acc1 == acc0
    np.testing.assert_allclose(got.predict(x), ref.predict(x), rtol=1e-4, atol=1e-6)


def test_one_adam_step_and_a_weight_round_trip(data):
    x, y = data
    losses, models = [], []
    for backend in ("numpy", "cuda"):
        model = tiny_model(backend, Adam(1e-3))
        K = model.K
        losses.append(model.loss(model.forward(K.asarray(x[:4]), training=True), K.asarray(y[:4])))
        model.backward(model.loss.backward())
        model.optimizer.step(model.parameters())
        models.append(model)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    ref, got = models
    for key, want in ref.named_arrays().items():
        # One Adam step moves each weight by about lr * sign(grad): compare at that scale.
        np.testing.assert_allclose(got.named_arrays()[key], want, rtol=1e-4, atol=2e-5, err_msg=key)
    # Saving reads the device weights; loading writes them back to the device.
    fresh = tiny_model("cuda", Adam(1e-3))
    fresh.load_named_arrays(got.named_arrays())
    assert not isinstance(fresh.layers[0].params["W"], np.ndarray)
    np.testing.assert_array_equal(fresh.predict(x), got.predict(x))


def test_a_residual_network_step_matches_the_reference(data):
    """A projection block (1x1 stride-2 shortcut), global average pooling: loss, gradients, inference."""
    from scratchcnn.nn.layers import GlobalAvgPool2D, basic_block

    x, y = data[0][:4], data[1][:4]  # the simulator runs each GPU thread in Python: a small batch
    results = []
    for backend in ("numpy", "cuda"):
        layers = [Conv2D(1, 2, 3, padding=1, bias=False), BatchNorm2D(2), ReLU(), basic_block(2, 4, stride=2),
                  GlobalAvgPool2D(), Dense(4, 10)]
        model = Sequential(layers, input_shape=(1, 8, 8), seed=11, backend=backend)
        model.compile(SGD(0.1), SoftmaxCrossEntropy())
        K = model.K
        loss = model.loss(model.forward(K.asarray(x), training=True), K.asarray(y))
        model.backward(model.loss.backward())
        grads = {key: np.array(K.to_numpy(g)) for key, _, g in model.parameters()}
        results.append((loss, grads, model.predict(x)))
    (loss0, grads0, probs0), (loss1, grads1, probs1) = results
    assert loss1 == pytest.approx(loss0, rel=1e-5)
    assert "residual_0.shortcut.conv2d_0.W" in grads1
    for key, want in grads0.items():
        np.testing.assert_allclose(grads1[key], want, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(want).max()),
                                   err_msg=key)
    np.testing.assert_allclose(probs1, probs0, rtol=1e-4, atol=1e-6)
