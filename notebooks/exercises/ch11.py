"""Checks of notebook 11's exercises (the capstone), and the glue it builds networks with.

The student writes a convolution and a max-pool (forward and backward), a minimal ``Sequential``,
an SGD step, a whole-network gradient check, a training loop and a learning-rate search; the
layer classes below (given, not exercises) wrap the student's functions so that they can be
stacked. The dense layer and the softmax loss are given too: notebook 4 derived them.
"""
from __future__ import annotations

import numpy as np
import scipy.signal

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import conv as reference_conv
from kernels.numpy_ref import pool as reference_pool
from scratchcnn.nn import gradcheck as gradcheck_module
from scratchcnn.nn import optimizers as optimizers_module
from scratchcnn.nn.gradcheck import numerical_grad
from scratchcnn.nn.layers import Conv2D, MaxPool2D
from scratchcnn.nn.losses import SoftmaxCrossEntropy

FORBID_CONV = {"Conv2D (scratchcnn.nn.layers)": Conv2D, "kernels.numpy_ref.conv": reference_conv,
               "scipy.signal": scipy.signal, "np.convolve": np.convolve, "np.correlate": np.correlate}
FORBID_POOL = {"MaxPool2D (scratchcnn.nn.layers)": MaxPool2D, "kernels.numpy_ref.pool": reference_pool}
FORBID_TRAIN = {"scratchcnn.nn.optimizers": optimizers_module, "scratchcnn.nn.gradcheck": gradcheck_module}


# ----------------------------------------------------------------------------------------------------------
# The glue: layers around the student's functions (each has forward, backward, params and grads).

class Conv:
    """A convolution layer (stride 1) from ``conv_forward(x, W, b, padding)`` and ``conv_backward(dout, x, W,
    padding)``; He-initialised weights (notebook 9), zero biases, float64."""

    def __init__(self, c_in, c_out, k, padding, rng, forward_fn, backward_fn):
        self.params = {"W": rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k)),
                       "b": np.zeros(c_out)}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.padding, self.forward_fn, self.backward_fn = padding, forward_fn, backward_fn

    def forward(self, x):
        self.x = x
        return self.forward_fn(x, self.params["W"], self.params["b"], self.padding)

    def backward(self, dout):
        dx, dW, db = self.backward_fn(dout, self.x, self.params["W"], self.padding)
        self.grads["W"][...], self.grads["b"][...] = dW, db  # in place: Sequential.parameters hands these out
        return dx


class Pool:
    """2x2 max-pooling from ``maxpool(x) -> (out, backward)``."""

    def __init__(self, maxpool_fn):
        self.maxpool_fn, self.params, self.grads = maxpool_fn, {}, {}

    def forward(self, x):
        out, self.backward_fn = self.maxpool_fn(x)
        return out

    def backward(self, dout):
        return self.backward_fn(dout)


class ReLU:
    """max(0, x); the gradient passes where x > 0 (notebook 3)."""
    params, grads = {}, {}

    def forward(self, x):
        self.positive = x > 0
        return x * self.positive

    def backward(self, dout):
        return dout * self.positive


class Flatten:
    """(N, C, H, W) -> (N, C*H*W) and back."""
    params, grads = {}, {}

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dout):
        return dout.reshape(self.shape)


class Dense:
    """out = x W + b (notebook 4), Glorot-initialised."""

    def __init__(self, f_in, f_out, rng):
        limit = np.sqrt(6.0 / (f_in + f_out))
        self.params = {"W": rng.uniform(-limit, limit, (f_in, f_out)), "b": np.zeros(f_out)}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads["W"][...], self.grads["b"][...] = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.params["W"].T


def softmax_loss(logits, y):
    """Mean softmax cross-entropy and its gradient (notebook 4): (loss, (softmax - onehot) / N)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    grad = np.exp(log_p)
    grad[rows, y] -= 1.0
    return float(-log_p[rows, y].mean()), grad / len(y)


def build_network(parts, in_shape, channels, rng):
    """conv 3x3 (padding 1) -> ReLU -> 2x2 max-pool -> flatten -> dense to 10 classes, from the student's
    ``parts`` = (conv_forward, conv_backward, maxpool, Sequential)."""
    conv_forward, conv_backward, maxpool, sequential = parts
    c, h, w = in_shape
    return sequential([Conv(c, channels, 3, 1, rng, conv_forward, conv_backward), ReLU(), Pool(maxpool), Flatten(),
                       Dense(channels * (h // 2) * (w // 2), 10, rng)])


def accuracy(model, x, y, batch_size=500):
    """Fraction of ``x`` whose largest logit is the label, in batches."""
    hits = sum(int((model.forward(x[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
               for i in range(0, len(x), batch_size))
    return hits / len(x)


def _reference_parts():
    from solutions import ch11
    return ch11.conv_forward, ch11.conv_backward, ch11.maxpool, ch11.Sequential


# ----------------------------------------------------------------------------------------------------------
# The checks.

@checker("11.1")
def conv_forward(answer):
    """``answer(x, W, b, padding) -> out`` against ``Conv2D`` (stride 1), odd sizes, padding 0 and 1."""
    rng = np.random.default_rng(20)
    for shape, f, k, padding in (((2, 3, 5, 7), 4, 3, 1), ((1, 2, 6, 5), 3, 3, 0), ((2, 1, 7, 7), 2, 5, 2)):
        conv = Conv2D(shape[1], f, k, padding=padding, rng=rng).to("numpy", np.float64)
        conv.params["b"][...] = rng.standard_normal(f)
        x = rng.standard_normal(shape)
        want = conv.forward(x).copy()
        W, b = conv.params["W"].copy(), conv.params["b"].copy()
        got = np.asarray(run_answer(answer, x.copy(), W, b, padding, forbid=FORBID_CONV))
        where = f"x {shape}, W {W.shape}, padding {padding}"
        expect(got.shape == want.shape, f"out ({where}): shape {got.shape}, expected {want.shape}: "
                                        "H_out = H + 2*padding - k + 1")
        if np.allclose(got, want - b[None, :, None, None]):
            raise ExerciseFailed(f"out ({where}): the bias is missing; add b[f] to every position of filter f")
        flipped = Conv2D(shape[1], f, k, padding=padding).to("numpy", np.float64)
        flipped.params["W"][...], flipped.params["b"][...] = W[:, :, ::-1, ::-1], b
        if np.allclose(got, flipped.forward(x)):
            raise ExerciseFailed(f"out ({where}): you flipped the kernel (a true convolution); CNN layers "
                                 "correlate: out[i, j] = sum of x[i + p, j + q] W[p, q]")
        expect_close("out", got, want, rtol=1e-9, atol=1e-10, where=where)
    return "matches Conv2D's forward pass for three shapes, padding 0, 1 and 2"


@checker("11.2")
def conv_backward(answer):
    """``answer(dout, x, W, padding) -> (dx, dW, db)`` against central differences of the convolution."""
    rng = np.random.default_rng(21)
    conv = Conv2D(2, 3, 3, padding=1, rng=rng).to("numpy", np.float64)
    x = rng.standard_normal((2, 2, 5, 6))
    dout = rng.standard_normal(conv.forward(x).shape)
    want = [numerical_grad(lambda: conv.forward(x), a, dout) for a in (x, conv.params["W"], conv.params["b"])]
    got = run_answer(answer, dout.copy(), x.copy(), conv.params["W"].copy(), 1, forbid=FORBID_CONV)
    expect(isinstance(got, tuple) and len(got) == 3, f"expected a tuple (dx, dW, db), got {type(got).__name__}")
    dx, dW, db = (np.asarray(a, np.float64) for a in got)
    expect(dx.shape == x.shape, f"dx: shape {dx.shape}, expected {x.shape}: remove the padding from the gradient "
                                "of the padded input")
    if np.allclose(db, want[2] / (2 * 5 * 6)) or np.allclose(db, want[2] / 2):
        raise ExerciseFailed("db is a mean; every image and position adds b[f], so db sums dout over them")
    expect_close("db", db, want[2], rtol=1e-6, atol=1e-8, where="sum of dout over images and positions")
    expect_close("dW", dW, want[1], rtol=1e-6, atol=1e-8, where="x (2, 2, 5, 6), W (3, 2, 3, 3), padding 1; sum "
                                                                "over the batch")
    expect_close("dx", dx, want[0], rtol=1e-6, atol=1e-8, where="against central differences")
    return "dx, dW and db match central differences (padding 1)"


@checker("11.3")
def maxpool(answer):
    """``answer(x) -> (out, backward)`` for 2x2 windows with stride 2, against ``MaxPool2D``, ties and odd sizes."""
    rng = np.random.default_rng(22)
    ties = np.array([[5.0, 5.0, 2.0, 2.0], [5.0, 2.0, 2.0, 2.0]]).reshape(1, 1, 2, 4)
    for x in (rng.standard_normal((2, 3, 4, 6)), rng.standard_normal((1, 2, 5, 7)), ties):
        pool = MaxPool2D(2).to("numpy", np.float64)
        want = pool.forward(x).copy()
        dout = rng.standard_normal(want.shape)
        want_dx = pool.backward(dout).copy()
        got = run_answer(answer, x.copy(), forbid=FORBID_POOL)
        expect(isinstance(got, tuple) and len(got) == 2 and callable(got[1]),
               "expected a tuple (out, backward), backward a function of dout")
        where = f"x {x.shape}" + (", ties: the first maximum (row-major) wins" if x is ties else "")
        expect_close("out", got[0], want, where=where + "; odd sizes drop the last row or column")
        dx = np.asarray(run_answer(got[1], dout.copy(), forbid=FORBID_POOL))
        spread = np.zeros_like(x)
        spread[:, :, :want.shape[2] * 2, :want.shape[3] * 2] = np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3)
        if dx.shape == x.shape and (np.allclose(dx, spread / 4) or np.allclose(dx, spread)):
            raise ExerciseFailed("dx: you spread dout over the whole window (average pooling's backward); max-"
                                 "pooling sends it to the window's maximum only")
        expect_close("dx", dx, want_dx, where=where)
    return "out and dx match MaxPool2D (2x2, stride 2), ties and odd sizes included"


class _Stub:
    """A layer that multiplies by its weight and records the order of calls."""

    def __init__(self, name, log, scale):
        self.name, self.log = name, log
        self.params, self.grads = {"w": np.array([scale])}, {"w": np.zeros(1)}

    def forward(self, x):
        self.log.append(("forward", self.name))
        self.x = x
        return x * self.params["w"][0]

    def backward(self, dout):
        self.log.append(("backward", self.name))
        self.grads["w"][...] = (dout * self.x).sum()
        return dout * self.params["w"][0]


@checker("11.4")
def sequential(answer):
    """``answer(layers)``: forward in order, backward in reverse returning dx, parameters() as (value, gradient)
    pairs that are the layers' own arrays (so an in-place update changes the model)."""
    log = []
    layers = [_Stub("a", log, 2.0), ReLU(), _Stub("b", log, 3.0)]
    model = run_answer(answer, layers)
    x = np.array([[1.0, -1.0, 2.0]])
    out = model.forward(x)
    expect_close("forward", out, 6.0 * np.maximum(x, 0), where="layers a (x2), ReLU, b (x3)")
    expect([name for kind, name in log if kind == "forward"] == ["a", "b"], f"forward called layers {log}")
    log.clear()
    dx = model.backward(np.ones_like(x))
    expect([name for kind, name in log if kind == "backward"] == ["b", "a"],
           f"backward called the layers in the order {[n for k, n in log]}: it must go last layer first")
    expect_close("backward's return value (dx)", dx, 6.0 * (x > 0), where="layers a (x2), ReLU, b (x3), dout 1")
    pairs = model.parameters()
    expect(len(pairs) == 2, f"parameters(): {len(pairs)} pairs, expected 2 (one per parameter array)")
    for (value, grad), layer in zip(pairs, (layers[0], layers[2])):
        expect(value is layer.params["w"] and grad is layer.grads["w"],
               "parameters() must hand out the layers' own arrays (not copies), so that SGD's in-place update "
               "changes the model")
    return "forward in order, backward in reverse, parameters are the layers' own arrays"


@checker("11.5")
def sgd_step(answer):
    """``answer(model, lr)``: every parameter moves by -lr * gradient, in place."""
    rng = np.random.default_rng(23)
    values = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    grads = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    before = [v.copy() for v in values]

    class Model:
        def parameters(self):
            return list(zip(values, grads))

    run_answer(answer, Model(), 0.1, forbid=FORBID_TRAIN)
    for value, old, grad in zip(values, before, grads):
        if np.allclose(value, old):
            raise ExerciseFailed("the parameters did not change: update them in place (value -= lr * grad), "
                                 "not a new array bound to a local name")
        if np.allclose(value, old + 0.1 * grad):
            raise ExerciseFailed("you moved up the gradient: descent subtracts lr * grad")
        expect_close("parameter after the step", value, old - 0.1 * grad, rtol=1e-12, atol=1e-12)
    return "every parameter moved by -lr * gradient, in place"


class _HalfGradientDense(Dense):
    """A dense layer with a planted bug: its weight gradient is half the right one."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["W"] *= 0.5
        return dx


@checker("11.6")
def gradient_check(answer):
    """``answer(model, loss, x, y) -> max relative error``: small for a correct network, large for one whose dense
    layer halves its weight gradient."""
    rng = np.random.default_rng(24)
    x, y = rng.standard_normal((3, 1, 4, 4)), np.array([0, 3, 7])
    results = {}
    for name, dense in (("correct", Dense), ("buggy", _HalfGradientDense)):
        model = build_network(_reference_parts(), (1, 4, 4), 2, np.random.default_rng(25))
        model.layers[-1] = dense(2 * 2 * 2, 10, np.random.default_rng(26))
        model.layers[0].params["b"][...] = rng.standard_normal(2)  # non-zero biases: no gradient trivially zero
        results[name] = float(run_answer(answer, model, softmax_loss, x, y, forbid=FORBID_TRAIN))
    expect(results["correct"] < 1e-6, f"a correct network gives a relative error of {results['correct']:.2e}; "
                                      "expected below 1e-6 (central differences, h about 1e-5, float64)")
    expect(results["buggy"] > 1e-2, f"a network whose dense layer halves its weight gradient gives "
                                    f"{results['buggy']:.2e}; a gradient check must flag it (expected above 1e-2): "
                                    "compare every parameter array of every layer")
    return (f"relative error {results['correct']:.1e} for a correct network, {results['buggy']:.1e} for one "
            "with a planted bug")


def _digits(count):
    """The first ``count`` 8x8 digits of scikit-learn (standardised, float64) with their labels."""
    from sklearn.datasets import load_digits
    data = load_digits()
    x = data.images[:count, None].astype(np.float64)
    return (x - x.mean()) / x.std(), data.target[:count]


@checker("11.7")
def fit(answer):
    """``answer(model, loss, x, y, epochs, lr, batch_size, rng) -> [(loss, accuracy) per epoch]``: on 50
    digits it must reach 100% training accuracy, and the mini-batches must come from ``rng``."""
    x, y = _digits(50)
    histories = []
    for seed in (0, 0, 1):
        model = build_network(_reference_parts(), (1, 8, 8), 4, np.random.default_rng(27))
        histories.append(run_answer(answer, model, softmax_loss, x, y, 30, 0.1, 10, np.random.default_rng(seed),
                                    forbid=FORBID_TRAIN))
    history = histories[0]
    expect(len(history) == 30, f"{len(history)} entries in the history, expected one (loss, accuracy) per epoch (30)")
    losses, accuracies = zip(*[(float(a), float(b)) for a, b in history])
    expect(losses[-1] < losses[0], f"the training loss went from {losses[0]:.3f} to {losses[-1]:.3f}: did each "
                                   "mini-batch call backward and then sgd_step?")
    expect(max(accuracies) <= 1.0, f"accuracy {max(accuracies)} above 1: divide the hits by the number of images")
    expect(accuracies[-1] == 1.0, f"after 30 epochs on 50 images the training accuracy is {accuracies[-1]:.2f}; "
                                  "a correct loop overfits them to 1.00 (lr 0.1, batches of 10)")
    expect(np.allclose(histories[0], histories[1]), "two runs with generators seeded alike differ: shuffle with "
                                                    "the rng argument (rng.permutation), not np.random")
    expect(not np.allclose(histories[0], histories[2]), "runs with generators seeded differently are identical: "
                                                        "shuffle the images with rng at every epoch")
    return "overfits 50 digits to 100% in 30 epochs, shuffling with the given generator"


@checker("11.8")
def lr_search(answer):
    """``answer(build, train, evaluate, rates) -> ({rate: validation accuracy}, best rate)`` with stand-ins that
    record what was built, trained and evaluated."""
    built, trained, evaluated = [], [], []

    def build():
        model = {"id": len(built), "rate": None}
        built.append(model)
        return model

    def train(model, rate):
        expect(model["rate"] is None, "a model was trained twice: build a fresh model for every learning rate, "
                                      "or each rate starts from the previous one's weights")
        model["rate"] = rate
        trained.append(rate)

    def evaluate(model):
        expect(model["rate"] is not None, "a model was evaluated before it was trained")
        evaluated.append(model["id"])
        return {0.3: 0.61, 0.1: 0.83, 0.03: 0.79, 0.01: 0.70}[model["rate"]]

    rates = [0.01, 0.03, 0.1, 0.3]
    got = run_answer(answer, build, train, evaluate, rates)
    expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (scores, best rate), got {type(got).__name__}")
    scores, best = got
    expect(sorted(trained) == sorted(rates), f"trained with {trained}, expected each of {rates} once")
    expect(dict(scores) == {0.01: 0.70, 0.03: 0.79, 0.1: 0.83, 0.3: 0.61}, f"scores {scores}: expected the "
                                                                           "validation accuracy of each rate")
    expect(best == 0.1, f"best rate {best}: expected the rate with the *highest* validation accuracy (0.1)")
    return "a fresh model per rate, each trained then scored, the best validation accuracy chosen"
