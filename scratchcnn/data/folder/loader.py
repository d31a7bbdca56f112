"""An image folder as train / validation / test splits, streamed from its cache."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from scratchcnn.data.datasets import DataSplits, validation_split
from scratchcnn.data.folder.cache import choose_options, open_cache, read_headers, write_bytes_atomic, write_text_atomic
from scratchcnn.data.folder.scan import scan_folder
from scratchcnn.data.streaming import NormalizedRows, channel_histograms, histogram_statistics
from scratchcnn.errors import ConfigError, DataError, OutputError

__all__ = ["load_folder", "TEST_SPLIT_SEED", "DEFAULT_TEST_FRACTION"]


# The held-out test split is fixed (not seeded), as digits' is: every run and every
# evaluation of the folder reports on the same images.
TEST_SPLIT_SEED = 0
DEFAULT_TEST_FRACTION = 0.2


def load_folder(root, val_fraction: float = 0.1, train_limit=None, seed: int = 0, image_size=None,
                channels=None, test_fraction: float = DEFAULT_TEST_FRACTION, strict: bool = False,
                normalization=None, progress: bool = True, log=print) -> DataSplits:
    """Train / validation / test splits of an image folder (``scratchcnn.data.folder``).

    Parameters
    ----------
    root : path of the folder (``ROOT/<class>/`` or ``ROOT/train/<class>/`` [+ ``ROOT/test/<class>/``])
    val_fraction, train_limit, seed : as for ``scratchcnn.data.load_dataset``
    image_size : (h, w) in pixels, optional; default chosen from the images (``choose_options``)
    channels : {1, 3}, optional; default 1 if every image is grey, else 3
    test_fraction : float in (0, 1)
        Without a ``test/`` folder, this share of the images (stratified by class, fixed
        seed ``TEST_SPLIT_SEED``) is the test split.
    strict : bool
        Stop at the first file or folder that cannot be used instead of skipping it.
    normalization : dict, optional
        ``mean`` and ``std`` to standardise with (a model file's); default: computed on
        the training split.
    progress : bool, progress bars of the first decode
    log : callable receiving each line to print

    Returns
    -------
    DataSplits whose ``x_*`` are ``NormalizedRows`` over the folder's uint8 cache; ``name``
    is "folder"; ``info`` holds the root, size, channels, class counts per split and the
    number of skipped files.

    Raises
    ------
    DataError
        If the folder is missing or holds no usable image, or with ``strict`` at the first problem.
    ConfigError
        For a ``test_fraction`` outside (0, 1) or one that leaves a split empty, or a
        validation split that leaves fewer training images than classes.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    scan = scan_folder(root, strict=strict)
    if not scan.count:
        raise DataError(f"--data-dir {scan.root}: no images found (expected one sub-folder of images per class, "
                        "or train/ and test/ folders holding them)")
    problems = list(scan.problems)
    if image_size is None or channels is None:
        headers = read_headers(scan, progress)
        image_size, channels = choose_options(headers, image_size, channels, log)
        if image_size is None:  # not one header could be read
            raise DataError(f"--data-dir {scan.root}: none of its {scan.count} image files can be read "
                            f"({next(iter(headers.problems.values()))})")
    cache = open_cache(scan, tuple(image_size), int(channels), strict, progress, log)
    problems += cache.problems
    # Per row: whether it is a test image, and its class folder as a number, from the row's block
    # (no Python object per row: a folder of 200,000 images is reopened at every run).
    rows = cache.row_blocks
    present = np.flatnonzero(np.bincount(rows, minlength=len(scan.blocks)))
    folder_names = sorted({scan.blocks[i].label for i in present})
    code = {name: i for i, name in enumerate(folder_names)}
    is_test = np.array([block.part == "test" for block in scan.blocks], bool)[rows]
    folders = np.array([code.get(block.label, -1) for block in scan.blocks], np.int64)[rows]
    class_names = [folder_names[i] for i in np.unique(folders[~is_test])]
    if not class_names:
        raise DataError(f"--data-dir {scan.root}: none of its {scan.count} image files can be read")
    lost = sorted(set(folder_names[i] for i in np.unique(folders[is_test])) - set(class_names))
    for name in lost:
        problems.append(f"test/{name}/: class has no training images; its test images are skipped")
    if len(class_names) == 1:
        problems.append(f"only one class ({class_names[0]}): a classifier needs two or more class folders")
    if strict and len(problems) > len(scan.problems) + len(cache.problems):
        raise DataError(f"{problems[len(scan.problems) + len(cache.problems)]} (--strict)")
    for line in problems:
        log(line)
    lookup = {name: i for i, name in enumerate(class_names)}
    labels = np.array([lookup.get(name, -1) for name in folder_names], np.int64)[folders]
    skipped = len(scan.problems) + len(cache.problems) + int((labels[is_test] < 0).sum())
    if problems:
        log(f"skipped {skipped} file(s) or folder(s) that cannot be used (listed above)")
    if scan.ignored:
        log(f"ignored {len(scan.ignored)} file(s) whose extension is not an image's (e.g. {scan.ignored[0]})")
    train_rows, test_rows = _train_test_rows(is_test, labels, scan.has_test, test_fraction, cache.path)
    if train_limit is not None:
        train_rows = train_rows[:train_limit]
    keep, held = validation_split(labels[train_rows], val_fraction, seed)
    train_idx, val_idx = train_rows[keep], train_rows[held]
    if normalization is None:
        mean, std = _statistics(cache, train_idx)
    else:
        mean, std = normalization["mean"], normalization["std"]
        mean, std = (tuple(mean), tuple(std)) if isinstance(mean, (list, tuple)) else (float(mean), float(std))
    splits = {name: NormalizedRows(cache.pixels, idx, 255.0, mean, std, cache.mapped)
              for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_rows))}
    counts = {name: _counts(labels[idx], class_names) for name, idx in
              (("train", train_idx), ("val", val_idx), ("test", test_rows))}
    for name, row in counts.items():
        log(f"{name} images per class: " + ", ".join(f"{c} {n}" for c, n in row.items()))
    info = {"folder": str(scan.root), "image_size": [int(v) for v in image_size], "channels": int(channels),
            "test_split": "test/ folder" if scan.has_test else f"{test_fraction} of the images, stratified",
            "test_fraction": test_fraction, "class_counts": counts, "skipped_files": skipped,
            "ignored_files": len(scan.ignored), "cache": str(cache.path), "cache_reused": cache.reused}
    return DataSplits(splits["train"], labels[train_idx], splits["val"], labels[val_idx], splits["test"],
                      labels[test_rows], class_names, mean, std, "folder", {"folder": str(scan.root)}, info)


def _train_test_rows(is_test, labels, has_test: bool, test_fraction: float, memo_folder=None):
    """Cache rows of the training and test splits, each in file order (``is_test``: bool per row).

    The stratified hold-out is kept in ``memo_folder`` (the cache's) per labels and fraction, as
    the statistics are: a folder of 200,000 images would otherwise redraw it at every run.
    """
    usable = labels >= 0
    train_rows = np.flatnonzero(~is_test & usable)
    if has_test:
        return train_rows, np.flatnonzero(is_test & usable)
    y = labels[train_rows]
    n_test = int(round(test_fraction * len(y)))
    n_classes = len(np.unique(y))
    if n_test < 1 or len(y) - n_test < n_classes:
        raise ConfigError(f"--test-fraction {test_fraction} of {len(y)} images holds out {n_test} for testing, "
                          f"leaving {len(y) - n_test} for training ({n_classes} classes); add images or a test/ "
                          "folder, or change --test-fraction")
    memo = None
    if memo_folder is not None:
        digest = hashlib.sha256(f"{n_test} {TEST_SPLIT_SEED}\0".encode() + np.ascontiguousarray(y, np.int64).tobytes())
        memo = Path(memo_folder) / f"test-split-{digest.hexdigest()[:32]}.u8"  # one byte per image: held out
        try:
            held = np.frombuffer(memo.read_bytes(), np.uint8)
            if held.shape == y.shape and held.max(initial=0) <= 1 and int(held.sum()) == n_test:
                return train_rows[held == 0], train_rows[held == 1]
        except OSError:
            pass
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and min(n_test, len(y) - n_test) >= n_classes else None
    _, test = train_test_split(np.arange(len(y)), test_size=n_test, stratify=stratify, random_state=TEST_SPLIT_SEED)
    held = np.zeros(len(y), bool)
    held[test] = True
    if memo is not None:
        try:
            write_bytes_atomic(memo, held.tobytes())
        except OutputError:  # a read-only cache folder only costs the drawing next time
            pass
    return train_rows[~held], train_rows[held]


def _statistics(cache, rows):
    """Per-channel mean and std of the rows' [0, 1] pixels, kept in the cache folder per set of rows."""
    memo = cache.path / f"stats-{hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()[:32]}.json"
    try:
        counts = np.array(json.loads(memo.read_text()), np.int64)
    except (OSError, ValueError):
        counts = channel_histograms(cache.pixels, rows, cache.mapped)
        try:
            write_text_atomic(memo, json.dumps(counts.tolist()))
        except OutputError:  # a read-only cache folder only costs the counting next time
            pass
    return histogram_statistics(counts)


def _counts(labels, class_names) -> dict:
    found = np.bincount(labels, minlength=len(class_names))
    return {name: int(found[i]) for i, name in enumerate(class_names)}
