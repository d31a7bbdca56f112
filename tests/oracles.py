"""Naive loop implementations straight from the definitions: the oracles the NumPy reference is held to."""
from __future__ import annotations

import numpy as np


def conv2d_naive(x, w, b, stride, padding):
    """Cross-correlation by six nested loops: out[n, f, i, j] = b[f] + sum_{c,p,q} w[f, c, p, q] * x_pad[n, c, i*s+p, j*s+q]."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, f, ho, wo), x.dtype)
    for i in range(n):
        for o in range(f):
            for r in range(ho):
                for s in range(wo):
                    total = b[o]
                    for ch in range(c):
                        for p in range(kh):
                            for q in range(kw):
                                total += w[o, ch, p, q] * xp[i, ch, r * stride + p, s * stride + q]
                    out[i, o, r, s] = total
    return out


def maxpool_naive(x, k, stride):
    """Max over each window by four nested loops; returns (out, argmax) with first-max tie breaking."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, c, ho, wo), x.dtype)
    arg = np.zeros((n, c, ho, wo), np.int8)
    for i in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    window = x[i, ch, r * stride:r * stride + k, s * stride:s * stride + k].ravel()
                    arg[i, ch, r, s] = int(np.argmax(window))  # argmax returns the first maximum
                    out[i, ch, r, s] = window.max()
    return out, arg


def softmax_xent_naive(logits, labels):
    """Mean cross-entropy with Python floats in float64, row by row."""
    total = 0.0
    for row, label in zip(np.asarray(logits, np.float64), labels):
        m = row.max()
        total += -(row[label] - m - np.log(np.sum(np.exp(row - m))))
    return total / len(labels)
