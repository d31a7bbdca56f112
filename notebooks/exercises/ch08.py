"""Checks of notebook 8's exercises: Winograd's minimal filtering F(2,3) and F(2x2,3x3), worked by hand."""
from __future__ import annotations

import numpy as np
from scipy.signal import correlate2d

from exercises import checker, expect, expect_close


@checker("8.1")
def winograd_f23(answer):
    """``answer(d, g) -> (m, y)``: the four products m1..m4 of Lavin & Gray (2016), Eq. 5, and the two outputs."""
    rng = np.random.default_rng(11)
    for d, g in ((np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, -1.0])),
                 (rng.standard_normal(4), rng.standard_normal(3))):
        got = answer(d.copy(), g.copy())
        expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (m, y), got {type(got).__name__}")
        m = np.array([(d[0] - d[2]) * g[0], (d[1] + d[2]) * (g[0] + g[1] + g[2]) / 2,
                      (d[2] - d[1]) * (g[0] - g[1] + g[2]) / 2, (d[1] - d[3]) * g[2]])
        expect_close("m", got[0], m, rtol=1e-12, atol=1e-12, where=f"d = {d.round(3)}, g = {g.round(3)}")
        expect_close("y", got[1], np.correlate(d, g, mode="valid"), rtol=1e-12, atol=1e-12,
                     where=f"d = {d.round(3)}, g = {g.round(3)}: y = [d0 g0 + d1 g1 + d2 g2, d1 g0 + d2 g1 + d3 g2]")
    return "the four products and both outputs match the direct correlation"


@checker("8.2")
def winograd_2x2_3x3(answer):
    """``answer(d, g) -> Y``: a 4x4 tile and a 3x3 filter to the 2x2 output, against a direct correlation."""
    rng = np.random.default_rng(12)
    for d, g in ((np.arange(16.0).reshape(4, 4), np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])),
                 (rng.standard_normal((4, 4)), rng.standard_normal((3, 3)))):
        expect_close("Y", answer(d.copy(), g.copy()), correlate2d(d, g, mode="valid"), rtol=1e-12, atol=1e-12,
                     where="A^T [(G g G^T) * (B^T d B)] A")
    return "the 2x2 output tile matches the direct correlation"
