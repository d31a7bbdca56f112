"""The command-line tools: bad arguments and bad files give one clear line and overwrite nothing;
the NaN guard's exit code; ``predict`` on real PNG/JPEG images; ``evaluate`` reproduces a run's metrics."""
from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scratchcnn.apps import cli
from scratchcnn import evaluate, predict, train
from scratchcnn.data import images
from scratchcnn.files.checkpoint import load_checkpoint, save_checkpoint
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.files.serialization import load_model, save_model
from scratchcnn.engine.training import Trainer

TRAIN = "python -m scratchcnn.train: error: "


def one_error_line(text: str, prog: str = TRAIN) -> str:
    """The single line of a CLI error: it starts with ``prog: error:`` and carries no traceback."""
    assert text.startswith(prog) and text.count("\n") == 1 and "Traceback" not in text, text
    return text


def files_of(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- usage errors (exit 2)

@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["--batch-size", "x"], "argument --batch-size: expected a positive integer, got 'x'"),
    (["--lr", "nan"], "argument --lr: expected a positive number, got nan"),
    (["--lr", "-0.1"], "argument --lr: expected a positive number, got -0.1"),
    (["--val-fraction", "1"], r"argument --val-fraction: expected a number in \[0, 1\), got 1.0"),
    (["--dataset", "cifar100"], "argument --dataset: invalid choice: 'cifar100'"),
    (["--lr-schedule", "linear"], "argument --lr-schedule: invalid choice: 'linear'"),
    (["--early-stopping", "-1"], "argument --early-stopping: expected a positive integer, got -1"),
    (["--weight-decay", "-1"], "argument --weight-decay: expected a finite number >= 0, got -1"),
    (["--weight-decay", "nan"], "argument --weight-decay: expected a finite number >= 0, got nan"),
    (["--weight-decay", "inf"], "argument --weight-decay: expected a finite number >= 0, got inf"),
    (["--seed", "-1"], r"argument --seed: expected an integer in \[0, 2\*\*32\), got -1"),
    (["--seed", str(2**32)], r"argument --seed: expected an integer in \[0, 2\*\*32\), got 4294967296"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_arguments_exit_2_with_one_line_and_create_nothing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv + ["--dataset", "digits"] if "--dataset" not in argv else argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_error_line(captured.err)
    assert re.search(message, line) and line.rstrip().endswith("(see --help)")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- errors (exit 1)

@pytest.mark.parametrize("argv,message", [
    (["--dataset", "digits", "--save-best", "--val-fraction", "0"],
     "--save-best needs a validation set, but --val-fraction is 0"),
    (["--dataset", "digits", "--early-stopping", "2", "--val-fraction", "0"],
     "--early-stopping needs a validation set"),
    (["--dataset", "digits", "--train-limit", "1"], "train_limit must be at least 2, got 1"),
    (["--resume", "nowhere"], "--resume nowhere: no checkpoint.npz in that folder"),
    (["--resume", "nowhere", "--dataset", "digits"], "--dataset cannot be combined with --resume"),
    (["--resume", "nowhere", "--dataset", "fashion"], "--dataset cannot be combined with --resume"),  # the default
    (["--dataset", "digits", "--val-fraction", "0.999"], "--val-fraction 0.999 holds out 1436 of 1437 training "
                                                         "images, leaving 1, fewer than the 10 classes"),
    (["--dataset", "digits", "--val-fraction", "0.95", "--train-limit", "100"], "leaving 5, fewer than the 10"),
    (["--dataset", "digits", "--data-dir", "no/such/folder"], "--data-dir no/such/folder: no such folder"),
])
def test_invalid_settings_exit_1_with_one_line_and_create_nothing(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train.main(argv + ["--no-progress"]) == 1
    assert message in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def write_idx(path: Path, header_dims, data: bytes, magic=b"\x00\x00\x08") -> None:
    raw = magic + bytes([len(header_dims)]) + struct.pack(f">{len(header_dims)}I", *header_dims) + data
    path.write_bytes(gzip.compress(raw, compresslevel=1))


@pytest.mark.parametrize("breakage,message", [
    ("magic", "train-images-idx3-ubyte.gz: bad magic number 0x01000803"),
    ("truncated", "train-images-idx3-ubyte.gz: truncated: the header promises 47040000 bytes of data, the file "
                  "has 1000"),
    ("checksum", "train-images-idx3-ubyte.gz: SHA-256 of the decompressed data is"),
])
def test_broken_idx_files_are_named_and_no_run_folder_is_made(breakage, message, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    images = folder / "train-images-idx3-ubyte.gz"
    if breakage == "magic":
        write_idx(images, (60000, 28, 28), bytes(1000), magic=b"\x01\x00\x08")
    elif breakage == "truncated":
        write_idx(images, (60000, 28, 28), bytes(1000))
    else:
        write_idx(images, (60000, 28, 28), bytes(60000 * 28 * 28))  # well-formed, but not Fashion-MNIST
    for name, dims in (("train-labels-idx1-ubyte", (60000,)), ("t10k-images-idx3-ubyte", (10000, 28, 28)),
                       ("t10k-labels-idx1-ubyte", (10000,))):
        write_idx(folder / f"{name}.gz", dims, bytes(int(np.prod(dims))))
    monkeypatch.chdir(tmp_path)
    code = train.main(["--dataset", "fashion", "--data-dir", str(tmp_path / "data"), "--out", "run",
                       "--no-progress"])
    assert code == 1
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_keyboard_interrupt_outside_training_is_one_line_and_exit_130(capsys):
    def body(argv):
        raise KeyboardInterrupt

    assert cli.run_main("prog", body, []) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "prog: interrupted\n"


# ----------------------------------------------------------------------------- a finished digits run

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """``train --dataset digits --epochs 2 --save-best`` on 400 images, run in-process."""
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    code = train.main(["--dataset", "digits", "--train-limit", "400", "--epochs", "2", "--save-best",
                       "--no-progress", "--out", str(run_dir)])
    assert code == 0
    return run_dir


def test_existing_run_and_changed_options_are_refused_untouched(digits_run, capsys):
    before = files_of(digits_run)
    for argv, message in (
            (["--dataset", "digits", "--out", str(digits_run)], f"run folder {digits_run} already holds a run; "
                                                               f"continue it with --resume {digits_run}"),
            (["--resume", str(digits_run), "--lr", "0.1"], "--lr cannot be combined with --resume"),
            (["--resume", str(digits_run), "--augment"], "--augment cannot be combined with --resume"),
            (["--resume", str(digits_run), "--epochs", "1"], "has already completed 2 epochs")):
        assert train.main(argv + ["--no-progress"]) == 1
        assert message in one_error_line(capsys.readouterr().err)
    assert files_of(digits_run) == before


def test_corrupt_checkpoint_on_resume_is_one_line(digits_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    raw = (run_dir / "checkpoint.npz").read_bytes()
    (run_dir / "checkpoint.npz").write_bytes(raw[:len(raw) // 2])
    assert train.main(["--resume", str(run_dir), "--epochs", "3"]) == 1
    assert "checkpoint.npz: cannot read the archive (truncated" in one_error_line(capsys.readouterr().err)


def test_nan_guard_exits_3_naming_epoch_and_batch_and_keeps_the_checkpoint(digits_run, tmp_path, capsys):
    """The run is extended by one epoch from a checkpoint whose last layer has absurd (finite) weights:
    the first batch's logits overflow, so the loss is NaN at epoch 3, batch 1."""
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    model, state, config = load_checkpoint(run_dir / "checkpoint.npz", backend="numpy")
    model.layers[-1].params["W"][...] = 3e38
    save_checkpoint(run_dir / "checkpoint.npz", model, state, config)
    before = files_of(run_dir)
    assert train.main(["--resume", str(run_dir), "--epochs", "3", "--no-progress"]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert (f"loss is nan at epoch 3, batch 1; stopped (try a lower --lr); the last good checkpoint is "
            f"{run_dir / 'checkpoint.npz'}") in line
    assert files_of(run_dir) == before


def test_absurd_learning_rate_diverges_in_epoch_1_without_a_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--dataset", "digits", "--train-limit", "200", "--lr", "1e30", "--no-progress",
                       "--out", "run"]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert re.search(r"loss is (nan|inf) at epoch 1, batch \d+; stopped \(try a lower --lr\); "
                                   "no epoch completed, so there is no checkpoint", line)
    assert list(tmp_path.iterdir()) == []  # the run folder it created is removed: nothing was kept


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_reproduces_the_runs_test_metrics(digits_run, tmp_path, capsys):
    before = files_of(digits_run)
    assert evaluate.main([str(digits_run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    recorded = json.loads((digits_run / "metrics.json").read_text())
    again = json.loads((digits_run / "evaluation" / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "per_class", "macro_avg", "confusion_matrix", "class_names"):
        assert again[key] == recorded[key], key  # the same model on the same data: equal, not close
    assert sum(map(sum, again["confusion_matrix"])) == 360 and again["epoch"] == 2
    assert f"test accuracy {recorded['test_accuracy']:.4f}" in out
    written = sorted(p.name for p in (digits_run / "evaluation").iterdir())
    assert written == ["confusion_matrix.png", "curves.png", "history.csv", "metrics.json", "samples.png"]
    assert (digits_run / "evaluation" / "history.csv").read_text() == (digits_run / "history.csv").read_text()
    assert {k: v for k, v in files_of(digits_run).items() if k.parts[0] != "evaluation"} == before

    # The best-validation model, into another folder.
    assert evaluate.main([str(digits_run / "best_model.npz"), "--out", str(tmp_path / "best")]) == 0
    best = json.loads((tmp_path / "best" / "metrics.json").read_text())
    model, meta = load_model(digits_run / "best_model.npz", backend="numpy")
    assert best["model_file"].endswith("best_model.npz") and best["epoch"] == meta["epoch"]


def test_evaluate_errors_are_one_line(digits_run, tmp_path, capsys):
    prog = "python -m scratchcnn.evaluate: error: "
    assert evaluate.main([str(tmp_path)]) == 1
    assert "holds no model.npz" in one_error_line(capsys.readouterr().err, prog)
    model, meta = load_model(digits_run / "model.npz", backend="numpy")
    save_model(tmp_path / "anonymous.npz", model, meta["class_names"], meta["normalization"])
    assert evaluate.main([str(tmp_path / "anonymous.npz")]) == 1
    assert "field 'dataset' is None" in one_error_line(capsys.readouterr().err, prog)
    save_model(tmp_path / "mnist.npz", model, meta["class_names"], meta["normalization"], dataset="mnist")
    assert evaluate.main([str(tmp_path / "mnist.npz"), "--no-progress"]) == 1
    assert "the model takes images of shape (1, 8, 8), the mnist test set has (1, 28, 28)" in one_error_line(
        capsys.readouterr().err, prog)


# ----------------------------------------------------------------------------- predict

@pytest.fixture(scope="module")
def fashion_model(fashion_subset, tmp_path_factory):
    """The classic CNN after 2 epochs on 4,500 real Fashion-MNIST images, saved as a run folder."""
    s = fashion_subset
    model = build_model("classic", s.input_shape, 10, seed=0, backend="cpu")
    model.compile(Adam(2e-3), SoftmaxCrossEntropy())
    Trainer(model, batch_size=64, seed=0, progress=False, log=lambda line: None).fit(s.x_train, s.y_train, 2)
    run_dir = tmp_path_factory.mktemp("fashion") / "run"
    save_model(run_dir / "model.npz", model, s.class_names, {"mean": s.mean, "std": s.std, "scale": 255.0},
               dataset="fashion")
    return run_dir, model, s


@pytest.fixture(scope="module")
def confident(fashion_model, data_dir):
    """Up to 6 test images of different classes that the model gets right with probability > 0.95,
    with their raw uint8 pixels."""
    from scratchcnn.data import load_raw

    _, model, s = fashion_model
    raw = load_raw("fashion", data_dir, progress=False)[2]
    probs = model.predict(s.x_test[:500])
    chosen, classes = [], set()
    for i in np.flatnonzero((probs.max(axis=1) > 0.95) & (probs.argmax(axis=1) == s.y_test[:500])):
        if s.y_test[i] not in classes:
            chosen.append(i)
            classes.add(s.y_test[i])
    assert len(chosen) >= 4, "the model should be confident about several classes"
    return chosen[:6], raw, probs


def variants(pixels: np.ndarray, folder: Path, i: int) -> dict:
    """The image as a 28x28 grey PNG, a 3x enlarged RGB JPEG on white, and an RGBA PNG whose object
    sits off-centre on a transparent 100x60 canvas."""
    paths = {"png": folder / f"{i}.png", "jpeg": folder / f"{i}-big-light.jpg", "canvas": folder / f"{i}-canvas.png"}
    Image.fromarray(pixels).save(paths["png"])
    big = Image.fromarray(255 - pixels).resize((84, 84), Image.Resampling.BICUBIC).convert("RGB")
    big.save(paths["jpeg"], quality=95)
    canvas = np.zeros((60, 100, 4), np.uint8)
    canvas[10:38, 55:83, :3] = (255 - pixels)[..., None]  # dark object ...
    canvas[10:38, 55:83, 3] = np.where(pixels > 0, 255, 0)  # ... opaque where it is, transparent elsewhere
    Image.fromarray(canvas, "RGBA").save(paths["canvas"])
    return paths


def test_predict_on_real_test_images_as_png_and_jpeg(fashion_model, confident, tmp_path, capsys):
    run_dir, model, s = fashion_model
    chosen, raw, probs = confident
    files = {i: variants(raw[i], tmp_path, i) for i in chosen}
    argv = ["--model", str(run_dir), "--top-k", "3", "--backend", "cpu"]
    argv += [str(p) for i in chosen for p in files[i].values()]
    assert predict.main(argv) == 0
    blocks = capsys.readouterr().out.strip().split("\n" + str(tmp_path))
    assert len(blocks) == 3 * len(chosen)
    for i, (png, jpeg, canvas) in zip(chosen, np.array(blocks).reshape(-1, 3)):
        truth = s.class_names[s.y_test[i]]
        assert png.splitlines()[0].endswith(f"{i}.png  (28x28)")  # dark background: not inverted
        rank1 = png.splitlines()[1].split()
        assert rank1[1:-1] == truth.split() and abs(float(rank1[-1]) - probs[i].max()) <= 1.5e-4
        assert jpeg.splitlines()[0].endswith("(84x84, light background: inverted)")
        assert jpeg.splitlines()[1].startswith(f"  1. {truth} ")
        assert canvas.splitlines()[0].endswith("(100x60, light background: inverted)")
        assert canvas.splitlines()[1].startswith(f"  1. {truth} ")
        assert len(png.splitlines()) == 4  # header + top 3

    # The API: a 28x28 PNG is exactly the training input, so the probabilities are the model's own.
    result = predict.predict_image(model, {"class_names": s.class_names, "normalization":
                                           {"mean": s.mean, "std": s.std}}, files[chosen[0]]["png"], 10)
    got = dict(result.top)
    np.testing.assert_allclose([got[name] for name in s.class_names], probs[chosen[0]], rtol=1e-5, atol=1e-7)
    # The same picture as a 16-bit PNG (and as a float TIFF) scores the same, not clipped to 0/255.
    wide, floats = tmp_path / "wide.png", tmp_path / "float.tif"
    Image.fromarray(raw[chosen[0]].astype(np.uint16) * 257).save(wide)
    Image.fromarray(raw[chosen[0]].astype(np.float32) / 255, "F").save(floats)
    for path in (wide, floats):
        again = dict(predict.predict_image(model, {"class_names": s.class_names, "normalization":
                                                   {"mean": s.mean, "std": s.std}}, path, 10).top)
        np.testing.assert_allclose([again[name] for name in s.class_names], probs[chosen[0]], rtol=1e-5, atol=1e-7)


def test_preprocess_image_inverts_frames_and_normalises():
    norm = {"mean": 0.25, "std": 0.5}
    grey = np.ones((40, 20), np.float32)
    grey[10:30, 5:15] = 0  # a black 20x10 bar on white
    x, inverted = images.preprocess_image(grey, (1, 28, 28), norm)
    assert inverted and x.shape == (1, 28, 28) and x.dtype == np.float32
    pixels = x[0] * 0.5 + 0.25  # back to [0, 1]
    # cropped to the bar, padded to a square 20x20, resized: the bar spans all rows, the middle 14 columns
    # (Lanczos rings a little at the edges: 0.89 and 0.11 in the edge columns, 0.03 two further out)
    assert pixels[:, 7:21].min() > 0.85 and pixels[:, 8:20].min() > 0.95 and pixels[:, 7:21].mean() > 0.97
    assert pixels[:, 6].max() < 0.15 and pixels[:, :6].max() < 0.05 and pixels[:, 22:].max() < 0.05
    # MNIST's 4/28 margin: the same bar fills only the middle 20 rows
    mnist = images.preprocess_image(grey, (1, 28, 28), norm, dataset="mnist")[0][0] * 0.5 + 0.25
    assert mnist[:3].max() < 0.05 and mnist[25:].max() < 0.05 and mnist[5:23, 13:15].min() > 0.95
    dark = np.zeros((28, 28), np.float32)
    dark[5, 5] = 1
    x, inverted = images.preprocess_image(dark, (1, 28, 28), norm)
    assert not inverted and x[0, 5, 5] == pytest.approx((1 - 0.25) / 0.5) and x[0, 0, 0] == pytest.approx(-0.5)


def test_predict_cli_in_a_subprocess(fashion_model, confident, tmp_path):
    run_dir, _, s = fashion_model
    chosen, raw, _ = confident
    path = variants(raw[chosen[0]], tmp_path, chosen[0])["jpeg"]
    result = subprocess.run([sys.executable, "-m", "scratchcnn.predict", "--model", str(run_dir / "model.npz"),
                             "--top-k", "2", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith(f"  1. {s.class_names[s.y_test[chosen[0]]]} ")
    assert lines[2].startswith("  2. ") and float(lines[1].split()[-1]) >= float(lines[2].split()[-1])


def test_predict_errors_are_one_line(fashion_model, tmp_path, capsys):
    run_dir = fashion_model[0]
    prog = "python -m scratchcnn.predict: error: "
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(good)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cut = tmp_path / "cut.png"
    big = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(big).save(cut)
    cut.write_bytes(cut.read_bytes()[:300])
    (tmp_path / "empty_run").mkdir()
    bad_model = tmp_path / "bad.npz"
    bad_model.write_bytes((run_dir / "model.npz").read_bytes()[:1000])
    for argv, message in (
            ([str(tmp_path / "missing.png")], "missing.png: no such file"),
            ([str(cut)], "cut.png: cannot read the image"),
            (["--top-k", "11", str(good)], "--top-k 11: must be between 1 and the model's 10 classes")):
        assert predict.main(["--model", str(run_dir)] + argv) == 1
        captured = capsys.readouterr()
        assert message in one_error_line(captured.err, prog) and captured.out == ""
    # Images are classified one at a time: an unreadable one is named, the others are still classified.
    assert predict.main(["--model", str(run_dir), str(text), str(good)]) == 1
    captured = capsys.readouterr()
    assert "notes.png: cannot read the image (not a PNG/JPEG, or truncated)" in one_error_line(captured.err, prog)
    assert captured.out.startswith(f"{good}  (28x28)") and len(captured.out.splitlines()) == 4
    for model, message in ((tmp_path / "empty_run", "the folder holds no model.npz"),
                           (tmp_path / "nothing", "no such file or folder"),
                           (bad_model, "bad.npz: cannot read the archive")):
        assert predict.main(["--model", str(model), str(good)]) == 1
        assert message in one_error_line(capsys.readouterr().err, prog)
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(run_dir)])
    assert exit_info.value.code == 2
    assert "the following arguments are required: IMAGE" in one_error_line(capsys.readouterr().err, prog)


def test_epoch_lines_show_validation_columns_only_with_a_validation_split(tmp_path, capsys):
    """Keras prints val_loss / val_accuracy only when there is a validation set; so does the epoch line."""
    for fraction, shown in (("0.1", True), ("0", False)):
        out = tmp_path / f"run-{fraction}"
        assert train.main(["--dataset", "digits", "--epochs", "1", "--val-fraction", fraction, "--backend", "numpy",
                           "--no-progress", "--out", str(out)]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1/1")]
        assert len(lines) == 1 and ("val_loss" in lines[0]) is shown and "nan" not in lines[0], lines
        assert re.search(r"loss \d\.\d{4}  acc \d\.\d{4}  (val_loss \d\.\d{4}  val_acc \d\.\d{4}  )?lr ", lines[0])
