"""Early stopping, learning-rate schedules, augmentation and the NaN guard of the training loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

from scratchcnn.engine import training
from scratchcnn.engine.augment import Augment, Pipeline, RandomErasing, crop_padding
from scratchcnn.data import load_dataset
from scratchcnn.errors import ConfigError, TrainingDiverged
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import SGD, Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.engine.schedules import learning_rate
from scratchcnn.apps.config import RunConfig
from scratchcnn.apps.run import make_augment
from scratchcnn.engine.training import Trainer


@pytest.fixture(scope="module")
def digits():
    # 90 training and 10 validation images: 3 steps per epoch at batch size 32.
    return load_dataset("digits", val_fraction=0.1, train_limit=100, seed=0, progress=False)


def compiled_model(splits, optimizer=None):
    model = build_model("classic", splits.input_shape, 10, seed=0, backend="numpy")
    return model.compile(optimizer or Adam(1e-3), SoftmaxCrossEntropy())


def quiet_trainer(model, **options):
    lines = []
    trainer = Trainer(model, batch_size=32, seed=0, progress=False, log=lines.append, **options)
    return trainer, lines


# ----------------------------------------------------------------------------- early stopping

def test_early_stopping_stops_after_patience_and_restores_best_weights(digits, monkeypatch):
    """Scripted validation losses 1.0, 0.7, 0.7, 0.75, ... with patience 2: epoch 2 is the best (a tie is
    no improvement), epochs 3 and 4 are not better, so training stops after epoch 4 with epoch 2's weights."""
    losses = iter([1.0, 0.7, 0.7, 0.75, 0.1, 0.1])
    monkeypatch.setattr(training, "loss_and_accuracy", lambda model, x, y: (next(losses), 0.5))
    model = compiled_model(digits)
    weights_after = {}
    bests = []
    trainer, lines = quiet_trainer(model, early_stopping=2)

    def record(epoch, row):
        if trainer.state.best_epoch == epoch:  # the validation loss improved
            bests.append(epoch)
        weights_after.setdefault(epoch, {k: v.copy() for k, v in model.named_arrays().items()})

    history = trainer.fit(digits.x_train, digits.y_train, 6, (digits.x_val, digits.y_val), callbacks=[record])
    st = trainer.state
    assert history["epoch"] == [1, 2, 3, 4] and history["val_loss"] == [1.0, 0.7, 0.7, 0.75]
    assert (st.stopped_early, st.best_epoch, st.best_val_loss, st.wait) == (True, 2, 0.7, 2)
    assert bests == [1, 2]
    assert lines[-1] == "early stopping: no lower val_loss for 2 epochs; restored the weights of epoch 2"
    restored = model.named_arrays()
    for key, value in weights_after[2].items():
        np.testing.assert_array_equal(restored[key], value)
    assert not np.array_equal(weights_after[3]["dense_1.W"], weights_after[2]["dense_1.W"])  # it did train on

    # A stopped run is finished: fitting (resuming) it again trains nothing.
    t = model.optimizer.t
    trainer.fit(digits.x_train, digits.y_train, 6, (digits.x_val, digits.y_val))
    assert model.optimizer.t == t and len(history["epoch"]) == 4


def test_early_stopping_needs_validation_and_a_positive_patience(digits):
    trainer, _ = quiet_trainer(compiled_model(digits), early_stopping=3)
    with pytest.raises(ConfigError, match="early stopping needs a validation set"):
        trainer.fit(digits.x_train, digits.y_train, 2, None)
    with pytest.raises(ConfigError, match="patience must be >= 1, got 0"):
        quiet_trainer(compiled_model(digits), early_stopping=0)


# ----------------------------------------------------------------------------- schedules

def test_schedule_formulas():
    assert learning_rate("constant", 0.1, 7, 3, 10, 8) == 0.1
    # step: /10 at 50% and /100 at 75% of 8 epochs, i.e. from epochs 4 and 6 (0-based)
    assert [learning_rate("step", 1.0, e, 0, 10, 8) for e in range(8)] == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01], rel=1e-12)
    # cosine: 1 at the start, 1/2 half-way, (1 + cos(pi/4))/2 a quarter in, -> 0 at the end
    assert learning_rate("cosine", 2.0, 0, 0, 10, 4) == 2.0
    assert learning_rate("cosine", 2.0, 2, 0, 10, 4) == pytest.approx(1.0, abs=1e-15)
    assert learning_rate("cosine", 2.0, 0, 10, 10, 4) == pytest.approx(1 + math.sqrt(0.5), rel=1e-12)
    assert learning_rate("cosine", 2.0, 3, 9, 10, 4) == pytest.approx(2.0 * (1 + math.cos(math.pi * 0.975)) / 2)
    # onecycle (peak 2.0, 10 epochs of 10 steps): 2/25 at step 0, the peak at 30%, half-way down at 65%,
    # 2/25/1e4 at the end (PyTorch's OneCycleLR has this shape; it counts steps slightly differently).
    assert learning_rate("onecycle", 2.0, 0, 0, 10, 10) == pytest.approx(0.08, rel=1e-12)
    assert learning_rate("onecycle", 2.0, 3, 0, 10, 10) == pytest.approx(2.0, rel=1e-12)
    assert learning_rate("onecycle", 2.0, 1, 5, 10, 10) == pytest.approx(0.08 + (2 - 0.08) / 2, rel=1e-12)
    assert learning_rate("onecycle", 2.0, 6, 5, 10, 10) == pytest.approx((2.0 + 8e-6) / 2, rel=1e-12)
    assert learning_rate("onecycle", 2.0, 10, 0, 10, 10) == pytest.approx(8e-6, rel=1e-12)
    with pytest.raises(ValueError, match="unknown lr schedule 'linear'"):
        learning_rate("linear", 1.0, 0, 0, 1, 1)


@pytest.mark.parametrize("schedule,expected", [
    ("step", [0.5] * 6 + [0.05] * 3 + [0.005] * 3),  # 4 epochs: epoch 3 (0-based 2) at 50%, 4 at 75%
    ("cosine", [0.5 * (1 + math.cos(math.pi * k / 12)) / 2 for k in range(12)]),  # 12 steps in all
])
def test_trainer_sets_the_scheduled_lr_before_every_step(digits, schedule, expected):
    model = compiled_model(digits, SGD(0.5))
    seen = []
    step = model.optimizer.step
    model.optimizer.step = lambda params: (seen.append(model.optimizer.lr), step(params))
    trainer, _ = quiet_trainer(model, lr_schedule=schedule)
    history = trainer.fit(digits.x_train, digits.y_train, 4, (digits.x_val, digits.y_val))
    assert seen == pytest.approx(expected, rel=1e-12)
    assert history["lr"] == pytest.approx(expected[2::3], rel=1e-12)  # the last step's lr of each epoch


def test_unknown_schedule_fails_when_the_trainer_is_made(digits):
    with pytest.raises(ValueError, match="unknown lr schedule 'warmup'"):
        Trainer(compiled_model(digits), lr_schedule="warmup")


# ----------------------------------------------------------------------------- augmentation

def find_transform(original, augmented, fill, max_shift, flips):
    """The (dy, dx, flipped) that turns ``original`` (C, H, W) into ``augmented``, or None."""
    _, h, w = original.shape
    s = max_shift
    padded = np.pad(original, ((0, 0), (s, s), (s, s)), constant_values=fill)
    for flipped in ((False, True) if flips else (False,)):
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                shifted = padded[:, s + dy:s + dy + h, s + dx:s + dx + w]
                if np.array_equal(shifted[:, :, ::-1] if flipped else shifted, augmented):
                    return dy, dx, flipped
    return None


def test_augment_shifts_by_at_most_two_pixels_with_the_background_fill(rng):
    x = rng.standard_normal((400, 1, 10, 10)).astype(np.float32)
    out = Augment(max_shift=2, flip=False, fill=-0.5)(x, np.random.default_rng(1))
    transforms = [find_transform(a, b, -0.5, 2, flips=False) for a, b in zip(x, out)]
    assert None not in transforms
    assert {(dy, dx) for dy, dx, _ in transforms} == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, Augment(2, fill=-0.5)(x, np.random.default_rng(1)))  # same rng, same batch
    assert not np.array_equal(out, Augment(2, fill=-0.5)(x, np.random.default_rng(2)))


def test_augment_flips_about_half_the_images_only_when_asked(rng):
    x = rng.standard_normal((400, 1, 6, 6)).astype(np.float32)
    out = Augment(max_shift=1, flip=True, fill=0.0)(x, np.random.default_rng(3))
    transforms = [find_transform(a, b, 0.0, 1, flips=True) for a, b in zip(x, out)]
    flipped = sum(t[2] for t in transforms)
    assert 160 <= flipped <= 240  # Binomial(400, 1/2): mean 200, sd 10


def test_cli_flips_fashion_only_and_fills_with_black(digits):
    config = RunConfig.from_values({"augment": True, "dataset": "digits"})
    augment = make_augment(config, digits)
    black = (0.0 - digits.mean) / digits.std  # a 0 pixel after standardisation
    assert augment.flip is False and augment.max_shift == 2 and augment.fill == pytest.approx(black, rel=1e-6)
    assert make_augment(config.replace(dataset="mnist"), digits).flip is False
    assert make_augment(config.replace(dataset="fashion"), digits).flip is True
    assert make_augment(config.replace(augment=False), digits) is None


def erased_boxes(x, out):
    """Per image: None if unchanged, else (top, left, height, width) of the box around the changed pixels."""
    boxes = []
    for a, b in zip(x, out):
        rows, cols = np.nonzero((a != b).any(axis=0))
        boxes.append(None if rows.size == 0 else
                     (rows.min(), cols.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
    return boxes


def test_random_erasing_draws_one_noisy_rectangle_within_the_papers_ranges(rng):
    x = rng.standard_normal((400, 2, 28, 28)).astype(np.float32)
    mean, std = (0.3, 0.5), (0.2, 0.4)
    erase = RandomErasing(p=0.5, mean=mean, std=std)
    out = erase(x, np.random.default_rng(7))
    boxes = erased_boxes(x, out)
    erased = [box for box in boxes if box is not None]
    assert 160 <= len(erased) <= 240  # Binomial(400, 1/2): mean 200, sd 10
    for i, box in enumerate(boxes):
        if box is None:
            np.testing.assert_array_equal(out[i], x[i])
            continue
        top, left, h, w = box
        inside = out[i, :, top:top + h, left:left + w]
        outside = out[i].copy()
        outside[:, top:top + h, left:left + w] = x[i, :, top:top + h, left:left + w]
        np.testing.assert_array_equal(outside, x[i])  # one rectangle, nothing else touched
        assert 0.02 * 784 - 2 * 28 <= h * w <= 0.4 * 784 + 2 * 28 + 1  # S_e, within the rounding of sides
        assert 0.3 / 1.6 <= h / w <= 3.3 * 1.6  # r_e, within the rounding of small sides
        for c in range(2):  # noise: pixels in [0, 1], normalised as the data set
            lo, hi = (0 - mean[c]) / std[c], (1 - mean[c]) / std[c]
            assert lo - 1e-6 <= inside[c].min() and inside[c].max() <= hi + 1e-6
    areas = [h * w / 784 for _, _, h, w in erased]
    assert min(areas) < 0.08 and max(areas) > 0.3  # the whole range of sizes is drawn
    np.testing.assert_array_equal(out, erase(x, np.random.default_rng(7)))  # a pure function of the generator
    assert RandomErasing(p=0.0)(x, np.random.default_rng(7)) is not x
    np.testing.assert_array_equal(RandomErasing(p=0.0)(x, np.random.default_rng(7)), x)
    assert sum(box is not None for box in erased_boxes(x, RandomErasing(p=1.0)(x, np.random.default_rng(8)))) >= 398
    with pytest.raises(ValueError, match="p must be in"):
        RandomErasing(p=1.5)
    with pytest.raises(ValueError, match="area"):
        RandomErasing(area=(0.5, 0.2))


def test_random_crop_pads_by_an_eighth_of_the_side_and_composes_with_erasing(digits):
    assert (crop_padding(32), crop_padding(28), crop_padding(8)) == (4, 3, 1)
    config = RunConfig.from_values({"dataset": "fashion", "random_crop": True})
    crop = make_augment(config, digits)
    assert isinstance(crop, Augment) and crop.max_shift == 1 and crop.flip is True
    both = make_augment(config.replace(random_erasing=0.5), digits)
    assert isinstance(both, Pipeline) and [type(t) for t in both.transforms] == [Augment, RandomErasing]
    assert both.transforms[1].p == 0.5 and both.transforms[1].area == (0.02, 0.4)
    x = digits.x_train[:64]
    out = both(x, np.random.default_rng([0, 1, 2]))
    np.testing.assert_array_equal(out, both(x, np.random.default_rng([0, 1, 2])))  # (seed, epoch, step) -> batch
    erased_only = make_augment(config.replace(random_crop=False, random_erasing=0.5), digits)
    assert isinstance(erased_only, RandomErasing)
    assert make_augment(config.replace(random_crop=False), digits) is None
    with pytest.raises(ConfigError, match="--augment and --random-crop both move the image"):
        RunConfig.from_values({"augment": True, "random_crop": True})


def test_trainer_augments_training_batches_only(digits):
    seen = []

    def augment(x, rng):
        seen.append(x.copy())
        return x

    trainer, _ = quiet_trainer(compiled_model(digits), augment=augment)
    trainer.fit(digits.x_train, digits.y_train, 2, (digits.x_val, digits.y_val))
    assert [len(b) for b in seen] == [32, 32, 26] * 2  # 90 training images per epoch, never the 10 validation
    assert sorted(map(bytes, np.concatenate(seen[:3]))) == sorted(map(bytes, digits.x_train))


# ----------------------------------------------------------------------------- NaN guard

def test_nan_loss_stops_naming_epoch_and_batch(digits):
    """A weight corrupted to NaN before step 3 of epoch 2 makes that batch's loss NaN."""
    model = compiled_model(digits)

    def corrupt(x, rng):
        if (trainer.state.epoch, trainer.state.step) == (1, 2):
            model.layers[-1].params["W"][0, 0] = np.nan
        return x

    trainer, _ = quiet_trainer(model, augment=corrupt)
    with pytest.raises(TrainingDiverged, match=r"^loss is nan at epoch 2, batch 3; stopped"):
        trainer.fit(digits.x_train, digits.y_train, 3, (digits.x_val, digits.y_val))
    assert trainer.state.history["epoch"] == [1]  # epoch 1 completed and stays recorded


def test_nan_or_infinite_inputs_are_refused(digits):
    trainer, _ = quiet_trainer(compiled_model(digits))
    for bad in (np.nan, np.inf):
        x = digits.x_train.copy()
        x[5, 0, 3, 3] = bad
        with pytest.raises(ConfigError, match="the training images contain NaN or infinite values"):
            trainer.fit(x, digits.y_train, 1)
    with pytest.raises(ConfigError, match=r"labels must be in \[0, 10\), found \[0, 10\]"):
        trainer.fit(digits.x_train, np.where(digits.y_train == 9, 10, digits.y_train), 1)
    with pytest.raises(ConfigError, match=r"images of shape \(1, 9, 9\) do not fit a model built for"):
        trainer.fit(np.zeros((4, 1, 9, 9), np.float32), digits.y_train[:4], 1)


# ----------------------------------------------------------------------------- epoch-end hooks

def test_callbacks_see_every_epoch_row_and_may_stop_training(digits):
    """``fit(callbacks=[...])``: each hook gets (epoch, history row) after every epoch; one returning True
    (an Optuna pruner's "prune") ends training after that epoch, without marking the run stopped early."""
    trainer, _ = quiet_trainer(compiled_model(digits))
    seen = []

    class Pruner:
        def on_epoch_end(self, epoch, row):
            seen.append((epoch, row["val_loss"]))
            return epoch == 2

    calls = []
    history = trainer.fit(digits.x_train, digits.y_train, 5, (digits.x_val, digits.y_val),
                          callbacks=[Pruner(), lambda epoch, row: calls.append(epoch)])
    assert history["epoch"] == [1, 2] and calls == [1, 2]  # the later hook still saw epoch 2
    assert seen == [(1, history["val_loss"][0]), (2, history["val_loss"][1])]
    assert trainer.stopped_by_callback and not trainer.state.stopped_early and not trainer.state.interrupted
    assert trainer.model.optimizer.t == 2 * -(-len(digits.y_train) // 32)  # two epochs of steps, no more
