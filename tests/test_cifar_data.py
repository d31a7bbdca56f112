"""CIFAR-10's binary version: record checks, search, pooch downloads from a local HTTP server, splits.

Everything runs on a synthetic archive in the official layout (``tests/cifar_fake.py``): this
machine cannot reach the real data set.
"""
from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchcnn.data import CIFAR_DATASETS, load_dataset, locate, parse_records, read_records
from scratchcnn.data import datasets as datasets_module
from scratchcnn.data.sources import download, find_or_download
from scratchcnn.errors import DataError
from tests import cifar_fake

PER_FILE = 50  # records per synthetic file: small, since only the layout is under test here


# ----------------------------------------------------------------------------- records

def test_records_reshape_to_nchw_planes_in_rgb_order():
    label, red, green, blue = 7, np.full(1024, 1), np.full(1024, 2), np.arange(1024) % 256
    raw = bytes([label]) + bytes(red.tolist()) + bytes(green.tolist()) + bytes(blue.tolist())
    images, labels = parse_records(raw * 2, "two.bin")
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [7, 7] and labels.dtype == np.int64
    assert images[1, 0].max() == 1 and images[1, 1].min() == 2
    assert images[0, 2, 0, :3].tolist() == [0, 1, 2] and images[0, 2, 1, 0] == 32  # row-major planes


@pytest.mark.parametrize("mutate,message", [
    (lambda raw: b"", "empty file"),
    (lambda raw: raw[:-1], "6145 bytes is not a whole number of 3073-byte records (1 records and 3072 bytes over"),
    (lambda raw: raw + b"\x00", "not a whole number"),
    (lambda raw: raw[:3073] + b"\x0a" + raw[3074:], "record 1 has label byte 10, expected 0..9"),
])
def test_broken_record_files_are_refused_naming_the_file(mutate, message):
    raw = bytes(2 * 3073)
    with pytest.raises(DataError, match="batch.bin") as info:
        parse_records(mutate(raw), "batch.bin")
    assert message in str(info.value)


def test_record_count_is_checked():
    with pytest.raises(DataError, match="x.bin: 2 records, expected 10000"):
        parse_records(bytes(2 * 3073), "x.bin", records=10000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=7000))
def test_fuzz_records(raw):
    try:
        images, labels = parse_records(raw, "fuzz")
        assert len(images) == len(labels) >= 1 and labels.max() <= 9
    except DataError:
        pass


def test_the_synthetic_records_are_in_the_official_layout(tmp_path):
    folder = cifar_fake.write_folder(tmp_path, per_file=PER_FILE)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["batches.meta.txt", "readme.html", "test_batch.bin"] + [f"data_batch_{i}.bin" for i in range(1, 6)])
    assert (folder / "data_batch_1.bin").stat().st_size == PER_FILE * 3073
    images, labels = read_records(folder / "test_batch.bin", records=PER_FILE)
    assert np.bincount(labels, minlength=10).tolist() == [PER_FILE // 10] * 10
    names = (folder / "batches.meta.txt").read_text().split()
    assert tuple(names) == CIFAR_DATASETS["cifar10"].class_names


# ----------------------------------------------------------------------------- loading

@pytest.fixture
def fake_registry(monkeypatch):
    """CIFAR-10's registry entry with the synthetic files' record count (the only difference)."""
    info = cifar_fake.fake_info(PER_FILE)
    monkeypatch.setitem(datasets_module.CIFAR_DATASETS, "cifar10", info)
    return info


def test_load_cifar10_splits_and_normalises_per_channel(tmp_path, fake_registry):
    cifar_fake.write_folder(tmp_path, per_file=PER_FILE)
    d = load_dataset("cifar10", tmp_path, val_fraction=0.1, seed=0, progress=False)
    assert d.x_train.shape == (225, 3, 32, 32) and d.x_val.shape == (25, 3, 32, 32)
    assert d.x_test.shape == (50, 3, 32, 32) and d.x_train.dtype == np.float32
    assert d.input_shape == (3, 32, 32) and d.class_names[0] == "airplane" and d.class_names[9] == "truck"
    assert len(d.mean) == 3 and len(d.std) == 3
    # Per-channel statistics of the training split: each standardised channel has mean 0, std 1.
    np.testing.assert_allclose(d.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(d.x_train.std(axis=(0, 2, 3)), 1, atol=1e-5)
    # The histogram statistics equal NumPy's on the raw pixels of the same images.
    raw = np.concatenate([read_records(tmp_path / cifar_fake.FOLDER / f"data_batch_{i}.bin")[0]
                          for i in range(1, 6)])
    pixels = raw.astype(np.float64) / 255
    recomputed = datasets_module.pixel_statistics(raw, 255.0)
    np.testing.assert_allclose(recomputed[0], pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(recomputed[1], pixels.std(axis=(0, 2, 3)), rtol=1e-12)


def test_a_corrupt_record_file_on_disk_is_named(tmp_path, fake_registry):
    folder = cifar_fake.write_folder(tmp_path, per_file=PER_FILE)
    victim = folder / "data_batch_3.bin"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_3.bin: .* not a whole number of 3073-byte records"):
        load_dataset("cifar10", tmp_path, progress=False)


def test_the_real_record_count_is_required(tmp_path):
    cifar_fake.write_folder(tmp_path, per_file=PER_FILE)
    with pytest.raises(DataError, match=f"data_batch_1.bin: {PER_FILE} records, expected 10000"):
        load_dataset("cifar10", tmp_path, progress=False)


def test_missing_cifar_offline_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"CIFAR-10 not found \(looked in .*cifar-10-batches-bin.*\) and "
                                        r"SCRATCHCNN_OFFLINE=1 forbids downloading; put the files of "
                                        r"cifar-10-binary.tar.gz \(cifar-10-batches-bin/: data_batch_1.bin"):
        # An existing but empty folder: a folder that does not exist is its own error (--data-dir checks).
        (tmp_path / "empty").mkdir()
        load_dataset("cifar10", tmp_path / "empty", progress=False)


# ----------------------------------------------------------------------------- downloading (never the network)

@pytest.fixture
def cifar_mirror(tmp_path):
    """A local HTTP server. /good/: the synthetic archive; /bad/: its first half; /missing/: 404;
    /badlabel/: an archive with a label byte out of range; /nofile/: one without test_batch.bin."""
    root = tmp_path / "www"
    name = CIFAR_DATASETS["cifar10"].archive
    for sub in ("good", "bad", "badlabel", "nofile", "missing"):
        (root / sub).mkdir(parents=True)
    hashes = {"good": cifar_fake.write_archive(root / "good" / name, PER_FILE)}
    full = (root / "good" / name).read_bytes()
    (root / "bad" / name).write_bytes(full[: len(full) // 2])
    members = cifar_fake.archive_members(PER_FILE)
    broken = bytearray(members["data_batch_2.bin"])
    broken[3073 * 7] = 200
    hashes["badlabel"] = cifar_fake.write_archive(root / "badlabel" / name,
                                                  members={**members, "data_batch_2.bin": bytes(broken)})
    hashes["nofile"] = cifar_fake.write_archive(
        root / "nofile" / name, members={k: v for k, v in members.items() if k != "test_batch.bin"})

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hashes
    server.shutdown()


def test_download_tries_mirrors_in_turn_checks_md5_and_records(cifar_mirror, tmp_path):
    url, hashes = cifar_mirror
    info = cifar_fake.fake_info(PER_FILE, hashes["good"])
    dest = tmp_path / "cache"
    paths = download(info, dest, mirrors=(f"{url}/missing/", f"{url}/bad/", f"{url}/good/"),
                     progress=False, retries=0)
    assert sorted(p.name for p in dest.iterdir()) == sorted(info.file_names())  # no archive, no temporary
    images, labels = read_records(paths["test_batch.bin"], records=PER_FILE)
    expected = cifar_fake.archive_members(PER_FILE)["test_batch.bin"]
    assert images.tobytes() == np.frombuffer(expected, np.uint8).reshape(PER_FILE, 3073)[:, 1:].tobytes()


def test_download_failures_are_each_named_and_leave_nothing(cifar_mirror, tmp_path):
    url, hashes = cifar_mirror
    dest = tmp_path / "cache"
    info = cifar_fake.fake_info(PER_FILE, hashes["good"])
    with pytest.raises(DataError) as caught:
        download(info, dest, mirrors=(f"{url}/missing/", f"{url}/bad/"), progress=False, retries=0)
    message = str(caught.value)
    assert f"{url}/missing/cifar-10-binary.tar.gz: HTTP 404" in message
    assert f"{url}/bad/cifar-10-binary.tar.gz: MD5 hash of downloaded file" in message
    assert f"put the files of cifar-10-binary.tar.gz (cifar-10-batches-bin/" in message
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("mirror,message", [
    ("badlabel", "data_batch_2.bin: record 7 has label byte 200, expected 0..9"),
    ("nofile", "the archive holds no cifar-10-batches-bin/test_batch.bin"),
])
def test_every_record_of_a_download_is_checked(cifar_mirror, tmp_path, mirror, message):
    url, hashes = cifar_mirror
    info = cifar_fake.fake_info(PER_FILE, hashes[mirror])  # the checksum matches: only the records are wrong
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match=message):
        download(info, dest, mirrors=(f"{url}/{mirror}/",), progress=False, retries=0)
    assert list(dest.iterdir()) == []


def test_missing_cifar_with_downloads_allowed_goes_to_the_cache(cifar_mirror, tmp_path, monkeypatch):
    url, hashes = cifar_mirror
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHCNN_DATA")
    monkeypatch.delenv("SCRATCHCNN_OFFLINE")
    info = cifar_fake.fake_info(PER_FILE, hashes["good"], mirrors=(f"{url}/good/",))
    paths = find_or_download(info, None, progress=False)
    assert paths["data_batch_1.bin"].parent == tmp_path / "cache" / "scratchcnn" / "cifar-10-batches-bin"
    assert locate(info) == paths  # the next run finds them in the cache
