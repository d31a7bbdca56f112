"""Reading your own image files and making them look like a model's training images.

Two public steps, shared by ``python -m scratchcnn.predict`` and anything else that
classifies user images (a web demo):

``load_image(source, channels=1)``
    decodes a PNG, JPEG, TIFF, ... (a path, bytes or a binary file object) with
    Pillow into float32 intensities in [0, 1]: 8-bit images are divided by 255,
    16-bit ones by 65535, and float images (TIFF ``F``) are taken as [0, 1] already
    (values outside are clipped; NaN is refused), so that a 16-bit PNG and its 8-bit
    copy give the same numbers. Transparent pixels are laid over white; EXIF
    orientation is applied; grey is ITU-R 601-2 luma (Pillow's ``convert("L")``
    weights). Memory stays bounded whatever the file: an image of more than
    ``MAX_PIXELS`` pixels (Pillow's decompression-bomb threshold) is refused from its
    header, before it is decoded, and a decoded image whose longer side exceeds
    ``MAX_SIDE`` is shrunk by an integer factor (``Image.reduce``, the mean of each
    block) before it becomes float32. ``read_image`` also returns the file's size.

``preprocess_image(pixels, input_shape, normalization, dataset=None)``
    turns those intensities into one model input ``(C, h, w)``. For one-channel
    models (MNIST, Fashion-MNIST, digits):

    1. if the image's border is mostly light (median > 0.5), it is inverted, since
       MNIST and Fashion-MNIST are light objects on a black background;
    2. unless it already has the model's input size, it is framed the way the data
       set's images were made: cropped to the object (pixels more than 5% of the
       range away from the background level, Fashion-MNIST's trimming threshold),
       padded with black, centred, to the model's aspect ratio plus the data set's
       margin (MNIST fits digits in a 20x20 box of a 28x28 image: 4/28 per side;
       Fashion-MNIST and digits: none), then resized with a Lanczos filter. MNIST
       centred each digit by its centre of mass, not its box: so does this for
       ``dataset="mnist"`` (a drawn 7, whose mass sits in its top bar, moves down
       about 3 pixels; centred by its box, a 2-epoch model called it a 2);
    3. it is standardised with the ``normalization`` (mean, std of [0, 1] pixels)
       stored in the model file, as ``scratchcnn.data.normalize`` did in training.

    Colour models (3 channels) take the image resized to (h, w) with a Lanczos
    filter, then standardised per channel (``mean``/``std`` a number or one per
    channel); nothing is inverted or cropped.

Sources: LeCun, Cortes & Burges, "The MNIST database" (size normalisation into a
20x20 box, then centring by the centre of mass in 28x28); Xiao, Rasul & Vollgraf (2017), "Fashion-MNIST", Section 2 (trimming,
resizing the longest edge, centring, negating).

Example
-------
>>> pixels = load_image("boot.png")                               # doctest: +SKIP
>>> x, inverted = preprocess_image(pixels, model.input_shape, meta["normalization"],
...                                dataset=meta.get("dataset"))   # doctest: +SKIP
>>> probs = model.predict(x[None])                                # doctest: +SKIP
"""
from __future__ import annotations

import io
import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from scratchcnn.errors import DataError

__all__ = ["load_image", "read_image", "preprocess_image", "margin_for", "MARGINS", "CENTRE_OF_MASS", "LIGHT",
           "TRIM", "MAX_PIXELS", "MAX_SIDE"]

LIGHT = 0.5  # a median border intensity above this means a light background, to be inverted
TRIM = 0.05  # intensities this close to the background level count as background (5% of the range)
MARGINS = {"mnist": 4 / 28}  # blank border per side, as a fraction of the side (0 if not listed)
CENTRE_OF_MASS = {"mnist"}  # data sets whose objects were centred by centre of mass (others: bounding box)
# Pillow modes holding more than 8 bits per sample, and the value that means white in each.
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}
# Pillow's own decompression-bomb threshold (it warns above it, refuses above twice it): 89.5 million
# pixels, 358 MB as RGBA, the most this decodes.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# A longer side than this is shrunk before the float conversion and the framing (which pads to a
# square): a 20000x1 strip once took 3.2 GB. Every model input is far smaller (28 or 32 pixels).
MAX_SIDE = 2048
_REDUCIBLE = {"L", "RGB", "RGBA", "LA", "I", "F"}  # the modes Image.reduce takes
_KINDS = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
          stat.S_ISSOCK: "a socket"}


def margin_for(dataset) -> float:
    """The blank border per side (fraction of the side) of a data set's images; 0 if not listed."""
    return MARGINS.get(dataset, 0.0)


def load_image(source, channels: int = 1) -> np.ndarray:
    """Decode an image file into float32 intensities in [0, 1].

    Parameters
    ----------
    source : path-like, bytes, or a binary file object
        The encoded image (any format Pillow reads: PNG, JPEG, TIFF, BMP, GIF, WebP...).
    channels : {1, 3}
        1: grey levels (ITU-R 601-2 luma); 3: RGB.

    Returns
    -------
    pixels : ndarray, float32, shape (H, W) for ``channels=1`` or (H, W, 3), values
        in [0, 1] (0 black, 1 white). 8-bit samples are divided by 255, 16-bit ones
        (PNG ``I;16``, ``I``) by 65535; float samples (TIFF ``F``) are clipped to [0, 1].
        An image whose longer side exceeds ``MAX_SIDE`` comes back shrunk by the
        smallest integer factor that brings it within (the mean of each block).

    Raises
    ------
    DataError
        If the file is missing, not a regular file (a FIFO, a device, a folder),
        not an image Pillow can decode, truncated, larger than ``MAX_PIXELS``, or
        holds NaN pixels; the message names the source (a path, or "image" for bytes).
    ValueError
        If ``channels`` is not 1 or 3.
    """
    return read_image(source, channels)[0]


def read_image(source, channels: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """``load_image``, plus the file's own size ``(width, height)`` in pixels (before any shrinking)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    name = str(source) if isinstance(source, (str, Path)) else "image"
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        _check_regular(name)
    try:
        with warnings.catch_warnings():
            # The size is checked below against MAX_PIXELS, with a message of ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise DataError(f"{name}: the image is {width}x{height} pixels ({width * height:,}), more than "
                                f"the {MAX_PIXELS:,} this reads")
            img = ImageOps.exif_transpose(img)
            pixels = _intensities(_shrunk(img), channels, name)
            return pixels, (width, height)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a folder, not an image file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError,
            EOFError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DataError(f"{name}: cannot read the image (not a PNG/JPEG, or truncated): {reason}") from None


def _check_regular(name: str) -> None:
    """Refuse a path that is not a regular file before opening it (a FIFO would block the read forever)."""
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read the image: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{name}: is a folder, not an image file")
    for test, kind in _KINDS.items():
        if test(mode):
            raise DataError(f"{name}: not a regular file ({kind}); give an image file")


def _shrunk(img: Image.Image) -> Image.Image:
    """``img`` reduced by the smallest integer factor that makes its longer side at most ``MAX_SIDE``."""
    factor = math.ceil(max(img.size) / MAX_SIDE)
    if factor <= 1:
        return img
    if img.mode.startswith("I;16"):
        img = img.convert("I")  # keeps the 16-bit values; _intensities scales "I" by 65535 too
    elif img.mode not in _REDUCIBLE:
        transparent = img.mode in ("PA", "P") and ("transparency" in img.info or img.mode == "PA")
        img = img.convert("RGBA" if transparent else "RGB" if img.mode in ("P", "CMYK", "YCbCr") else "L")
    return img.reduce(factor)


def _intensities(img: Image.Image, channels: int, name: str = "image") -> np.ndarray:
    """A decoded Pillow image as float32 [0, 1] grey (H, W) or RGB (H, W, 3); DataError for NaN pixels."""
    if img.mode in _WIDE_MODES or img.mode == "F":
        # convert("L") would clip these to 0..255 (16-bit) or truncate them (float): scale them instead.
        white = _WIDE_MODES.get(img.mode, 1.0)
        grey = np.asarray(img, np.float32) / np.float32(white)
        bad = int(np.count_nonzero(np.isnan(grey)))
        if bad:  # NaN would propagate to every probability
            raise DataError(f"{name}: the image holds NaN pixels ({bad:,} of {grey.size:,})")
        grey = np.clip(grey, 0.0, 1.0, out=grey)
        return grey if channels == 1 else np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    pixels = np.asarray(img.convert("L" if channels == 1 else "RGB"), np.float32)
    return pixels / np.float32(255.0)


def preprocess_image(pixels: np.ndarray, input_shape, normalization: dict,
                     dataset=None, margin: float | None = None) -> tuple[np.ndarray, bool]:
    """Turn intensities from ``load_image`` into one model input (steps: the module docstring).

    Parameters
    ----------
    pixels : ndarray, float, shape (H, W) or (H, W, C), values in [0, 1], any size
    input_shape : (C, h, w), the model's input (``model.input_shape``)
    normalization : dict with ``mean`` and ``std`` of the [0, 1]-scaled training pixels
        (a number, or one per channel), as stored in a model file
    dataset : str, optional
        The model's data set (``meta["dataset"]``); picks the margin (``MARGINS``).
    margin : float in [0, 0.5), optional
        Blank border per side as a fraction of the side; overrides ``dataset``'s.

    Returns
    -------
    x : ndarray, float32, shape (C, h, w)
    inverted : bool, whether the image had a light background and was inverted

    Raises
    ------
    ValueError
        If ``pixels`` has another number of channels than ``input_shape[0]``.
    """
    pixels = np.asarray(pixels, np.float32)
    c, th, tw = (int(s) for s in input_shape)
    found = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.ndim not in (2, 3) or found != c:
        raise ValueError(f"the model takes {c}-channel images, got pixels of shape {pixels.shape}")
    margin = margin_for(dataset) if margin is None else margin
    inverted = False
    if c == 1:
        grey = pixels if pixels.ndim == 2 else pixels[..., 0]
        inverted = bool(np.median(_border(grey)) > LIGHT)
        if inverted:
            grey = 1.0 - grey
        if grey.shape != (th, tw):
            grey = _frame(grey, th, tw, margin, by_mass=dataset in CENTRE_OF_MASS)
        chw = grey[None]
    else:
        if pixels.shape[:2] != (th, tw):
            pixels = np.stack([_resize(pixels[..., i], th, tw) for i in range(c)], axis=2)
        chw = np.moveaxis(pixels, 2, 0)
    mean = np.asarray(normalization["mean"], np.float32).reshape(-1, 1, 1)
    std = np.asarray(normalization["std"], np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((chw - mean) / std, np.float32), inverted


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def _resize(plane: np.ndarray, th: int, tw: int) -> np.ndarray:
    """A float32 [0, 1] plane resized to (th, tw) with Pillow's Lanczos filter, in float (no 8-bit rounding)."""
    resized = Image.fromarray(np.ascontiguousarray(plane, np.float32), "F").resize(
        (tw, th), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0.0, 1.0)  # Lanczos rings slightly past the input's range


def _frame(grey: np.ndarray, th: int, tw: int, margin: float, by_mass: bool = False) -> np.ndarray:
    """Crop a dark-background image to its object, pad it to (th, tw)'s ratio plus ``margin``, resize.

    The object is centred by its bounding box, or with ``by_mass`` by its centre of mass
    (intensity-weighted), kept inside the frame, as MNIST's digits were (LeCun et al.).
    """
    mask = np.abs(grey - np.median(_border(grey))) > TRIM
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    del mask
    if rows.size:  # a blank image has no object to crop to
        grey = grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = grey.shape
    if max(h, w) > MAX_SIDE:  # padding to the frame's shape would cost the square of the longer side
        scale = MAX_SIDE / max(h, w)
        grey = _resize(grey, max(1, round(h * scale)), max(1, round(w * scale)))
        h, w = grey.shape
    per_pixel = max(h / (th * (1 - 2 * margin)), w / (tw * (1 - 2 * margin)))  # source pixels per output pixel
    ph, pw = max(h, round(th * per_pixel)), max(w, round(tw * per_pixel))
    padded = np.zeros((ph, pw), np.float32)
    top, left = (ph - h) // 2, (pw - w) // 2
    total = float(grey.sum())
    if by_mass and total > 0:
        # Put the centre of mass on the frame's centre (pixel centres at i + 0.5).
        cy = float((grey.sum(axis=1) * (np.arange(h) + 0.5)).sum()) / total
        cx = float((grey.sum(axis=0) * (np.arange(w) + 0.5)).sum()) / total
        top = min(max(round(ph / 2 - cy), 0), ph - h)
        left = min(max(round(pw / 2 - cx), 0), pw - w)
    padded[top:top + h, left:left + w] = grey
    return _resize(padded, th, tw)
