"""Checkpoints and resume: an interrupted run, resumed, ends with the very weights of an uninterrupted one.

In-process tests stop the ``Trainer`` at chosen steps; subprocess tests SIGKILL
and SIGINT ``python -m scratchcnn.train`` on the digits data set while its
progress bar shows the second epoch under way, then ``--resume`` it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from scratchcnn.engine.augment import Augment, Pipeline, RandomErasing
from scratchcnn.files.checkpoint import load_checkpoint, save_checkpoint
from scratchcnn.data import load_dataset
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.files.serialization import load_model
from scratchcnn.engine.training import Trainer
from tests.conftest import host_backends

EPOCHS, BATCH, SEED, LR = 2, 32, 3, 3e-3


@pytest.fixture(scope="module")
def digits():
    # 180 training and 20 validation images of 8x8: 6 steps per epoch at batch size 32.
    return load_dataset("digits", val_fraction=0.1, train_limit=200, seed=0, progress=False)


class Hook:
    """Augmentation (shifts and random erasing, so the (seed, epoch, step) stream is exercised) that can also
    stop the trainer.

    ``stop_at=(epoch, step)`` (0-based) requests a stop while that step runs; it then completes
    and the trainer stops before the next one, as after a Ctrl-C.
    """

    def __init__(self, fill, stop_at=None):
        self.augment = Pipeline(Augment(max_shift=1, fill=fill), RandomErasing(p=0.5))
        self.stop_at, self.trainer = stop_at, None

    def __call__(self, x, rng):
        st = self.trainer.state
        if (st.epoch, st.step) == self.stop_at:
            self.trainer.request_stop()
        return self.augment(x, rng)


def make_trainer(model, splits, stop_at=None, state=None):
    hook = Hook(float(splits.x_train.min()), stop_at)
    trainer = Trainer(model, batch_size=BATCH, seed=SEED, base_lr=LR, lr_schedule="cosine", augment=hook,
                      progress=False, log=lambda line: None, state=state)
    hook.trainer = trainer
    return trainer


def new_model(preset, splits, backend):
    model = build_model(preset, splits.input_shape, 10, seed=1, backend=backend)
    return model.compile(Adam(LR), SoftmaxCrossEntropy())


def snapshot(model, trainer):
    """Everything that must agree: weights and buffers, Adam moments and step count, dropout counters."""
    opt = model.optimizer
    return ({**model.named_arrays(), **{f"optim/{k}": v for k, v in opt.state_arrays().items()}},
            opt.t, model.layer_states(), {k: trainer.state.history[k] for k in ("loss", "accuracy", "val_loss")})


def assert_same_run(expected, got):
    arrays, t, layer_states, history = expected
    assert sorted(got[0]) == sorted(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[0][key], value, err_msg=key)  # bit for bit, not approximately
    assert (got[1], got[2], got[3]) == (t, layer_states, history)


@pytest.mark.parametrize("backend", host_backends())
@pytest.mark.parametrize("preset", ["classic", "vgg-small"])  # Dropout counters; BatchNorm running stats
def test_resumed_run_equals_uninterrupted_run(backend, preset, digits, tmp_path):
    """Stopped mid-epoch (epoch 2, after step 4) or at the end of epoch 1, checkpointed to a file,
    reloaded into a fresh process-like state and continued: every array equals the uninterrupted run's."""
    s = digits
    data = (s.x_train, s.y_train, EPOCHS, (s.x_val, s.y_val))
    model = new_model(preset, s, backend)
    trainer = make_trainer(model, s)
    trainer.fit(*data)
    expected = snapshot(model, trainer)
    assert len(expected[3]["loss"]) == EPOCHS and expected[1] == EPOCHS * 6

    # Mid-epoch: the checkpoint holds step 4 of epoch 2 and that epoch's partial sums.
    model = new_model(preset, s, backend)
    trainer = make_trainer(model, s, stop_at=(1, 3))
    trainer.fit(*data)
    assert (trainer.state.epoch, trainer.state.step, trainer.state.interrupted) == (1, 4, True)
    save_checkpoint(tmp_path / "mid.npz", model, trainer.state, {"run": "mid"})
    model, state, config = load_checkpoint(tmp_path / "mid.npz", backend=backend)
    assert config == {"run": "mid"} and (state.epoch, state.step, model.optimizer.t) == (1, 4, 10)
    trainer = make_trainer(model, s, state=state)
    trainer.fit(*data)
    assert_same_run(expected, snapshot(model, trainer))

    # Epoch end: the checkpoint the CLI writes after each epoch (here the run then stops, as if killed).
    model = new_model(preset, s, backend)
    path = tmp_path / "epoch.npz"

    trainer = make_trainer(model, s)

    def checkpoint_and_stop(epoch, row):
        save_checkpoint(path, trainer.model, trainer.state, {})
        trainer.request_stop()

    trainer.fit(*data, callbacks=[checkpoint_and_stop])
    model, state, _ = load_checkpoint(path, backend=backend)
    assert (state.epoch, state.step) == (1, 0)
    trainer = make_trainer(model, s, state=state)
    trainer.fit(*data)
    assert_same_run(expected, snapshot(model, trainer))


# ------------------------------------------------------------------ the CLI, in subprocesses

# Batch size 1: 540 steps an epoch, so a signal sent once epoch 2 is under way lands mid-epoch.
RUN_ARGS = ["--dataset", "digits", "--train-limit", "600", "--epochs", "3", "--batch-size", "1",
            "--lr-schedule", "cosine", "--augment", "--seed", "5"]


def start_train(args, cwd: Path) -> tuple[subprocess.Popen, dict]:
    """Start the training CLI; a thread collects its stderr (the progress bars) into ``out["err"]``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "scratchcnn.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = {"err": b""}

    def read():
        while chunk := os.read(proc.stderr.fileno(), 4096):
            out["err"] += chunk

    out["thread"] = threading.Thread(target=read, daemon=True)
    out["thread"].start()
    return proc, out


def wait_until_epoch_running(proc, out, epoch: int, timeout=180.0) -> None:
    """Block until the progress bar of ``epoch`` shows at least one finished batch."""
    bar = re.compile(rf"epoch {epoch}/3:\s+\d+%\|[^|\r]*\|\s*[1-9]\d*/\d+".encode())
    deadline = time.monotonic() + timeout
    while not bar.search(out["err"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"training ended or stalled before epoch {epoch} started: {out['err'][-2000:]!r}")
        time.sleep(0.01)


def finish(proc, out, timeout=180) -> tuple[int, str, str]:
    # communicate() reads the stderr pipe too, so the last chunks (the final message) may reach it
    # rather than the reader thread: keep both.
    stdout, rest = proc.communicate(timeout=timeout)
    out["thread"].join(timeout=10)
    return proc.returncode, stdout.decode(), (out["err"] + (rest or b"")).decode(errors="replace")


def run_train(args, cwd: Path) -> tuple[int, str, str]:
    proc, out = start_train(args, cwd)
    return finish(proc, out)


def final_weights(run_dir: Path) -> dict:
    model, _ = load_model(run_dir / "model.npz", backend="numpy")
    return model.named_arrays()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    code, stdout, stderr = run_train(RUN_ARGS + ["--out", "run", "--no-progress"], cwd)
    assert code == 0, stderr
    return cwd / "run"


def check_completed_like(run_dir: Path, reference: Path) -> None:
    """A valid model with 3 epochs of history, equal (bit for bit) to the uninterrupted run's."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3
    model, state, _ = load_checkpoint(run_dir / "checkpoint.npz", backend="numpy")
    assert state.history["epoch"] == [1, 2, 3] and (state.epoch, state.step) == (3, 0)
    expected = json.loads((reference / "metrics.json").read_text())
    assert metrics["test_loss"] == expected["test_loss"]
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]
    reference_weights, weights = final_weights(reference), final_weights(run_dir)
    for key, value in reference_weights.items():
        np.testing.assert_array_equal(weights[key], value, err_msg=key)
    columns = lambda path: [line.split(",")[:5] for line in path.read_text().splitlines()]  # epoch .. val_acc
    assert columns(run_dir / "history.csv") == columns(reference / "history.csv")


def test_sigkill_mid_epoch_then_resume_completes(uninterrupted, tmp_path):
    """kill -9 while epoch 2 runs loses at most that epoch: --resume restarts from the last epoch-end
    checkpoint and completes all 3 epochs with the uninterrupted run's final weights."""
    proc, out = start_train(RUN_ARGS + ["--out", "run"], tmp_path)
    wait_until_epoch_running(proc, out, 2)
    proc.send_signal(signal.SIGKILL)
    code, _, _ = finish(proc, out)
    assert code == -signal.SIGKILL
    run_dir = tmp_path / "run"
    assert not (run_dir / "model.npz").exists()
    _, state, _ = load_checkpoint(run_dir / "checkpoint.npz", backend="numpy")  # intact: written atomically
    done = state.epoch
    assert done in (1, 2) and state.step == 0  # the kill landed in epoch 2 (or, on a slow machine, 3)

    code, stdout, stderr = run_train(["--resume", "run", "--no-progress"], tmp_path)
    assert code == 0, stderr
    assert f"resuming run at epoch {done + 1}, step 0" in stdout
    trained = [int(e) for e in re.findall(r"^epoch (\d)/3  loss", stdout, re.MULTILINE)]
    assert trained == list(range(done + 1, 4))  # no epoch lost beyond the current one, none trained twice
    check_completed_like(run_dir, uninterrupted)

    # Resuming a finished run changes nothing.
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, stdout, _ = run_train(["--resume", "run"], tmp_path)
    assert code == 0 and "is complete (3 epochs); nothing to do" in stdout
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("signum,code,word", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, r"terminated \(SIGTERM\)")])
def test_signal_saves_mid_epoch_checkpoint_and_resumes(signum, code, word, uninterrupted, tmp_path):
    """Ctrl-C (or SIGTERM, as a batch system or ``kill`` sends) in epoch 2: the step under way finishes,
    a mid-epoch checkpoint is saved, one message, exit code 130 (143); --resume continues from that
    step and ends with the uninterrupted run's weights."""
    proc, out = start_train(RUN_ARGS + ["--out", "run"], tmp_path)
    wait_until_epoch_running(proc, out, 2)
    proc.send_signal(signum)
    returncode, _, stderr = finish(proc, out)
    assert returncode == code, stderr
    message = re.search(rf"{word} at epoch (\d), step (\d+); checkpoint saved\. "
                        r"Continue with: python -m scratchcnn.train --resume run", stderr)
    assert message, stderr
    assert "Traceback" not in stderr
    _, state, _ = load_checkpoint(tmp_path / "run" / "checkpoint.npz", backend="numpy")
    assert (state.epoch + 1, state.step) == (int(message[1]), int(message[2]))
    assert state.epoch in (1, 2) and 0 < state.step < 540  # mid-epoch: 540 images, 1 per step
    assert not (tmp_path / "run" / "model.npz").exists()

    code, stdout, stderr = run_train(["--resume", "run", "--no-progress"], tmp_path)
    assert code == 0, stderr
    assert f"resuming run at epoch {state.epoch + 1}, step {state.step}" in stdout
    check_completed_like(tmp_path / "run", uninterrupted)
