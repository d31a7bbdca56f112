"""``python -m scratchcnn.predict``: classify image files (PNG, JPEG, ...) with a trained model.

Each image is read with Pillow and made to look like the training data:

1. transparent pixels are laid over white, then the image is grey-scaled
   (Pillow's ``convert("L")``, ITU-R 601-2 luma);
2. if its border is mostly light (median grey level > 127), it is inverted, since
   MNIST and Fashion-MNIST are light objects on a black background;
3. unless it already has the model's input size, it is framed the way the data
   set's images were made: cropped to the object (pixels more than 5% of the
   range away from the background level, Fashion-MNIST's trimming threshold),
   padded with black, centred, to the model's aspect ratio plus the data set's
   margin (MNIST fits digits in a 20x20 box of a 28x28 image: 4/28 per side;
   Fashion-MNIST and digits: none), then resized with a Lanczos filter;
4. it is scaled to [0, 1] and standardised with the ``normalization`` (mean, std)
   stored in the model file, as ``scratchcnn.data.normalize`` did in training.

Sources: LeCun, Cortes & Burges, "The MNIST database" (size normalisation into a
20x20 box); Xiao, Rasul & Vollgraf (2017), "Fashion-MNIST", Section 2 (trimming,
resizing the longest edge, centring, negating).

Examples
--------
    python -m scratchcnn.predict --model runs/fashion-20261123-120000 boot.png shirt.jpg
    python -m scratchcnn.predict --model runs/fashion-20261123-120000/best_model.npz --top-k 5 bag.jpg
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

import kernels
from scratchcnn import cli
from scratchcnn.data import normalize
from scratchcnn.errors import ConfigError, DataError
from scratchcnn.serialization import load_model

__all__ = ["Prediction", "model_path", "load_image", "prepare_image", "predict_images", "format_prediction",
           "main"]

PROG = "python -m scratchcnn.predict"
MODEL_FILE = "model.npz"  # what a finished run folder holds (scratchcnn.train)
LIGHT = 127  # border grey levels above this mean a light background, to be inverted
TRIM = 13  # 5% of 255: grey levels this close to the background count as background
MARGINS = {"mnist": 4 / 28}  # blank border per side, as a fraction of the side (0 if not listed)


@dataclass
class Prediction:
    """The result for one image: ``top`` holds ``(class name, probability)``, most likely first."""

    path: str
    size: tuple  # (width, height) of the file, pixels
    inverted: bool
    top: list


def model_path(path) -> Path:
    """``path`` itself if it is a file, else ``path/model.npz`` (a run folder).

    Raises
    ------
    ConfigError
        If ``path`` does not exist, or is a folder without ``model.npz``.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise ConfigError(f"--model {path}: the folder holds no {MODEL_FILE} (an unfinished run? "
                              f"finish it with python -m scratchcnn.train --resume {path})")
        return path / MODEL_FILE
    if not path.exists():
        raise ConfigError(f"--model {path}: no such file or folder")
    return path


def load_image(path) -> np.ndarray:
    """The image file at ``path`` as grey levels: uint8 (H, W), 0 black .. 255 white.

    Transparent pixels count as white; EXIF orientation is applied.

    Raises
    ------
    DataError
        If the file is missing, not an image Pillow can decode, truncated, or so
        large that Pillow refuses it as a decompression bomb.
    """
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
            return np.asarray(img.convert("L"), np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read the image (not a PNG/JPEG, or truncated): {exc}") from None


def prepare_image(grey: np.ndarray, input_shape, normalization: dict,
                  margin: float = 0.0) -> tuple[np.ndarray, bool]:
    """Turn grey levels into one model input (see the module docstring for the steps).

    Parameters
    ----------
    grey : ndarray, uint8, shape (H, W), any size
    input_shape : (1, h, w), the model's input
    normalization : dict with ``mean`` and ``std`` of the [0, 1]-scaled training pixels
    margin : float in [0, 0.5), blank border per side as a fraction of the side

    Returns
    -------
    x : ndarray, float32, shape (1, h, w)
    inverted : bool, whether the image had a light background and was inverted
    """
    _, th, tw = input_shape
    inverted = bool(np.median(_border(grey)) > LIGHT)
    if inverted:
        grey = 255 - grey
    if grey.shape != (th, tw):
        grey = _frame(grey, th, tw, margin)
    # PNG/JPEG pixels are 0..255 whatever the training data's raw scale was (16 for digits).
    return normalize(grey[None], 255.0, normalization["mean"], normalization["std"])[0], inverted


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def _frame(grey: np.ndarray, th: int, tw: int, margin: float) -> np.ndarray:
    """Crop a dark-background image to its object, pad it to (th, tw)'s ratio plus ``margin``, resize."""
    rows, cols = np.nonzero(np.abs(grey.astype(np.int16) - np.median(_border(grey))) > TRIM)
    if rows.size:  # a blank image has no object to crop to
        grey = grey[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = grey.shape
    per_pixel = max(h / (th * (1 - 2 * margin)), w / (tw * (1 - 2 * margin)))  # source pixels per output pixel
    ph, pw = max(h, round(th * per_pixel)), max(w, round(tw * per_pixel))
    padded = np.zeros((ph, pw), np.uint8)
    top, left = (ph - h) // 2, (pw - w) // 2
    padded[top:top + h, left:left + w] = grey
    return np.asarray(Image.fromarray(padded).resize((tw, th), Image.Resampling.LANCZOS))


def predict_images(model, meta: dict, paths, top_k: int = 3) -> list[Prediction]:
    """Classify image files with a model loaded by ``scratchcnn.serialization.load_model``.

    Returns one ``Prediction`` per path, in order.

    Raises
    ------
    ConfigError
        If ``top_k`` is not in [1, number of classes] or the model does not take
        one-channel images.
    DataError
        If an image cannot be read (before anything is classified).
    """
    names = meta["class_names"]
    if not 1 <= top_k <= len(names):
        raise ConfigError(f"--top-k {top_k}: must be between 1 and the model's {len(names)} classes")
    if model.input_shape[0] != 1:
        raise ConfigError(f"the model takes {model.input_shape[0]}-channel images; predict feeds grey-scale "
                          "(1-channel) images")
    greys = [load_image(p) for p in paths]
    margin = MARGINS.get(meta.get("dataset"), 0.0)
    prepared = [prepare_image(g, model.input_shape, meta["normalization"], margin) for g in greys]
    probs = model.predict(np.stack([x for x, _ in prepared]))
    results = []
    for path, grey, (_, inverted), p in zip(paths, greys, prepared, probs):
        order = np.argsort(-p, kind="stable")[:top_k]
        results.append(Prediction(str(path), (grey.shape[1], grey.shape[0]), inverted,
                                  [(names[i], float(p[i])) for i in order]))
    return results


def format_prediction(result: Prediction) -> str:
    """A header line (file, size, whether inverted) and one ``rank. class  probability`` line per class."""
    width = max(len(name) for name, _ in result.top)
    note = ", light background: inverted" if result.inverted else ""
    lines = [f"{result.path}  ({result.size[0]}x{result.size[1]}{note})"]
    lines += [f"  {rank}. {name:<{width}}  {prob:.4f}" for rank, (name, prob) in enumerate(result.top, 1)]
    return "\n".join(lines)


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description="Print the most likely classes, with probabilities, "
                           "of image files (PNG, JPEG, any size) according to a trained model.")
    p.add_argument("--model", required=True, metavar="RUN_DIR|MODEL.npz",
                   help=f"a run folder (uses its {MODEL_FILE}) or a model file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=cli.positive_int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--backend", choices=sorted(kernels.BACKENDS),
                   help="kernel backend (default: $SCRATCHCNN_BACKEND, else the fastest available)")
    return p


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    model, meta = load_model(model_path(args.model), backend=args.backend)
    for result in predict_images(model, meta, args.images, args.top_k):
        print(format_prediction(result))
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
