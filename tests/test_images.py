"""``scratchcnn.data.images``: decoding 8-bit, 16-bit and float images to the same [0, 1] intensities."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from scratchcnn.errors import DataError
from scratchcnn.data.images import load_image, preprocess_image


@pytest.fixture
def picture():
    """A 32x24 grey picture with every 8-bit level present, as uint8."""
    return (np.arange(32 * 24).reshape(32, 24) % 256).astype(np.uint8)


def encoded(array, fmt, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, fmt)
    return buffer.getvalue()


def test_8_bit_16_bit_and_float_images_give_the_same_intensities(picture, tmp_path):
    expected = picture.astype(np.float32) / 255
    # 16-bit PNG: the same picture at 257x (65535 = 255 * 257), which convert("L") would clip to 255.
    wide = picture.astype(np.uint16) * 257
    path16 = tmp_path / "wide.png"
    path16.write_bytes(encoded(wide, "PNG"))
    assert Image.open(path16).mode == "I;16"
    floats = encoded(expected, "TIFF", "F")  # a float TIFF, which convert("L") reads as blank (0 or 1)
    for source in (encoded(picture, "PNG"), path16, floats, io.BytesIO(floats)):
        got = load_image(source)
        assert got.dtype == np.float32 and got.shape == (32, 24)
        np.testing.assert_allclose(got, expected, atol=1e-6)
    rgb = load_image(path16, channels=3)
    assert rgb.shape == (32, 24, 3) and np.array_equal(rgb[..., 1], load_image(path16))


def test_transparency_is_white_and_rgb_keeps_colours(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest is transparent
    pixels = load_image(encoded(rgba, "PNG", "RGBA"), channels=3)
    assert pixels[0, 0].tolist() == [1.0, 0.0, 0.0] and np.all(pixels[1:] == 1.0)
    grey = load_image(encoded(rgba, "PNG", "RGBA"))
    assert grey[0, 0] == pytest.approx(76 / 255) and np.all(grey[1:] == 1.0)  # 601-2 luma of red: 76


def test_unreadable_images_are_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="is a folder"):
        load_image(tmp_path)
    with pytest.raises(DataError, match="image: cannot read the image"):
        load_image(b"not an image")


def test_preprocess_scales_16_bit_like_8_bit_and_rgb_per_channel(picture):
    norm = {"mean": 0.5, "std": 0.25}
    eight = preprocess_image(picture.astype(np.float32) / 255, (1, 28, 28), norm)
    sixteen = preprocess_image((picture.astype(np.float32) * 257) / 65535, (1, 28, 28), norm)
    np.testing.assert_allclose(eight[0], sixteen[0], atol=1e-5)
    assert eight[1] == sixteen[1]
    colour = np.zeros((10, 10, 3), np.float32)
    colour[..., 0] = 1.0
    x, inverted = preprocess_image(colour, (3, 5, 5), {"mean": [0.5, 0.0, 0.0], "std": [0.5, 1.0, 1.0]})
    assert x.shape == (3, 5, 5) and not inverted
    np.testing.assert_allclose(x[0], 1.0, atol=1e-5)
    np.testing.assert_allclose(x[1:], 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="takes 3-channel images"):
        preprocess_image(colour[..., 0], (3, 5, 5), norm)


def test_mnist_framing_centres_the_centre_of_mass():
    # A "7": a long top bar and a slanted stem, so its mass sits high in its bounding box.
    seven = np.ones((200, 150), np.float32)
    seven[20:34, 10:140] = 0
    for row in range(34, 190):
        col = 130 - (row - 34) * 80 // 156
        seven[row, col - 6:col + 6] = 0
    norm = {"mean": 0.0, "std": 1.0}
    mnist = preprocess_image(seven, (1, 28, 28), norm, dataset="mnist")[0][0]
    boxed = preprocess_image(seven, (1, 28, 28), norm, margin=4 / 28)[0][0]  # the same frame, box-centred

    def centre(x):
        rows, cols = np.indices(x.shape) + 0.5
        return (rows * x).sum() / x.sum(), (cols * x).sum() / x.sum()

    # The centre of mass lands on the middle (to the rounding of one source pixel and Lanczos),
    # which a box-centred frame misses by 2 pixels; none of the digit is cut off by the frame.
    assert np.allclose(centre(mnist), (14, 14), atol=0.5)
    assert centre(boxed)[0] < 12.2
    assert mnist.sum() == pytest.approx(boxed.sum(), rel=0.01)
