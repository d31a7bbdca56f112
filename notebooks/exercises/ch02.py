"""Checks of notebook 2's exercises: the output-size formula with dilation, im2col for stride 2."""
from __future__ import annotations

import numpy as np

import kernels
from exercises import checker, expect, expect_close


def _count_windows(size, kernel, stride, padding, dilation):
    """Brute force: slide the dilated window over the padded input and count where it fits."""
    span = dilation * (kernel - 1) + 1  # pixels from the window's first tap to its last
    return sum(1 for start in range(0, size + 2 * padding, stride) if start + span <= size + 2 * padding)


@checker("2.1")
def output_size(answer):
    """``answer(size, kernel, stride, padding, dilation) -> int`` against counting the windows, 600+ cases."""
    cases = 0
    for size in (1, 4, 5, 7, 28):
        for kernel in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                for padding in (0, 1, 2):
                    for dilation in (1, 2, 3):
                        want = _count_windows(size, kernel, stride, padding, dilation)
                        if want < 1:
                            continue
                        got = answer(size, kernel, stride, padding, dilation)
                        expect(int(got) == want and float(got) == want,
                               f"size {size}, kernel {kernel}, stride {stride}, padding {padding}, "
                               f"dilation {dilation}: got {got}, expected {want} (count the windows in a drawing)")
                        cases += 1
    return f"agrees with counting the windows in all {cases} cases"


@checker("2.2")
def im2col_stride2(answer):
    """``answer(x, kh, kw) -> cols`` against ``kernels.numpy_ref.im2col(x, kh, kw, stride=2, padding=0)``."""
    K = kernels.get("numpy")
    rng = np.random.default_rng(2)
    for shape, kh, kw in (((1, 1, 4, 4), 2, 2), ((2, 3, 7, 6), 3, 2), ((2, 2, 5, 5), 3, 3)):
        x = rng.standard_normal(shape)
        expect_close("cols", answer(x, kh, kw), K.im2col(x, kh, kw, stride=2, padding=0),
                     where=f"x {shape}, {kh}x{kw} windows; rows (c, p, q), columns (n, i, j)")
    return "same columns as the framework's im2col (stride 2) for three shapes, odd sizes included"
