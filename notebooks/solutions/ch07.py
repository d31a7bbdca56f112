"""Solutions of notebook 7's exercises."""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes):
    """Exercise 7.1: count each (true, predicted) pair; np.add.at adds once per occurrence."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def receptive_field(stack):
    """Exercise 7.2: r = 1 + sum over layers of (kernel - 1) * (product of the strides below)."""
    size, jump = 1, 1
    for kernel, stride in stack:
        size += (kernel - 1) * jump
        jump *= stride
    return size


ANSWERS = {"7.1": confusion_matrix, "7.2": receptive_field}
