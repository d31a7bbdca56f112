"""Model and checkpoint files: exact round trips, a clear error for every kind of bad file, no pickle,
atomic writes, and hypothesis fuzzing of the loaders (bytes and JSON fields)."""
from __future__ import annotations

import copy
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchcnn.files.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from scratchcnn.errors import ModelFileError, OutputError
from scratchcnn.files.fileio import atomic_write
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.files.serialization import MODEL_FORMAT, load_model, read_archive, save_model, write_archive
from scratchcnn.engine.training import Trainer

NAMES = [f"class {i}" for i in range(10)]
NORM = {"mean": 0.3, "std": 0.4, "scale": 16.0}


def digits_model(preset="classic"):
    return build_model(preset, (1, 8, 8), 10, seed=0, backend="numpy")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    save_model(path, digits_model(), NAMES, NORM, dataset="digits", epoch=4)
    return path


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory) -> tuple[Path, object, object]:
    """A checkpoint after 6 Adam steps of a VGG-style model (BatchNorm buffers, three Dropouts)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 60)
    model = digits_model("vgg-small").compile(Adam(1e-3), SoftmaxCrossEntropy())
    trainer = Trainer(model, batch_size=16, progress=False, log=lambda line: None)
    trainer.fit(x[:48], y[:48], 2, (x[48:], y[48:]))  # 3 steps per epoch
    trainer.state.step = 1  # as if stopped one step into epoch 3
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.npz"
    save_checkpoint(path, model, trainer.state, {"dataset": "digits", "lr": 1e-3})
    return path, model, trainer.state


def rewrite(src: Path, dst: Path, fmt: str, edit_meta=None, edit_arrays=None) -> Path:
    """Copy an archive with its JSON ``meta`` and/or arrays edited (what a corrupt or hostile file holds)."""
    meta, arrays = read_archive(src, fmt)
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    return write_archive(dst, meta, arrays)


# ----------------------------------------------------------------------------- round trips

def test_model_round_trip_is_exact(model_file):
    model, meta = load_model(model_file, backend="numpy")
    original = digits_model()
    for key, value in original.named_arrays().items():
        np.testing.assert_array_equal(model.named_arrays()[key], value)
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), original.predict(x))
    assert (meta["class_names"], meta["normalization"], meta["dataset"], meta["epoch"]) == (NAMES, NORM, "digits", 4)
    assert (meta["format"], meta["format_version"]) == ("scratchcnn-model", 1)
    assert model.get_config() == original.get_config()


def test_checkpoint_round_trip_restores_optimizer_layers_and_state(checkpoint_file):
    path, original, state = checkpoint_file
    model, loaded_state, config = load_checkpoint(path, backend="numpy")
    assert config == {"dataset": "digits", "lr": 1e-3}
    assert loaded_state.to_json() == state.to_json() and (loaded_state.epoch, loaded_state.step) == (2, 1)
    assert model.optimizer.t == original.optimizer.t == 6 and model.optimizer.get_config() == original.optimizer.get_config()
    moments, expected = model.optimizer.state_arrays(), original.optimizer.state_arrays()
    assert sorted(moments) == sorted(expected) and len(moments) == 2 * sum(1 for _ in original.parameters())
    for key, value in expected.items():
        np.testing.assert_array_equal(moments[key], value)
        assert np.any(value != 0), key  # real moments, not the zeros a fresh optimizer starts from
    for key, value in original.named_arrays().items():  # weights and BatchNorm running statistics
        np.testing.assert_array_equal(model.named_arrays()[key], value)
    assert model.layer_states() == original.layer_states()
    assert [s["calls"] for s in model.layer_states().values()] == [6, 6, 6]  # 3 Dropouts, 6 training steps


# ----------------------------------------------------------------------------- broken files

@pytest.mark.parametrize("keep", [0, 20, 1000, 0.5, -22, -1])  # bytes kept (a fraction: of the file)
def test_truncated_file_is_a_clear_error(model_file, tmp_path, keep):
    raw = model_file.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[:int(len(raw) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(cut))}: cannot read the archive \(truncated, "
                                             r"corrupt or not an \.npz file\)"):
        load_model(cut)


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "cannot read the archive"),  # a picture renamed .npz
    (b"weights = [1, 2, 3]\n", "cannot read the archive"),
])
def test_wrong_magic_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_bare_npy_array_or_a_missing_file_is_a_clear_error(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3, np.float32))
    with pytest.raises(ModelFileError, match="w.npy: not an .npz archive"):
        load_model(tmp_path / "w.npy")
    with pytest.raises(ModelFileError, match="nothing.npz: no such file"):
        load_model(tmp_path / "nothing.npz")


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(format_version=2), "field 'format_version' is 2; this scratchcnn reads version 1"),
    (lambda m: m.pop("format_version"), "field 'format_version' is None"),
    (lambda m: m.update(format="scratchcnn-checkpoint"), "field 'format' is 'scratchcnn-checkpoint', expected "
                                                         "'scratchcnn-model'"),
    (lambda m: m["architecture"]["layers"].pop(0), "architecture mismatch"),
    (lambda m: m["architecture"]["layers"][0].update({"class": "Lambda"}), "unknown class 'Lambda'"),
    (lambda m: m["architecture"]["layers"][0]["config"].update(out_channels=16),
     r"Conv2D\(32, 64\) needs \(C=32, H, W\) per sample, got \(16, "),  # channels must chain, checked first
    (lambda m: m["architecture"].update(input_shape=[1, 28, 28]), r"cannot take input of shape \(3136,\)"),
    (lambda m: m["architecture"]["layers"][-1]["config"].update(in_features=2**40), "architecture mismatch"),
    (lambda m: m.update(class_names=["a", "b"]), "field 'class_names' must list 10 names"),
    (lambda m: m.update(class_names=list(range(10))), "field 'class_names' must list 10 names"),
    (lambda m: m["normalization"].update(std=0), "field 'normalization' must hold finite mean, std > 0"),
    (lambda m: m["normalization"].pop("mean"), "field 'normalization' must hold finite mean"),
    (lambda m: m.update(layer_state={"dropout_7": {"seed": 1, "calls": 0}}), "unknown layer 'dropout_7'"),
])
def test_bad_meta_fields_are_named(model_file, tmp_path, edit, message):
    bad = rewrite(model_file, tmp_path / "bad.npz", MODEL_FORMAT, edit_meta=edit)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(bad))}: .*{message}"):
        load_model(bad)


@pytest.mark.parametrize("edit,message", [
    (lambda a: a.pop("param/dense_0.b"), r"missing \['dense_0.b'\]"),
    (lambda a: a.update({"param/dense_9.W": np.zeros(2, np.float32)}), r"unexpected \['dense_9.W'\]"),
    (lambda a: a.update({"param/dense_0.b": np.zeros(127, np.float32)}),
     r"array 'dense_0.b': expected shape \(128,\) float32, found \(127,\) float32"),
    (lambda a: a.update({"param/dense_0.b": np.zeros(128, np.float64)}), r"found \(128,\) float64"),
    (lambda a: a["param/dense_1.W"].__setitem__((3, 4), np.nan), "array 'dense_1.W' holds NaN or infinite"),
    (lambda a: a["param/conv2d_1.b"].__setitem__(0, -np.inf), "array 'conv2d_1.b' holds NaN or infinite"),
    (lambda a: a.update({"param/dense_0.b": np.array(["x"] * 128)}), "has dtype <U1, expected numbers"),
])
def test_bad_arrays_are_named(model_file, tmp_path, edit, message):
    bad = rewrite(model_file, tmp_path / "bad.npz", MODEL_FORMAT, edit_arrays=edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(bad)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["optimizer"].update({"class": "Lion"}), "bad checkpoint field: 'Lion'"),
    (lambda m: m["optimizer"].update(t=-1), "step count 't' is -1"),
    (lambda m: m["train_state"].update(epoch="two"), "field 'epoch' is 'two', expected type int"),
    (lambda m: m["train_state"].update(epoch=5), "training state is inconsistent"),
    (lambda m: m["train_state"].update(bogus=1), "unknown training-state field 'bogus'"),
    (lambda m: m.update(config=[1, 2]), "'config' is list, expected an object"),
])
def test_bad_checkpoint_fields_are_named(checkpoint_file, tmp_path, edit, message):
    bad = rewrite(checkpoint_file[0], tmp_path / "bad.npz", CHECKPOINT_FORMAT, edit_meta=edit)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(bad))}: .*{message}"):
        load_checkpoint(bad)


def test_missing_or_mismatched_adam_moments_are_refused(checkpoint_file, tmp_path):
    src, model = checkpoint_file[0], checkpoint_file[1]
    expected = 2 * len(list(model.parameters()))  # Adam's m and v per parameter
    bad = rewrite(src, tmp_path / "a.npz", CHECKPOINT_FORMAT, edit_arrays=lambda a: a.pop("optim/dense_0.W/m"))
    with pytest.raises(ModelFileError, match=f"optimizer state has {expected - 1} arrays after 6 steps, "
                                             f"expected {expected}"):
        load_checkpoint(bad)
    bad = rewrite(src, tmp_path / "b.npz", CHECKPOINT_FORMAT,
                  edit_arrays=lambda a: a.update({"optim/dense_0.W/m": np.zeros((3, 3), np.float32)}))
    with pytest.raises(ModelFileError, match=r"optimizer state 'dense_0.W/m' \(3, 3\) float32 matches no parameter"):
        load_checkpoint(bad)
    with pytest.raises(ModelFileError, match="field 'format' is 'scratchcnn-checkpoint'"):
        load_model(src)  # a checkpoint is not a model file


def test_a_pickle_payload_is_never_unpickled(model_file, tmp_path):
    """An object array whose unpickling would create a file: refused, and the file never appears."""
    marker = tmp_path / "code-ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    meta, arrays = read_archive(model_file, MODEL_FORMAT)
    arrays["param/dense_0.b"] = np.array([Exploit()], dtype=object)
    payload = {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    np.savez(tmp_path / "evil.npz", **payload)  # savez pickles object arrays
    pickle.loads(pickle.dumps(Exploit()))  # the payload is live: unpickling it does create the marker
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ModelFileError, match=r"evil.npz: array .param/dense_0.b. holds Python objects \(pickle\); refused"):
        load_model(tmp_path / "evil.npz")
    assert not marker.exists()


# ----------------------------------------------------------------------------- atomic writes

def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"old checkpoint")

    def write_half_then_fail(f):
        f.write(b"new, half")
        raise OSError("disk full")

    with pytest.raises(OutputError, match=f"cannot write {target}: disk full; the previous checkpoint.npz"):
        atomic_write(target, write_half_then_fail)
    assert target.read_bytes() == b"old checkpoint" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_kill_9_during_a_write_keeps_the_old_file(tmp_path):
    """A process SIGKILLed while writing: the target still holds the complete old bytes."""
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"old checkpoint")
    script = ("import os, signal, sys; from scratchcnn.files.fileio import atomic_write\n"
              "def write(f):\n    f.write(b'new, half'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
              "atomic_write(sys.argv[1], write)\n")
    result = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, timeout=60)
    assert result.returncode == -9
    assert target.read_bytes() == b"old checkpoint"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".checkpoint.npz.")  # the half-written temp


# ----------------------------------------------------------------------------- fuzzing

def _paths(obj, prefix=()):
    """Every position in a JSON tree, as a tuple of keys/indices."""
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, prefix + (i,))


# JSON values a broken or hostile file may hold; integers stay small enough to allocate quickly, plus a
# few that are far too large to allocate at all.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.sampled_from([2**31, 2**62, -2**63, 10**30])
    | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _mutate(meta, data):
    meta = copy.deepcopy(meta)
    paths = list(_paths(meta))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        if not path:
            return data.draw(JSON_VALUES)
        parent = meta
        try:
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict) and data.draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier edit removed or replaced this position
    return meta


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzz_model_json_fields(model_file, tmp_path, data):
    """Any edit of the JSON entry either loads a usable model or raises ModelFileError, nothing else."""
    meta, arrays = read_archive(model_file, MODEL_FORMAT)
    path = write_archive(tmp_path / "fuzz.npz", _mutate(meta, data), arrays)
    try:
        model, loaded = load_model(path, backend="numpy")
    except ModelFileError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    assert model.predict(np.zeros((2, *model.input_shape), np.float32)).shape == (2, len(loaded["class_names"]))


HUGE = st.sampled_from([40000, 10**6, 2**31 - 1, 10**12])
SIZE_FIELDS = ("in_channels", "out_channels", "in_features", "out_features", "num_features")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_huge_declared_layers(model_file, tmp_path, data):
    """Architectures declaring huge layers or inputs around the file's small arrays are refused, with one
    line, before anything of their size is allocated (tests/test_reliable_runs.py measures the memory:
    each example here would otherwise take gigabytes to terabytes)."""
    meta, arrays = read_archive(model_file, MODEL_FORMAT)
    architecture = meta["architecture"]
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(architecture["layers"])))
        if index == len(architecture["layers"]):
            architecture["input_shape"] = [architecture["input_shape"][0], data.draw(HUGE), data.draw(HUGE)]
            continue
        config = architecture["layers"][index]["config"]
        fields = [key for key in SIZE_FIELDS if key in config]
        if fields:
            config[data.draw(st.sampled_from(fields))] = data.draw(HUGE)
        elif "kernel_size" in config:  # pooling: a huge window
            config["kernel_size"] = data.draw(HUGE)
    if architecture == read_archive(model_file, MODEL_FORMAT)[0]["architecture"]:
        return  # a pooling layer without kernel_size drawn only
    path = write_archive(tmp_path / "huge.npz", meta, arrays)
    with pytest.raises(ModelFileError) as info:
        load_model(path, backend="numpy")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_json_fields(checkpoint_file, tmp_path, data):
    meta, arrays = read_archive(checkpoint_file[0], CHECKPOINT_FORMAT)
    path = write_archive(tmp_path / "fuzz.npz", _mutate(meta, data), arrays)
    try:
        load_checkpoint(path, backend="numpy")
    except ModelFileError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


@FUZZ
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
       keep=st.none() | st.floats(0, 1))
def test_fuzz_model_file_bytes(model_file, tmp_path, edits, keep):
    """Flipped bytes (half of them in the zip directory at the end) and truncation: a ModelFileError, or
    (a byte no reader checks, such as a timestamp) the very same model. Never another model, never a crash."""
    raw = bytearray(model_file.read_bytes())
    for where, value in edits:
        position = int(where * len(raw)) if where < 0.5 else len(raw) - 1 - int((where - 0.5) * 600)
        raw[position] = value
    if keep is not None:
        raw = raw[:int(keep * len(raw))]
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(raw))
    try:
        model, meta = load_model(path, backend="numpy")
    except ModelFileError:
        return
    assert meta["class_names"] == NAMES
    for key, value in digits_model().named_arrays().items():
        np.testing.assert_array_equal(model.named_arrays()[key], value)
