"""The main job on a synthetic archive in CIFAR-10's exact binary layout: colour images end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from scratchcnn.data import datasets as datasets_module
from scratchcnn.evaluate import main as evaluate_main
from scratchcnn.files.serialization import load_model
from scratchcnn.train import main as train_main
from tests import cifar_fake

PER_FILE = 200  # records per file: 1,000 training and 200 test images


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    """One epoch of the classic network with the standard augmentation, through the CLI."""
    data = tmp_path_factory.mktemp("data")
    cifar_fake.write_folder(data, per_file=PER_FILE)
    out = tmp_path_factory.mktemp("runs") / "cifar"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets_module.CIFAR_DATASETS, "cifar10", cifar_fake.fake_info(PER_FILE))
        code = train_main(["--dataset", "cifar10", "--data-dir", str(data), "--epochs", "2", "--augment",
                           "--lr", "3e-3", "--backend", "cpu", "--out", str(out), "--no-progress"])
        assert code == 0
        assert evaluate_main([str(out), "--data-dir", str(data), "--backend", "numpy"]) == 0
    return out


def test_colour_training_learns_the_synthetic_classes(cifar_run):
    m = json.loads((cifar_run / "metrics.json").read_text())
    assert m["dataset"] == "cifar10" and m["train_images"] == 900 and m["test_images"] == 200
    assert [c["class"] for c in m["per_class"]][:3] == ["airplane", "automobile", "bird"]
    # Chance is 0.1; the colour of a blob decides the class (these two epochs reach 0.975, seed 0).
    assert m["test_accuracy"] > 0.6, m["test_accuracy"]


def test_the_model_file_keeps_colour_and_per_channel_normalisation(cifar_run):
    model, meta = load_model(cifar_run / "model.npz")
    assert model.input_shape == (3, 32, 32) and model.layers[0].in_channels == 3
    norm = meta["normalization"]
    assert len(norm["mean"]) == 3 and len(norm["std"]) == 3 and norm["scale"] == 255.0
    assert norm["mean"][1] != norm["mean"][0]  # the channels have their own statistics


def test_evaluate_reproduces_the_run_and_the_samples_are_in_colour(cifar_run):
    trained = json.loads((cifar_run / "metrics.json").read_text())
    again = json.loads((cifar_run / "evaluation" / "metrics.json").read_text())
    assert again["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    grid = np.asarray(Image.open(cifar_run / "samples.png").convert("RGB")).astype(int)
    spread = np.abs(grid[..., 0] - grid[..., 1]) + np.abs(grid[..., 1] - grid[..., 2])
    assert (spread > 60).mean() > 0.01  # coloured pixels, not only grey ones


def test_colour_augmentation_is_a_padded_random_crop_with_per_channel_black():
    from scratchcnn.engine.augment import Augment

    x = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    black = (-1.0, -2.0, -3.0)
    out = Augment(max_shift=4, flip=True, fill=black)(x, np.random.default_rng(1))
    padded = np.empty((64, 3, 16, 16), np.float32)
    padded[...] = np.reshape(black, (3, 1, 1))
    padded[:, :, 4:12, 4:12] = x
    for img, aug in zip(padded, out):
        # Every output is one 8x8 window of the padded image, mirrored or not.
        windows = [img[:, i:i + 8, j:j + 8] for i in range(9) for j in range(9)]
        assert any(np.array_equal(aug, w) or np.array_equal(aug, w[:, :, ::-1]) for w in windows)
    for c in range(3):  # uncovered borders take each channel's own black
        assert (out[:, c] == black[c]).sum() > 100 and not np.isin(np.delete(black, c), out[:, c]).any()
    mirrored = [any(np.array_equal(a, w[:, :, ::-1]) and not np.array_equal(a, w)
                    for w in [p[:, i:i + 8, j:j + 8] for i in range(9) for j in range(9)])
                for a, p in zip(out, padded)]
    assert 16 < sum(mirrored) < 48  # about half are mirror images


def test_predict_keeps_colour_for_a_colour_model(cifar_run, tmp_path, capsys):
    """New synthetic images, saved as enlarged (96x96) RGB PNGs, are classified as their classes."""
    from scratchcnn.predict import main as predict_main

    raw = cifar_fake.records(10, seed=7)
    table = np.frombuffer(raw, np.uint8).reshape(10, 3073)
    right = 0
    for i, row in enumerate(table):
        rgb = row[1:].reshape(3, 32, 32).transpose(1, 2, 0)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rgb, "RGB").resize((96, 96), Image.Resampling.NEAREST).save(path)
        assert predict_main(["--model", str(cifar_run), "--top-k", "1", str(path)]) == 0
        predicted = capsys.readouterr().out.splitlines()[1].split()[1]
        right += predicted == cifar_fake.NAMES[row[0]]
    assert right >= 8, right
