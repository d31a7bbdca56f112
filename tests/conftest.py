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
