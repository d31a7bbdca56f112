"""Peak memory of training on an image folder larger than the batch: issue 22's 200,000-image figure.

    python benchmarks/folder_memory.py                       # 200,000 64x64 colour JPEGs (the measurement)
    python benchmarks/folder_memory.py --images 300 --steps 5   # a quick check that it runs

Makes a synthetic folder (``--folder``, kept and reused if it already holds the
images; default a temporary one): ``--classes`` class folders of 64x64 RGB JPEGs,
each class its own mean colour plus noise. Then, in this process, with the user
cache pointed at a fresh folder:

1. ``load_folder`` decodes every image once into the uint8 cache (timed), and
   computes the training split's statistics (a pass over every training row);
2. ``load_folder`` again: the cache is reused (timed: the open, not the decode);
3. the model's warm-up (Numba compiles or loads its kernels: with a cold cache the
   compiler's own peak, several hundred MB, shows here), then ``--steps`` training steps of the classic CNN on batches drawn at random from
   the whole training split (so pages of the whole map are touched);
4. the streamed evaluation of the whole test split (``loss_and_accuracy``).

After each phase the peak resident set size so far (``getrusage`` ``ru_maxrss``)
is printed; the last line is a JSON record with the date, for the README.
The issue asks for a peak under 1.5 GB at 200,000 images (the cache alone is
200,000 x 3 x 64 x 64 bytes = 2.46 GB).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_class(args) -> int:
    folder, label, start, count, size, seed = args
    rng = np.random.default_rng([seed, label, start])
    colour = np.random.default_rng([seed, label]).integers(40, 216, 3)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        noise = rng.normal(0, 40, (size, size, 3))
        image = np.clip(colour + noise, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:07d}.jpg", quality=90)
    return count


def make_folder(root: Path, images: int, classes: int, size: int, seed: int = 0) -> None:
    """``images`` JPEGs spread evenly over ``classes`` folders, written by all CPUs."""
    per_class = images // classes
    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == per_class * classes:
        return
    chunk = 2000
    jobs = [(root / f"class{c:02d}", c, s, min(chunk, per_class - s), size, seed)
            for c in range(classes) for s in range(0, per_class, chunk)]
    with ProcessPoolExecutor() as pool:
        done = sum(pool.map(_write_class, jobs))
    print(f"wrote {done} images to {root}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--folder", help="where to make (or find) the synthetic folder (default: a temporary one)")
    p.add_argument("--backend", default="cpu")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # a fresh user cache: the first run decodes
        folder = Path(args.folder) if args.folder else Path(tmp) / "folder"
        t0 = time.perf_counter()
        make_folder(folder, args.images, args.classes, args.size)
        print(f"folder ready in {time.perf_counter() - t0:.0f} s; peak RSS {peak_mb():.0f} MB", flush=True)

        from scratchcnn.data.folder import load_folder
        from scratchcnn.data.streaming import NormalizedRows
        from scratchcnn.engine.inference import loss_and_accuracy
        from scratchcnn.engine.training import Trainer
        from scratchcnn.nn.losses import SoftmaxCrossEntropy
        from scratchcnn.nn.optimizers import Adam
        from scratchcnn.nn.presets import build_model

        record = {"date": time.strftime("%Y-%m-%d"), "images": args.images, "size": args.size,
                  "steps": args.steps, "batch_size": args.batch_size}
        t0 = time.perf_counter()
        load_folder(folder, image_size=(args.size, args.size), channels=3, log=lambda *a: None)
        record["first_load_s"] = time.perf_counter() - t0
        record["peak_mb_after_decode"] = peak_mb()
        print(f"decoded and cached in {record['first_load_s']:.0f} s; peak RSS {peak_mb():.0f} MB", flush=True)

        t0 = time.perf_counter()
        splits = load_folder(folder, image_size=(args.size, args.size), channels=3, log=lambda *a: None)
        record["reopen_s"] = time.perf_counter() - t0
        assert splits.info["cache_reused"]
        print(f"reopened the cache in {record['reopen_s']:.2f} s; peak RSS {peak_mb():.0f} MB", flush=True)

        rng = np.random.default_rng(0)
        train = splits.x_train
        sample = rng.choice(len(train), size=min(len(train), args.steps * args.batch_size), replace=False)
        x = NormalizedRows(train.pixels, train.index[sample], 255.0, splits.mean, splits.std, train.mapped)
        model = build_model("classic", splits.input_shape, len(splits.class_names), seed=0, backend=args.backend)
        model.compile(Adam(1e-3), SoftmaxCrossEntropy())
        model.warm_up(args.batch_size)  # Numba compiles here: its peak is the compiler's, not the data's
        record["peak_mb_after_compiling"] = peak_mb()
        print(f"kernels compiled or loaded; peak RSS {peak_mb():.0f} MB", flush=True)
        t0 = time.perf_counter()
        Trainer(model, batch_size=args.batch_size, seed=0, progress=False, log=lambda *a: None).fit(
            x, splits.y_train[sample], 1)
        record["train_s"] = time.perf_counter() - t0
        record["peak_mb_after_training"] = peak_mb()
        print(f"{args.steps} steps in {record['train_s']:.0f} s; peak RSS {peak_mb():.0f} MB", flush=True)

        t0 = time.perf_counter()
        loss, accuracy = loss_and_accuracy(model, splits.x_test, splits.y_test)
        record.update(eval_s=time.perf_counter() - t0, test_images=len(splits.y_test), test_accuracy=accuracy,
                      peak_mb=peak_mb())
        print(f"evaluated {len(splits.y_test)} test images (accuracy {accuracy:.3f}) in {record['eval_s']:.0f} s; "
              f"peak RSS {peak_mb():.0f} MB", flush=True)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
