"""The notebooks' exercise checks (notebooks/exercises/): each passes its solution and fails on wrong answers.

For every exercise: the reference solution in notebooks/solutions/ passes its check; each
deliberately wrong answer below (a typical mistake: a transposed result, a missing 1/N, no
bias correction, a leak of test statistics, ...) raises ``ExerciseFailed``; an answer that
still raises ``NotImplementedError`` is reported as not attempted, without an error. And
every notebook has at least two exercises, each with a check cell and a solution.

Run time: about 5 s on 2 cores.
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
from solutions import ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10  # noqa: E402


def _wrong_header(raw):  # little-endian sizes
    return raw[2], tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "little") for i in range(raw[3]))


def _leaky_standardise(train, test):  # statistics of training and test images together
    both = np.concatenate([train, test]).astype(np.float64) / 255
    return tuple(((x[:, None] / 255 - both.mean()) / both.std()).astype(np.float32) for x in (train, test))


def _naive_xent(logits, labels):  # log(softmax) without the shift
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def _conv_dx_unflipped(dout, W):  # full correlation: the kernel not flipped
    from scipy.signal import correlate2d as corr
    dx = np.zeros((dout.shape[0], W.shape[1], dout.shape[2] + W.shape[2] - 1, dout.shape[3] + W.shape[3] - 1))
    for n in range(dout.shape[0]):
        for c in range(W.shape[1]):
            for f in range(W.shape[0]):
                dx[n, c] += corr(dout[n, f], W[f, c], mode="full")
    return dx


def _adam_without_bias_correction(theta, g, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return theta - lr * m / (np.sqrt(v) + eps), m, v


def _adam_eps_inside(theta, g, m, v, t, lr, beta1, beta2, eps):  # eps inside the root: wrong for tiny gradients
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return theta - lr * (m / (1 - beta1 ** t)) / np.sqrt(v / (1 - beta2 ** t) + eps), m, v


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


WRONG = {
    "1.1": [_wrong_header, lambda raw: (raw[2], (int.from_bytes(raw[4:8], "big"),))],
    "1.2": [_leaky_standardise, lambda train, test: tuple((x[:, None] / 255).astype(np.float32) for x in (train, test)),
            lambda train, test: tuple(y.astype(np.float64) for y in ch01.standardise(train, test))],
    "2.1": [lambda size, k, s, p, d: (size + 2 * p - k) // s + 1,  # dilation ignored
            lambda size, k, s, p, d: -(-(size + 2 * p - d * (k - 1) - 1) // s) + 1],  # ceil instead of floor
    "2.2": [lambda x, kh, kw: ch02.im2col_stride2(x, kh, kw).T,
            lambda x, kh, kw: __import__("kernels").get("numpy").im2col(x, kh, kw, stride=1, padding=0)],
    "3.2": [lambda dout, x, k: np.repeat(np.repeat(dout, k, axis=2), k, axis=3) / k**2,  # average-pool backward
            lambda dout, x, k: ch03.maxpool_backward(dout, x[..., ::-1, ::-1], k)[..., ::-1, ::-1]],  # last maximum
    "3.1": [lambda dout, x, alpha: dout * (x > 0), lambda dout, x, alpha: dout * np.where(x > 0, 1.0, -alpha)],
    "4.2": [_naive_xent, lambda z, y: ch04.softmax_xent(z, y) * len(y)],  # sum, not mean
    "4.1": [lambda x, W, dout: (dout @ W.T, dout.T @ x, dout.sum(0)),
            lambda x, W, dout: (dout @ W.T, x.T @ dout, dout.mean(0))],
    "5.1": [_conv_dx_unflipped],
    "5.2": [lambda x, dout: ch05.conv_backward_dW(x[:1], dout[:1]),  # first image only
            lambda x, dout: ch05.conv_backward_dW(x, dout)[..., ::-1, ::-1]],
    "6.1": [lambda theta, g, v, lr, mu: (theta - lr * g, v),  # plain SGD
            lambda theta, g, v, lr, mu: (theta - lr * (mu * v + g), mu * v + lr * g)],
    "6.2": [_adam_without_bias_correction, _adam_eps_inside],
    "7.1": [lambda yt, yp, n: ch07.confusion_matrix(yt, yp, n).T,
            lambda yt, yp, n: ch07.confusion_matrix(yt, yp, int(max(yt.max(), yp.max())) + 1)],
    "7.2": [lambda stack: 1 + sum(k - 1 for k, s in stack),  # strides forgotten
            lambda stack: int(np.prod([k for k, s in stack]))],
    "8.1": [lambda d, g: (np.array([d[0] * g[0], d[1] * g[1], d[2] * g[2], d[3] * g[2]]), np.correlate(d, g, "valid")),
            lambda d, g: (ch08.winograd_f23(d, g)[0], np.convolve(d, g, "valid"))],
    "8.2": [lambda d, g: ch08.A_T @ ((ch08.G @ g @ ch08.G.T) * (ch08.B_T @ d @ ch08.B_T.T)) @ ch08.A_T.T[::-1],
            lambda d, g: correlate2d(d, g[::-1, ::-1], mode="valid")],
    "9.1": [lambda x, p, rng: (lambda mask: (x * mask, mask))((rng.random(x.shape) >= p) * 1.0),  # not scaled
            lambda x, p, rng: ch09.inverted_dropout(x, 1 - p, rng)],  # p taken as the keep probability
    "9.2": [lambda dout, x, gamma, eps: (dout * gamma / np.sqrt(x.var(0) + eps),) + ch09.batchnorm_backward(
                dout, x, gamma, eps)[1:],  # batch statistics treated as constants
            lambda dout, x, gamma, eps: ch09.batchnorm_backward(dout, x, gamma, eps)[:2] + (dout.mean(0),)],
    "10.1": [_saliency_of_the_probability, _saliency_left_on],
    "10.2": [lambda model, x, target, patch: -ch10.occlusion_map(model, x, target, patch),
             lambda model, x, target, patch: ch10.occlusion_map(model, x, target, patch)[::-1]],
}
IDS = sorted(WRONG, key=lambda i: tuple(int(p) for p in i.split(".")))


def _not_attempted(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solution_passes_its_check(exercise_id, capsys):
    check(exercise_id, solution(exercise_id))
    assert f"Exercise {exercise_id} passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", IDS)
def test_wrong_answers_fail_the_check_with_a_reason(exercise_id):
    for wrong in WRONG[exercise_id]:
        with pytest.raises(ExerciseFailed, match=r"\w") as failure:
            check(exercise_id, wrong)
        assert len(str(failure.value)) > 20  # says what is wrong, not just that something is


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
