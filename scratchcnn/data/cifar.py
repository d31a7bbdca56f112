"""Reader for the record files of CIFAR-10's binary version.

A record is one label byte followed by the image: 1024 red, 1024 green and 1024
blue bytes, each plane 32x32 in row-major order; a file is records back to back
with nothing between them, 10,000 records (30,730,000 bytes) in the official
files (https://www.cs.toronto.edu/~kriz/cifar.html, section "Binary version").
The planes are already in NCHW order, so a file reshapes to (N, 3, 32, 32)
without any copy.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scratchcnn.errors import DataError

__all__ = ["parse_records", "read_records", "MAX_RECORDS"]

MAX_RECORDS = 60_000  # all of CIFAR-10: the most a file of unknown record count may hold


def parse_records(raw: bytes, source: str, image_shape=(3, 32, 32), num_classes: int = 10,
                  records=None) -> tuple[np.ndarray, np.ndarray]:
    """Split CIFAR binary records into images and labels, checking every record.

    Parameters
    ----------
    raw : bytes
        The whole file.
    source : str
        Name used in error messages (the file's path).
    image_shape : (C, H, W)
        Pixels per record, ``C*H*W`` bytes.
    num_classes : int
        Label bytes must be in ``[0, num_classes)``.
    records : int, optional
        Number of records the file must hold exactly (10,000 in the official files).

    Returns
    -------
    images : ndarray, uint8, shape (N, C, H, W) (read-only view of ``raw``)
    labels : ndarray, int64, shape (N,)

    Raises
    ------
    DataError
        Naming ``source`` and what was wrong: an empty file, a length that is not a
        whole number of records, another number of records than ``records``, or
        the first record whose label byte is out of range.
    """
    record = 1 + int(np.prod(image_shape))
    if len(raw) == 0:
        raise DataError(f"{source}: empty file, expected {record}-byte records")
    whole, extra = divmod(len(raw), record)
    if extra:
        raise DataError(f"{source}: {len(raw)} bytes is not a whole number of {record}-byte records "
                        f"({whole} records and {extra} bytes over: truncated or not a CIFAR file)")
    if records is not None and whole != records:
        raise DataError(f"{source}: {whole} records, expected {records}")
    table = np.frombuffer(raw, np.uint8).reshape(whole, record)
    labels = table[:, 0]
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(f"{source}: record {bad[0]} has label byte {labels[bad[0]]}, expected 0..{num_classes - 1} "
                        f"({bad.size} records out of range)")
    return table[:, 1:].reshape(whole, *image_shape), labels.astype(np.int64)


def read_records(path, image_shape=(3, 32, 32), num_classes: int = 10, records=None):
    """Read a CIFAR binary record file with the checks of ``parse_records``.

    The file's size is checked (``os.stat``) before it is read: it must be exactly
    ``records`` records, or without ``records`` a whole number of them and at most
    ``MAX_RECORDS``, so a huge or sparse file costs no memory.

    Raises DataError naming ``path`` if it cannot be read or fails a check.
    """
    path = Path(path)
    record = 1 + int(np.prod(image_shape))
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    whole, extra = divmod(size, record)
    if extra:
        raise DataError(f"{path}: {size:,} bytes is not a whole number of {record}-byte records "
                        f"({whole:,} records and {extra} bytes over: truncated or not a CIFAR file)")
    if records is not None and whole not in (0, records):
        raise DataError(f"{path}: {whole} records, expected {records}")
    if whole > MAX_RECORDS:
        raise DataError(f"{path}: {whole:,} records, more than the {MAX_RECORDS:,} of all of CIFAR-10")
    try:
        with open(path, "rb") as f:
            raw = f.read(size + 1)  # one byte over: a file that grew since the stat is noticed below
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_records(raw, str(path), image_shape, num_classes, records)
