"""Image folders as a data set (``--dataset folder``): scanning, the uint8 cache, streamed splits,
bad files, the tools downstream, and the round trip from a built-in data set and back."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from scratchcnn.data import load_dataset, normalize
from scratchcnn.data.folder import cache as folder_cache
from scratchcnn.data.folder import load_folder
from scratchcnn.data.images import load_image, preprocess_image
from scratchcnn.data.streaming import NormalizedRows, channel_histograms, histogram_statistics
from scratchcnn.to_folder import write_folder
from scratchcnn.errors import ConfigError, DataError
from scratchcnn.files.serialization import load_model
from scratchcnn.train import main

QUIET = ["--backend", "cpu", "--no-progress", "--batch-size", "8"]


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Each test gets its own user cache folder (platformdirs reads XDG_CACHE_HOME)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def _mixed_folder(root, rng, per_class=8):
    """Three classes of PNG/JPEG/BMP images of mixed sizes, grey and colour; each class has its
    own brightness so a model can learn it; plus the usual bad files."""
    for c, name in enumerate(["cat", "dog", "fox"]):
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(9, 30, 2))
            base = 40 + 80 * c
            colour = np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            image = colour if i % 2 else colour[..., 0]
            _save(root / name / f"{i:02d}.{['png', 'jpg', 'bmp'][i % 3]}", image)
    (root / "empty").mkdir()
    (root / "cat" / "corrupt.png").write_bytes((root / "cat" / "00.png").read_bytes()[:60])  # truncated
    (root / "dog" / "fake.jpg").write_text("not an image at all")
    (root / "dog" / "notes.txt").write_text("ignored: not an image extension")
    os.symlink("loop.png", root / "fox" / "loop.png")  # a link to itself: ELOOP
    return root


def test_main_job_trains_on_a_mixed_folder_and_the_tools_follow(tmp_path, capsys):
    root = _mixed_folder(tmp_path / "photos", np.random.default_rng(0), per_class=10)
    out = tmp_path / "run"
    assert main(["--dataset", "folder", "--data-dir", str(root), "--epochs", "2", "--image-size", "12",
                 "--out", str(out)] + QUIET) == 0
    log = capsys.readouterr().out
    for bad in ("empty/: class folder holds no images", "cat/corrupt.png: cannot read the image",
                "dog/fake.jpg: cannot read the image", "fox/loop.png: symbolic link loop"):
        assert sum(bad in line for line in log.splitlines()) == 1, bad
    assert "skipped 4 file(s) or folder(s)" in log and "ignored 1 file(s)" in log
    metrics = json.loads((out / "metrics.json").read_text())
    counts = metrics["class_counts"]
    assert sorted(counts["train"]) == ["cat", "dog", "fox"]
    assert sum(sum(split.values()) for split in counts.values()) == 30  # 10 per class, bad ones left out
    assert counts["test"] == {"cat": 2, "dog": 2, "fox": 2}  # 0.2 of each class, stratified
    assert metrics["data"]["channels"] == 3 and metrics["data"]["skipped_files"] == 4
    model, meta = load_model(out / "model.npz")
    assert model.input_shape == (3, 12, 12) and meta["class_names"] == ["cat", "dog", "fox"]
    assert meta["preprocessing"] == "resize" and meta["folder"]["path"] == str(root.resolve())

    # predict prepares an image exactly as the cache holds it (up to 8-bit rounding)
    from scratchcnn.predict import predict_image

    result = predict_image(model, meta, root / "fox" / "03.png")
    assert result.top[0][0] in meta["class_names"]
    cached = folder_cache.decode_entry(root / "fox" / "03.png", (3, 12, 12)).astype(np.float32) / 255
    x, inverted = preprocess_image(load_image(root / "fox" / "03.png", 3), (3, 12, 12), meta["normalization"],
                                   resize_only=True)
    mean, std = (np.asarray(meta["normalization"][k], np.float32).reshape(-1, 1, 1) for k in ("mean", "std"))
    assert not inverted and np.abs(x * std + mean - cached).max() <= 0.5 / 255 + 1e-6

    from scratchcnn.evaluate import evaluate_saved_model

    again = evaluate_saved_model(out, progress=False, log=lambda *a: None)
    assert again["test_accuracy"] == metrics["test_accuracy"] and again["test_loss"] == metrics["test_loss"]
    from scratchcnn.errors import ModelFileError
    from scratchcnn.files.serialization import MODEL_FORMAT, read_archive, write_archive

    stored, arrays = read_archive(out / "model.npz", MODEL_FORMAT)
    stored["folder"] = {**stored["folder"], "image_size": [12, 99999]}
    write_archive(tmp_path / "crafted.npz", stored, arrays)
    with pytest.raises(ModelFileError, match=r"crafted.npz: field 'folder.image_size' is \[12, 99999\], expected N or HxW"):
        evaluate_saved_model(tmp_path / "crafted.npz", out=tmp_path / "e", progress=False, log=lambda *a: None)

    from scratchcnn.apps.web.service import load_served

    served = load_served([out])
    assert next(iter(served.values())).card["class_names"] == ["cat", "dog", "fox"]
    pytest.importorskip("onnx")
    from scratchcnn.export import main as export_main

    assert export_main([str(out), str(tmp_path / "model.onnx")]) == 0


def test_a_resumed_folder_run_reads_the_size_and_channels_it_chose(tmp_path, capsys):
    """The image size and channels chosen from the images are stored in the checkpoint (RunConfig), so
    --resume reads the folder the same way; a crafted value there is one line naming the option."""
    from scratchcnn.files.checkpoint import CHECKPOINT_FORMAT
    from scratchcnn.files.serialization import read_archive, write_archive

    rng = np.random.default_rng(6)
    root = tmp_path / "photos"
    for c, name in enumerate(["a", "b"]):
        for i in range(6):
            _save(root / name / f"{i}.png", np.full((10, 14), 60 + 120 * c, np.uint8) + rng.integers(0, 9, (10, 14),
                                                                                                    dtype=np.uint8))
    out = tmp_path / "run"
    assert main(["--dataset", "folder", "--data-dir", str(root), "--epochs", "1", "--out", str(out)] + QUIET) == 0
    meta, arrays = read_archive(out / "checkpoint.npz", CHECKPOINT_FORMAT)
    assert meta["config"]["image_size"] == [10, 14] and meta["config"]["channels"] == 1
    assert main(["--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == 2
    assert load_model(out / "model.npz")[0].input_shape == (1, 10, 14)
    assert main(["--resume", str(out), "--image-size", "12", "--no-progress"]) == 1
    assert "--image-size cannot be combined with --resume" in capsys.readouterr().err
    meta["config"] = {**meta["config"], "channels": 2, "epochs": 3}
    write_archive(out / "checkpoint.npz", meta, arrays)
    assert main(["--resume", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "option 'channels' is 2, expected 1 (grey) or 3 (colour) or null" in err[0], err


def test_the_cache_is_reused_then_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        for i in range(5):
            _save(root / name / f"{i}.png", rng.integers(0, 255, (10, 10), dtype=np.uint8))
    lines = []
    first = load_folder(root, val_fraction=0.0, progress=False, log=lines.append)
    assert not first.info["cache_reused"] and any(line.startswith("cached 10 images") for line in lines)
    assert "image size 10x10 (the size of every image; set it with --image-size)" in lines
    assert "channels 1 (every image is grey; set it with --channels)" in lines
    pixels = os.path.join(first.info["cache"], folder_cache.PIXELS_FILE)
    inode = os.stat(pixels).st_ino

    lines.clear()
    second = load_folder(root, val_fraction=0.0, progress=False, log=lines.append)
    assert second.info["cache_reused"] and second.info["cache"] == first.info["cache"]
    assert os.stat(pixels).st_ino == inode and any(line.startswith("using the cache") for line in lines)
    np.testing.assert_array_equal(second.x_test.materialize(), first.x_test.materialize())

    changed = rng.integers(0, 255, (10, 10), dtype=np.uint8)
    _save(root / "b" / "3.png", changed)
    os.utime(root / "b" / "3.png", ns=(1, 1))  # a new time even on a coarse-clock file system
    lines.clear()
    third = load_folder(root, val_fraction=0.0, progress=False, log=lines.append)
    assert not third.info["cache_reused"] and third.info["cache"] != first.info["cache"]
    assert "b/3.png: changed since the cache was made; reading it again" in lines
    assert any("(9 copied from the previous cache)" in line for line in lines)
    assert not os.path.exists(first.info["cache"])  # the stale cache is removed
    cached = third.x_train.pixels[7, 0]  # b/3.png is the eighth file (sorted by name, then class)
    np.testing.assert_array_equal(cached, changed)

    # Another size at the same time is a change too; a cache written before rows.json existed (its rows
    # in index.json) is still copied from.
    index_file = os.path.join(third.info["cache"], folder_cache.INDEX_FILE)
    rows_file = os.path.join(third.info["cache"], folder_cache.ROWS_FILE)
    with open(index_file) as f:
        index = json.load(f)
    with open(rows_file) as f:
        index["rows"] = json.load(f)
    with open(index_file, "w") as f:
        json.dump(index, f)
    os.remove(rows_file)
    before = os.stat(root / "a" / "1.png")
    _save(root / "a" / "1.png", np.zeros((10, 10), np.uint8))
    os.utime(root / "a" / "1.png", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(root / "a" / "1.png").st_size != before.st_size
    lines.clear()
    fourth = load_folder(root, val_fraction=0.0, progress=False, log=lines.append)
    assert not fourth.info["cache_reused"] and "a/1.png: changed since the cache was made; reading it again" in lines
    assert any("(9 copied from the previous cache)" in line for line in lines)
    np.testing.assert_array_equal(fourth.x_train.pixels[2, 0], np.zeros((10, 10), np.uint8))  # a/1.png: row 2
    np.testing.assert_array_equal(fourth.x_train.pixels[7, 0], changed)

    # A new layout of the key (another scratchcnn) finds no cache, then copies every row of the old one.
    from scratchcnn.data.folder import scan as folder_scan

    monkeypatch.setattr(folder_scan, "_KEY_FORMAT", b"another layout\0")
    lines.clear()
    fifth = load_folder(root, val_fraction=0.0, progress=False, log=lines.append)
    assert not fifth.info["cache_reused"] and fifth.info["cache"] != fourth.info["cache"]
    assert "the cache was made by another version of scratchcnn (no file changed); copying it to a new one" in lines
    assert any("(10 copied from the previous cache)" in line for line in lines)
    np.testing.assert_array_equal(fifth.x_train.pixels[:], fourth.x_train.pixels[:])


def test_a_cache_that_does_not_match_its_folder_is_one_error(tmp_path):
    """The rows of a cache are the scan's files less those it lists as skipped: a count that differs
    (a damaged index) is one line naming the cache folder, not a silent misalignment."""
    root = tmp_path / "photos"
    for name in ("a", "b"):
        for i in range(3):
            _save(root / name / f"{i}.png", np.full((6, 6), 40 * i, np.uint8))
    first = load_folder(root, val_fraction=0.0, test_fraction=0.5, progress=False, log=lambda *a: None)
    index_file = os.path.join(first.info["cache"], folder_cache.INDEX_FILE)
    with open(index_file) as f:
        index = json.load(f)
    index["skipped"] = ["a/1.png"]
    with open(index_file, "w") as f:
        json.dump(index, f)
    with pytest.raises(DataError, match=r"the image cache cannot be read \(it holds 6 images, the folder 5 once the "
                                        r"skipped files are left out\); delete that folder and run again"):
        load_folder(root, val_fraction=0.0, test_fraction=0.5, progress=False, log=lambda *a: None)


def test_an_interrupted_decode_leaves_no_cache(tmp_path, monkeypatch, cache_home):
    root = tmp_path / "photos"
    for name in ("a", "b"):
        for i in range(3):
            _save(root / name / f"{i}.png", np.full((6, 6), 50 * i, np.uint8))
    real, calls = folder_cache.decode_entry, []

    def interrupted(path, shape):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path, shape)

    monkeypatch.setattr(folder_cache, "decode_entry", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_folder(root, progress=False, log=lambda *a: None)
    assert not [p for p in cache_home.rglob(folder_cache.INDEX_FILE)]  # nothing a later run could reuse
    assert not list(cache_home.rglob(".build-*"))  # and the temporary folder is gone
    monkeypatch.setattr(folder_cache, "decode_entry", real)
    lines = []
    splits = load_folder(root, val_fraction=0.0, test_fraction=0.5, progress=False, log=lines.append)
    assert any(line.startswith("cached 6 images") for line in lines) and len(splits.y_train) == 3


def test_train_and_test_folders_and_default_size(tmp_path):
    root = tmp_path / "photos"
    rng = np.random.default_rng(2)
    for part, n in (("train", 6), ("test", 2)):
        for name in ("x", "y"):
            for i in range(n):
                _save(root / part / name / "deeper" / f"{i}.png", rng.integers(0, 255, (20 + 4 * i, 90, 3), np.uint8))
    _save(root / "test" / "z" / "0.png", np.zeros((8, 8), np.uint8))
    lines = []
    splits = load_folder(root, val_fraction=0.0, progress=False, log=lines.append)
    assert splits.class_names == ["x", "y"] and splits.input_shape[0] == 3
    side = int(np.median([20 + 4 * i for i in range(6)] * 2 + [20, 24] * 2 + [8]))  # median shorter side
    assert splits.input_shape[1:] == (side, side)
    assert len(splits.y_train) == 12 and list(splits.y_test) == [0, 1, 0, 1]  # by file name, then class
    assert "test/z/: class has no training images; its test images are skipped" in lines
    assert splits.info["test_split"] == "test/ folder"


@pytest.mark.parametrize("case, message", [
    ("nothing", "no images found"),
    ("only-bad", "none of its 1 image files can be read"),
])
def test_a_folder_without_images_is_one_error(tmp_path, capsys, case, message):
    root = tmp_path / case
    (root / "a").mkdir(parents=True)
    if case == "only-bad":
        (root / "a" / "x.png").write_text("no")
    assert main(["--dataset", "folder", "--data-dir", str(root), "--out", str(tmp_path / "run")] + QUIET) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_strict_stops_at_the_first_problem_and_options_are_checked(tmp_path, capsys):
    root = _mixed_folder(tmp_path / "photos", np.random.default_rng(3), per_class=3)
    assert main(["--dataset", "folder", "--data-dir", str(root), "--strict", "--out", str(tmp_path / "r")] + QUIET) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(--strict)" in err[0] and "empty/: class folder holds no images" in err[0]
    with pytest.raises(ConfigError, match="--dataset folder needs --data-dir"):
        from scratchcnn.train import build_parser, config_from_args

        config_from_args(build_parser().parse_args(["--dataset", "folder"]))
    with pytest.raises(ConfigError, match="--image-size applies to --dataset folder only"):
        config_from_args(build_parser().parse_args(["--dataset", "digits", "--image-size", "8"]))
    single = tmp_path / "single"
    for i in range(6):
        _save(single / "only" / f"{i}.png", np.full((5, 5), i, np.uint8))
    lines = []
    load_folder(single, progress=False, log=lines.append)
    assert "only one class (only): a classifier needs two or more class folders" in lines
    with pytest.raises(DataError, match=r"only one class .*\(--strict\)"):
        load_folder(single, strict=True, progress=False, log=lambda *a: None)


def test_streamed_rows_are_the_in_memory_numbers(tmp_path):
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (40, 3, 5, 5), dtype=np.uint8)
    index = rng.permutation(40)[:30]
    counts = channel_histograms(pixels, index)
    mean, std = histogram_statistics(counts)
    from scratchcnn.data import pixel_statistics

    assert (mean, std) == pixel_statistics(pixels[index], 255.0)  # colour: the very same formula
    rows = NormalizedRows(pixels, index, 255.0, mean, std)
    expected = normalize(pixels[index], 255.0, mean, std)
    np.testing.assert_array_equal(rows.materialize(), expected)
    np.testing.assert_array_equal(rows[3:9], expected[3:9])
    out = np.empty((4, 3, 5, 5), np.float32)
    np.testing.assert_array_equal(np.take(rows, [5, 1, 1, 29], axis=0, out=out), expected[[5, 1, 1, 29]])

    # Training on the streamed split is training on the array: the same weights, bit for bit.
    from scratchcnn.engine.training import Trainer
    from scratchcnn.nn.losses import SoftmaxCrossEntropy
    from scratchcnn.nn.optimizers import Adam
    from scratchcnn.nn.presets import build_model

    labels = rng.integers(0, 3, 30)
    weights = []
    for x in (rows, expected):
        model = build_model("classic", (3, 5, 5), 3, seed=0, backend="numpy")
        model.compile(Adam(1e-3), SoftmaxCrossEntropy())
        Trainer(model, batch_size=7, seed=0, progress=False, log=lambda *a: None).fit(x, labels, 2, (x, labels))
        weights.append(model.named_arrays())
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])


def test_8_bit_images_of_the_right_size_come_back_exactly(tmp_path):
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    _save(tmp_path / "all.png", values)
    np.testing.assert_array_equal(folder_cache.decode_entry(tmp_path / "all.png", (1, 16, 16))[0], values)


def test_init_from_a_grey_model_names_what_differs(tmp_path, capsys):
    from scratchcnn.files.serialization import save_model
    from scratchcnn.nn.presets import build_model

    grey = build_model("classic", (1, 28, 28), 3, seed=0, backend="numpy")
    save_model(tmp_path / "grey.npz", grey, ["a", "b", "c"], {"mean": 0.2, "std": 0.3, "scale": 255.0},
               dataset="fashion")
    root = _mixed_folder(tmp_path / "photos", np.random.default_rng(5), per_class=4)
    assert main(["--dataset", "folder", "--data-dir", str(root), "--image-size", "12", "--init-from",
                 str(tmp_path / "grey.npz"), "--freeze", "3", "--out", str(tmp_path / "r")] + QUIET) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert ("conv2d_0 cannot be loaded" in err[0] and "grey 28x28 images, this one colour 12x12 images" in err[0]
            and "--channels 1 --image-size 28x28" in err[0]), err[0]


def test_digits_round_trip_gives_the_built_in_splits(tmp_path):
    """Digits' 17 levels become round(v * 255 / 16) in an 8-bit PNG; order, labels and splits are the same."""
    root = write_folder("digits", tmp_path / "digits", progress=False)
    built_in = load_dataset("digits", val_fraction=0.1, seed=3, progress=False)
    folder = load_folder(root, val_fraction=0.1, seed=3, progress=False, log=lambda *a: None)
    assert folder.class_names == built_in.class_names and folder.input_shape == (1, 8, 8)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(folder, f"y_{part}"), getattr(built_in, f"y_{part}"))
        rows = getattr(folder, f"x_{part}")
        back = rows.pixels[rows.index].astype(np.float64) / 255 * 16  # the folder's pixels on digits' 0..16 scale
        raw = getattr(built_in, f"x_{part}") * np.float32(built_in.std) + np.float32(built_in.mean)
        assert np.abs(back - raw * 16).max() < 0.04  # 16/255/2 = 0.031 of rounding, plus float32's


def test_mnist_round_trip_trains_bit_identically(tmp_path, data_dir):
    """The same seed and options on a to_folder copy (through the main job) and on the built-in set
    (the pieces start_run uses, without its 10,000-image test report): the same model, bit for bit."""
    from scratchcnn.apps.run import make_optimizer
    from scratchcnn.engine.training import Trainer
    from scratchcnn.nn.losses import SoftmaxCrossEntropy
    from scratchcnn.nn.presets import build_model
    from scratchcnn.train import build_parser, config_from_args

    root = write_folder("mnist", tmp_path / "mnist", data_dir, train_limit=500, test_limit=50, progress=False)
    common = ["--epochs", "1", "--train-limit", "500", "--seed", "2", "--val-fraction", "0.2"] + QUIET
    assert main(["--dataset", "folder", "--data-dir", str(root), "--out", str(tmp_path / "b")] + common) == 0
    from_folder = load_model(tmp_path / "b" / "model.npz")[0].named_arrays()

    config = config_from_args(build_parser().parse_args(["--dataset", "mnist"] + common))
    splits = load_dataset("mnist", data_dir, val_fraction=0.2, train_limit=500, seed=2, progress=False)
    model = build_model("classic", splits.input_shape, 10, seed=2, backend="cpu")
    model.compile(make_optimizer(config), SoftmaxCrossEntropy())
    Trainer(model, batch_size=8, seed=2, base_lr=config.lr, progress=False, log=lambda *a: None).fit(
        splits.x_train, splits.y_train, 1, (splits.x_val, splits.y_val))
    for key, value in model.named_arrays().items():
        np.testing.assert_array_equal(value, from_folder[key])


def test_grey_histogram_statistics_match_the_built_in_float32(data_dir):
    """Grey statistics from value counts equal pixel_statistics' once rounded to float32, the
    precision standardisation uses (so the round trip above is bit-identical)."""
    from scratchcnn.data import load_raw, pixel_statistics

    for name in ("mnist", "fashion"):
        x = load_raw(name, data_dir, progress=False)[0][:10000]
        counts = channel_histograms(x[:, None], np.arange(len(x)))
        assert np.float32(histogram_statistics(counts)[0]) == np.float32(pixel_statistics(x, 255.0)[0])
        assert np.float32(histogram_statistics(counts)[1]) == np.float32(pixel_statistics(x, 255.0)[1])


def test_scan_lists_files_in_order_and_names_every_problem(tmp_path):
    """Links are followed (a linked class folder, a linked file), a folder loop, a broken link and a
    link to itself are each one line, hidden entries are passed over, other extensions counted as
    ignored; entries come sorted by path inside their class folder, then class, with the size and
    time of the file a link leads to."""
    from scratchcnn.data.folder import scan_folder

    root, outside = tmp_path / "photos", tmp_path / "elsewhere"
    files = {"a/10.png": 3, "a/2.png": 4, "a/sub.png": 5, "a/sub/1.png": 6, "a/UPPER.PNG": 7, "c/deep/1.png": 8,
             "c/2.jpg": 9}
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)  # the scan reads no pixels: any bytes do
    for rel in ("a/notes.txt", "a/.hidden.png", "a/.git/1.png", "stray.png", "d/readme.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"y")
    (root / "empty").mkdir()
    (outside / "b").mkdir(parents=True)
    (outside / "b" / "1.png").write_bytes(b"z" * 11)
    (outside / "far.png").write_bytes(b"z" * 12)
    os.symlink(outside / "b", root / "b")  # a class folder elsewhere: followed
    os.symlink(outside / "far.png", root / "a" / "linked.png")  # a file elsewhere: followed
    os.symlink("nowhere.png", root / "a" / "broken.png")
    os.symlink("self.png", root / "a" / "self.png")
    os.symlink("..", root / "c" / "deep" / "up")  # back to c/: a folder loop
    os.utime(root / "a" / "2.png", ns=(5, 123_456_789_012))

    scan = scan_folder(root)
    assert scan.root == root.resolve() and not scan.has_test
    assert [(e.path, e.label) for e in scan.entries] == [
        ("b/1.png", "b"), ("a/10.png", "a"), ("c/2.jpg", "c"), ("a/2.png", "a"), ("a/UPPER.PNG", "a"),
        ("c/deep/1.png", "c"), ("a/linked.png", "a"), ("a/sub.png", "a"), ("a/sub/1.png", "a")]
    for e in scan.entries:
        info = os.stat(root / e.path)
        assert (e.part, e.size, e.mtime_ns) == ("train", info.st_size, info.st_mtime_ns), e
    assert scan.entries[3].mtime_ns == 123_456_789_012 and scan.entries[0].size == 11
    # Reopening reads each row's class from its block, without the entries: the same classes, in order.
    blocks = scan.row_blocks()
    assert scan.count == 9 and [scan.blocks[b].rel for b in blocks] == [e.path.rsplit("/", 1)[0] + "/"
                                                                          for e in scan.entries]
    assert scan.problems == [
        "a/broken.png: broken symbolic link (its target does not exist); skipped",
        "a/self.png: symbolic link loop; skipped",
        "c/deep/up/: links back to a folder already read (a symlink loop); skipped",
        "d/: class folder holds no images; skipped",
        "empty/: class folder holds no images; skipped",
        "stray.png: not inside a class folder; skipped"]
    assert scan.ignored == ["a/notes.txt", "d/readme.md"]
    with pytest.raises(DataError, match=r"^a/broken.png: broken symbolic link \(its target does not exist\) "
                                         r"\(--strict\)$"):
        scan_folder(root, strict=True)

    split = tmp_path / "split"
    for rel in ("train/y/1.png", "train/x/2.png", "train/x/1.png", "test/x/1.png", "test/z/1.png"):
        (split / rel).parent.mkdir(parents=True, exist_ok=True)
        (split / rel).write_bytes(b"x")
    (split / "train" / "stray.png").write_bytes(b"x")
    scan = scan_folder(split)
    assert scan.has_test and [(e.path, e.part, e.label) for e in scan.entries] == [
        ("train/x/1.png", "train", "x"), ("train/y/1.png", "train", "y"), ("train/x/2.png", "train", "x"),
        ("test/x/1.png", "test", "x"), ("test/z/1.png", "test", "z")]
    assert scan.problems == ["train/stray.png: not inside a class folder; skipped"]


def test_the_scan_key_follows_every_size_and_time(tmp_path):
    """The cache key changes when a file's size changes with its time put back, or its time alone,
    or a file is renamed; scanning an unchanged folder again gives the same key."""
    from scratchcnn.data.folder import scan_folder

    root = tmp_path / "photos"
    for rel in ("a/1.png", "a/2.png", "b/1.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * 10)
    os.utime(root / "a" / "2.png", ns=(7, 1_000_000_000))
    keys = [scan_folder(root).key()]
    assert scan_folder(root).key() == keys[0]
    (root / "a" / "2.png").write_bytes(b"x" * 11)
    os.utime(root / "a" / "2.png", ns=(7, 1_000_000_000))  # the same time, another size
    keys.append(scan_folder(root).key())
    os.utime(root / "a" / "2.png", ns=(7, 1_000_000_001))  # the same size, another time
    keys.append(scan_folder(root).key())
    os.rename(root / "b" / "1.png", root / "b" / "3.png")
    keys.append(scan_folder(root).key())
    assert len(set(keys)) == 4


def test_the_held_out_test_split_is_drawn_once_and_kept_with_the_cache(tmp_path, monkeypatch):
    """Without a test/ folder the stratified hold-out is sklearn's draw (fixed seed), kept in the
    cache folder: a later run reads it back instead of drawing again, and a damaged copy is drawn anew."""
    from sklearn.model_selection import train_test_split

    from scratchcnn.data.folder import TEST_SPLIT_SEED
    from scratchcnn.data.folder import loader

    root = tmp_path / "photos"
    for c, name in enumerate(["a", "b", "c"]):
        for i in range(10):
            _save(root / name / f"{i:02d}.png", np.full((6, 6), 20 + 90 * c + i, np.uint8))
    first = load_folder(root, val_fraction=0.0, test_fraction=0.3, progress=False, log=lambda line: None)
    y = np.tile([0, 1, 2], 10)  # rows by file name, then class: 00 of a, b, c, then 01, ...
    _, held = train_test_split(np.arange(30), test_size=9, stratify=y, random_state=TEST_SPLIT_SEED)
    np.testing.assert_array_equal(first.y_test, y[np.sort(held)])
    memos = list((tmp_path / "cache").rglob("test-split-*.u8"))
    assert len(memos) == 1 and str(memos[0].parent) == first.info["cache"]

    def no_draw(*args, **kwargs):
        raise AssertionError("the split was drawn again")

    monkeypatch.setattr(loader, "train_test_split", no_draw)
    again = load_folder(root, val_fraction=0.0, test_fraction=0.3, progress=False, log=lambda line: None)
    np.testing.assert_array_equal(again.y_test, first.y_test)
    np.testing.assert_array_equal(again.x_test.materialize(), first.x_test.materialize())

    monkeypatch.undo()
    for damage in (b"\x07" * 30, b"\x01" * 29, b"\x00" * 30):  # not a mask; another length; not 9 held out
        memos[0].write_bytes(damage)
        redrawn = load_folder(root, val_fraction=0.0, test_fraction=0.3, progress=False, log=lambda line: None)
        np.testing.assert_array_equal(redrawn.y_test, first.y_test)
        np.testing.assert_array_equal(redrawn.x_test.materialize(), first.x_test.materialize())
