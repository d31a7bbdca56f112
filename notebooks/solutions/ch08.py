"""Solutions of notebook 8's exercises (Lavin & Gray, 2016, "Fast Algorithms for Convolutional Neural Networks")."""
from __future__ import annotations

import numpy as np

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def f23_from_points(points):
    """Exercise 8.1: Toom-Cook. The product c = u * g of a degree-1 polynomial u and a degree-2 g has 4
    coefficients, fixed by its values at the 3 points and at infinity (the leading coefficient):
    c = V^-1 [(V_u u) * (V_g g)], V_x the evaluation (Vandermonde) matrices. For a fixed g, the correlation
    d -> y is the transpose of u -> c, so y = V_u^T [(V_g g) * (V^-T d)]: A^T = V_u^T, G = V_g, B^T = V^-T."""
    def vandermonde(columns):
        rows = [[a ** j for j in range(columns)] for a in points]
        return np.array(rows + [[0.0] * (columns - 1) + [1.0]])  # infinity: the leading coefficient
    return vandermonde(2).T, vandermonde(3), np.linalg.inv(vandermonde(4)).T


def winograd_2x2_3x3(d, g):
    """Exercise 8.2: the 1-D algorithm nested: U = G g G^T, V = B^T d B, Y = A^T (U * V) A (16 multiplications)."""
    return A_T @ ((G @ g @ G.T) * (B_T @ d @ B_T.T)) @ A_T.T


ANSWERS = {"8.1": f23_from_points, "8.2": winograd_2x2_3x3}
