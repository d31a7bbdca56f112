"""``python -m scratchcnn.predict``: classify image files (PNG, JPEG, TIFF, ...) with a trained model.

Each image is decoded and made to look like the training data by
``scratchcnn.data.images`` (``load_image``, then ``preprocess_image``: inverted if its
background is light, cropped to the object and framed like the data set's images,
standardised with the model file's normalisation; its docstring lists the steps
and their sources). Images are read, classified and printed one at a time, so
memory holds one decoded image whatever the number of files. An image that
cannot be read gets one error line; the others are still classified, and the
exit code is 1.

Examples
--------
    python -m scratchcnn.predict --model runs/fashion-20261123-120000 boot.png shirt.jpg
    python -m scratchcnn.predict --model runs/fashion-20261123-120000/best_model.npz --top-k 5 bag.jpg
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

import kernels
from scratchcnn.apps import cli
from scratchcnn.errors import ConfigError, DataError
from scratchcnn.data.images import load_image, preprocess_image
from scratchcnn.engine.inference import probabilities
from scratchcnn.files.loading import load_saved_model
from scratchcnn.files.serialization import MODEL_FILE

__all__ = ["Prediction", "predict_image", "predict_images", "format_prediction", "main"]

PROG = "python -m scratchcnn.predict"


@dataclass
class Prediction:
    """The result for one image: ``top`` holds ``(class name, probability)``, most likely first."""

    path: str
    size: tuple  # (width, height) of the file, pixels
    inverted: bool
    top: list


def _check(model, meta: dict, top_k: int) -> None:
    names = meta["class_names"]
    if not 1 <= top_k <= len(names):
        raise ConfigError(f"--top-k {top_k}: must be between 1 and the model's {len(names)} classes")
    if model.input_shape[0] not in (1, 3):
        raise ConfigError(f"the model takes {model.input_shape[0]}-channel images; predict feeds grey "
                          "(1-channel) or RGB (3-channel) images")


def predict_image(model, meta: dict, path, top_k: int = 3) -> Prediction:
    """Classify one image file with a model from ``scratchcnn.files.loading.load_saved_model``.

    Raises
    ------
    ConfigError
        If ``top_k`` is not in [1, number of classes] or the model takes neither
        1- nor 3-channel images.
    DataError
        If the image cannot be read.
    """
    _check(model, meta, top_k)
    pixels = load_image(path, channels=model.input_shape[0])
    x, inverted = preprocess_image(pixels, model.input_shape, meta["normalization"], dataset=meta.get("dataset"))
    p = probabilities(model, x[None])[0]
    names = meta["class_names"]
    order = np.argsort(-p, kind="stable")[:top_k]
    return Prediction(str(path), (pixels.shape[1], pixels.shape[0]), inverted,
                      [(names[i], float(p[i])) for i in order])


def predict_images(model, meta: dict, paths, top_k: int = 3):
    """Yield ``predict_image`` of each path in order, one image in memory at a time.

    Raises
    ------
    ConfigError, DataError
        As ``predict_image``, when the image in question is reached.
    """
    _check(model, meta, top_k)
    for path in paths:
        yield predict_image(model, meta, path, top_k)


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
    model, meta, _ = load_saved_model(args.model, backend=args.backend)
    _check(model, meta, args.top_k)
    failed = 0
    for path in args.images:
        try:
            result = predict_image(model, meta, path, args.top_k)
        except DataError as exc:  # one unreadable file: say so, classify the others
            print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
            failed += 1
            continue
        print(format_prediction(result), flush=True)
    return cli.EXIT_ERROR if failed else 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error (an unreadable image among others too), 2 usage)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
