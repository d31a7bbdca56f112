"""Solutions of notebook 8's exercises (Lavin & Gray, 2016, "Fast Algorithms for Convolutional Neural Networks")."""
from __future__ import annotations

import numpy as np

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_f23(d, g):
    """Exercise 8.1: m = (G g) * (B^T d), four multiplications; y = A^T m."""
    m = (G @ g) * (B_T @ d)
    return m, A_T @ m


def winograd_2x2_3x3(d, g):
    """Exercise 8.2: the 1-D algorithm nested: U = G g G^T, V = B^T d B, Y = A^T (U * V) A (16 multiplications)."""
    return A_T @ ((G @ g @ G.T) * (B_T @ d @ B_T.T)) @ A_T.T


ANSWERS = {"8.1": winograd_f23, "8.2": winograd_2x2_3x3}
