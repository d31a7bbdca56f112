"""``python -m scratchcnn.tune``: Optuna studies of training runs on the offline ``digits`` set.

One study is run in steps (module fixture): two worker processes sharing its
SQLite file, then a rerun that continues it with a learning rate too small to
learn, which the median pruner must stop after one epoch. A PostgreSQL server,
started by the test where Debian's binaries are installed, is shared by two
workers the same way.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest

from scratchcnn import evaluate, train
from scratchcnn.apps.tune.space import parse_param
from scratchcnn.apps.tune.workers import thread_counts
from scratchcnn.errors import TrainingDiverged
from scratchcnn.tune import main

# 400 digits images (360 after the validation split), 2 epochs: a trial is a few seconds. With Adam at
# 1e-2..3e-2 the network is far above chance after one epoch; at 1e-7 it stays where it started.
BASE = ["--dataset", "digits", "--epochs", "2", "--train-limit", "400", "--backend", "cpu", "--seed", "0"]
SEARCH = ["--search", "lr=1e-2:3e-2:log", "--search", "batch_size=16,32"]


def _study(study_dir: Path, name="digits-classic"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'study.db'}")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A study of two trials run by two worker processes, then continued with one trial that is pruned."""
    folder = tmp_path_factory.mktemp("tune") / "study"
    assert main(BASE + SEARCH + ["--study-dir", str(folder), "--trials", "2", "--workers", "2"]) == 0
    first = _study(folder).trials
    # The same study continued, its learning rate now too small to learn: pruned after epoch 1.
    assert main(BASE + ["--search", "lr=1e-7:2e-7:log", "--search", "batch_size=16,32", "--study-dir", str(folder),
                        "--trials", "1", "--pruner", "median", "--pruner-startup", "1"]) == 0
    return folder, first


def test_two_worker_processes_share_one_sqlite_study(study_dir):
    folder, first = study_dir
    assert [t.state.name for t in first] == ["COMPLETE", "COMPLETE"]
    pids = {t.user_attrs["pid"] for t in first}
    assert len(pids) == 2 and os.getpid() not in pids  # two processes, neither of them this one
    cores = len(os.sched_getaffinity(0))
    assert sorted(t.user_attrs["threads"] for t in first) == sorted(thread_counts(2, cores))
    for t in first:
        run = Path(t.user_attrs["run_dir"])
        assert run.parent == folder.resolve() and (run / "model.npz").is_file()
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["epochs_completed"] == 2
        assert t.value == pytest.approx(metrics["val_accuracy"])
        assert 1e-2 <= t.params["lr"] <= 3e-2 and t.params["batch_size"] in (16, 32)


def test_rerun_continues_the_study_and_the_pruner_stops_a_hopeless_trial(study_dir):
    folder, _ = study_dir
    trials = _study(folder).trials
    assert len(trials) == 3
    pruned = trials[2]
    assert pruned.state.name == "PRUNED" and pruned.params["lr"] < 1e-6
    assert pruned.user_attrs["epochs"] == 1 and pruned.user_attrs["pruned"]
    # Still an ordinary, finished run folder, stopped after one epoch.
    run = Path(pruned.user_attrs["run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "model.npz").is_file() and metrics["epochs_completed"] == 1
    best_epoch1 = max(t.intermediate_values[1] for t in trials[:2])
    assert pruned.intermediate_values[1] < best_epoch1


def test_only_the_best_trial_is_scored_on_the_test_set(study_dir):
    folder, _ = study_dir
    trials = _study(folder).trials
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    record = json.loads((folder / "best.json").read_text())
    assert record["trial"] == best.number and record["val_accuracy"] == pytest.approx(best.value)
    for t in trials:
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert ("test_accuracy" in metrics) == (t.number == best.number)
    assert 0.5 < record["test_accuracy"] <= 1.0
    # The table's file has every trial; the plots are PNG files.
    lines = (folder / "trials.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[3].split(",")[1] == "pruned"
    for name in ("optimization_history.png", "param_importances.png", "slice.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_command_line_reproduces_the_trial_options(study_dir):
    folder, _ = study_dir
    record = json.loads((folder / "best.json").read_text())
    words = shlex.split(record["command"])
    assert words[:3] == ["python", "-m", "scratchcnn.train"]
    config = train.config_from_args(train.build_parser().parse_args(words[3:])).to_dict()
    stored = json.loads((Path(record["run_dir"]) / "metrics.json").read_text())["config"]
    assert {k: config[k] for k in config if k != "data_dir"} == {k: stored[k] for k in config if k != "data_dir"}


def test_best_trial_folder_is_evaluated_by_the_evaluate_tool(study_dir):
    folder, _ = study_dir
    record = json.loads((folder / "best.json").read_text())
    assert evaluate.main([record["run_dir"], "--no-progress"]) == 0
    again = json.loads((Path(record["run_dir"]) / "evaluation" / "metrics.json").read_text())
    assert again["test_accuracy"] == pytest.approx(record["test_accuracy"], abs=1e-9)


@pytest.mark.parametrize("search, message", [
    ("lr=abc:1e-2", "lower bound 'abc' is not a number"),
    ("lr=1e-2:1e-4", "must be below the upper bound"),
    ("lr=0:1e-2:log", "lower bound 0 is out of range: lr must be > 0"),
    ("lr=1e-4:1e-2:cubic", "a range is LOW:HIGH or LOW:HIGH:log"),
    ("dropout=0.1,0.2", "unknown parameter 'dropout'"),
    ("batch_size=32,64,32", "a value is repeated"),
    ("batch_size=32.5,64", "value '32.5' is not an integer"),
    ("label_smoothing=0,1.5", "value 1.5 is out of range: label_smoothing must be in [0, 1)"),
    ("lr_schedule=constant,warp", "unknown lr_schedule 'warp'"),
    ("augment=maybe", "'maybe' is not true or false"),
    ("augment=0:1", "takes a list of values"),
    ("lr", "expected NAME=LOW:HIGH[:log] or NAME=V1,V2"),
])
def test_bad_search_strings_give_one_line(search, message, tmp_path, capsys):
    folder = tmp_path / "study"
    assert main(BASE + ["--search", search, "--study-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and repr(search) in err, err
    assert not folder.exists()


def test_option_both_fixed_and_searched_and_grid_over_a_range_give_one_line(tmp_path, capsys):
    folder = tmp_path / "study"
    assert main(BASE + ["--lr", "1e-3", "--search", "lr=1e-4:1e-2", "--study-dir", str(folder)]) == 1
    assert main(BASE + ["--sampler", "grid", "--search", "lr=1e-4:1e-2", "--study-dir", str(folder)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "--lr is given as a fixed option and also searched" in lines[0]
    assert "--sampler grid needs a list of values" in lines[1]
    assert not folder.exists()


def test_searched_value_the_run_refuses_gives_one_line(tmp_path, capsys):
    folder = tmp_path / "study"
    assert main(BASE + ["--search", "momentum=0.8,0.9", "--study-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--momentum applies to --optimizer sgd only" in err, err
    assert not folder.exists()


def test_a_diverged_trial_is_marked_failed_and_the_study_goes_on(tmp_path, monkeypatch):
    from scratchcnn import tune
    from scratchcnn.apps.tune import trial as trial_module
    from scratchcnn.apps.tune.workers import run_trials

    argv = BASE + SEARCH + ["--study-dir", str(tmp_path)]
    spec = tune.spec_from_args(tune.build_parser().parse_args(argv), argv)

    def diverge(config, run_dir, on_epoch, backend=None, log=print):
        raise TrainingDiverged("loss is nan at epoch 1, batch 3; stopped (try a lower --lr)")

    monkeypatch.setattr(trial_module, "train_trial", diverge)
    said = []
    run_trials(spec, 2, None, say=said.append)
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all("loss is nan" in t.user_attrs["error"] for t in trials)
    assert "trial 1: failed: loss is nan" in said[-1]


def test_cores_are_divided_between_workers():
    assert thread_counts(2, 2) == [1, 1]
    assert thread_counts(3, 8) == [3, 3, 2]
    assert thread_counts(4, 2) == [1, 1, 1, 1]  # more workers than cores: one thread each


def test_search_file_reads_like_the_flags(tmp_path):
    from scratchcnn.apps.tune.space import load_space_file

    path = tmp_path / "space.json"
    path.write_text('{"lr": "1e-4:1e-2:log", "batch_size": [32, 64], "augment": [false, true]}')
    assert load_space_file(path) == ["lr=1e-4:1e-2:log", "batch_size=32,64", "augment=false,true"]
    param = parse_param("lr=1e-4:1e-2:log")
    assert (param.low, param.high, param.log) == (1e-4, 1e-2, True) and parse_param(param.text()) == param


@pytest.mark.parametrize("url, message", [
    ("study.db", "not a database URL"),
    ("nosuchdb://host/x", "unknown database kind 'nosuchdb'"),
    ("sqlite:////no/such/folder/study.db", "the folder /no/such/folder does not exist"),
    ("sqlite://", "an SQLite URL needs a file"),
    ("postgresql://tune:s3cret@127.0.0.1:{port}/studies", "cannot open the study database"),
])
def test_bad_storage_urls_give_one_line_and_leave_no_folder(url, message, tmp_path, capsys):
    folder = tmp_path / "study"
    url = url.format(port=_free_port())  # nothing listens there: connection refused at once
    assert main(BASE + SEARCH + ["--storage", url, "--study-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert "s3cret" not in err  # the password is never shown
    assert not folder.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of its own on 127.0.0.1 (Debian's binaries; as user postgres when run as root)."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb; Debian: apt-get install "
                    "postgresql, as .ci/run does)")
    as_user = []
    folder = Path(tempfile.mkdtemp(prefix="scratchcnn-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as user postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    port = _free_port()
    data, log = folder / "data", folder / "server.log"

    def run(*command):
        subprocess.run(as_user + [str(bin_dir / command[0]), *command[1:]], check=True, capture_output=True)

    try:
        run("initdb", "-D", str(data), "-U", "tune", "--auth=trust")
        run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start")
        try:
            run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "tune", "studies")
            yield f"postgresql://tune@127.0.0.1:{port}/studies"
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_through_postgresql(postgres_url, tmp_path):
    folder = tmp_path / "study"
    assert main(BASE + SEARCH + ["--storage", postgres_url, "--study", "shared", "--study-dir", str(folder),
                                 "--trials", "2", "--workers", "2", "--pruner", "none"]) == 0
    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    assert not (folder / "study.db").exists()  # nothing went to the default SQLite file
    assert json.loads((folder / "best.json").read_text())["test_accuracy"] > 0.5
