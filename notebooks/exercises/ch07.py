"""Checks of notebook 7's exercises: the confusion matrix, the receptive field of a conv/pool stack."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

import kernels
from exercises import checker, expect, expect_close


@checker("7.1")
def confusion_matrix(answer):
    """``answer(y_true, y_pred, num_classes) -> (num_classes, num_classes)`` against scikit-learn."""
    rng = np.random.default_rng(10)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    y_pred[:30] = y_true[:30]
    expect_close("confusion matrix", answer(y_true, y_pred, 5), sk_confusion_matrix(y_true, y_pred, labels=range(5)),
                 where="row = true class, column = predicted class; class 4 never occurs")
    return "matches sklearn.metrics.confusion_matrix (rows true, columns predicted)"


def seen_pixels(stack, size):
    """Which input pixels (size x size) can influence output cell (0, 0) of ``stack`` [(kernel, stride), ...].

    Walks back through the layers: each window that contains a pixel of interest makes all its
    pixels of interest one layer down (``col2im`` of ones, the adjoint of im2col, spreads them).
    """
    K = kernels.get("numpy")
    sizes = [size]
    for kernel, stride in stack:
        sizes.append((sizes[-1] - kernel) // stride + 1)
    mask = np.zeros((1, 1, sizes[-1], sizes[-1]))
    mask[0, 0, 0, 0] = 1.0
    for (kernel, stride), below in zip(reversed(stack), reversed(sizes[:-1])):
        cols = np.repeat(mask.reshape(1, -1), kernel * kernel, axis=0)
        mask = (K.col2im(cols, (1, 1, below, below), kernel, kernel, stride, 0) > 0).astype(np.float64)
    return mask[0, 0] > 0


@checker("7.2")
def receptive_field(answer):
    """``answer([(kernel, stride), ...]) -> int`` against the pixels found by walking back through col2im."""
    stacks = ([(3, 1)], [(3, 1), (2, 2)], [(3, 1), (2, 2), (3, 1), (2, 2)], [(5, 2), (3, 1), (3, 2)],
              [(3, 1), (3, 1), (2, 2), (3, 1), (3, 1), (2, 2)])
    for stack in stacks:
        want = int(seen_pixels(stack, 64).any(axis=0).sum())
        got = answer(list(stack))
        expect(int(got) == want, f"stack {stack} (kernel, stride): got {got}, expected {want} pixels; each layer adds "
                                 "(kernel - 1) times the product of the strides below it")
    return f"receptive fields of {len(stacks)} stacks match the pixels found by walking back through col2im"
