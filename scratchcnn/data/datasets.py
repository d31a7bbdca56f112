"""Loading a data set as normalised float32 NCHW arrays with train / validation / test splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from scratchcnn.data.cifar import read_records
from scratchcnn.data.idx import read_idx
from scratchcnn.data.registry import CIFAR_DATASETS, DATASET_NAMES, IDX_DATASETS
from scratchcnn.data.sources import find_or_download
from scratchcnn.errors import ConfigError, DataError

__all__ = ["DataSplits", "load_raw", "load_dataset", "normalize", "pixel_statistics", "validation_split"]

# The digits test split is fixed (not seeded) so every run reports on the same 360 images.
_DIGITS_TEST_FRACTION, _DIGITS_SPLIT_SEED = 0.2, 0


@dataclass
class DataSplits:
    """A data set ready for training.

    Attributes
    ----------
    x_train, x_val, x_test : ndarray, float32, shape (N, C, H, W)
        Scaled to [0, 1], then standardised with ``mean`` and ``std`` of ``x_train``
        (C = 1 for the grey data sets, 3 for CIFAR-10). An image folder's splits are
        ``scratchcnn.data.streaming.NormalizedRows`` instead: the same numbers, read
        from the folder's uint8 cache and standardised one batch at a time.
    y_train, y_val, y_test : ndarray, int64, shape (N,)
    class_names : list of str
    mean, std : float, or tuple of C floats
        Training-split pixel statistics of the [0, 1]-scaled images: one number for
        grey images, one per channel (R, G, B) for colour images.
    name : str
        "fashion", "mnist", "cifar10", "digits" or "folder".
    files : dict
        The data files read (name -> path).
    info : dict
        What the run records about the data besides the arrays (an image folder's
        root, class counts per split, skipped files, preprocessing); empty for the
        built-in sets.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    mean: float | tuple
    std: float | tuple
    name: str
    files: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple:
        """Shape of one image, (C, H, W)."""
        return tuple(self.x_train.shape[1:])


def load_raw(name: str, data_dir=None, progress: bool = True):
    """The data set as published: ``(x_train, y_train, x_test, y_test, class_names, scale, files)``.

    Images are uint8 (N, H, W) for MNIST and Fashion-MNIST (``scale`` 255), uint8
    (N, 3, 32, 32) for CIFAR-10 (``scale`` 255) and float64 values 0..16 for digits
    (``scale`` 16); labels are int64.

    Raises
    ------
    ConfigError
        For an unknown data set name.
    DataError
        If ``data_dir`` is given but is not a folder, or files are missing and cannot
        be downloaded, or are corrupt.
    """
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir}: no such folder" if not Path(data_dir).exists()
                        else f"--data-dir {data_dir}: not a folder")
    if name == "digits":
        images, labels = load_digits(return_X_y=True)
        images = images.reshape(-1, 8, 8)
        x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=_DIGITS_TEST_FRACTION,
                                                  stratify=labels, random_state=_DIGITS_SPLIT_SEED)
        return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), [str(d) for d in range(10)], 16.0, {}
    if name in CIFAR_DATASETS:
        return _load_cifar(CIFAR_DATASETS[name], data_dir, progress)
    if name not in IDX_DATASETS:
        raise ConfigError(f"unknown data set {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    info = IDX_DATASETS[name]
    paths = find_or_download(info, data_dir, progress=progress)
    arrays = {key: read_idx(paths[key], f.shape, "u1", f.sha256) for key, f in info.files.items()}
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64), arrays["test_images"],
            arrays["test_labels"].astype(np.int64), list(info.class_names), 255.0,
            {key: str(p) for key, p in paths.items()})


def _load_cifar(info, data_dir, progress):
    paths = find_or_download(info, data_dir, progress=progress)
    parts = {}
    for split, names in (("train", info.train_files), ("test", info.test_files)):
        read = [read_records(paths[n], info.image_shape, len(info.class_names), info.records_per_file)
                for n in names]
        parts[split] = (np.concatenate([x for x, _ in read]), np.concatenate([y for _, y in read]))
    return (*parts["train"], *parts["test"], list(info.class_names), 255.0,
            {name: str(p) for name, p in paths.items()})


def normalize(images, scale: float, mean, std) -> np.ndarray:
    """Raw pixels -> standardised float32 NCHW: ``(images/scale - mean) / std``, per channel.

    Parameters
    ----------
    images : array, shape (N, H, W) (grey; a channel axis is added) or (N, C, H, W)
    scale : float
        The raw value of white (255 for 8-bit pixels, 16 for digits).
    mean, std : float, or sequence of C floats (one per channel)
        Statistics of the [0, 1]-scaled training pixels.

    Returns
    -------
    x : ndarray, float32, shape (N, C, H, W), a new array

    Raises
    ------
    ValueError
        If ``mean`` or ``std`` holds neither one value nor one per channel.
    """
    x = np.array(images, np.float32)  # a copy: the in-place steps below must not touch the caller's array
    if x.ndim == 3:
        x = x.reshape(len(x), 1, *x.shape[1:])
    channels = x.shape[1]
    mean, std = (np.asarray(v, np.float32).reshape(-1) for v in (mean, std))
    for name, v in (("mean", mean), ("std", std)):
        if v.size not in (1, channels):
            raise ValueError(f"normalize: {name} has {v.size} values, expected 1 or {channels} (one per channel)")
    x /= np.float32(scale)
    x -= mean.reshape(-1, 1, 1)
    x /= std.reshape(-1, 1, 1)
    return x


def pixel_statistics(images, scale: float):
    """Mean and standard deviation of the [0, 1]-scaled pixels: floats for (N, H, W) grey images,
    tuples of one float per channel for (N, C, H, W) colour images.

    8-bit colour images are counted with a 256-bin histogram per channel (exact, and
    no float64 copy of the data set); the population standard deviation, as NumPy's ``std``.
    """
    if np.ndim(images) == 3:
        pixels = np.asarray(images, np.float64) / scale
        return float(pixels.mean()), float(pixels.std())
    means, stds = [], []
    for c in range(images.shape[1]):
        plane = images[:, c]
        if plane.dtype == np.uint8:
            counts = np.bincount(plane.reshape(-1), minlength=256).astype(np.float64)
            values = np.arange(256) / scale
            m = float(counts @ values / counts.sum())
            means.append(m)
            stds.append(float(np.sqrt(counts @ (values - m) ** 2 / counts.sum())))
        else:
            pixels = np.asarray(plane, np.float64) / scale
            means.append(float(pixels.mean()))
            stds.append(float(pixels.std()))
    return tuple(means), tuple(stds)


def validation_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the images kept for training and of those held out for validation.

    ``round(val_fraction * N)`` images are drawn with scikit-learn's
    ``train_test_split(random_state=seed)``, stratified by class when every class has
    at least two images (and each side can hold one of every class). Both results are
    int64 position arrays in ``train_test_split``'s order (the training side shuffled);
    with ``val_fraction`` 0 the training side is every position in order.

    Raises
    ------
    ConfigError
        If the split leaves fewer training images than classes.
    """
    labels = np.asarray(labels)
    positions = np.arange(len(labels))
    n_val = int(round(val_fraction * len(labels)))
    n_classes = len(np.unique(labels))
    if len(labels) - n_val < n_classes:
        raise ConfigError(f"--val-fraction {val_fraction} holds out {n_val} of {len(labels)} training images, "
                          f"leaving {len(labels) - n_val}, fewer than the {n_classes} classes; use a smaller "
                          "--val-fraction (or a larger --train-limit)")
    if n_val == 0:
        return positions, positions[:0]
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 and min(n_val, len(labels) - n_val) >= n_classes else None
    keep, held = train_test_split(positions, test_size=n_val, stratify=stratify, random_state=seed)
    return keep, held


def load_dataset(name: str, data_dir=None, val_fraction: float = 0.1, train_limit=None,
                 seed: int = 0, progress: bool = True) -> DataSplits:
    """Load a data set and split it into train / validation / test.

    Parameters
    ----------
    name : {"fashion", "mnist", "cifar10", "digits"}
    data_dir : path, optional
        Folder to look in first (see ``scratchcnn.data.sources``).
    val_fraction : float in [0, 1)
        Share of the training images held out for validation, drawn at random
        (stratified by class when every class has at least two images), never
        the test set.
    train_limit : int, optional
        Keep only the first ``train_limit`` training images (before the split).
    seed : int
        Seed of the validation split.
    progress : bool
        Show download progress if a download is needed.

    Returns
    -------
    DataSplits

    Raises
    ------
    ConfigError
        For an unknown name, a ``val_fraction`` outside [0, 1) or one that leaves fewer
        training images than classes, or a ``train_limit`` < 2.
    DataError
        For missing or corrupt files.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    x_tr, y_tr, x_te, y_te, class_names, scale, files = load_raw(name, data_dir, progress)
    if train_limit is not None:
        if train_limit < 2:
            raise ConfigError(f"train_limit must be at least 2, got {train_limit}")
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    keep, held = validation_split(y_tr, val_fraction, seed)
    x_tr, x_val, y_tr, y_val = x_tr[keep], x_tr[held], y_tr[keep], y_tr[held]
    mean, std = pixel_statistics(x_tr, scale)
    return DataSplits(
        x_train=normalize(x_tr, scale, mean, std), y_train=np.asarray(y_tr, np.int64),
        x_val=normalize(x_val, scale, mean, std), y_val=np.asarray(y_val, np.int64),
        x_test=normalize(x_te, scale, mean, std), y_test=np.asarray(y_te, np.int64),
        class_names=class_names, mean=mean, std=std, name=name, files=files)
