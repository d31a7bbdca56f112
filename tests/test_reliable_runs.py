"""Hardening of runs and files (docs/reliable-runs.md, "What is guaranteed"): the run-folder lock, output
errors and full disks, the completion marker, leftovers, conflicting folders, and bounded memory for hostile
model and data files. Digits with a few hundred images keeps every run to a second or two."""
from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest

from scratchcnn import evaluate, train
from scratchcnn.files.checkpoint import load_checkpoint
from scratchcnn.files.runfolder import LOCK_FILE, RunFolder
from tests.test_cli import files_of, one_error_line

DIGITS = ["--dataset", "digits", "--train-limit", "300", "--epochs", "2", "--no-progress"]
EVALUATE = "python -m scratchcnn.evaluate: error: "
REPORTS = ["checkpoint.npz", "confusion_matrix.png", "curves.png", "history.csv", "metrics.json", "model.npz",
           "samples.png"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    assert train.main(DIGITS + ["--out", str(run_dir)]) == 0
    return run_dir


def copy_run(digits_run, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    return run_dir


# ----------------------------------------------------------------------------- the run-folder lock

HOLD = textwrap.dedent("""
    import sys
    from scratchcnn.files.runfolder import RunFolder
    with RunFolder(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes stdin (or kills us)
""")


def hold(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_locked_folder_is_refused_naming_the_holder_and_freed_when_it_dies(digits_run, tmp_path, capsys):
    run_dir = copy_run(digits_run, tmp_path)
    before = files_of(run_dir)
    holder = hold(run_dir)
    busy = f"run folder {run_dir} is in use by process {holder.pid} (a training run, --resume or evaluate)"
    try:
        assert train.main(["--resume", str(run_dir), "--epochs", "3", "--no-progress"]) == 1
        assert busy in one_error_line(capsys.readouterr().err)
        assert evaluate.main([str(run_dir), "--no-progress"]) == 1
        assert busy in one_error_line(capsys.readouterr().err, EVALUATE)
        empty = tmp_path / "new"
        other = hold(empty)  # a new run into a folder that another start holds
        assert train.main(DIGITS + ["--out", str(empty)]) == 1
        assert f"run folder {empty} is in use by process {other.pid}" in one_error_line(capsys.readouterr().err)
        other.kill()  # kill -9: the operating system releases the lock
        other.wait()
    finally:
        holder.stdin.close()
        holder.wait()
    assert files_of(run_dir) == before  # nothing was touched, and the holder removed its lock file
    assert train.main(DIGITS + ["--out", str(empty)]) == 0  # the killed holder's stale lock file is no obstacle
    assert not (empty / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- output paths and full disks

def test_unwritable_output_paths_are_one_line_before_any_data_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("a-file").write_text("x")
    for out, message in (("a-file", "run folder a-file is a file, not a folder"),
                         ("a-file/run", "cannot create the folder a-file/run: Not a directory (errno 20)"),
                         ("/proc/x", "cannot create the folder /proc/x: No such file or directory")):
        # --data-dir names a folder without the data set: had data loading come first, it would fail instead.
        assert train.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--out", out, "--no-progress"]) == 1
        assert message in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def no_space_for(name: str, monkeypatch, after: int = 0):
    """Make the atomic rename of every write of ``name`` (after the first ``after``) fail with ENOSPC."""
    real, seen = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            seen.append(dst)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_full_disk_at_a_checkpoint_then_at_a_plot_loses_nothing_and_resume_finishes(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        no_space_for("checkpoint.npz", patch, after=1)  # epoch 1's checkpoint is written, epoch 2's is not
        assert train.main(DIGITS + ["--out", str(run_dir)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert (f"cannot write {run_dir / 'checkpoint.npz'}: No space left on device (errno 28); the previous "
            "checkpoint.npz, if any, is unchanged") in line
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.npz"]  # no temporary left behind
    assert load_checkpoint(run_dir / "checkpoint.npz", backend="numpy")[1].epoch == 1

    with monkeypatch.context() as patch:
        no_space_for("samples.png", patch)  # the last plot: training is done, the reports are not
        assert train.main(["--resume", str(run_dir), "--no-progress"]) == 1
    assert f"cannot write {run_dir / 'samples.png'}: No space left on device" in one_error_line(
        capsys.readouterr().err)
    assert not (run_dir / "metrics.json").exists() and (run_dir / "model.npz").exists()

    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 0  # space again: finish what is missing
    assert "training is complete (2 epochs) but its reports are not; writing them" in capsys.readouterr().out
    assert sorted(p.name for p in run_dir.iterdir()) == REPORTS
    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 0
    assert "is complete (2 epochs); nothing to do" in capsys.readouterr().out


# ----------------------------------------------------------------------------- leftovers and failed starts

def test_resume_and_evaluate_remove_temporaries_of_killed_writes(digits_run, tmp_path, capsys):
    run_dir = copy_run(digits_run, tmp_path)
    (run_dir / "evaluation").mkdir()
    leftovers = [run_dir / ".checkpoint.npz.k2j3.tmp", run_dir / ".metrics.json.x9.tmp",
                 run_dir / ".samples.png.tmp.png", run_dir / "evaluation" / ".curves.png.a1b2.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    assert evaluate.main([str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert all(f"removed {path}, left by an interrupted write" in out for path in leftovers)
    assert not any(path.exists() for path in leftovers)
    (run_dir / ".history.csv.zz.tmp").write_bytes(b"half")
    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 0
    assert not (run_dir / ".history.csv.zz.tmp").exists()


def test_failed_starts_leave_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCRATCHCNN_BACKEND", "bogus")
    assert train.main(DIGITS + ["--out", "deep/er/run"]) == 1
    assert "backend 'bogus' is not available" in one_error_line(capsys.readouterr().err)
    monkeypatch.delenv("SCRATCHCNN_BACKEND")
    assert train.main(DIGITS + ["--out", "run", "--lr", "1e30"]) == 3  # diverges before any checkpoint
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- conflicting folders and options

def test_training_and_evaluation_never_overwrite_each_other(digits_run, tmp_path, capsys):
    run_dir = copy_run(digits_run, tmp_path)
    assert train.main(DIGITS + ["--out", str(run_dir / "evaluation")]) == 1  # before any evaluation, too
    assert "holds (or is meant for) the reports of an evaluation" in one_error_line(capsys.readouterr().err)
    assert evaluate.main([str(run_dir), "--out", str(run_dir), "--no-progress"]) == 1
    assert "the folder holds a training run, whose reports evaluate would overwrite" in one_error_line(
        capsys.readouterr().err, EVALUATE)
    assert not (run_dir / "evaluation").exists()
    assert train.main(["--resume", str(run_dir), "--seed", "0"]) == 1  # the default value, given: still refused
    assert "--seed cannot be combined with --resume" in one_error_line(capsys.readouterr().err)


def test_evaluate_needs_only_the_model_when_the_checkpoint_is_corrupt(digits_run, tmp_path, capsys):
    run_dir = copy_run(digits_run, tmp_path)
    (run_dir / "checkpoint.npz").write_bytes(b"garbage")
    assert evaluate.main([str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"warning: no history.csv or curves.png: {run_dir / 'checkpoint.npz'}: cannot read the archive" in out
    recorded = json.loads((run_dir / "metrics.json").read_text())
    again = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert again["test_accuracy"] == recorded["test_accuracy"]
    assert sorted(p.name for p in (run_dir / "evaluation").iterdir()) == ["confusion_matrix.png", "metrics.json",
                                                                          "samples.png"]


def test_a_batch_larger_than_the_data_set_is_one_batch(tmp_path, capsys):
    assert train.main(DIGITS + ["--epochs", "1", "--batch-size", "1000000000000", "--out", str(tmp_path / "r")]) == 0
    history = (tmp_path / "r" / "history.csv").read_text().splitlines()
    assert len(history) == 2


# ----------------------------------------------------------------------------- bounded memory for hostile files

MEMORY = textwrap.dedent("""
    import gzip, io, json, resource, sys, zipfile
    import numpy as np
    from scratchcnn.data.idx import read_idx
    from scratchcnn.errors import DataError, ModelFileError
    from scratchcnn.files.serialization import MODEL_FORMAT, load_model, read_archive, write_archive

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    good, folder = sys.argv[1], sys.argv[2]
    meta, arrays = read_archive(good, MODEL_FORMAT)
    files = {}
    def crafted(name, edit):
        m = json.loads(json.dumps(meta))
        edit(m)
        files[name] = write_archive(f"{folder}/{name}.npz", m, arrays)
    # The last Dense declared with 4 million outputs: hundreds of millions of weights; the file holds the
    # small model's arrays.
    crafted("dense", lambda m: m["architecture"]["layers"][-1]["config"].update(out_features=4 * 10**6))
    # A 1x1 convolution of 30000x30000 images: 3.6 GB per image, from a file of a few hundred bytes.
    wide = json.loads(json.dumps(meta))
    wide["architecture"] = {"input_shape": [1, 30000, 30000], "layers": [
        {"class": "Conv2D", "config": {"in_channels": 1, "out_channels": 1, "kernel_size": [1, 1]}}]}
    files["input"] = write_archive(f"{folder}/input.npz", wide, {"param/conv2d_0.W": np.ones((1, 1, 1, 1), "f4"),
                                                              "param/conv2d_0.b": np.zeros(1, "f4")})
    crafted("conv", lambda m: m["architecture"]["layers"][0]["config"].update(out_channels=10**9))
    deep = f"{folder}/deep.npz"  # JSON nested 200,000 levels deep
    np.savez(deep, meta=np.frombuffer(b"[" * 200000 + b"]" * 200000, np.uint8))
    files["deep"] = deep
    big = f"{folder}/big.npz"  # an .npy header declaring 10**12 float32 elements in a few bytes
    with zipfile.ZipFile(big, "w") as z:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
        z.writestr("param/dense_0.W.npy", header.getvalue() + b"\\0" * 64)
    files["big"] = big
    pickled = f"{folder}/pickle.npz"  # a raw pickle as a member
    with zipfile.ZipFile(pickled, "w") as z:
        z.writestr("meta.npy", b"\\x80\\x04K\\x01.")
    files["pickle"] = pickled
    load_model(good, backend="numpy")  # imports and first-use allocations happen before the baseline
    baseline = peak_mb()
    messages = {}
    for name, path in files.items():
        try:
            load_model(path, backend="numpy")
            messages[name] = "loaded"
        except ModelFileError as exc:
            messages[name] = str(exc)
    # A gzip bomb: a valid MNIST-shaped header and data, then 180 MB of zeros, inflating from 0.2 MB.
    bomb = f"{folder}/train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        zeros = bytes(2**24)
        for _ in range(2**27 // 2**24 + 3):
            f.write(zeros)
    models_mb = peak_mb() - baseline
    before_bomb = peak_mb()
    try:
        read_idx(bomb, (60000, 28, 28), "u1")
        messages["bomb"] = "loaded"
    except DataError as exc:
        messages["bomb"] = str(exc)
    print(json.dumps({"messages": messages, "models_mb": models_mb,
                      "bomb_mb": peak_mb() - before_bomb}))
""")


def test_hostile_model_and_data_files_are_refused_in_bounded_memory(digits_run, tmp_path):
    """Measured in a fresh process with getrusage: a few kB of file cannot make loading take gigabytes."""
    result = subprocess.run([sys.executable, "-c", MEMORY, str(digits_run / "model.npz"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    messages = report["messages"]
    assert "the architecture declares" in messages["dense"] and "more than the 100,000,000 allowed" in \
        messages["dense"], messages["dense"]
    assert "activations reach 1,800,000,000 elements, more than the" in messages["input"]  # input and output
    assert "Conv2D" in messages["conv"] and "architecture mismatch" in messages["conv"]
    assert "'meta' is JSON nested too deeply" in messages["deep"]
    assert "declares shape (1000000000000,) (4000000000000 bytes) but holds 64 bytes" in messages["big"]
    assert "member 'meta.npy' is not an .npy array" in messages["pickle"]
    assert "at least 1048576 unexpected bytes after the 47040000 bytes of data" in messages["bomb"]
    for name, message in messages.items():
        assert "\n" not in message and message != "loaded", name
    # The good model is loaded before the baseline (imports); the bomb's data is 47 MB (reading it whole
    # would add the 180 MB of zeros).
    assert report["models_mb"] < 20, report
    assert report["bomb_mb"] < 100, report


def test_predict_holds_one_decoded_image_at_a_time(digits_run, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from scratchcnn import predict

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((300, 200), 40 * i, np.uint8)).save(paths[-1])
    decoded, real = [], predict.read_image

    def read_image(path, channels=1):
        # Every image decoded before this one must be garbage by now.
        assert all(ref() is None for ref in decoded), "an earlier decoded image is still held"
        pixels, size = real(path, channels)
        decoded.append(weakref.ref(pixels))
        return pixels, size

    monkeypatch.setattr(predict, "read_image", read_image)
    assert predict.main(["--model", str(digits_run), *map(str, paths)]) == 0
    assert len(decoded) == 4 and capsys.readouterr().out.count("(200x300") == 4
