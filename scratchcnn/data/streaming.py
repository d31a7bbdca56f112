"""A data split that stays uint8 on disk and is standardised one batch at a time.

The built-in data sets fit in memory and are standardised once, as float32 arrays.
An image folder may not fit: ``NormalizedRows`` holds rows of a uint8 (N, C, H, W)
array (a memory map of the folder's cache) and standardises only the rows asked
for, with exactly the float32 steps of ``scratchcnn.data.normalize``
(``x = float32(pixels); x /= scale; x -= mean; x /= std``), so a batch taken from
it has the same bits as the same rows of a normalised in-memory array.

It answers what the trainer, ``loss_and_accuracy``, ``predict_logits`` and the reports
ask of a split: ``len``, ``shape``, ``ndim``, ``dtype``, ``x[a:b]``, ``x[int_array]``
and ``np.take(x, idx, axis=0, out=...)`` (NumPy calls ``x.take``). Memory stays
bounded by the batch: pages of the map that were read are handed back to the
kernel every ``release_bytes`` bytes (``madvise(MADV_DONTNEED)``; the file's pages
stay in the page cache, but no longer count in the process's resident set).

``histogram_statistics`` computes the per-channel mean and standard deviation of
such rows in chunks, from exact 256-bin counts.
"""
from __future__ import annotations

import mmap
import os

import numpy as np

__all__ = ["NormalizedRows", "open_uint8", "histogram_statistics", "channel_histograms", "RELEASE_BYTES"]

RELEASE_BYTES = 64 * 2**20  # read bytes after which the map's pages are released from the resident set
_CHUNK_BYTES = 32 * 2**20  # rows per chunk when counting pixel values


def open_uint8(path, shape) -> tuple[np.ndarray, mmap.mmap | None]:
    """A read-only uint8 array of ``shape`` mapped from the raw file ``path``, and its ``mmap``.

    An empty array (a zero in ``shape``) maps nothing: the map is None.

    Raises
    ------
    ValueError
        If the file does not hold exactly ``prod(shape)`` bytes.
    OSError
        If the file cannot be opened.
    """
    count = int(np.prod(shape))
    size = os.path.getsize(path)
    if size != count:
        raise ValueError(f"{path}: holds {size} bytes, expected {count} for uint8 rows of shape {tuple(shape)}")
    if count == 0:
        return np.zeros(shape, np.uint8), None
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, np.uint8).reshape(shape), mapped


class NormalizedRows:
    """Rows ``index`` of a uint8 (N, C, H, W) array, standardised when read.

    Parameters
    ----------
    pixels : ndarray, uint8, shape (N, C, H, W) (a memory map, usually)
    index : int array, shape (M,): the rows of ``pixels`` that make this split, in order
    scale : float, the value of white (255)
    mean, std : float or C floats, statistics of the [0, 1]-scaled training pixels
    mapped : mmap.mmap, optional; the map under ``pixels``, whose read pages are released
        every ``RELEASE_BYTES``

    Reading gives float32 ``(pixels[index[i]] / scale - mean) / std`` per channel,
    bit for bit as ``scratchcnn.data.normalize`` computes it.
    """

    def __init__(self, pixels: np.ndarray, index, scale: float, mean, std, mapped=None):
        if pixels.dtype != np.uint8 or pixels.ndim != 4:
            raise ValueError(f"NormalizedRows: expected uint8 (N, C, H, W) pixels, got {pixels.dtype} {pixels.shape}")
        self.pixels, self.index = pixels, np.asarray(index, np.int64)
        channels = pixels.shape[1]
        self.scale = np.float32(scale)
        self.mean, self.std = (np.asarray(v, np.float32).reshape(-1, 1, 1) for v in (mean, std))
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, channels):
                raise ValueError(f"NormalizedRows: {name} has {v.size} values, expected 1 or {channels}")
        self.mapped, self._read = mapped, 0

    # -- what an ndarray answers ---------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return (len(self.index),) + tuple(self.pixels.shape[1:])

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key) -> np.ndarray:
        """``x[a:b]`` or ``x[int_array]``: the standardised rows as a new float32 array."""
        if isinstance(key, slice):
            return self.take(np.arange(len(self.index))[key])
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        return self.take(np.asarray(key))

    def take(self, indices, axis=0, out=None, mode="raise") -> np.ndarray:
        """Rows ``indices`` (positions in this split), standardised; NumPy's ``np.take`` calls this.

        ``out`` (float32, shape (len(indices), C, H, W)) receives them when given.

        Raises
        ------
        ValueError
            For an axis other than 0, or another mode than "raise".
        IndexError
            For a position outside the split.
        """
        if axis != 0 or mode != "raise":
            raise ValueError("NormalizedRows.take: only axis=0 and mode='raise' are supported")
        rows = self.index[np.asarray(indices, np.int64)]
        raw = self.pixels[rows]  # a uint8 copy of just these rows
        if out is None:
            out = np.empty(raw.shape, np.float32)
        out[...] = raw  # the steps of scratchcnn.data.normalize, in its order
        out /= self.scale
        out -= self.mean
        out /= self.std
        self._count(raw.nbytes)
        return out

    def min(self) -> np.float32:
        """The smallest standardised value of any pixel of the split (the first channel's, for the
        background fill of augmentation), computed from the rows' value counts."""
        counts = channel_histograms(self.pixels, self.index)
        low = int(np.flatnonzero(counts.sum(axis=0))[0]) if len(self.index) else 0
        values = np.full((1,) + self.pixels.shape[1:], low, np.float32)
        values /= self.scale
        values -= self.mean
        values /= self.std
        return values.min()

    def materialize(self) -> np.ndarray:
        """The whole split as a standardised float32 array (only for splits that fit in memory)."""
        return self.take(np.arange(len(self.index)))

    # -- bounded memory ------------------------------------------------------------------
    def _count(self, nbytes: int) -> None:
        self._read += nbytes
        if self._read >= RELEASE_BYTES:
            self.release()

    def release(self) -> None:
        """Hand the pages read so far back to the kernel (they stay in the page cache)."""
        self._read = 0
        if self.mapped is not None and hasattr(self.mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self.mapped.madvise(mmap.MADV_DONTNEED)


def channel_histograms(pixels: np.ndarray, index, mapped=None) -> np.ndarray:
    """Counts of each value 0..255 per channel over rows ``index`` of uint8 (N, C, H, W) ``pixels``.

    Returns int64 (C, 256). Read in chunks of about 32 MB (rows sorted, for sequential
    reads of a memory map), so memory stays bounded; the map's pages are released after
    each chunk when ``mapped`` is given.
    """
    channels = pixels.shape[1]
    counts = np.zeros((channels, 256), np.int64)
    rows = np.sort(np.asarray(index, np.int64))
    per_chunk = max(1, _CHUNK_BYTES // max(1, int(np.prod(pixels.shape[1:]))))
    for start in range(0, len(rows), per_chunk):
        chunk = pixels[rows[start:start + per_chunk]]
        for c in range(channels):
            counts[c] += np.bincount(chunk[:, c].reshape(-1), minlength=256)
        if mapped is not None and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)
    return counts


def histogram_statistics(counts: np.ndarray, scale: float = 255.0):
    """Mean and population standard deviation of the [0, 1]-scaled pixels from value counts.

    counts : (C, 256) counts per channel (``channel_histograms``). Returns floats for one
    channel, tuples of C floats otherwise: ``scratchcnn.data.pixel_statistics``' shape,
    and its formula for 8-bit colour images (``counts @ values / total``), so CIFAR-10's
    statistics come out identical. (For grey images ``pixel_statistics`` sums the pixels
    themselves; the two agree to float64 rounding, and are equal as the float32 numbers
    that standardisation uses: checked on MNIST and Fashion-MNIST in the tests.)
    """
    values = np.arange(256) / scale
    means, stds = [], []
    for row in np.asarray(counts, np.float64):
        m = float(row @ values / row.sum())
        means.append(m)
        stds.append(float(np.sqrt(row @ (values - m) ** 2 / row.sum())))
    return (means[0], stds[0]) if len(means) == 1 else (tuple(means), tuple(stds))
