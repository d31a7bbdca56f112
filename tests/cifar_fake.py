"""A small synthetic archive in the exact layout of CIFAR-10's binary version, for tests.

``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/`` with ``batches.meta.txt``,
``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin`` and ``readme.html``;
each ``.bin`` file is records of one label byte and 3,072 pixel bytes (the red,
green and blue 32x32 planes, row-major), https://www.cs.toronto.edu/~kriz/cifar.html.
Only the number of records per file differs from the real one.

The images are learnable: class k is a blob of its own colour at a random place on
a noisy background of random brightness, so a network has to find the blob's colour.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

from scratchcnn.data import CIFAR_DATASETS

FOLDER = "cifar-10-batches-bin"
NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Ten distinct colours (R, G, B), one per class.
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190]], np.float64)


def records(n: int, seed: int) -> bytes:
    """``n`` records of learnable synthetic images, labels cycling through the ten classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.normal(0, 25, (n, 3, 32, 32)) + rng.uniform(40, 120, (n, 1, 1, 1))
    yy, xx = np.mgrid[:32, :32]
    for i, k in enumerate(labels):
        cy, cx = rng.integers(8, 24, 2)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < 36
        images[i][:, blob] = PALETTE[k][:, None] + rng.normal(0, 10, (3, int(blob.sum())))
    pixels = np.clip(images, 0, 255).astype(np.uint8).reshape(n, -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1).tobytes()


def write_folder(root: Path, per_file: int = 200, seed: int = 0) -> Path:
    """Write the unpacked folder ``root/cifar-10-batches-bin``; returns it."""
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in archive_members(per_file, seed).items():
        (folder / name).write_bytes(data)
    return folder


def archive_members(per_file: int = 200, seed: int = 0) -> dict[str, bytes]:
    members = {"batches.meta.txt": ("\n".join(NAMES) + "\n\n").encode()}
    for i in range(1, 6):
        members[f"data_batch_{i}.bin"] = records(per_file, seed + i)
    members["test_batch.bin"] = records(per_file, seed + 100)
    members["readme.html"] = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n"
    return members


def write_archive(path: Path, per_file: int = 200, seed: int = 0, members=None) -> str:
    """Write ``cifar-10-binary.tar.gz`` to ``path``; returns its ``"md5:<hex>"`` (as pooch wants it)."""
    members = archive_members(per_file, seed) if members is None else members
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    Path(path).write_bytes(buffer.getvalue())
    return "md5:" + hashlib.md5(buffer.getvalue()).hexdigest()


def fake_info(per_file: int = 200, archive_hash: str = "md5:" + "0" * 32, mirrors=()):
    """The registry entry of CIFAR-10 with the synthetic archive's record count, hash and mirrors."""
    return dataclasses.replace(CIFAR_DATASETS["cifar10"], records_per_file=per_file, archive_hash=archive_hash,
                               mirrors=tuple(mirrors))
