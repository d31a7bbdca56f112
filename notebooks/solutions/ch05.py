"""Solutions of notebook 5's exercises."""
from __future__ import annotations

import numpy as np
from scipy.signal import convolve2d, correlate2d


def conv_backward_dx(dout, W):
    """Exercise 5.1: dx[n, c] = sum over f of the *full convolution* of dout[n, f] with W[f, c].

    ``convolve2d`` flips its second argument, which is exactly the flipped kernel of the derivation.
    """
    n_img, n_f, h_out, w_out = dout.shape
    _, n_ch, kh, kw = W.shape
    dx = np.zeros((n_img, n_ch, h_out + kh - 1, w_out + kw - 1))
    for n in range(n_img):
        for c in range(n_ch):
            for f in range(n_f):
                dx[n, c] += convolve2d(dout[n, f], W[f, c], mode="full")
    return dx


def conv_backward_dW(x, dout):
    """Exercise 5.2: dW[f, c] = sum over n of the (valid) correlation of x[n, c] with dout[n, f]."""
    n_img, n_ch, h, w = x.shape
    _, n_f, h_out, w_out = dout.shape
    dW = np.zeros((n_f, n_ch, h - h_out + 1, w - w_out + 1))
    for n in range(n_img):
        for f in range(n_f):
            for c in range(n_ch):
                dW[f, c] += correlate2d(x[n, c], dout[n, f], mode="valid")
    return dW


ANSWERS = {"5.1": conv_backward_dx, "5.2": conv_backward_dW}
