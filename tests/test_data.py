"""The data pipeline: IDX parsing and its errors, where files are looked for, downloading, splits."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchcnn.data import IDX_DATASETS, load_dataset, locate, parse_idx, read_idx
from scratchcnn.data.sources import candidate_dirs, download, find_or_download
from scratchcnn.errors import ConfigError, DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # ../shared/data/README.md
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


# ----------------------------------------------------------------------------- parsing

def test_parse_valid_idx():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a), "x.idx", (2, 3, 4), "u1"), a)
    b = np.array([1.5, -2.0], ">f4")
    np.testing.assert_array_equal(parse_idx(idx_bytes(b, 0x0D), "f.idx"), [1.5, -2.0])


@pytest.mark.parametrize("mutate,message", [
    (lambda raw: raw[:3], "truncated: 3 bytes"),
    (lambda raw: b"\x01" + raw[1:], "bad magic number"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "unknown IDX element type 0x07"),
    (lambda raw: raw[:3] + b"\x00" + raw[4:], "declares 0 dimensions"),
    (lambda raw: raw[:6], "truncated header"),
    (lambda raw: raw[:-1], "truncated: the header promises 24 bytes of data, the file has 23"),
    (lambda raw: raw + b"\x00\x00", "2 unexpected bytes after"),
])
def test_parse_rejects_broken_files_naming_them(mutate, message):
    raw = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(DataError, match="broken.idx") as info:
        parse_idx(mutate(raw), "broken.idx")
    assert message in str(info.value)


def test_parse_checks_expected_shape_dtype_and_checksum():
    raw = idx_bytes(np.zeros((2, 3), np.uint8))
    with pytest.raises(DataError, match=r"dimensions \(2, 3\) in the header, expected \(60000, 28, 28\)"):
        parse_idx(raw, "f", (60000, 28, 28))
    with pytest.raises(DataError, match="element type int8, expected uint8"):
        parse_idx(idx_bytes(np.zeros(3, np.int8), 0x09), "f", None, "u1")
    with pytest.raises(DataError, match="SHA-256 of the decompressed data is"):
        parse_idx(raw, "f", sha256="0" * 64)
    assert parse_idx(raw, "f", sha256=hashlib.sha256(raw).hexdigest()).shape == (2, 3)


def test_read_idx_handles_gzip_and_reports_corrupt_gzip(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    good = tmp_path / "a.gz"
    good.write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(good), a)
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(good.read_bytes()[:-6])
    with pytest.raises(DataError, match="t.gz: corrupt or truncated gzip"):
        read_idx(truncated)
    with pytest.raises(DataError, match="missing.gz: cannot read"):
        read_idx(tmp_path / "missing.gz")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_parse_idx_random_bytes(raw):
    """Whatever the bytes, the parser returns an array or raises DataError: nothing else escapes."""
    try:
        parse_idx(raw, "fuzz")
    except DataError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)), max_size=6), st.integers(0, 40))
def test_fuzz_parse_idx_mutated_valid_files(edits, cut):
    raw = bytearray(idx_bytes(np.arange(30, dtype=np.uint8).reshape(5, 6)))
    for pos, value in edits:
        if pos < len(raw):
            raw[pos] = value
    raw = bytes(raw[:len(raw) - cut])
    try:
        out = parse_idx(raw, "fuzz", (5, 6), "u1")
        assert out.shape == (5, 6)
    except DataError:
        pass


# ----------------------------------------------------------------------------- the real files

def test_real_mnist_matches_the_published_label_counts(data_dir):
    info = IDX_DATASETS["mnist"]
    paths = locate(info, data_dir)
    labels = read_idx(paths["train_labels"], (60000,), "u1", info.files["train_labels"].sha256)
    assert np.bincount(labels).tolist() == MNIST_TRAIN_COUNTS
    test = read_idx(paths["test_labels"], (10000,), "u1", info.files["test_labels"].sha256)
    assert np.bincount(test).tolist() == MNIST_TEST_COUNTS


def test_real_fashion_is_balanced(data_dir):
    paths = locate(IDX_DATASETS["fashion"], data_dir)
    assert np.bincount(read_idx(paths["train_labels"])).tolist() == [6000] * 10
    assert np.bincount(read_idx(paths["test_labels"])).tolist() == [1000] * 10


# ----------------------------------------------------------------------------- where files are looked for

def _link_dataset(folder: Path, source: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        (folder / f.name).symlink_to(f)


def test_search_order(tmp_path, data_dir, monkeypatch):
    info = IDX_DATASETS["fashion"]
    explicit, env, cache, system = (tmp_path / n for n in ("explicit", "env", "cache", "system"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("SCRATCHCNN_DATA", str(env))
    info = dataclasses.replace(info, system_dirs=(str(system),))
    dirs = candidate_dirs(info, explicit)
    assert dirs == [explicit / "fashion-mnist", explicit, env / "fashion-mnist", env,
                    cache / "scratchcnn" / "fashion-mnist", system]
    assert locate(info, explicit) is None
    for folder in (system, cache / "scratchcnn" / "fashion-mnist", env, explicit / "fashion-mnist"):
        _link_dataset(folder, data_dir / "fashion-mnist")
        found = locate(info, explicit)
        assert found["train_images"].parent == folder  # the newest, higher-priority folder wins


def test_incomplete_folder_is_skipped(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHCNN_DATA")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train-images-idx3-ubyte.gz").symlink_to(data_dir / "mnist" / "train-images-idx3-ubyte.gz")
    info = dataclasses.replace(IDX_DATASETS["mnist"], system_dirs=())
    assert locate(info, partial) is None
    with pytest.raises(DataError, match="MNIST not found .*partial.*SCRATCHCNN_OFFLINE=1 forbids"):
        find_or_download(info, partial)


# ----------------------------------------------------------------------------- downloading (never the network)

@pytest.fixture
def local_mirror(tmp_path, data_dir):
    """A local HTTP server: /good/ serves the real MNIST files, /bad/ truncated copies, /missing/ 404s."""
    root = tmp_path / "www"
    _link_dataset(root / "good", data_dir / "mnist")
    (root / "bad").mkdir()
    for f in (data_dir / "mnist").iterdir():
        (root / "bad" / f.name).write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_tries_mirrors_in_turn_and_verifies(local_mirror, tmp_path):
    info = IDX_DATASETS["mnist"]
    dest = tmp_path / "cache"
    mirrors = (f"{local_mirror}/missing/", f"{local_mirror}/bad/", f"{local_mirror}/good/")
    paths = download(info, dest, mirrors=mirrors, progress=False, retries=0)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{f.name}.gz" for f in info.files.values())
    labels = read_idx(paths["train_labels"], (60000,), "u1", info.files["train_labels"].sha256)
    assert np.bincount(labels).tolist() == MNIST_TRAIN_COUNTS


def test_download_failure_leaves_nothing_and_says_where_to_put_files(local_mirror, tmp_path):
    dest = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        download(IDX_DATASETS["mnist"], dest, mirrors=(f"{local_mirror}/missing/", f"{local_mirror}/bad/"),
                 progress=False, retries=0)
    message = str(info.value)
    assert "404" in message and "truncated" in message and f"put the four files in {dest}" in message
    assert list(dest.iterdir()) == []  # no partial or temporary file survives


def test_download_from_an_unreachable_mirror_says_why(tmp_path):
    """Nothing listens on port 1 of this machine: the refused connection is named, nothing is left."""
    with pytest.raises(DataError, match=r"127\.0\.0\.1:1/train-images-idx3-ubyte\.gz: \[Errno 111\] Connection refused"):
        download(IDX_DATASETS["fashion"], tmp_path, mirrors=("http://127.0.0.1:1/",), progress=False, retries=0)
    assert list(tmp_path.iterdir()) == []


def test_missing_dataset_with_downloads_allowed_goes_to_the_mirrors(tmp_path, monkeypatch, local_mirror):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHCNN_DATA")
    monkeypatch.delenv("SCRATCHCNN_OFFLINE")
    info = dataclasses.replace(IDX_DATASETS["mnist"], mirrors=(f"{local_mirror}/good/",), system_dirs=())
    paths = find_or_download(info, None, progress=False)
    assert paths["test_images"].parent == tmp_path / "cache" / "scratchcnn" / "mnist"
    assert locate(info) == paths  # the next run finds them in the cache


# ----------------------------------------------------------------------------- splits and normalisation

def test_load_dataset_splits_and_normalises(data_dir):
    d = load_dataset("mnist", data_dir, val_fraction=0.1, seed=0, progress=False)
    assert d.x_train.shape == (54000, 1, 28, 28) and d.x_train.dtype == np.float32
    assert d.x_val.shape == (6000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.y_train.dtype == np.int64
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-4
    assert 0.1 < d.mean < 0.15  # MNIST's mean pixel is about 0.1307
    # Stratified: every class keeps its share in the validation split.
    share_all = np.bincount(np.concatenate([d.y_train, d.y_val])) / 60000
    np.testing.assert_allclose(np.bincount(d.y_val) / 6000, share_all, atol=2e-3)
    # The split is a random one: validation images come from all over the file, not its end.
    raw = read_idx(locate(IDX_DATASETS["mnist"], data_dir)["train_images"])
    last = (raw[-6000:].astype(np.float32) / 255 - d.mean) / d.std
    assert not np.array_equal(np.sort(last.reshape(6000, -1).sum(1)), np.sort(d.x_val.reshape(6000, -1).sum(1)))


def test_train_limit_digits_and_bad_arguments(data_dir):
    d = load_dataset("fashion", data_dir, train_limit=1000, val_fraction=0.2, progress=False)
    assert len(d.y_train) == 800 and len(d.y_val) == 200
    digits = load_dataset("digits", val_fraction=0.0)
    assert digits.x_train.shape[1:] == (1, 8, 8) and len(digits.y_val) == 0 and len(digits.y_test) == 360
    with pytest.raises(ConfigError, match="unknown data set 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\)"):
        load_dataset("digits", val_fraction=1.5)


def test_load_dataset_rejects_a_corrupt_file_naming_it(tmp_path, data_dir):
    folder = tmp_path / "fashion-mnist"
    _link_dataset(folder, data_dir / "fashion-mnist")
    victim = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(victim.read_bytes()))
    victim.unlink()
    data[100] ^= 1  # one flipped bit: structure intact, checksum wrong
    victim.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        load_dataset("fashion", tmp_path, progress=False)
