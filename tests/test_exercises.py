"""The notebooks' exercise checks (notebooks/exercises/): each passes its solution and fails on wrong answers.

For every exercise: the reference solution in notebooks/solutions/ passes its check; each
deliberately wrong answer below (a typical mistake: a transposed result, a missing 1/N, no
bias correction, a leak of test statistics, a call to the framework's own implementation, ...;
at least two per exercise) raises ``ExerciseFailed`` with a message that names that mistake
(each is paired with a regular expression the message must match); an answer that
still raises ``NotImplementedError`` is reported as not attempted, without an error. And
every notebook has at least two exercises, each with a check cell and a solution.

Run time: about 25 s on 2 busy cores (notebook 11's checks train a small network on 50 digits three times;
notebook 12's take about 3 s).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from scipy.signal import correlate2d

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOK_DIR))
import exercises  # noqa: E402  (lives in notebooks/, like the notebooks that import it)
from exercises import ExerciseFailed, check, solution  # noqa: E402
from solutions import ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12  # noqa: E402


def _wrong_header(raw):  # little-endian sizes
    return raw[2], tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "little") for i in range(raw[3]))


def _header_by_the_framework(raw):  # the framework's own reader does the work
    from scratchcnn.data import parse_idx
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3]))
    return raw[2], parse_idx(raw[:4 + 4 * raw[3]] + bytes(int(np.prod(shape))), "raw").shape


def _leaky_standardise(train, test):  # statistics of training and test images together
    both = np.concatenate([train, test]).astype(np.float64) / 255
    return tuple(((x[:, None] / 255 - both.mean()) / both.std()).astype(np.float32) for x in (train, test))


def _standardise_by_the_framework(train, test):
    from scratchcnn.data import normalize
    pixels = train.astype(np.float64) / 255
    return tuple(normalize(x, 255.0, pixels.mean(), pixels.std()) for x in (train, test))


def _count_windows(size, k, s, p, d):  # the brute force of the drawing cell, copied
    span = d * (k - 1) + 1
    return len([start for start in range(0, size + 2 * p, s) if start + span <= size + 2 * p])


def _im2col_ceil(x, kh, kw):  # H_out rounded up: windows that stick out are zero-padded
    n, c, h, w = x.shape
    h_out, w_out = -(-(h - kh) // 2) + 1, -(-(w - kw) // 2) + 1
    padded = np.pad(x, ((0, 0), (0, 0), (0, 2), (0, 2)))
    cols = np.empty((c, kh, kw, n, h_out, w_out))
    for p in range(kh):
        for q in range(kw):
            cols[:, p, q] = padded[:, :, p:p + 2 * h_out:2, q:q + 2 * w_out:2].transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, -1)


def _prelu_as_relu(dout, x, alpha):
    return dout * (x > 0), (dout * x * (x <= 0)).sum(axis=(0, 2, 3))


def _maxpool_by_the_framework(dout, x, k):
    from scratchcnn.nn.layers import MaxPool2D
    pool = MaxPool2D(k).to("numpy", np.float64)
    pool.forward(x)
    return pool.backward(dout)


def _naive_xent(logits, labels):  # log(softmax) without the shift
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def _xent_mean_shift(logits, labels):  # shifted by the mean instead of the maximum
    z = np.asarray(logits, np.float64)
    z = z - z.mean(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))


def _xent_log_of_softmax(logits, labels):  # the shift, then -log(softmax)
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return float(-np.mean(np.log((e / e.sum(axis=1, keepdims=True))[np.arange(len(labels)), labels])))


def _xent_by_the_framework(logits, labels):
    from scratchcnn.nn.losses import SoftmaxCrossEntropy
    loss = SoftmaxCrossEntropy()
    loss.to("numpy")
    return loss(np.asarray(logits, np.float64), labels)


def _dense_first_position(x, W, dout):
    return dout @ W.T, x[:, 0].T @ dout[:, 0], dout.sum(axis=(0, 1))


def _dense_by_the_framework(x, W, dout):
    from scratchcnn.nn.layers import Dense
    dense = Dense(*W.shape).to("numpy", np.float64)
    dense.params["W"][...] = W
    dense.forward(x.reshape(-1, x.shape[-1]))
    dx = dense.backward(dout.reshape(-1, dout.shape[-1]))
    return dx.reshape(x.shape), dense.grads["W"], dense.grads["b"]


def _conv_dx_unflipped(dout, W):  # full correlation: the kernel not flipped
    dx = np.zeros((dout.shape[0], W.shape[1], dout.shape[2] + W.shape[2] - 1, dout.shape[3] + W.shape[3] - 1))
    for n in range(dout.shape[0]):
        for c in range(W.shape[1]):
            for f in range(W.shape[0]):
                dx[n, c] += correlate2d(dout[n, f], W[f, c], mode="full")
    return dx


def _conv_dx_by_the_framework(dout, W):
    from scratchcnn.nn.layers import Conv2D
    conv = Conv2D(W.shape[1], W.shape[0], W.shape[2]).to("numpy", np.float64)
    conv.params["W"][...] = W
    conv.requires_input_grad = True
    conv.forward(np.zeros((dout.shape[0], W.shape[1], dout.shape[2] + W.shape[2] - 1, dout.shape[3] + W.shape[3] - 1)))
    return conv.backward(dout)


def _conv_dW_by_im2col(x, dout):  # the framework's im2col does the work
    import kernels
    k = x.shape[2] - dout.shape[2] + 1
    cols = kernels.get("numpy").im2col(x, k, k)
    return (dout.transpose(1, 0, 2, 3).reshape(dout.shape[1], -1) @ cols.T).reshape(dout.shape[1], x.shape[1], k, k)


def _nesterov_by_the_framework(theta, g, v, lr, mu):
    from scratchcnn.nn.optimizers import SGD
    opt = SGD(lr, momentum=mu, nesterov=True)
    opt.to("numpy")
    opt.state["theta"] = {"velocity": v.copy()} if hasattr(opt, "state") else None
    theta = theta.copy()
    opt.step([("theta", theta, g)])
    return theta, mu * v + g


def _adam_without_bias_correction(theta, g, m, v, t, lr, beta1, beta2, eps, wd):
    g = g + wd * theta
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return theta - lr * m / (np.sqrt(v) + eps), m, v


def _adam_eps_inside(theta, g, m, v, t, lr, beta1, beta2, eps, wd):  # eps inside the root: wrong for tiny gradients
    g = g + wd * theta
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return theta - lr * (m / (1 - beta1 ** t)) / np.sqrt(v / (1 - beta2 ** t) + eps), m, v


def _adamw(theta, g, m, v, t, lr, beta1, beta2, eps, wd):  # decoupled decay instead of the L2 penalty's gradient
    new, m, v = ch06.adam_step(theta, g, m, v, t, lr, beta1, beta2, eps, 0.0)
    return new - lr * wd * theta, m, v


def _confusion_by_sklearn(yt, yp, n):
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(yt, yp, labels=range(n))


def _receptive_field_no_dilation(stack):
    return ch07.receptive_field([(k, s, p, 1) for k, s, p, d in stack])


def _receptive_field_no_padding(stack):
    return ch07.receptive_field(stack)[0], 0


def _f23_fixed_matrices(points):  # Lavin & Gray's matrices, whatever the points
    return ch08.A_T, ch08.G, ch08.B_T


def _f23_convolution(points):  # the polynomial product's algorithm itself: a convolution, not a correlation
    def vandermonde(columns):
        return np.array([[a ** j for j in range(columns)] for a in points] + [[0.0] * (columns - 1) + [1.0]])
    A_T, G, B_T = vandermonde(2).T, vandermonde(3), np.linalg.inv(vandermonde(4)).T
    return A_T, G[:, ::-1], B_T


def _f23_three_points(points):  # no point at infinity
    v = np.array([[a ** j for j in range(3)] for a in points])
    return v[:, :2].T, v, np.linalg.inv(v).T


def _winograd_direct(d, g):  # the correlation written out: 36 products
    return np.array([[(d[i:i + 3, j:j + 3] * g).sum() for j in range(2)] for i in range(2)])


def _dropout_first_quarter(x, p, rng):  # not random: the first p of each row dropped
    mask = np.ones(x.shape) / (1 - p)
    mask[:, :int(p * x.shape[1])] = 0
    rng.random()
    return x * mask, mask


def _dropout_same_units(x, p, rng):  # one random row of the mask, repeated: the same units in every row
    mask = np.broadcast_to((rng.random(x.shape[1]) >= p) / (1 - p), x.shape)
    return x * mask, mask


def _dropout_fixed_seed(x, p, rng):  # ignores the rng argument
    return ch09.inverted_dropout(x, p, np.random.default_rng(0))


def _dropout_global_random(x, p, rng):  # np.random instead of the generator given
    mask = (np.random.random(x.shape) >= p) / (1 - p)
    return x * mask, mask


def _layernorm_constant_statistics(dout, x, gamma, eps):
    dx = dout * gamma / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    return (dx,) + ch09.layernorm_backward(dout, x, gamma, eps)[1:]


def _layernorm_as_batchnorm(dout, x, gamma, eps):  # statistics over the batch (axis 0)
    m = x.shape[0]
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
    x_hat = (x - x.mean(axis=0)) * inv_std
    g = dout * gamma
    dx = inv_std / m * (m * g - g.sum(0) - x_hat * (g * x_hat).sum(0))
    return (dx,) + ch09.layernorm_backward(dout, x, gamma, eps)[1:]


def _saliency_of_the_probability(model, x, target):  # d softmax / d x instead of d logit / d x
    out = x
    for layer in model.layers:
        out = layer.forward(out, training=False)
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    rows = np.arange(len(target))
    dout = -p * p[rows, target][:, None]
    dout[rows, target] += p[rows, target]
    model.layers[0].requires_input_grad = True
    for layer in reversed(model.layers):
        dout = layer.backward(dout)
    model.layers[0].requires_input_grad = False
    return dout


def _saliency_left_on(model, x, target):  # right numbers, but the model is left computing dx of its data
    grad = ch10.saliency(model, x, target)
    model.layers[0].requires_input_grad = True
    return grad


def _saliency_training_mode(model, x, target):  # dropout active in the forward pass
    out = x
    for layer in model.layers:
        out = layer.forward(out)
    dout = np.zeros_like(out)
    dout[np.arange(len(target)), target] = 1.0
    model.layers[0].requires_input_grad = True
    for layer in reversed(model.layers):
        dout = layer.backward(dout)
    model.layers[0].requires_input_grad = False
    return dout


def _saliency_by_explain(model, x, target):
    from scratchcnn.engine import explain
    return explain.saliency(model, x, target)[0]


def _conv_by_the_framework(x, W, b, padding):
    from scratchcnn.nn.layers import Conv2D
    conv = Conv2D(W.shape[1], W.shape[0], W.shape[2], padding=padding).to("numpy", np.float64)
    conv.params["W"][...], conv.params["b"][...] = W, b
    return conv.forward(x)


def _maxpool_average(x):
    out, backward = ch11.maxpool(x)
    h, w = out.shape[2] * 2, out.shape[3] * 2

    def spread(dout):
        dx = np.zeros(x.shape)
        dx[:, :, :h, :w] = np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3) / 4
        return dx
    return out, spread


def _maxpool_by_the_framework_11(x):
    from scratchcnn.nn.layers import MaxPool2D
    pool = MaxPool2D(2).to("numpy", np.float64)
    return pool.forward(x), pool.backward


class _SequentialForwardOrderBackward(ch11.Sequential):
    def backward(self, dout):
        for layer in self.layers:
            dout = layer.backward(dout)
        return dout


class _SequentialCopies(ch11.Sequential):
    def parameters(self):
        return [(v.copy(), g.copy()) for v, g in super().parameters()]


def _sgd_rebinds(model, lr):
    for value, grad in model.parameters():
        value = value - lr * grad  # noqa: F841  (rebinding a local name: the model is unchanged)


def _gradient_check_first_layer_only(model, loss, x, y, h=1e-5):
    class Head:
        def __init__(self, inner):
            self.inner = inner

        def forward(self, x):
            return self.inner.forward(x)

        def backward(self, dout):
            return self.inner.backward(dout)

        def parameters(self):
            return self.inner.parameters()[:2]
    return ch11.gradient_check(Head(model), loss, x, y, h)


def _fit_without_step(model, loss, x, y, epochs, lr, batch_size, rng):
    history = []
    for _ in range(epochs):
        logits = model.forward(x)
        value, dlogits = loss(logits, y)
        model.backward(dlogits)
        history.append((value, float((logits.argmax(1) == y).mean())))
    return history


def _fit_global_shuffle(model, loss, x, y, epochs, lr, batch_size, rng):
    return ch11.fit(model, loss, x, y, epochs, lr, batch_size, np.random.default_rng(np.random.randint(1 << 30)))


def _search_one_model(build, train, evaluate, rates):
    model, scores = build(), {}
    for rate in rates:
        train(model, rate)
        scores[rate] = evaluate(model)
    return scores, max(scores, key=scores.get)


def _conv1x1_by_the_framework(x, W, b, stride):
    from scratchcnn.nn.layers import Conv2D
    conv = Conv2D(W.shape[1], W.shape[0], 1, stride=stride).to("numpy", np.float64)
    conv.params["W"][...], conv.params["b"][...] = W, b
    return conv.forward(x)


def _gap_without_the_share(x):  # backward spreads dout unscaled: the 1/(H*W) forgotten
    out, _ = ch12.global_avg_pool(x)
    return out, lambda dout: np.broadcast_to(dout[:, :, None, None], x.shape).copy()


def _gap_by_the_framework(x):
    from scratchcnn.nn.layers import GlobalAvgPool2D
    layer = GlobalAvgPool2D().to("numpy", np.float64)
    return layer.forward(x), layer.backward


class _ResidualMainGradientOnly(ch12.ResidualBlock):  # the shortcut's gradient forgotten
    def backward(self, dout):
        d = dout * (self.out > 0)
        for layer in reversed(self.main):
            d = layer.backward(d)
        return d


class _ResidualReluBeforeAdd(ch12.ResidualBlock):  # relu(F(x)) + S(x)
    def forward(self, x):
        y, s = x, x
        for layer in self.main:
            y = layer.forward(y)
        for layer in self.shortcut:
            s = layer.forward(s)
        self.out = np.maximum(y, 0) + s
        return self.out


class _ResidualUnmasked(ch12.ResidualBlock):  # backward skips the ReLU after the sum
    def backward(self, dout):
        self.out = np.ones_like(self.out)
        return super().backward(dout)


class _ResidualByTheFramework:
    def __init__(self, main, shortcut):
        from scratchcnn.nn.layers import Residual
        self.block = Residual(main, shortcut).to("numpy", np.float64)

    def forward(self, x):
        return self.block.forward(x)

    def backward(self, dout):
        return self.block.backward(dout)


# For each exercise: (wrong answer, a regular expression its check's message must match: the mistake named).
WRONG = {
    "1.1": [(_wrong_header, "little-endian"),
            (lambda raw: (raw[2], (int.from_bytes(raw[4:8], "big"),)), "byte 3 says how many"),
            (lambda raw: (raw[2], tuple(int.from_bytes(raw[6 + 4 * i:8 + 4 * i], "big") for i in range(raw[3]))),
             "4-byte"),
            (_header_by_the_framework, "calls scratchcnn.data.idx")],
    "1.2": [(_leaky_standardise, "training and test images together"),
            (lambda train, test: tuple((x[:, None] / 255).astype(np.float32) for x in (train, test)),
             "not standardised"),
            (lambda train, test: tuple(y.astype(np.float64) for y in ch01.standardise(train, test)), "float32"),
            (lambda train, test: tuple(y[:, 0] for y in ch01.standardise(train, test)), "channel axis"),
            (lambda train, test: tuple(ch01.standardise(x, x)[0] for x in (train, test)), "their own mean"),
            (_standardise_by_the_framework, "calls scratchcnn.data.normalize")],
    "2.1": [(lambda size, k, s, p, d: (size + 2 * p - k) // s + 1, "ignored the dilation"),
            (lambda size, k, s, p, d: -(-(size + 2 * p - d * (k - 1) - 1) // s) + 1, "rounded up"),
            (lambda size, k, s, p, d: (size + p - d * (k - 1) - 1) // s + 1, "one side only"),
            (_count_windows, "lines of Python: it counts or loops")],
    "2.2": [(lambda x, kh, kw: ch02.im2col_stride2(x, kh, kw).T, "transposed"),
            (_im2col_ceil, "rounded"),
            (lambda x, kh, kw: __import__("kernels").get("numpy").im2col(x, kh, kw, stride=2, padding=0),
             "calls the framework's im2col"),
            (lambda x, kh, kw: ch02.im2col_stride2(x.transpose(0, 1, 3, 2), kw, kh), "entries differ")],
    "3.1": [(_prelu_as_relu, "ReLU's slope"),
            (lambda dout, x, alpha: (ch03.prelu_backward(dout, x, alpha)[0], (dout * x * (x <= 0)).sum(axis=(2, 3))),
             "sums dout \\* x over N, H and W"),
            (lambda dout, x, alpha: (ch03.prelu_backward(dout, x, alpha)[0], (dout * x).sum(axis=(0, 2, 3))),
             "only multiplies the x <= 0"),
            (lambda dout, x, alpha: (dout * np.where(x > 0, 1.0, -alpha[None, :, None, None]),
                                     ch03.prelu_backward(dout, x, alpha)[1]), "dx.*entries differ")],
    "3.2": [(lambda dout, x, k: np.repeat(np.repeat(dout, k, axis=2), k, axis=3) / k**2, "average pooling"),
            (lambda dout, x, k: ch03.maxpool_backward(dout[..., ::-1, ::-1], x[..., ::-1, ::-1], k)[..., ::-1, ::-1], "first maximum"),
            (_maxpool_by_the_framework, "calls MaxPool2D")],
    "4.1": [(lambda x, W, dout: (dout @ W.T, (x.reshape(-1, 5).T @ dout.reshape(-1, 2)) / 12, dout.mean(axis=(0, 1))),
             "mean over the N\\*T"),
            (lambda x, W, dout: (dout @ W.T, x.reshape(-1, 5).T @ dout.reshape(-1, 2), dout.sum(axis=0)),
             "db sums dout over both N and T"),
            (_dense_first_position, "first position only"),
            (_dense_by_the_framework, "calls Dense")],
    "4.2": [(_naive_xent, "exp\\(1000\\) overflows"), (_xent_mean_shift, "not the mean"),
            (_xent_log_of_softmax, "never take log\\(softmax\\)"),
            (lambda z, y: ch04.softmax_xent(z, y) * len(y), "summed the losses"),
            (_xent_by_the_framework, "calls SoftmaxCrossEntropy"),
            (lambda z, y: float(np.mean(__import__("scipy.special").special.logsumexp(z, axis=1)
                                        - z[np.arange(len(y)), y])), "calls scipy.special.logsumexp")],
    "5.1": [(_conv_dx_unflipped, "flips it"),
            (lambda dout, W: ch05.conv_backward_dx(dout, W) / W.shape[0], "averaged over the filters"),
            (_conv_dx_by_the_framework, "calls Conv2D")],
    "5.2": [(lambda x, dout: ch05.conv_backward_dW(x[:1], dout[:1]), "first image only"),
            (lambda x, dout: ch05.conv_backward_dW(x, dout)[..., ::-1, ::-1], "flipped"),
            (_conv_dW_by_im2col, "calls kernels.numpy_ref.conv")],
    "6.1": [(lambda theta, g, v, lr, mu: (theta - lr * (mu * v + g), mu * v + g), "heavy-ball"),
            (lambda theta, g, v, lr, mu: (theta - lr * mu * (mu * v + g), mu * v + g), "left the gradient out"),
            (lambda theta, g, v, lr, mu: (theta - lr * g, v), "entries differ"),
            (_nesterov_by_the_framework, "calls scratchcnn.nn.optimizers")],
    "6.2": [(_adam_without_bias_correction, "no bias correction"), (_adam_eps_inside, "not inside the square root"),
            (_adamw, "AdamW"),
            (lambda theta, g, m, v, t, lr, b1, b2, eps, wd: ch06.adam_step(theta, g, m, v, t, lr, b1, b2, eps, 0.0),
             "entries differ")],
    "7.1": [(lambda yt, yp, n: ch07.confusion_matrix(yt, yp, n).T, "transposed"),
            (lambda yt, yp, n: ch07.confusion_matrix(yt, yp, int(max(yt.max(), yp.max())) + 1), "class 4 never"),
            (_confusion_by_sklearn, "calls sklearn.metrics.confusion_matrix")],
    "7.2": [(_receptive_field_no_dilation, "ignored the dilation"), (_receptive_field_no_padding, "padding moves"),
            (lambda stack: (1 + sum(d * (k - 1) for k, s, p, d in stack), 0), "expected")],
    "8.1": [(_f23_fixed_matrices, "build the matrices from the points"), (_f23_convolution, "convolution"),
            (_f23_three_points, "infinity")],
    "8.2": [(lambda d, g: correlate2d(d, g, mode="valid"), "calls scipy.signal"),
            (_winograd_direct, "36 times"),
            (lambda d, g: ch08.A_T @ ((ch08.G @ g @ ch08.G.T) * (ch08.B_T @ d @ ch08.B_T.T)) @ ch08.A_T.T[::-1],
             "entries differ"),
            (lambda d, g: ch08.winograd_2x2_3x3(np.asarray(d), np.asarray(g)), "16")],
    "9.1": [(lambda x, p, rng: (lambda mask: (x * mask, mask))((rng.random(x.shape) >= p) * 1.0), "0 and 1"),
            (lambda x, p, rng: ch09.inverted_dropout(x, 1 - p, rng), "probability of dropping"),
            (_dropout_first_quarter, "not random"), (_dropout_same_units, "not random"),
            (_dropout_fixed_seed, "ignores the rng argument"), (_dropout_global_random, "not np.random"),
            (lambda x, p, rng: __import__("kernels").get("numpy").dropout_forward(x, p, 1, 0),
             "calls kernels.numpy_ref.activation")],
    "9.2": [(_layernorm_constant_statistics, "as constants"), (_layernorm_as_batchnorm, "batch norm's gradient"),
            (lambda dout, x, gamma, eps: ch09.layernorm_backward(dout, x, gamma, eps)[:2] + (dout.mean(0),),
             "dbeta.*entries differ")],
    "10.1": [(_saliency_of_the_probability, "not on the probabilities"), (_saliency_left_on, "left True"),
             (_saliency_training_mode, "training mode"), (_saliency_by_explain, "calls scratchcnn.engine.explain")],
    "11.1": [(lambda x, W, b, p: ch11.conv_forward(x, W[:, :, ::-1, ::-1], b, p), "flipped the kernel"),
             (lambda x, W, b, p: ch11.conv_forward(x, W, 0 * b, p), "bias is missing"),
             (lambda x, W, b, p: ch11.conv_forward(x, W, b, 0), "H_out = H \\+ 2\\*padding"),
             (_conv_by_the_framework, "calls Conv2D")],
    "11.2": [(lambda dout, x, W, p: ch11.conv_backward(dout, x, W, p)[:2] + (dout.mean(axis=(0, 2, 3)),), "db is a mean"),
             (lambda dout, x, W, p: (ch11.conv_backward(dout, x, W, p)[0], ch11.conv_backward(dout[:1], x[:1], W, p)[1],
                                     ch11.conv_backward(dout, x, W, p)[2]), "dW.*sum over the batch"),
             (lambda dout, x, W, p: (ch11.conv_backward(dout, x, W[:, :, ::-1, ::-1], p)[0],)
              + ch11.conv_backward(dout, x, W, p)[1:], "dx.*central differences")],
    "11.3": [(_maxpool_average, "average pooling"), (_maxpool_by_the_framework_11, "calls MaxPool2D"),
             (lambda x: ch11.maxpool(x)[0], "expected a tuple")],
    "11.4": [(_SequentialForwardOrderBackward, "last layer first"), (_SequentialCopies, "not copies")],
    "11.5": [(_sgd_rebinds, "in place"), (lambda model, lr: [v.__iadd__(lr * g) for v, g in model.parameters()] and None,
                                          "up the gradient")],
    "11.6": [(lambda model, loss, x, y, h=1e-5: 0.0, "must flag it"), (_gradient_check_first_layer_only, "must flag it"),
             (lambda model, loss, x, y, h=1e-5: __import__("scratchcnn.nn.gradcheck").nn.gradcheck.rel_error(
                 np.ones(2), np.ones(2)), "calls scratchcnn.nn.gradcheck")],
    "11.7": [(_fit_without_step, "sgd_step"), (_fit_global_shuffle, "not np.random"),
             (lambda model, loss, x, y, epochs, lr, batch_size, rng: ch11.fit(model, loss, x, y, epochs, lr, batch_size,
                                                                              rng)[-1:], "one \\(loss, accuracy\\) per epoch")],
    "11.8": [(_search_one_model, "trained twice"),
             (lambda build, train, evaluate, rates: (lambda r: (r[0], min(r[0], key=r[0].get)))(
                 ch11.lr_search(build, train, evaluate, rates)), "highest"),
             (lambda build, train, evaluate, rates: ({r: evaluate(build()) for r in rates}, rates[0]),
              "evaluated before it was trained")],
    "12.1": [(lambda x, W, b, s: ch12.conv1x1(x, W, 0 * b, s), "bias is missing"),
             (lambda x, W, b, s: ch12.conv1x1(x, W.transpose(1, 0, 2, 3), b, s), "W transposed"),
             (lambda x, W, b, s: ch12.conv1x1(x, W, b, 1), "every stride-th pixel"),
             (_conv1x1_by_the_framework, "calls Conv2D")],
    "12.2": [(_gap_without_the_share, "forgot the 1/\\(H\\*W\\)"),
             (lambda x: (x.mean(axis=(2, 3), keepdims=True), ch12.global_avg_pool(x)[1]), "not kept as 1 x 1"),
             (lambda x: (x.max(axis=(2, 3)), ch12.global_avg_pool(x)[1]), "maximum"),
             (lambda x: (ch12.global_avg_pool(x)[0], lambda dout: ch12.global_avg_pool(x)[1](dout) * x.shape[3]),
              "divided by H only"),
             (_gap_by_the_framework, "calls GlobalAvgPool2D")],
    "12.3": [(_ResidualMainGradientOnly, "forgot the shortcut's"), (_ResidualReluBeforeAdd, "ReLU before the add"),
             (_ResidualUnmasked, "ignored the ReLU after the sum"), (_ResidualByTheFramework, "calls Residual")],
    "10.2": [(lambda model, x, target, patch: -ch10.occlusion_map(model, x, target, patch), "opposite sign"),
             (lambda model, x, target, patch: ch10.occlusion_map(model, x, target, patch).T, "transposed")],
}
IDS = sorted(WRONG, key=lambda i: tuple(int(p) for p in i.split(".")))


def _not_attempted(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solution_passes_its_check(exercise_id, capsys):
    check(exercise_id, solution(exercise_id))
    assert f"Exercise {exercise_id} passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", IDS)
def test_wrong_answers_fail_the_check_naming_the_mistake(exercise_id):
    assert len(WRONG[exercise_id]) >= 2
    for wrong, reason in WRONG[exercise_id]:
        with pytest.raises(ExerciseFailed) as failure:
            check(exercise_id, wrong)
        assert re.search(reason, str(failure.value)), f"{exercise_id}: {failure.value}"


@pytest.mark.parametrize("exercise_id", IDS)
def test_an_unattempted_exercise_is_reported_not_raised(exercise_id, capsys, monkeypatch):
    monkeypatch.setattr(exercises, "SOLUTIONS", False)
    check(exercise_id, _not_attempted)
    assert "not attempted yet" in capsys.readouterr().out
    monkeypatch.setattr(exercises, "SOLUTIONS", True)  # when CI runs the solutions, an unattempted one fails
    with pytest.raises(ExerciseFailed):
        check(exercise_id, _not_attempted)


def test_every_notebook_has_two_checked_exercises_with_solutions():
    found = set()
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        marked = re.findall(r'@exercise\("([\d.]+)"\)', code)
        checked = re.findall(r'check\("([\d.]+)",', code)
        assert len(set(marked)) >= 2, f"{path.name}: {len(set(marked))} exercises"
        assert set(marked) == set(checked), f"{path.name}: exercises {marked}, check cells {checked}"
        assert all(i.startswith(f"{int(path.name[:2])}.") for i in marked), f"{path.name}: {marked}"
        found |= set(marked)
    assert found == set(WRONG), f"exercises without wrong-answer tests: {found ^ set(WRONG)}"
    for exercise_id in found:
        assert callable(solution(exercise_id))
