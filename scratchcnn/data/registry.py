"""What each data set is: files, published checksums, class names, mirrors."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IdxFile", "IdxDataset", "CifarDataset", "IDX_DATASETS", "CIFAR_DATASETS", "DOWNLOADABLE",
           "DATASET_NAMES"]


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

    def file_names(self) -> dict:
        """``{key: names accepted on disk, preferred first}``: the gzipped file, then the raw one."""
        return {key: (f"{f.name}.gz", f.name) for key, f in self.files.items()}


@dataclass(frozen=True)
class CifarDataset:
    """A data set in the CIFAR-10 *binary* layout: one archive holding a folder of record files.

    Every ``.bin`` file is a run of records of ``1 + C*H*W`` bytes: the label byte,
    then the red, green and blue planes, each ``H*W`` bytes in row-major order
    (Krizhevsky, 2009, "Learning Multiple Layers of Features from Tiny Images",
    and the data set's page, https://www.cs.toronto.edu/~kriz/cifar.html,
    section "Binary version").

    Attributes
    ----------
    folder : str
        The folder the archive unpacks to, also the name looked for on disk.
    archive : str
        File name of the archive on the mirrors.
    archive_hash : str
        ``"md5:<hex>"``, the checksum the data set's page publishes for the archive
        (verified by ``pooch`` after every download).
    train_files, test_files : tuple of str
        Record files in ``folder``, in the order their images are concatenated.
    records_per_file : int
        Records every file must hold exactly.
    image_shape : (C, H, W)
    """

    key: str
    title: str
    folder: str
    class_names: tuple
    archive: str
    archive_hash: str
    train_files: tuple
    test_files: tuple
    records_per_file: int
    mirrors: tuple
    image_shape: tuple = (3, 32, 32)
    system_dirs: tuple = ()

    @property
    def record_bytes(self) -> int:
        """Bytes per record: one label byte plus the pixels."""
        c, h, w = self.image_shape
        return 1 + c * h * w

    def file_names(self) -> dict:
        """``{file name: (file name,)}`` for every record file (they are stored uncompressed)."""
        return {name: (name,) for name in self.train_files + self.test_files}


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

CIFAR_DATASETS = {
    "cifar10": CifarDataset(
        key="cifar10", title="CIFAR-10", folder="cifar-10-batches-bin",
        # Label order of batches.meta.txt in the archive, as listed on the data set's page.
        class_names=("airplane", "automobile", "bird", "cat", "deer",
                     "dog", "frog", "horse", "ship", "truck"),
        archive="cifar-10-binary.tar.gz",
        # The md5sum of "CIFAR-10 binary version (suitable for C programs)", 162 MB, published in
        # the Download table of https://www.cs.toronto.edu/~kriz/cifar.html (read 2026-11-30).
        archive_hash="md5:c32a1d4ab5d03f1284b67883e8d87530",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        records_per_file=10000,
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
    ),
}

# Every data set that is looked for on disk and downloaded when missing.
DOWNLOADABLE = {**IDX_DATASETS, **CIFAR_DATASETS}
DATASET_NAMES = ("fashion", "mnist", "cifar10", "digits")
