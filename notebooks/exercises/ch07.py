"""Checks of notebook 7's exercises: the confusion matrix, the receptive field with padding and dilation."""
from __future__ import annotations

import numpy as np
import sklearn.metrics

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from scratchcnn.apps import metrics as metrics_module

FORBID_7_1 = {"sklearn.metrics.confusion_matrix": sklearn.metrics.confusion_matrix,
              "scratchcnn.apps.metrics": metrics_module}


@checker("7.1")
def confusion_matrix(answer):
    """``answer(y_true, y_pred, num_classes) -> (num_classes, num_classes)`` against scikit-learn."""
    rng = np.random.default_rng(10)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    y_pred[:30] = y_true[:30]
    want = sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(5))
    got = np.asarray(run_answer(answer, y_true, y_pred, 5, forbid=FORBID_7_1))
    expect(got.shape == want.shape, f"confusion matrix: shape {got.shape}, expected {want.shape}: class 4 never "
                                    "occurs here but still has its row and column (of zeros)")
    if np.array_equal(got, want.T) and not np.array_equal(got, want):
        raise ExerciseFailed("confusion matrix: transposed; entry (t, p) counts images of *true* class t "
                             "(row) predicted as p (column)")
    expect_close("confusion matrix", got, want, where="row = true class, column = predicted class")
    return "matches sklearn.metrics.confusion_matrix (rows true, columns predicted)"


def seen_positions(stack):
    """Brute force: the input positions (1-D, padded coordinates may be negative) that reach output cell 0.

    ``stack`` is [(kernel, stride, padding, dilation), ...], first layer first. Walking back, cell i
    of a layer reads positions stride*i - padding + dilation*t, t = 0..kernel-1, of the layer below.
    """
    cells = {0}
    for kernel, stride, padding, dilation in reversed(stack):
        cells = {stride * i - padding + dilation * t for i in cells for t in range(kernel)}
    return cells


@checker("7.2")
def receptive_field(answer):
    """``answer([(kernel, stride, padding, dilation), ...]) -> (size, start)`` against the brute-force walk."""
    stacks = ([(3, 1, 0, 1)], [(3, 1, 1, 1), (2, 2, 0, 1)], [(3, 1, 0, 1), (2, 2, 0, 1), (3, 1, 0, 1), (2, 2, 0, 1)],
              [(5, 2, 2, 1), (3, 1, 1, 1), (3, 2, 1, 1)], [(3, 1, 1, 1), (3, 1, 2, 2), (3, 1, 4, 4)],
              [(3, 1, 1, 1), (3, 1, 1, 1), (2, 2, 0, 1), (3, 1, 2, 2), (3, 1, 1, 1), (2, 2, 0, 1)])
    for stack in stacks:
        cells = seen_positions(stack)
        want = (max(cells) - min(cells) + 1, min(cells))
        got = run_answer(answer, list(stack))
        expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (size, start), got {got!r}")
        got = (int(got[0]), int(got[1]))
        if got == want:
            continue
        no_dilation = seen_positions([(k, s, p, 1) for k, s, p, _ in stack])
        if got[0] == max(no_dilation) - min(no_dilation) + 1 and got[0] != want[0]:
            raise ExerciseFailed(f"stack {stack} (kernel, stride, padding, dilation): size {got[0]}, expected "
                                 f"{want[0]}: you ignored the dilation; a dilated kernel spans d*(k - 1) + 1 pixels")
        if got[0] == want[0] and got[1] == 0:
            raise ExerciseFailed(f"stack {stack}: start 0, expected {want[1]}: padding moves the first window "
                                 "before the first pixel, by padding times the distance between cells below")
        raise ExerciseFailed(f"stack {stack} (kernel, stride, padding, dilation): got (size, start) = {got}, "
                             f"expected {want}; each layer adds (d*(k - 1)) times the product of the strides below "
                             "it to the size, and moves the start by -padding times that product")
    return f"receptive fields and their first pixel for {len(stacks)} stacks match the brute-force walk"
