"""Data augmentation on the host, per batch: random shifts (crops of a padded image), flips, random erasing.

Every transform draws from the generator passed to ``__call__``; the trainer
derives it from (seed, epoch, step), so a run augments identically when resumed,
and ``Pipeline`` applies several transforms with that one generator, in order.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Augment", "RandomErasing", "Pipeline", "crop_padding"]


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


def crop_padding(side: int) -> int:
    """Zero padding of a random-crop augmentation for images ``side`` pixels wide: ``side // 8``.

    4 pixels on 32x32 images (He et al., 2016, Section 4.2, CIFAR-10) and 3 on
    28x28 (the same share, 4/32 = 1/8 of the side, rounded down: 3.5 -> 3).
    """
    return max(1, int(side) // 8)


class RandomErasing:
    """Random erasing (Zhong, Zheng, Kang, Li & Yang, 2020, "Random Erasing Data Augmentation", AAAI, Alg. 1).

    With probability ``p`` an image gets one rectangle, of area ``S_e`` drawn
    uniformly from ``area`` times the image's area and aspect ratio ``r_e``
    (height/width) drawn uniformly from ``aspect``: ``H_e = round(sqrt(S_e * r_e))``,
    ``W_e = round(sqrt(S_e / r_e))``, its corner ``(y_e, x_e)`` drawn uniformly over
    the image's pixels; a rectangle that does not fit inside the image is drawn
    again (size and corner), up to ``attempts`` times (the paper's loop), after
    which the image stays as it is. It is filled with random pixel values
    (uniform over [0, 1] pixels, normalised as the data set: ``(u - mean) / std``
    per channel; the paper's "random values").

    Parameters
    ----------
    p : float in [0, 1]
        Probability that an image is erased (paper's default 0.5).
    area : (float, float)
        Range of the erased share of the image (paper: s_l = 0.02, s_h = 0.4).
    aspect : (float, float)
        Range of the rectangle's aspect ratio (paper: r_1 = 0.3 to 1/r_1 = 3.3).
    mean, std : float or sequence of C floats
        The data set's normalisation, so that the fill values are pixels in [0, 1]
        as the network sees them.
    attempts : int

    Raises
    ------
    ValueError
        For ``p`` outside [0, 1], or ranges that are empty, negative or (area) above 1.
    """

    def __init__(self, p=0.5, area=(0.02, 0.4), aspect=(0.3, 1 / 0.3), mean=0.0, std=1.0, attempts=100):
        area, aspect = tuple(float(v) for v in area), tuple(float(v) for v in aspect)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomErasing: p must be in [0, 1], got {p}")
        if not (len(area) == 2 and 0.0 < area[0] <= area[1] <= 1.0):
            raise ValueError(f"RandomErasing: area must be (low, high) with 0 < low <= high <= 1, got {area}")
        if not (len(aspect) == 2 and 0.0 < aspect[0] <= aspect[1]):
            raise ValueError(f"RandomErasing: aspect must be (low, high) with 0 < low <= high, got {aspect}")
        self.p, self.area, self.aspect, self.attempts = float(p), area, aspect, int(attempts)
        self.mean = [float(v) for v in np.ravel(mean)]
        self.std = [float(v) for v in np.ravel(std)]

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x : (N, C, H, W) float32 -> a new array, some images with one rectangle of noise."""
        n, c, h, w = x.shape
        out = x.copy()
        erase = rng.random(n) < self.p
        # All attempts of all images drawn at once: the draws do not depend on which images are erased.
        share = rng.uniform(self.area[0], self.area[1], (n, self.attempts)) * (h * w)
        ratio = rng.uniform(self.aspect[0], self.aspect[1], (n, self.attempts))
        he = np.rint(np.sqrt(share * ratio)).astype(np.int64)
        we = np.rint(np.sqrt(share / ratio)).astype(np.int64)
        top = (rng.random((n, self.attempts)) * h).astype(np.int64)
        left = (rng.random((n, self.attempts)) * w).astype(np.int64)
        fits = (he >= 1) & (we >= 1) & (top + he <= h) & (left + we <= w)
        mean = np.reshape(np.asarray(self.mean, np.float64), (-1, 1, 1))
        std = np.reshape(np.asarray(self.std, np.float64), (-1, 1, 1))
        noise = ((rng.random((n, c, h, w)) - mean) / std).astype(x.dtype)
        for i in np.flatnonzero(erase & fits.any(axis=1)):
            k = int(np.argmax(fits[i]))  # the first draw that fits
            y0, x0, rows, cols = int(top[i, k]), int(left[i, k]), int(he[i, k]), int(we[i, k])
            out[i, :, y0:y0 + rows, x0:x0 + cols] = noise[i, :, y0:y0 + rows, x0:x0 + cols]
        return out

    def get_config(self) -> dict:
        return {"p": self.p, "area": list(self.area), "aspect": list(self.aspect), "mean": self.mean,
                "std": self.std, "attempts": self.attempts}


class Pipeline:
    """Transforms applied one after another to a batch, all drawing from the one generator given."""

    def __init__(self, *transforms):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def get_config(self) -> dict:
        return {"transforms": [{"class": type(t).__name__, "config": t.get_config()} for t in self.transforms]}
