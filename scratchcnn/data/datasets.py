"""Loading a data set as normalised float32 NCHW arrays with train / validation / test splits."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from scratchcnn.data.idx import read_idx
from scratchcnn.data.registry import DATASET_NAMES, IDX_DATASETS
from scratchcnn.data.sources import find_or_download
from scratchcnn.errors import ConfigError

__all__ = ["DataSplits", "load_raw", "load_dataset", "normalize"]

# The digits test split is fixed (not seeded) so every run reports on the same 360 images.
_DIGITS_TEST_FRACTION, _DIGITS_SPLIT_SEED = 0.2, 0


@dataclass
class DataSplits:
    """A data set ready for training.

    Attributes
    ----------
    x_train, x_val, x_test : ndarray, float32, shape (N, 1, H, W)
        Scaled to [0, 1], then standardised with ``mean`` and ``std`` of ``x_train``.
    y_train, y_val, y_test : ndarray, int64, shape (N,)
    class_names : list of str
    mean, std : float
        Training-split pixel statistics (of the [0, 1]-scaled images).
    name : str
        "fashion", "mnist" or "digits".
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    mean: float
    std: float
    name: str
    files: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple:
        """Shape of one image, (C, H, W)."""
        return tuple(self.x_train.shape[1:])


def load_raw(name: str, data_dir=None, progress: bool = True):
    """The data set as published: ``(x_train, y_train, x_test, y_test, class_names, scale, files)``.

    Images are uint8 (N, H, W) for MNIST and Fashion-MNIST (``scale`` 255) and
    float64 values 0..16 for digits (``scale`` 16); labels are int64.

    Raises
    ------
    ConfigError
        For an unknown data set name.
    DataError
        If files are missing and cannot be downloaded, or are corrupt.
    """
    if name == "digits":
        images, labels = load_digits(return_X_y=True)
        images = images.reshape(-1, 8, 8)
        x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=_DIGITS_TEST_FRACTION,
                                                  stratify=labels, random_state=_DIGITS_SPLIT_SEED)
        return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), [str(d) for d in range(10)], 16.0, {}
    if name not in IDX_DATASETS:
        raise ConfigError(f"unknown data set {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    info = IDX_DATASETS[name]
    paths = find_or_download(info, data_dir, progress=progress)
    arrays = {key: read_idx(paths[key], f.shape, "u1", f.sha256) for key, f in info.files.items()}
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64), arrays["test_images"],
            arrays["test_labels"].astype(np.int64), list(info.class_names), 255.0,
            {key: str(p) for key, p in paths.items()})


def normalize(images, scale: float, mean: float, std: float) -> np.ndarray:
    """(N, H, W) raw pixels -> float32 (N, 1, H, W): ``(images/scale - mean) / std``."""
    x = np.asarray(images, np.float32).reshape(len(images), 1, *np.shape(images)[1:])
    x /= np.float32(scale)
    x -= np.float32(mean)
    x /= np.float32(std)
    return x


def load_dataset(name: str, data_dir=None, val_fraction: float = 0.1, train_limit=None,
                 seed: int = 0, progress: bool = True) -> DataSplits:
    """Load a data set and split it into train / validation / test.

    Parameters
    ----------
    name : {"fashion", "mnist", "digits"}
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
        For an unknown name, a ``val_fraction`` outside [0, 1) or a ``train_limit`` < 2.
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
    x_val, y_val = x_tr[:0], y_tr[:0]
    n_val = int(round(val_fraction * len(y_tr)))
    if n_val > 0:
        counts = np.bincount(y_tr)
        stratify = y_tr if counts[counts > 0].min() >= 2 and n_val >= len(np.unique(y_tr)) else None
        x_tr, x_val, y_tr, y_val = train_test_split(x_tr, y_tr, test_size=n_val, stratify=stratify,
                                                    random_state=seed)
    pixels = np.asarray(x_tr, np.float64) / scale
    mean, std = float(pixels.mean()), float(pixels.std())
    return DataSplits(
        x_train=normalize(x_tr, scale, mean, std), y_train=np.asarray(y_tr, np.int64),
        x_val=normalize(x_val, scale, mean, std), y_val=np.asarray(y_val, np.int64),
        x_test=normalize(x_te, scale, mean, std), y_test=np.asarray(y_te, np.int64),
        class_names=class_names, mean=mean, std=std, name=name, files=files)
