"""Checks of notebook 2's exercises: the output-size formula with dilation, im2col for stride 2."""
from __future__ import annotations

import numpy as np

import kernels
from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import conv as reference_conv

FORBID_2_2 = {"the framework's im2col (kernels.numpy_ref.conv)": reference_conv}


def _count_windows(size, kernel, stride, padding, dilation):
    """Brute force: slide the dilated window over the padded input and count where it fits."""
    span = dilation * (kernel - 1) + 1  # pixels from the window's first tap to its last
    return sum(1 for start in range(0, size + 2 * padding, stride) if start + span <= size + 2 * padding)


def _diagnose_2_1(got, size, kernel, stride, padding, dilation):
    """A message naming the mistake behind a wrong output size, when it is a known one."""
    span = dilation * (kernel - 1) + 1
    if got == (size + 2 * padding - kernel) // stride + 1:
        return "you ignored the dilation: a dilated window spans dilation*(kernel - 1) + 1 pixels, not kernel"
    if got == -(-(size + 2 * padding - span) // stride) + 1:
        return "you rounded up: a window that would stick out of the padded input is not counted (floor, not ceil)"
    if got == (size + padding - span) // stride + 1:
        return "you padded one side only: padding adds p pixels on each side"
    return "count the windows in a drawing"


@checker("2.1")
def output_size(answer):
    """``answer(size, kernel, stride, padding, dilation) -> int`` against counting the windows in the 426 of
    540 combinations where a window fits, then sizes of a billion pixels, where only a formula answers in time."""
    cases = 0
    for size in (1, 4, 5, 7, 28):
        for kernel in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                for padding in (0, 1, 2):
                    for dilation in (1, 2, 3):
                        want = _count_windows(size, kernel, stride, padding, dilation)
                        if want < 1:
                            continue
                        got = run_answer(answer, size, kernel, stride, padding, dilation, line_budget=2000)
                        if not (int(got) == want and float(got) == want):
                            raise ExerciseFailed(
                                f"size {size}, kernel {kernel}, stride {stride}, padding {padding}, dilation "
                                f"{dilation}: got {got}, expected {want}; "
                                + _diagnose_2_1(got, size, kernel, stride, padding, dilation))
                        cases += 1
    for size, kernel, stride, padding, dilation in ((10**9, 3, 2, 1, 2), (10**9 + 1, 5, 3, 0, 3)):
        got = run_answer(answer, size, kernel, stride, padding, dilation, line_budget=2000,
                         what=f"for a row of {size:,} pixels, your answer")
        want = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        expect(int(got) == want, f"size {size:,}, kernel {kernel}, stride {stride}, padding {padding}, dilation "
                                 f"{dilation}: got {got}, expected {want:,}")
    return f"agrees with counting the windows in all {cases} cases, and is a formula (rows of a billion pixels)"


@checker("2.2")
def im2col_stride2(answer):
    """``answer(x, kh, kw) -> cols`` against ``kernels.numpy_ref.im2col(x, kh, kw, stride=2, padding=0)``,
    on shapes where H - kh and W - kw are odd, so that floor and ceil of (H - kh)/2 differ."""
    K = kernels.get("numpy")
    rng = np.random.default_rng(2)
    for shape, kh, kw in (((1, 1, 4, 4), 2, 2), ((2, 3, 6, 7), 3, 2), ((2, 2, 6, 6), 3, 3)):
        x = rng.standard_normal(shape)
        want = K.im2col(x, kh, kw, stride=2, padding=0)
        got = np.asarray(run_answer(answer, x.copy(), kh, kw, forbid=FORBID_2_2))
        where = f"x {shape}, {kh}x{kw} windows; rows (c, p, q), columns (n, i, j)"
        h, w = shape[2:]
        ceil_columns = shape[0] * (-(-(h - kh) // 2) + 1) * (-(-(w - kw) // 2) + 1)
        if got.ndim == 2 and got.shape[1] == ceil_columns and ceil_columns != want.shape[1]:
            raise ExerciseFailed(f"cols ({where}): {got.shape[1]} columns, expected {want.shape[1]}: you rounded "
                                 "(H - kh)/2 up; a window that does not fit is dropped: H_out = (H - kh)//2 + 1")
        if got.shape == want.shape[::-1] and np.allclose(got.T, want) and not np.allclose(got, want):
            raise ExerciseFailed(f"cols ({where}): shape {got.shape} is transposed; one *column* per window, "
                                 f"one row per (c, p, q): expected {want.shape}")
        expect_close("cols", got, want, where=where)
    return "same columns as the framework's im2col (stride 2) for three shapes, odd H - kh and W - kw included"
