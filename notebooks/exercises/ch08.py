"""Checks of notebook 8's exercises: F(2,3)'s matrices derived from interpolation points, and F(2x2,3x3)
with its 16 multiplications counted."""
from __future__ import annotations

import numpy as np
import scipy.signal
from scipy.signal import correlate2d

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from kernels.numpy_ref import winograd as reference_winograd

FORBID = {"np.correlate": np.correlate, "np.convolve": np.convolve, "scipy.signal": scipy.signal,
          "kernels.numpy_ref.winograd": reference_winograd}


class Counted(np.ndarray):
    """An array that remembers whether it depends on the data d, the filter g, or both, and counts the
    multiplications of a data-dependent value by a filter-dependent one (Winograd's "general" products;
    products with constants, such as the transforms' 1/2, do not count)."""

    counter = None  # a one-element list shared by the arrays of one check

    def __array_finalize__(self, obj):
        self.sources = getattr(obj, "sources", frozenset())

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if not isinstance(item, np.ndarray):  # a scalar: keep it a 0-d Counted so d[0] * g[0] is counted
            item = np.asarray(item).view(Counted)
        item.sources = self.sources
        return item

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        sources = [getattr(a, "sources", frozenset()) for a in inputs]
        plain = [np.asarray(a) if isinstance(a, Counted) else a for a in inputs]
        result = getattr(ufunc, method)(*plain, **kwargs)
        if method != "__call__" or not isinstance(result, (np.ndarray, np.generic)):
            return result
        if ufunc in (np.multiply, np.matmul) and len(inputs) == 2 and Counted.counter is not None:
            left, right = sources
            if ("d" in left and "g" in right) or ("g" in left and "d" in right):
                shape_a, shape_b = np.shape(plain[0]), np.shape(plain[1])
                Counted.counter[0] += (np.size(result) if ufunc is np.multiply
                                       else np.size(result) * (shape_a[-1] if shape_a else 1))
        result = np.asarray(result).view(Counted)
        result.sources = frozenset().union(*sources)
        return result


def counted(array, source):
    """``array`` as a :class:`Counted` array depending on ``source`` ("d" or "g")."""
    out = np.array(array, np.float64).view(Counted)
    out.sources = frozenset({source})
    return out


def _apply(matrices, d, g):
    """y = A^T [(G g) * (B^T d)], the F(2,3) algorithm, with the answer's matrices."""
    A_T, G, B_T = (np.asarray(a, np.float64) for a in matrices)
    return A_T @ ((G @ g) * (B_T @ d))


@checker("8.1")
def f23_from_points(answer):
    """``answer(points) -> (A_T (2, 4), G (4, 3), B_T (4, 4))`` for three finite interpolation points and
    infinity: y = A^T [(G g) * (B^T d)] must be the valid correlation of d with g, for several point sets."""
    rng = np.random.default_rng(11)
    point_sets = ((0.0, 1.0, -1.0), (0.0, 2.0, -2.0), (0.0, 0.5, -3.0), (1.0, -1.0, 2.0))
    for index, points in enumerate(point_sets):
        got = run_answer(answer, points, forbid=FORBID)
        expect(isinstance(got, tuple) and len(got) == 3, f"expected a tuple (A_T, G, B_T), got {type(got).__name__}")
        shapes = tuple(np.shape(a) for a in got)
        if shapes[1][:1] == (3,) or shapes[2][:1] == (3,):
            raise ExerciseFailed(f"points {points}: shapes {shapes}, expected (2, 4), (4, 3), (4, 4): the product "
                                 "of a degree-1 and a degree-2 polynomial has 4 coefficients, so it needs 4 points: "
                                 "the three given and infinity (the leading coefficients)")
        expect(shapes == ((2, 4), (4, 3), (4, 4)), f"points {points}: shapes {shapes}, expected (2, 4) for A_T, "
                                                   "(4, 3) for G and (4, 4) for B_T")
        rows = [np.array([1.0, a, a * a]) for a in points] + [np.array([0.0, 0.0, 1.0])]
        G = np.asarray(got[1], np.float64)
        # Row i of G evaluates g's polynomial at point i (up to a factor, which may move into B^T or A^T).
        unmatched = [r for r in rows if not any(np.linalg.matrix_rank(np.stack([r, row]), tol=1e-9) == 1
                                                and np.abs(row).max() > 0 for row in G)]
        if unmatched and index > 0:
            raise ExerciseFailed(f"points {points}: no row of G evaluates the filter's polynomial g0 + g1 a + g2 a^2 "
                                 f"at a = {unmatched[0][1]:g} (or takes g2, for infinity): build the matrices from "
                                 f"the points you are given (these look like those of {point_sets[0]})")
        expect(not unmatched, f"points {points}: the rows of G must evaluate the filter's polynomial at the points "
                              "(1, a, a^2), and at infinity (0, 0, 1), each up to a factor")
        for _ in range(3):
            d, g = rng.standard_normal(4), rng.standard_normal(3)
            y = _apply(got, d, g)
            if np.allclose(y, np.correlate(d, g, mode="valid"), rtol=1e-9, atol=1e-9):
                continue
            if np.allclose(y, np.convolve(d, g, mode="valid"), rtol=1e-9, atol=1e-9):
                raise ExerciseFailed(f"points {points}: your matrices compute the *convolution* (g reversed); the "
                                     "layer correlates: y_i = sum_k d[i + k] g[k]. Transpose the polynomial "
                                     "product's algorithm (A^T from the evaluation of d's polynomial, B^T from the "
                                     "inverse of the Vandermonde matrix, transposed)")
            if index > 0:
                raise ExerciseFailed(f"points {points}: A^T [(G g) * (B^T d)] is not the correlation here, although "
                                     f"it was for {point_sets[0]}: build the matrices from the points you are given")
            expect_close("y = A_T [(G g) * (B_T d)]", y, np.correlate(d, g, mode="valid"), rtol=1e-9, atol=1e-9,
                         where=f"points {points}, d = {d.round(3)}, g = {g.round(3)}")
    return f"the matrices from {len(point_sets)} sets of points each compute F(2,3) with 4 multiplications"


@checker("8.2")
def winograd_2x2_3x3(answer):
    """``answer(d, g) -> Y``: a 4x4 tile and a 3x3 filter to the 2x2 output, against a direct correlation,
    counting the multiplications of data by filter values (16 for F(2x2,3x3), 36 done directly)."""
    rng = np.random.default_rng(12)
    for d, g in ((np.arange(16.0).reshape(4, 4), np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])),
                 (rng.standard_normal((4, 4)), rng.standard_normal((3, 3)))):
        want = correlate2d(d, g, mode="valid")
        Counted.counter = [0]
        try:
            got = run_answer(answer, counted(d, "d"), counted(g, "g"), forbid=FORBID)
        finally:
            count, Counted.counter = Counted.counter[0], None
        expect_close("Y", np.asarray(got), want, rtol=1e-12, atol=1e-12,
                     where="A^T [(G g G^T) * (B^T d B)] A; Y[i, j] = sum_pq d[i + p, j + q] g[p, q]")
        expect(count != 36, "your answer multiplies data by filter values 36 times, as the direct correlation "
                            "does (4 outputs x 9 taps); F(2x2,3x3) does it 16 times, in the element-wise product")
        expect(count == 16, f"your answer multiplies data by filter values {count} times; F(2x2,3x3) needs 16 "
                            "(the element-wise product of two 4x4 transforms). Compute with d and g as arrays "
                            "(@, *, +), without converting them to floats, so that the check can count")
    return "the 2x2 output tile matches the direct correlation, with 16 multiplications of data by filter values"
