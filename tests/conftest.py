"""Test set-up: no network, real data from $SCRATCHCNN_DATA (default ../shared/data), backend list."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Tests never download: a missing data set must fail loudly, not reach for the network.
os.environ["SCRATCHCNN_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCHCNN_DATA", ROOT.parent / "shared" / "data"))
os.environ["SCRATCHCNN_DATA"] = str(DATA_DIR)


def host_backends() -> list[str]:
    """Backends that run on the host in this process (CUDA has its own simulator tests)."""
    import kernels

    return [b for b in kernels.available() if b != "cuda"]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    for folder in ("mnist", "fashion-mnist"):
        if not (DATA_DIR / folder).is_dir():
            pytest.fail(f"real data not found at {DATA_DIR / folder}; set SCRATCHCNN_DATA to the folder "
                        "holding mnist/ and fashion-mnist/ (see README)")
    return DATA_DIR


@pytest.fixture(scope="session")
def fashion_subset(data_dir):
    """5,000 real Fashion-MNIST training images (10% held out) and the full test set."""
    from scratchcnn.data import load_dataset

    return load_dataset("fashion", data_dir, train_limit=5000, val_fraction=0.1, seed=0, progress=False)


def _short_run(tmp_path_factory, dataset: str, train_limit: int, epochs: int) -> Path:
    """A real run folder (model.npz, metrics.json, ...) from ``python -m scratchcnn.train``."""
    from scratchcnn import train

    out = tmp_path_factory.mktemp("runs") / dataset
    code = train.main(["--dataset", dataset, "--train-limit", str(train_limit), "--epochs", str(epochs),
                       "--out", str(out), "--no-progress", "--seed", "0"])
    assert code == 0, f"training the {dataset} fixture failed with exit code {code}"
    return out


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory, data_dir) -> Path:
    """Classic CNN, 10,000 MNIST images, 2 epochs (0.97 test accuracy here): enough for drawn digits."""
    return _short_run(tmp_path_factory, "mnist", 10_000, 2)


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory, data_dir) -> Path:
    """Classic CNN, 5,000 Fashion-MNIST images, 1 epoch (about 0.77 test accuracy)."""
    return _short_run(tmp_path_factory, "fashion", 5_000, 1)
