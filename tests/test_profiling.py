"""scratchcnn.engine.profiling: what its timers time, and that measuring leaves the model as it was.

Timings are checked against a fake clock (exact arithmetic, no speed assertion);
the models are tiny (8x8 images). Run time: about 2 s.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernels
from scratchcnn.engine import profiling as P
from scratchcnn.errors import ConfigError
from scratchcnn.nn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.model import Sequential
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from tests.conftest import host_backends


class FakeClock:
    """``_now`` replacement: read i returns the sum of the first i+1 increments."""

    def __init__(self, increments):
        self.increments, self.reads, self.value = list(increments), 0, 0.0

    def __call__(self):
        self.value += self.increments[self.reads % len(self.increments)]
        self.reads += 1
        return self.value


def durations_clock(*seconds):
    """A clock under which the k-th timed interval (a start and an end read) lasts ``seconds[k]``."""
    return FakeClock([x for s in seconds for x in (0.0, s)])


def tiny(backend, seed=0):
    """Conv(1->4, 3x3, pad 1) - ReLU - MaxPool 2 - Flatten - Dense(64->10) on 8x8 images, no dropout."""
    model = Sequential([Conv2D(1, 4, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(64, 10)],
                       input_shape=(1, 8, 8), seed=seed, backend=backend)
    return model.compile(Adam(1e-2), SoftmaxCrossEntropy())


def snapshot(model):
    opt = model.optimizer
    return ({k: np.array(v) for k, v in model.named_arrays().items()}, model.layer_states(), opt.t,
            {k: np.array(v) for k, v in opt.state_arrays().items()})


def assert_same_snapshot(a, b):
    assert sorted(a[0]) == sorted(b[0]) and a[1:3] == b[1:3] and sorted(a[3]) == sorted(b[3])
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key], err_msg=key)
    for key in a[3]:
        np.testing.assert_array_equal(a[3][key], b[3][key], err_msg=key)


def test_synthetic_batch_shapes_dtypes_and_seed():
    x, y = P.synthetic_batch((1, 8, 8), 5, num_classes=3, seed=4)
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32 and y.shape == (5,) and y.dtype == np.int64
    assert y.min() >= 0 and y.max() < 3
    np.testing.assert_array_equal(x, P.synthetic_batch((1, 8, 8), 5, num_classes=3, seed=4)[0])
    with pytest.raises(ValueError, match="batch_size"):
        P.synthetic_batch((1, 8, 8), 0)


def test_time_calls_times_each_call_after_the_warmup(monkeypatch):
    monkeypatch.setattr(P, "_now", durations_clock(0.5, 0.25, 2.0))
    calls, syncs = [], []
    seconds = P.time_calls(lambda: calls.append(1), calls=3, warmup=2, synchronize=lambda: syncs.append(1))
    np.testing.assert_array_equal(seconds, [0.5, 0.25, 2.0])
    assert len(calls) == 5 and len(syncs) == 5
    with pytest.raises(ValueError, match="calls >= 1"):
        P.time_calls(lambda: None, calls=0)


def test_training_throughput_is_batch_over_the_median_step_and_restores_the_model(monkeypatch):
    model = build_model("classic", (1, 8, 8), 10, seed=0, backend="numpy")
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    P.train_step(model, *P.synthetic_batch((1, 8, 8), 4, seed=9))  # optimizer state to restore
    before = snapshot(model)
    steps = []
    step = model.optimizer.step
    monkeypatch.setattr(model.optimizer, "step", lambda params: (steps.append(1), step(params)))
    monkeypatch.setattr(P, "_now", durations_clock(0.1, 0.4, 0.1))
    rate = P.training_throughput(model, batch_size=8, steps=3, warmup=2)
    assert rate == pytest.approx(8 / 0.1)  # the median step; the mean (0.2 s) would give 40
    assert len(steps) == 5
    assert_same_snapshot(snapshot(model), before)


def test_inference_throughput_uses_the_median_forward(monkeypatch):
    model = tiny("numpy")
    monkeypatch.setattr(P, "_now", durations_clock(0.5, 0.01, 0.02, 0.03, 0.9))
    rate = P.inference_throughput(model, batch_size=16, steps=5, warmup=0)
    assert rate == pytest.approx(16 / 0.03)  # the median; the mean (0.292 s) would give 55


def test_train_step_is_the_trainers_step():
    x, y = P.synthetic_batch((1, 8, 8), 6, seed=1)
    a, b = tiny("numpy"), tiny("numpy")
    P.train_step(a, x, y)
    b.fit(x, y, batch_size=6, epochs=1, progress=False, log=lambda line: None)  # one shuffled batch
    for (key, pa, _), (_, pb, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-7, err_msg=key)
    assert a.optimizer.t == b.optimizer.t == 1


def test_untrained_model_is_refused_with_a_clear_error():
    model = Sequential([Flatten(), Dense(64, 10)], input_shape=(1, 8, 8), backend="numpy")
    x, y = P.synthetic_batch((1, 8, 8), 2)
    for call in (lambda: P.train_step(model, x, y), lambda: P.training_throughput(model),
                 lambda: P.layer_profile(model, x, y), lambda: P.kernel_profile(model, x, y)):
        with pytest.raises(ConfigError, match=r"not compiled; call model.compile"):
            call()


@pytest.mark.parametrize("backend", host_backends())
def test_layer_profile_times_every_step_of_the_plan(backend, monkeypatch):
    model = tiny(backend)
    x, y = P.synthetic_batch((1, 8, 8), 4, seed=2)
    before = snapshot(model)
    ms = 2.0 ** -10  # every timed part lasts ~1 ms, a power of two so that the sums are exact
    monkeypatch.setattr(P, "_now", FakeClock([ms]))
    rows = P.layer_profile(model, x, y, repeats=3, warmup=1)
    body = ["conv2d_0", "relu_0", "maxpool2d_0"] if backend == "numpy" else ["conv2d_0+relu_0+maxpool2d_0"]
    assert [r.name for r in rows] == body + ["flatten_0", "dense_0", "loss", "optimizer"]
    assert [(r.forward, r.backward) for r in rows] == [(ms, ms)] * (len(rows) - 1) + [(0.0, ms)]
    assert_same_snapshot(snapshot(model), before)


def test_layer_profile_runs_a_real_forward_and_backward():
    """With one step and no warm-up, the gradients left behind are those of the initial weights."""
    x, y = P.synthetic_batch((1, 8, 8), 4, seed=3)
    profiled, plain = tiny("numpy"), tiny("numpy")
    P.layer_profile(profiled, x, y, repeats=1, warmup=0)
    plain.loss.forward(plain.forward(x), y)
    plain.backward(plain.loss.backward())
    for (key, _, ga), (_, _, gb) in zip(profiled.parameters(), plain.parameters()):
        np.testing.assert_allclose(ga, gb, rtol=1e-6, err_msg=key)
        assert np.any(ga != 0), key


@pytest.mark.parametrize("backend", host_backends())
def test_kernel_profile_counts_the_kernels_of_a_step(backend, monkeypatch):
    model = build_model("classic", (1, 8, 8), 10, seed=0, backend=backend)
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    K = model.K
    before = snapshot(model)
    monkeypatch.setattr(P, "_now", FakeClock([0.5]))  # every kernel call lasts 0.5 s
    profile = P.kernel_profile(model, *P.synthetic_batch((1, 8, 8), 4), repeats=2, warmup=1)
    # Forward: 2 conv + 2 dense GEMMs; backward: conv1 dW, then dW and dx for conv2 and both dense layers.
    calls = {"gemm": 11, "adam_step": 8, "im2col": 2, "col2im": 1, "bias_add": 2, "bias_grad": 2,
             "dropout_forward": 1, "dropout_backward": 1, "softmax_xent_forward": 1, "softmax_xent_backward": 1}
    if backend == "numpy":  # layer by layer
        calls |= {"bias_add_nchw": 2, "relu_forward": 3, "maxpool_forward": 2, "maxpool_backward": 2,
                  "relu_backward": 3, "bias_grad_nchw": 2}
    else:  # Conv-ReLU-Pool fused; only the dense ReLU is separate
        calls |= {"conv_relu_pool_forward": 2, "conv_relu_pool_backward": 2, "relu_forward": 1, "relu_backward": 1}
    assert profile == {name: (n, n * 0.5) for name, n in sorted(calls.items(), key=lambda kv: -kv[1])}
    assert model.K is K and all(layer.K is K for layer in model.layers) and model.optimizer.K is K
    assert_same_snapshot(snapshot(model), before)


def test_format_profile_table():
    text = P.format_profile([P.LayerTime("a", 0.001, 0.003), P.LayerTime("optimizer", 0.0, 0.004)])
    lines = text.splitlines()
    assert lines[2] == "| a | 1.00 | 3.00 | 4.00 | 50% |"
    assert lines[3] == "| optimizer | 0.00 | 4.00 | 4.00 | 50% |"
    assert lines[4] == "| **sum** | 1.00 | 7.00 | 8.00 | 100% |"


@pytest.mark.skipif("cpu" not in kernels.available(), reason="Numba is not installed")
def test_compile_log_records_compilations_not_calls():
    from numba import njit

    @njit  # a new function (no cache): its first call compiles
    def add_one(a):
        return a + 1

    with P.CompileLog() as first:
        assert add_one(1) == 2
    with P.CompileLog() as second:
        assert add_one(2) == 3
    assert first.names == [add_one.py_func.__qualname__] and first.seconds > 0
    assert second.names == [] and second.seconds == 0.0
