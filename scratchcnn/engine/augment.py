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
    fill : float or sequence of C floats
        Value of the uncovered border, the background pixel after normalisation (one
        per channel for colour images). A shift of up to ``s`` pixels with this fill is
        the same as a random ``H x W`` crop of the image padded by ``s`` pixels.

    The random draws come from the generator passed to ``__call__``; the trainer
    derives it from (seed, epoch, step) so a resumed run augments identically
    (Simard, Steinkraus & Platt, 2003, "Best Practices for Convolutional Neural
    Networks Applied to Visual Document Analysis", ICDAR, Section 2).
    """

    def __init__(self, max_shift: int = 2, flip: bool = False, fill: float = 0.0):
        if max_shift < 0:
            raise ValueError(f"Augment: max_shift must be >= 0, got {max_shift}")
        fill = [float(v) for v in np.ravel(fill)]
        self.max_shift, self.flip = int(max_shift), bool(flip)
        self.fill = fill[0] if len(fill) == 1 else fill

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x : (N, C, H, W) float32 -> a new augmented array of the same shape."""
        n, _, h, w = x.shape
        s = self.max_shift
        padded = np.empty((n, x.shape[1], h + 2 * s, w + 2 * s), x.dtype)
        padded[...] = np.reshape(np.asarray(self.fill, x.dtype), (-1, 1, 1))
        padded[:, :, s:s + h, s:s + w] = x
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
