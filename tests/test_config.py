"""The typed run configuration (``scratchcnn.apps.config.RunConfig``): one set of checks for the command
line and for the options stored in a checkpoint, so a crafted ``--resume`` checkpoint gets one line
naming the option (found vs expected) and a non-zero exit instead of a traceback or a run that trains
uphill; and the option conflicts that used to be accepted or blamed on the wrong flag."""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from scratchcnn import train
from scratchcnn.apps.config import RESUME_OPTIONS, RUN_OPTIONS, RunConfig
from scratchcnn.errors import ConfigError, ModelFileError
from scratchcnn.files.checkpoint import CHECKPOINT_FORMAT
from scratchcnn.files.serialization import read_archive, write_archive
from tests.conftest import DATA_DIR

TRAIN = "python -m scratchcnn.train"


def one_error_line(text: str) -> str:
    assert text.startswith(f"{TRAIN}: error:") and text.count("\n") == 1 and "Traceback" not in text, text
    return text


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A finished one-epoch digits run (200 images) with its checkpoint."""
    out = tmp_path_factory.mktemp("config") / "run"
    assert train.main(["--dataset", "digits", "--train-limit", "200", "--epochs", "1", "--out", str(out),
                       "--no-progress"]) == 0
    return out


def crafted(digits_run: Path, tmp_path: Path, **changes) -> Path:
    """A copy of the run whose checkpoint stores ``changes`` in its options (None: the option removed),
    with 2 epochs to train so that a checkpoint the checks let through would train on."""
    run = tmp_path / "crafted"
    shutil.copytree(digits_run, run)
    (run / "metrics.json").unlink()
    meta, arrays = read_archive(run / "checkpoint.npz", CHECKPOINT_FORMAT)
    options = {**meta["config"], "epochs": 2}
    for key, value in changes.items():
        if value is REMOVE:
            del options[key]
        else:
            options[key] = value
    meta["config"] = options
    write_archive(run / "checkpoint.npz", meta, arrays)
    return run


REMOVE = object()


@pytest.mark.parametrize("changes,message", [
    ({"lr_schedule": "bogus"}, "option 'lr_schedule' is 'bogus', expected one of constant, step, cosine, onecycle"),
    ({"seed": -1}, r"option 'seed' is -1, expected an integer in [0, 2**32)"),
    ({"train_limit": "x"}, "option 'train_limit' is 'x', expected a positive integer or null"),
    ({"lr": -1}, "option 'lr' is -1, expected a positive number"),
    ({"lr": float("nan")}, "option 'lr' is nan, expected a positive number"),
    ({"batch_size": 2.5}, "option 'batch_size' is 2.5, expected a positive integer"),
    ({"augment": "yes"}, "option 'augment' is 'yes', expected true or false"),
    ({"dataset": "imagenet"}, "option 'dataset' is 'imagenet', expected one of"),
    ({"label_smoothing": 1.5}, "option 'label_smoothing' is 1.5, expected a number in [0, 1)"),
    ({"momentum": 0.5}, "--momentum applies to --optimizer sgd only"),
    ({"bogus_option": 1}, "unknown option 'bogus_option'"),
    ({"seed": REMOVE}, "the run's options lack seed"),
])
def test_crafted_checkpoint_options_give_one_line_and_exit_1(changes, message, digits_run, tmp_path, capsys):
    run = crafted(digits_run, tmp_path, **changes)
    before = (run / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--no-progress"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{run / 'checkpoint.npz'}: " in line and message in line, line
    assert (run / "checkpoint.npz").read_bytes() == before and not (run / "metrics.json").exists()


def test_checkpoint_of_an_older_version_still_resumes(digits_run, tmp_path, capsys):
    """Options added later (label smoothing, transfer) are absent from older checkpoints, and Adam runs
    stored SGD's default momentum 0.9: such a checkpoint resumes, with the defaults."""
    run = crafted(digits_run, tmp_path, label_smoothing=REMOVE, tta_flip=REMOVE, init_from=REMOVE,
                  init_layers=REMOVE, freeze=REMOVE, momentum=0.9)
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2
    assert metrics["config"]["momentum"] is None and metrics["config"]["label_smoothing"] == 0.0


def test_stored_options_round_trip_through_the_same_checks():
    config = RunConfig.from_values({"dataset": "digits", "optimizer": "sgd", "momentum": 0.5, "seed": 7})
    assert config.epochs == 30 and config.sgd_momentum == 0.5  # the data set's default epochs
    assert RunConfig.from_stored(json.loads(json.dumps(config.to_dict())), "c.npz") == config
    assert set(config.to_dict()) == set(RUN_OPTIONS) and set(RESUME_OPTIONS) == {"epochs", "data_dir", "backend"}
    with pytest.raises(ModelFileError, match=r"^c.npz: the run's options are list, expected an object$"):
        RunConfig.from_stored([], "c.npz")
    with pytest.raises(ConfigError, match=r"^--lr is 0, expected a positive number$"):
        config.replace(lr=0)


def test_every_option_is_on_the_command_line_with_its_default():
    parser = train.build_parser()
    args = parser.parse_args([])
    for f in fields(RunConfig):
        assert getattr(args, f.name) == f.default, f.name
    assert RunConfig.from_args(args) == RunConfig.from_values({})
    assert RunConfig.from_args(parser.parse_args(["--lr", "0.01", "--augment"])).lr == 0.01


# ----------------------------------------------------------------------------- option conflicts

@pytest.mark.parametrize("argv,message", [
    (["--momentum", "0.5"], "--momentum applies to --optimizer sgd only; adam has no momentum setting"),
    (["--momentum", "0.9", "--optimizer", "adam"], "--momentum applies to --optimizer sgd only"),
    (["--train-limit", "5", "--early-stopping", "2"],
     "--early-stopping needs a validation set, but --train-limit 5 leaves no validation image (0.1 x 5 images "
     "rounds to 0); use a --train-limit of at least 6"),
    (["--train-limit", "20", "--save-best", "--val-fraction", "0.01"], "--save-best needs a validation set, "
     "but --train-limit 20 leaves no validation image"),
])
def test_option_conflicts_name_the_real_cause(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--dataset", "digits", "--no-progress"] + argv) == 1
    line = one_error_line(capsys.readouterr().err)
    assert message in line and "--val-fraction is 0" not in line, line
    assert list(tmp_path.iterdir()) == []


def test_momentum_with_sgd_is_used():
    config = RunConfig.from_values({"optimizer": "sgd"})
    assert config.sgd_momentum == 0.9
    assert RunConfig.from_values({"optimizer": "sgd", "momentum": 0.0}).sgd_momentum == 0.0


def test_empty_data_dir_is_refused(tmp_path, monkeypatch, capsys):
    """An empty --data-dir (an unset shell variable, say) does not silently fall back to $SCRATCHCNN_DATA."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--dataset", "digits", "--data-dir", "", "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --data-dir: expected a non-empty path, got ''" in err
    assert list(tmp_path.iterdir()) == []


def test_metrics_name_the_data_files_read(fashion_run):
    data_files = json.loads((fashion_run / "metrics.json").read_text())["data_files"]
    assert sorted(data_files) == ["test_images", "test_labels", "train_images", "train_labels"]
    for path in data_files.values():
        assert Path(path).is_absolute() and Path(path).is_file()
        assert Path(path).resolve().is_relative_to(DATA_DIR.resolve())


def test_kind_parse_is_argparse_type():
    kind = {f.name: f.metadata["kind"] for f in fields(RunConfig)}
    assert kind["batch_size"].parse("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer, got 'x'"):
        kind["batch_size"].parse("x")
