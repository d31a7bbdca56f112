"""``python -m scratchcnn.to_folder``: write a built-in data set out as an image folder.

``OUT/train/<class>/<number>.png`` and ``OUT/test/<class>/<number>.png``, one 8-bit PNG
per image (grey for MNIST, Fashion-MNIST and digits, RGB for CIFAR-10), numbered in
the data set's order with zero-padded numbers: ``--dataset folder`` reads images
sorted by their name inside their class folder, then by class, so it gets them back
in the data set's order. Class folders are named so that sorting them keeps the
data set's class order (and so its labels): the class names when they already sort
that way (MNIST, digits, CIFAR-10), else with their index in front (Fashion-MNIST:
``0 T-shirt-top``, ``1 Trouser``, ...; a ``/`` in a name becomes ``-``).

With the same order, labels and 8-bit pixels, training on the folder is training on
the built-in set: same splits, same statistics, same batches (the round trip in
README.md). Digits' pixels are 0..16; they are written as ``round(v * 255 / 16)``,
so that folder's images differ from the built-in ones by that rounding.

The folder is written under a temporary name next to ``OUT`` and renamed when
complete, so an interrupted run leaves no half folder at ``OUT``.

Examples
--------
    python -m scratchcnn.to_folder fashion fashion-png
    python -m scratchcnn.to_folder digits digits-png --train-limit 500
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from scratchcnn.apps import cli
from scratchcnn.data.datasets import load_raw
from scratchcnn.data.registry import DATASET_NAMES
from scratchcnn.errors import ConfigError, OutputError

__all__ = ["write_folder", "class_folder_names", "main"]

PROG = "python -m scratchcnn.to_folder"


def class_folder_names(class_names) -> list[str]:
    """Folder names that sort in the data set's class order (see the module docstring)."""
    safe = [name.replace("/", "-").replace("\\", "-") for name in class_names]
    if sorted(safe) == safe and len(set(safe)) == len(safe):
        return safe
    width = len(str(len(safe) - 1))
    return [f"{i:0{width}d} {name}" for i, name in enumerate(safe)]


def _as_uint8(images, scale: float) -> np.ndarray:
    """Raw images -> uint8 (N, H, W) or (N, H, W, 3) as a PNG holds them."""
    images = np.asarray(images)
    if images.dtype != np.uint8:  # digits: 0..16
        images = np.clip(np.rint(images * (255.0 / scale)), 0, 255).astype(np.uint8)
    return images.transpose(0, 2, 3, 1) if images.ndim == 4 else images


def write_folder(name: str, out, data_dir=None, train_limit=None, test_limit=None, progress: bool = True) -> Path:
    """Write the data set ``name`` as PNG files under ``out`` (layout: the module docstring).

    Parameters
    ----------
    name : one of ``scratchcnn.data.DATASET_NAMES``
    out : path of the folder to create (must not exist, or be empty)
    data_dir : where to look for the data set's files first
    train_limit, test_limit : int, optional; write only the first N images of each split
    progress : bool, a progress bar

    Returns the folder written.

    Raises
    ------
    ConfigError
        For an unknown data set, or an ``out`` that exists and is not an empty folder.
    DataError
        As ``scratchcnn.data.load_raw`` raises it.
    OutputError
        If the folder cannot be written.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty folder; choose a new OUT")
    if name not in DATASET_NAMES:
        raise ConfigError(f"unknown data set {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    x_tr, y_tr, x_te, y_te, class_names, scale, _ = load_raw(name, data_dir, progress)
    folders = class_folder_names(class_names)
    parts = [("train", x_tr[:train_limit], y_tr[:train_limit]), ("test", x_te[:test_limit], y_te[:test_limit])]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        total = sum(len(y) for _, _, y in parts)
        with tqdm(total=total, desc=f"writing {name} as PNG", unit="img", disable=not progress) as bar:
            for part, images, labels in parts:
                width = len(str(max(len(labels) - 1, 0)))
                for label in np.unique(labels):  # only classes with images: an empty class folder is a problem
                    (tmp / part / folders[label]).mkdir(parents=True)
                for i, (image, label) in enumerate(zip(_as_uint8(images, scale), labels)):
                    Image.fromarray(image).save(tmp / part / folders[label] / f"{i:0{width}d}.png", compress_level=1)
                    bar.update()
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description="Write a built-in data set as an image folder (PNG per image, "
                           "train/ and test/ holding one folder per class), for --dataset folder.")
    p.add_argument("dataset", choices=DATASET_NAMES)
    p.add_argument("out", type=cli.path, metavar="OUT", help="folder to create")
    p.add_argument("--data-dir", type=cli.path, help="folder holding the data set's files (searched first)")
    p.add_argument("--train-limit", type=cli.positive_int, metavar="N", help="only the first N training images")
    p.add_argument("--test-limit", type=cli.positive_int, metavar="N", help="only the first N test images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    out = write_folder(args.dataset, args.out, args.data_dir, args.train_limit, args.test_limit,
                       progress=not args.no_progress)
    print(f"wrote {out} (train/ and test/, one folder per class)")
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
