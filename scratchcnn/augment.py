"""Data augmentation on the host, per batch: random shifts and horizontal flips."""
from __future__ import annotations

import numpy as np

__all__ = ["Augment"]


class Augment:
    """Random translations (and optional horizontal flips) of a batch of NCHW images.

    Parameters
    ----------
    max_shift : int
        Each image moves by a whole number of pixels drawn uniformly from
        ``[-max_shift, max_shift]`` along H and W; uncovered pixels take ``fill``.
    flip : bool
        Mirror each image left-right with probability 1/2 (right for clothing,
        wrong for digits, whose mirror image is another symbol).
    fill : float
        Value of the uncovered border, the background pixel after normalisation.

    The random draws come from the generator passed to ``__call__``; the trainer
    derives it from (seed, epoch, step) so a resumed run augments identically
    (Simard, Steinkraus & Platt, 2003, "Best Practices for Convolutional Neural
    Networks Applied to Visual Document Analysis", ICDAR, Section 2).
    """

    def __init__(self, max_shift: int = 2, flip: bool = False, fill: float = 0.0):
        if max_shift < 0:
            raise ValueError(f"Augment: max_shift must be >= 0, got {max_shift}")
        self.max_shift, self.flip, self.fill = int(max_shift), bool(flip), float(fill)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x : (N, C, H, W) float32 -> a new augmented array of the same shape."""
        n, _, h, w = x.shape
        s = self.max_shift
        padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)), constant_values=self.fill)
        dy, dx = rng.integers(-s, s + 1, size=(2, n))
        out = np.empty_like(x)
        for i in range(n):
            out[i] = padded[i, :, s + dy[i]:s + dy[i] + h, s + dx[i]:s + dx[i] + w]
        if self.flip:
            mirror = rng.random(n) < 0.5
            out[mirror] = out[mirror, :, :, ::-1]
        return out

    def get_config(self) -> dict:
        return {"max_shift": self.max_shift, "flip": self.flip, "fill": self.fill}
