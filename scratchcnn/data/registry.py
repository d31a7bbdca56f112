"""What each data set is: files, published checksums, class names, mirrors."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IdxFile", "IdxDataset", "IDX_DATASETS", "DATASET_NAMES"]


@dataclass(frozen=True)
class IdxFile:
    """One IDX file: its name without ``.gz``, the SHA-256 of its decompressed bytes, its shape."""

    name: str
    sha256: str
    shape: tuple


@dataclass(frozen=True)
class IdxDataset:
    """An MNIST-format data set: four IDX files, looked for in ``folder`` and fetched from ``mirrors``."""

    key: str
    title: str
    folder: str
    class_names: tuple
    files: dict
    mirrors: tuple
    system_dirs: tuple = ()


def _files(train_images, train_labels, test_images, test_labels):
    return {
        "train_images": IdxFile("train-images-idx3-ubyte", train_images, (60000, 28, 28)),
        "train_labels": IdxFile("train-labels-idx1-ubyte", train_labels, (60000,)),
        "test_images": IdxFile("t10k-images-idx3-ubyte", test_images, (10000, 28, 28)),
        "test_labels": IdxFile("t10k-labels-idx1-ubyte", test_labels, (10000,)),
    }


IDX_DATASETS = {
    "mnist": IdxDataset(
        key="mnist", title="MNIST", folder="mnist",
        class_names=tuple(str(d) for d in range(10)),
        files=_files("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                     "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                     "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        # torchvision's mirror list (the S3 copy first: the original site throttles).
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
    ),
    "fashion": IdxDataset(
        key="fashion", title="Fashion-MNIST", folder="fashion-mnist",
        # Label order from Zalando's README (github.com/zalandoresearch/fashion-mnist#labels).
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        files=_files("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                     "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                     "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        # Debian's package dataset-fashion-mnist installs the files here.
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}

DATASET_NAMES = ("fashion", "mnist", "digits")
