"""Solutions of notebook 11's exercises (the capstone): a CNN from the student's own layers, trained."""
from __future__ import annotations

import numpy as np


def conv_forward(x, W, b, padding):
    """Exercise 11.1: out[n, f, i, j] = b[f] + sum over c, p, q of x_pad[n, c, i + p, j + q] W[f, c, p, q];
    one vectorised product per kernel offset (p, q) instead of seven loops."""
    n, _, h, w = x.shape
    f, _, k, _ = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out, w_out = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    out = np.zeros((n, f, h_out, w_out)) + b[None, :, None, None]
    for p in range(k):
        for q in range(k):
            out += np.einsum("nchw,fc->nfhw", xp[:, :, p:p + h_out, q:q + w_out], W[:, :, p, q])
    return out


def conv_backward(dout, x, W, padding):
    """Exercise 11.2: each offset (p, q) of the forward pass sends dout back to the window it read
    (dx) and correlates it with that window (dW); db sums dout over images and positions."""
    _, _, h, w = x.shape
    k = W.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    h_out, w_out = dout.shape[2:]
    for p in range(k):
        for q in range(k):
            window = xp[:, :, p:p + h_out, q:q + w_out]
            dW[:, :, p, q] = np.einsum("nfhw,nchw->fc", dout, window)
            dxp[:, :, p:p + h_out, q:q + w_out] += np.einsum("nfhw,fc->nchw", dout, W[:, :, p, q])
    return dxp[:, :, padding:padding + h, padding:padding + w], dW, dout.sum(axis=(0, 2, 3))


def maxpool(x):
    """Exercise 11.3: 2x2 max-pooling with stride 2 -> (out, backward); backward(dout) sends each dout to the
    first maximum of its window (row-major), as np.argmax picks it."""
    n, c, h, w = x.shape
    windows = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    flat = windows.reshape(n, c, h // 2, w // 2, 4)
    winner = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, winner[..., None], axis=-1)[..., 0]

    def backward(dout):
        routed = np.zeros(flat.shape)
        np.put_along_axis(routed, winner[..., None], dout[..., None], axis=-1)
        dx = np.zeros(x.shape)
        dx[:, :, :h // 2 * 2, :w // 2 * 2] = (routed.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
                                              .reshape(n, c, h // 2 * 2, w // 2 * 2))
        return dx

    return out, backward


class Sequential:
    """Exercise 11.4: layers applied in order; backward in reverse order; parameters as (value, gradient) pairs."""

    def __init__(self, layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def parameters(self):
        return [(layer.params[key], layer.grads[key]) for layer in self.layers for key in layer.params]


def sgd_step(model, lr):
    """Exercise 11.5: theta <- theta - lr * gradient, in place, for every parameter."""
    for value, grad in model.parameters():
        value -= lr * grad


def gradient_check(model, loss, x, y, h=1e-5):
    """Exercise 11.6: the largest relative error max|a - n| / max(|a| + |n|) over the model's parameter
    arrays, a = the backward pass's gradient, n = central differences of the loss (float64)."""
    _, dlogits = loss(model.forward(x), y)
    model.backward(dlogits)
    worst = 0.0
    for value, grad in model.parameters():
        analytic, numeric = grad.copy(), np.zeros_like(value)
        for index in np.ndindex(value.shape):
            old = value[index]
            value[index] = old + h
            plus = loss(model.forward(x), y)[0]
            value[index] = old - h
            minus = loss(model.forward(x), y)[0]
            value[index] = old
            numeric[index] = (plus - minus) / (2 * h)
        worst = max(worst, float(np.abs(analytic - numeric).max() / max(np.abs(analytic).max() + np.abs(numeric).max(),
                                                                        1e-300)))
    return worst


def fit(model, loss, x, y, epochs, lr, batch_size, rng):
    """Exercise 11.7: each epoch, a fresh permutation from rng, one SGD step per mini-batch; returns the mean
    training loss and accuracy of every epoch (over its mini-batches)."""
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        total_loss = correct = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            logits = model.forward(x[batch])
            value, dlogits = loss(logits, y[batch])
            model.backward(dlogits)
            sgd_step(model, lr)
            total_loss += value * len(batch)
            correct += float((logits.argmax(axis=1) == y[batch]).sum())
        history.append((total_loss / len(x), correct / len(x)))
    return history


def lr_search(build, train, evaluate, rates):
    """Exercise 11.8: a fresh model per learning rate, trained, then scored on the validation images only;
    returns ({rate: validation accuracy}, best rate)."""
    scores = {}
    for rate in rates:
        model = build()
        train(model, rate)
        scores[rate] = evaluate(model)
    return scores, max(scores, key=scores.get)


ANSWERS = {"11.1": conv_forward, "11.2": conv_backward, "11.3": maxpool, "11.4": Sequential, "11.5": sgd_step,
           "11.6": gradient_check, "11.7": fit, "11.8": lr_search}
