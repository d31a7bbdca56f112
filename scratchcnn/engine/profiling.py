"""Timing helpers: training and inference throughput, per-layer and per-kernel profiles, compile log.

Used by ``benchmarks/`` and by the teaching notebooks. Every time is wall-clock
seconds from ``time.perf_counter``, read after ``K.synchronize()`` so that queued
GPU work is counted; medians are reported because a shared machine adds rare,
long outliers. The data are random (``synthetic_batch``), uploaded once: the
figures exclude data loading and host-to-device copies.

>>> from scratchcnn.nn.presets import build_model
>>> from scratchcnn.nn.optimizers import Adam
>>> from scratchcnn.nn.losses import SoftmaxCrossEntropy
>>> model = build_model("classic", (1, 28, 28), 10, seed=0, backend="numpy")
>>> _ = model.compile(Adam(1e-3), SoftmaxCrossEntropy())
>>> rate = training_throughput(model, batch_size=8, steps=2, warmup=1)  # images/s
>>> x, y = synthetic_batch((1, 28, 28), 8)
>>> print(format_profile(layer_profile(model, x, y, repeats=1)))  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np

from kernels.api import CONV_BN_KERNELS, KERNELS
from kernels.compile_log import CompileLog
from scratchcnn.errors import ConfigError

__all__ = ["synthetic_batch", "time_calls", "train_step", "preserved", "training_throughput",
           "inference_throughput", "LayerTime", "layer_profile", "kernel_profile", "format_profile",
           "CompileLog"]

_now = time.perf_counter  # the one clock; tests replace it with a fake one


def synthetic_batch(input_shape, batch_size: int, num_classes: int = 10, seed: int = 0):
    """A random batch: x (batch_size, *input_shape) float32 N(0, 1), y (batch_size,) int64 in [0, num_classes).

    Raises
    ------
    ValueError
        If batch_size or num_classes is below 1.
    """
    if batch_size < 1 or num_classes < 1:
        raise ValueError(f"batch_size ({batch_size}) and num_classes ({num_classes}) must be >= 1")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *input_shape)).astype(np.float32)
    return x, rng.integers(0, num_classes, batch_size).astype(np.int64)


def time_calls(fn, calls: int = 10, warmup: int = 2, synchronize=None) -> np.ndarray:
    """Seconds taken by each of ``calls`` calls of ``fn()``, after ``warmup`` untimed calls.

    ``synchronize()`` (e.g. ``K.synchronize``) runs inside each timed interval,
    so asynchronous GPU work is included. Returns a float64 array of shape (calls,).

    Raises
    ------
    ValueError
        If calls < 1 or warmup < 0.
    """
    if calls < 1 or warmup < 0:
        raise ValueError(f"time_calls needs calls >= 1 and warmup >= 0, got {calls} and {warmup}")
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        fn()
        sync()
    seconds = np.empty(calls)
    for i in range(calls):
        start = _now()
        fn()
        sync()
        seconds[i] = _now() - start
    return seconds


def _require_compiled(model, what: str) -> None:
    if model.optimizer is None or model.loss is None:
        raise ConfigError(f"{what}: the model is not compiled; call model.compile(optimizer, loss) first")


def train_step(model, x, y, stats=None):
    """One training step exactly as ``Trainer`` runs it: forward, loss, backward, optimizer update.

    x : (N, *input_shape) backend array, float32; y : (N,) backend array, int64.
    Returns ``stats``, the backend float64 array (2,) ``[sum of the N losses, number correct]``.

    Raises
    ------
    ConfigError
        If the model has no optimizer and loss (``model.compile``).
    """
    _require_compiled(model, "train_step")
    stats = model.K.zeros((2,), np.float64) if stats is None else stats
    return model.train_step(x, y, stats)


@contextlib.contextmanager
def preserved(model):
    """Within the block, train freely: parameters, optimizer moments and step, dropout counters come back.

    Gradients and work buffers are not restored (the next backward overwrites them).
    """
    # Copies: on the host backends to_numpy returns the live arrays, which training updates in place.
    arrays = {key: np.array(value) for key, value in model.named_arrays().items()}
    states = model.layer_states()
    opt = model.optimizer
    opt_state = None
    if opt is not None:
        opt_state = ({key: np.array(value) for key, value in opt.state_arrays().items()}, opt.t, opt.lr)
    try:
        yield model
    finally:
        model.load_named_arrays(arrays)
        model.load_layer_states(states)
        if opt_state is not None:
            opt.load_state_arrays(opt_state[0], opt_state[1])
            opt.lr = opt_state[2]


def _device_batch(model, batch_size, seed):
    if model.input_shape is None:
        raise ConfigError("the model has no input_shape; build it with Sequential(..., input_shape=...)")
    num_classes = model.output_shapes()[-1][0]
    x, y = synthetic_batch(model.input_shape, batch_size, num_classes, seed)
    return model.K.asarray(x), model.K.asarray(y)


def training_throughput(model, batch_size: int = 64, steps: int = 20, warmup: int = 3,
                        seed: int = 0) -> float:
    """Training speed in images/s: ``batch_size`` / median seconds of ``train_step`` on random data.

    The model is trained for ``warmup + steps`` steps and then restored (``preserved``).

    Raises
    ------
    ConfigError
        If the model is not compiled or has no ``input_shape``.
    """
    _require_compiled(model, "training_throughput")
    x, y = _device_batch(model, batch_size, seed)
    stats = model.K.zeros((2,), np.float64)
    with preserved(model):
        seconds = time_calls(lambda: train_step(model, x, y, stats), steps, warmup, model.K.synchronize)
    return batch_size / float(np.median(seconds))


def inference_throughput(model, batch_size: int = 64, steps: int = 20, warmup: int = 3,
                         seed: int = 0) -> float:
    """Inference speed in images/s: ``batch_size`` / median seconds of ``model.forward(x, training=False)``.

    Raises
    ------
    ConfigError
        If the model has no ``input_shape``.
    """
    x, _ = _device_batch(model, batch_size, seed)
    seconds = time_calls(lambda: model.forward(x, training=False), steps, warmup, model.K.synchronize)
    return batch_size / float(np.median(seconds))


@dataclass
class LayerTime:
    """Median seconds per training step spent in one step of the model's plan.

    ``name`` is a layer's name, ``"conv2d_0+relu_0+maxpool2d_0"`` for a fused
    Conv-ReLU-Pool step, ``"loss"``, or ``"optimizer"`` (whose update is counted
    as ``backward``: it runs after the loss, like backpropagation).
    """

    name: str
    forward: float
    backward: float

    @property
    def total(self) -> float:
        return self.forward + self.backward


def _step_name(step) -> str:
    return "+".join(layer.name for layer in step.layers)


def layer_profile(model, x, y, repeats: int = 10, warmup: int = 2) -> list[LayerTime]:
    """Where a training step's time goes: forward and backward seconds of each step of the plan.

    Runs ``warmup + repeats`` training steps on x (N, *input_shape) float32 and
    y (N,) int64 host arrays, timing each part separately (synchronised), and
    restores the model afterwards (``preserved``). The plan is what the model runs:
    fused Conv-ReLU-Pool steps on the compiled backends, single layers on "numpy".
    Returns one ``LayerTime`` per plan step, then "loss" and "optimizer", medians over ``repeats``.

    Raises
    ------
    ConfigError
        If the model is not compiled.
    ValueError
        If repeats < 1.
    """
    _require_compiled(model, "layer_profile")
    if repeats < 1:
        raise ValueError(f"layer_profile needs repeats >= 1, got {repeats}")
    K = model.K
    plan = model.plan  # the executed steps (fused or not), which the profile must follow
    xb, yb, stats = K.asarray(x), K.asarray(y), K.zeros((2,), np.float64)
    forward = np.zeros((repeats, len(plan) + 2))
    backward = np.zeros_like(forward)

    def timed(fn, *args):
        start = _now()
        result = fn(*args)
        K.synchronize()
        return result, _now() - start

    with preserved(model):
        for r in range(-warmup, repeats):
            row = max(r, 0)  # warm-up steps write row 0, which the first timed step overwrites
            out = xb
            for i, step in enumerate(plan):
                out, forward[row, i] = timed(step.forward, out, True)
            _, forward[row, -2] = timed(model.loss.forward, out, yb, stats)
            dout, backward[row, -2] = timed(model.loss.backward)
            for i in reversed(range(len(plan))):
                dout, backward[row, i] = timed(plan[i].backward, dout)
            _, backward[row, -1] = timed(model.optimizer.step, model.parameters())
    names = [_step_name(step) for step in plan] + ["loss", "optimizer"]
    fwd, bwd = np.median(forward, axis=0), np.median(backward, axis=0)
    return [LayerTime(n, float(f), float(b)) for n, f, b in zip(names, fwd, bwd)]


class _TimedKernels:
    """A kernel backend whose every kernel call is timed (synchronised); other attributes pass through."""

    def __init__(self, K):
        self._K, self.seconds, self.calls = K, {}, {}

    def __getattr__(self, name):
        value = getattr(self._K, name)
        if name not in KERNELS + CONV_BN_KERNELS or name == "synchronize":
            return value

        def timed(*args, **kwargs):
            start = _now()
            result = value(*args, **kwargs)
            self._K.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + _now() - start
            self.calls[name] = self.calls.get(name, 0) + 1
            return result

        return timed


def kernel_profile(model, x, y, repeats: int = 5, warmup: int = 2) -> dict[str, tuple[int, float]]:
    """Where a training step's time goes, by kernel: ``{kernel name: (calls per step, seconds per step)}``.

    Runs ``warmup + repeats`` training steps on x (N, *input_shape) float32 and
    y (N,) int64 host arrays with every kernel call timed, and returns per-step
    averages sorted by time, largest first. The model (and its optimizer) run on a
    timing wrapper of their backend during the call and are restored afterwards.

    Raises
    ------
    ConfigError
        If the model is not compiled.
    ValueError
        If repeats < 1.
    """
    _require_compiled(model, "kernel_profile")
    if repeats < 1:
        raise ValueError(f"kernel_profile needs repeats >= 1, got {repeats}")
    K = model.K
    timer = _TimedKernels(K)
    with preserved(model):
        model.to(timer)
        try:
            xb, yb, stats = timer.asarray(x), timer.asarray(y), timer.zeros((2,), np.float64)
            for _ in range(warmup):
                train_step(model, xb, yb, stats)
            timer.seconds.clear()
            timer.calls.clear()
            for _ in range(repeats):
                train_step(model, xb, yb, stats)
            # Read before model.to(K), whose array moves would count as calls.
            rows = {name: (timer.calls[name] // repeats, timer.seconds[name] / repeats)
                    for name in timer.seconds}
        finally:
            model.to(K)
    return dict(sorted(rows.items(), key=lambda item: -item[1][1]))


def format_profile(rows: list[LayerTime]) -> str:
    """A markdown table of ``layer_profile`` rows: milliseconds forward/backward/total and share of the step."""
    step = sum(row.total for row in rows) or 1.0
    lines = ["| step of the plan | forward ms | backward ms | total ms | share |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row.name} | {row.forward * 1e3:.2f} | {row.backward * 1e3:.2f} | "
                     f"{row.total * 1e3:.2f} | {row.total / step:.0%} |")
    lines.append(f"| **sum** | {sum(r.forward for r in rows) * 1e3:.2f} | "
                 f"{sum(r.backward for r in rows) * 1e3:.2f} | {step * 1e3:.2f} | 100% |")
    return "\n".join(lines)
