"""Checks of notebook 1's exercises: reading an IDX header, standardising with training statistics."""
from __future__ import annotations

import numpy as np

from exercises import ExerciseFailed, checker, expect, expect_close, run_answer
from scratchcnn.data import idx as idx_module
from scratchcnn.data import datasets as datasets_module
from scratchcnn.data import normalize

# The framework's own readers and standardisation: an answer must not call them.
FORBID_1_1 = {"scratchcnn.data.idx (parse_idx, read_idx)": idx_module}
FORBID_1_2 = {"scratchcnn.data.normalize / load_dataset / pixel_statistics": datasets_module}


@checker("1.1")
def idx_header(answer):
    """``answer(raw: bytes) -> (type_code, shape)`` on three made-up headers, one with a size above 65,535."""
    for shape in ((60000, 28, 28), (10000,), (3, 70000, 5)):
        raw = bytes([0, 0, 0x08, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape) + bytes(5)
        got = run_answer(answer, raw, forbid=FORBID_1_1)
        expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (type_code, shape), got {got!r}")
        code, got_shape = got
        expect(int(code) == 0x08, f"header of an array of shape {shape}: type code {code}, expected 8 (byte 2)")
        got_shape = tuple(int(s) for s in got_shape)
        little = tuple(int.from_bytes(s.to_bytes(4, "big"), "little") for s in shape)
        expect(got_shape != little, f"header of an array of shape {shape}: you read {got_shape}, the sizes as "
                                    "little-endian integers; IDX stores them big-endian (most significant byte first)")
        expect(len(got_shape) == len(shape), f"header of an array of shape {shape}: you read {len(got_shape)} "
                                             f"size(s); byte 3 says how many follow ({len(shape)} here)")
        expect(got_shape == shape, f"header of an array of shape {shape}: you read {got_shape}; after the 4 first "
                                   "bytes come d sizes, each a big-endian 4-byte unsigned integer")
    return "type code and sizes read correctly from headers of 1, 3 and 3 dimensions (one size above 65,535)"


@checker("1.2")
def standardise(answer):
    """``answer(train, test) -> (train', test')``: float32 (N, 1, H, W), statistics of the training images only."""
    rng = np.random.default_rng(1)
    train = rng.integers(0, 200, (50, 6, 6)).astype(np.uint8)
    test = (train[:20] + 50).astype(np.uint8)  # brighter than the training images, so a leak shows
    pixels = train.astype(np.float64) / 255
    mean, std = pixels.mean(), pixels.std()
    got = run_answer(answer, train, test, forbid=FORBID_1_2)
    expect(isinstance(got, tuple) and len(got) == 2, f"expected a tuple (train, test), got {type(got).__name__}")
    for name, array, raw in (("training images", got[0], train), ("test images", got[1], test)):
        array = np.asarray(array)
        expect(array.dtype == np.float32, f"{name}: dtype {array.dtype}, expected float32 (what the network trains on)")
        expect(array.shape == (len(raw), 1) + raw.shape[1:],
               f"{name}: shape {array.shape}, expected {(len(raw), 1) + raw.shape[1:]}: add the channel axis (NCHW)")
        want = normalize(raw, 255.0, mean, std)
        if not np.allclose(array, want, atol=1e-5):
            both = np.concatenate([train, test]).astype(np.float64) / 255
            if np.allclose(array, normalize(raw, 255.0, both.mean(), both.std()), atol=1e-5):
                raise ExerciseFailed(f"{name}: you computed the mean and standard deviation over training and "
                                     "test images together (a test-set leak); only the training images may be used")
            own = raw.astype(np.float64) / 255
            if name == "test images" and np.allclose(array, normalize(raw, 255.0, own.mean(), own.std()), atol=1e-5):
                raise ExerciseFailed("test images: you standardised them with their own mean and standard deviation "
                                     "(a test-set leak); apply the training images' statistics to both sets")
        if np.allclose(array, raw[:, None] / 255, atol=1e-5):
            raise ExerciseFailed(f"{name}: scaled to [0, 1] but not standardised: subtract the training mean and "
                                 "divide by the training standard deviation")
        expect_close(name, array, want, rtol=1e-5, atol=1e-5)
    return "float32 (N, 1, H, W), training mean 0 and std 1, test images standardised with the training statistics"
