"""Model and checkpoint files: ``.npz`` archives of plain arrays plus one JSON entry, never pickle.

An archive holds ``meta`` (the UTF-8 bytes of a JSON object, stored as a uint8
array) and numeric arrays under ``param/<layer>.<name>`` (and, in checkpoints,
``optim/<layer>.<name>/<slot>``). It is read with ``numpy.load(...,
allow_pickle=False)``, so an untrusted file can hold only numbers and text:
loading it can never run code. Every field, array name, shape and dtype is
checked against the architecture the JSON describes before anything is used.

Nothing in a file can make loading take unbounded memory: every member's ``.npy``
header is read first and must declare exactly the bytes the member holds, at most
``max_parameters`` elements per array and four times that in all (a checkpoint also
holds two optimizer moments per parameter); the JSON entry is at most
``MAX_META_BYTES``; the architecture is built without allocating its parameters
(``Sequential.from_config(..., initialize=False)``), its layers must chain, its
declared parameters must match the stored arrays' shapes and number at most
``max_parameters``, and one image's largest activation at most
``MAX_ACTIVATION_ELEMENTS``. ``max_parameters`` defaults to
``$SCRATCHCNN_MAX_PARAMETERS``, else ``DEFAULT_MAX_PARAMETERS`` (100 million, 400
MB of float32; vgg-small has 0.87 million).
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from scratchcnn.errors import ConfigError, ModelFileError
from scratchcnn.files.fileio import atomic_write
from scratchcnn.nn.model import Sequential

__all__ = ["MODEL_FORMAT", "FORMAT_VERSION", "MODEL_FILE", "BEST_MODEL_FILE", "CHECKPOINT_FILE", "EVALUATION_DIR",
           "write_archive", "read_archive", "save_model", "load_model", "model_meta", "param_arrays",
           "check_finite", "max_parameters", "DEFAULT_MAX_PARAMETERS", "FIELD_ERRORS"]

MODEL_FORMAT = "scratchcnn-model"
FORMAT_VERSION = 1
# The files of a run folder that hold models (scratchcnn.apps.run writes them; predict and evaluate read them).
MODEL_FILE, BEST_MODEL_FILE, CHECKPOINT_FILE = "model.npz", "best_model.npz", "checkpoint.npz"
EVALUATION_DIR = "evaluation"  # where python -m scratchcnn.evaluate writes a run's reports by default
PARAM_PREFIX = "param/"  # archive key of a parameter or buffer: "param/<layer>.<name>"
DEFAULT_MAX_PARAMETERS = 100_000_000  # see the module docstring; $SCRATCHCNN_MAX_PARAMETERS overrides it
MAX_META_BYTES = 16 * 2**20  # the JSON entry (architecture, history, options) is a few kB in practice
MAX_ACTIVATION_ELEMENTS = 2**26  # one image's largest layer output (a 8192x8192 grey input)
_NPY_HEADER_BYTES = 65536 + 12  # numpy writes headers of at most 64 kB (format version 2/3)
# zipfile answers some corrupt headers with NotImplementedError (an "unsupported version" or
# compression) or RuntimeError (an "encrypted" flag bit): they too mean a corrupt file.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
                NotImplementedError, RuntimeError)
# What building layers from a malformed JSON entry can raise (a list where a dict belongs, an
# infinite size, a size too large to allocate): all become ModelFileError.
FIELD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, MemoryError)


def write_archive(path, meta: dict, arrays: dict) -> Path:
    """Atomically write ``arrays`` (name -> ndarray) and the JSON ``meta`` to an .npz file."""
    payload = dict(arrays)
    payload["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def read_archive(path, expected_format: str) -> tuple[dict, dict]:
    """Read and check an archive written by ``write_archive``.

    Returns
    -------
    meta : dict
    arrays : dict[str, ndarray], every entry but ``meta``

    Raises
    ------
    ModelFileError
        Naming the file and the problem: unreadable, truncated or not an .npz
        archive, object arrays (pickle), missing or malformed ``meta``, another
        format, or a format version this code does not read.
    """
    path = Path(path)
    try:
        _check_members(path, max_parameters())
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ModelFileError(f"{path}: not an .npz archive")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: cannot read the archive (truncated, corrupt or not an .npz "
                             f"file): {exc}") from None
    raw = arrays.pop("meta", None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: missing or malformed 'meta' entry (expected 1-D uint8 JSON bytes)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: 'meta' is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise ModelFileError(f"{path}: 'meta' is JSON nested too deeply to be a model description") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelFileError(f"{path}: field 'format' is {found!r}, expected {expected_format!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: field 'format_version' is {meta.get('format_version')!r}; "
                             f"this scratchcnn reads version {FORMAT_VERSION}")
    for name, array in arrays.items():
        if array.dtype.kind not in "fiub":
            raise ModelFileError(f"{path}: array {name!r} has dtype {array.dtype}, expected numbers")
    return meta, arrays


def max_parameters() -> int:
    """The parameter cap of model files: ``$SCRATCHCNN_MAX_PARAMETERS``, else ``DEFAULT_MAX_PARAMETERS``.

    Raises
    ------
    ConfigError
        If the variable is set but not a positive integer.
    """
    text = os.environ.get("SCRATCHCNN_MAX_PARAMETERS")
    if text is None:
        return DEFAULT_MAX_PARAMETERS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"$SCRATCHCNN_MAX_PARAMETERS must be a positive integer, got {text!r}")
    return value


def _check_members(path: Path, cap: int) -> None:
    """Check every member's ``.npy`` header before any array is read (see the module docstring).

    Raises ModelFileError naming the member: not an ``.npy`` array (a raw pickle,
    say), object dtype, a header that promises more or fewer bytes than the member
    holds, or more elements than the caps allow.
    """
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ModelFileError(f"{path}: not an .npz archive (a bare .npy array)")
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise ModelFileError(f"{path}: member {name!r} is not an .npy array")
            with archive.open(info) as member:
                head = io.BytesIO(member.read(min(info.file_size, _NPY_HEADER_BYTES)))
            try:
                version = np.lib.format.read_magic(head)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(head) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(head))
            except (ValueError, SyntaxError, TypeError, EOFError) as exc:
                raise ModelFileError(f"{path}: member {name!r} is not an .npy array ({exc})") from None
            if dtype.hasobject:
                raise ModelFileError(f"{path}: array {name[:-4]!r} holds Python objects (pickle); refused")
            count = math.prod(shape)
            if count * dtype.itemsize != info.file_size - head.tell():
                raise ModelFileError(f"{path}: array {name[:-4]!r} declares shape {shape} ({count * dtype.itemsize} "
                                     f"bytes) but holds {info.file_size - head.tell()} bytes")
            limit = MAX_META_BYTES if name == "meta.npy" else cap
            if count > limit:
                raise ModelFileError(f"{path}: array {name[:-4]!r} declares {count:,} elements, more than the "
                                     f"{limit:,} allowed (SCRATCHCNN_MAX_PARAMETERS sets the cap)")
            total += count if name != "meta.npy" else 0
            if total > 4 * cap:
                raise ModelFileError(f"{path}: the arrays hold more than {4 * cap:,} elements in all "
                                     "(SCRATCHCNN_MAX_PARAMETERS sets the cap)")


def model_meta(model: Sequential, class_names, normalization: dict, **extra) -> dict:
    """The JSON entry of a model file: architecture, class names, normalisation, format version."""
    return {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION,
            "architecture": model.get_config(), "class_names": list(class_names),
            "normalization": dict(normalization), "layer_state": model.layer_states(), **extra}


def save_model(path, model: Sequential, class_names, normalization: dict, **extra) -> Path:
    """Write ``model`` to ``path`` (.npz) atomically.

    Parameters
    ----------
    model : Sequential
    class_names : list of str, one per output
    normalization : dict with ``mean``, ``std`` (of [0, 1] pixels: numbers, or lists with one
        number per input channel) and ``scale`` (e.g. 255)
    **extra : JSON-serialisable fields stored in ``meta`` (data set name, ...)
    """
    arrays = {f"{PARAM_PREFIX}{key}": value for key, value in model.named_arrays().items()}
    return write_archive(path, model_meta(model, class_names, normalization, **extra), arrays)


def build_from_meta(path, meta: dict, arrays: dict, backend=None) -> Sequential:
    """Rebuild a model from an archive's ``meta`` and ``param/`` arrays, checking both.

    Raises
    ------
    ModelFileError
        If the architecture is invalid or the arrays do not match it (names, shapes,
        dtypes), or an array holds NaN or infinite values.
    """
    params = param_arrays(arrays)
    check_finite(path, params)
    try:
        # Layers without parameters: nothing is allocated before the checks below pass.
        model = Sequential.from_config(meta["architecture"], backend=backend, initialize=False)
        shapes = model.output_shapes()  # the layers chain (channels included), or ValueError
        largest = max(math.prod(s) for s in [model.input_shape, *shapes])
        if largest > MAX_ACTIVATION_ELEMENTS:
            raise ValueError(f"one image's activations reach {largest:,} elements, more than the "
                             f"{MAX_ACTIVATION_ELEMENTS:,} allowed")
        declared = model.declared_shapes()
        count = sum(math.prod(s) for s in declared.values())
        if count > max_parameters():
            raise ValueError(f"the architecture declares {count:,} parameters, more than the "
                             f"{max_parameters():,} allowed (SCRATCHCNN_MAX_PARAMETERS sets the cap)")
        model.load_named_arrays(params)
        model.load_layer_states(meta.get("layer_state", {}))
    except FIELD_ERRORS as exc:
        raise ModelFileError(f"{path}: architecture mismatch: {exc}") from None
    return model


def param_arrays(arrays: dict) -> dict:
    """The parameters and buffers of an archive's arrays, keyed ``"<layer>.<name>"`` (as
    ``Sequential.named_arrays``) instead of ``"param/<layer>.<name>"``."""
    return {key[len(PARAM_PREFIX):]: value for key, value in arrays.items() if key.startswith(PARAM_PREFIX)}


def check_finite(path, arrays: dict) -> None:
    """Raise ModelFileError naming the first array that holds NaN or an infinity (a corrupt
    or diverged model, which would only ever predict NaN)."""
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise ModelFileError(f"{path}: array {name!r} holds NaN or infinite values")


def load_model(path, backend=None) -> tuple[Sequential, dict]:
    """Load a model file written by ``save_model``.

    Returns
    -------
    model : Sequential on ``backend``
    meta : dict (class names, normalisation, ...)

    Raises
    ------
    ModelFileError
        For any problem with the file; see ``read_archive`` and ``build_from_meta``.
    """
    meta, arrays = read_archive(path, MODEL_FORMAT)
    model = build_from_meta(path, meta, arrays, backend)
    names = meta.get("class_names")
    outputs = model.output_shapes()[-1]
    if len(outputs) != 1:
        raise ModelFileError(f"{path}: the model outputs shape {outputs} per image, expected one score "
                             "per class")
    if (not isinstance(names, list) or len(names) != outputs[0]
            or not all(isinstance(name, str) for name in names)):
        raise ModelFileError(f"{path}: field 'class_names' must list {outputs[0]} names, found {names!r}")
    _check_normalization(path, meta.get("normalization"), model.input_shape[0])
    return model, meta


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_normalization(path, norm, channels: int) -> None:
    """``normalization`` holds a finite ``scale`` > 0 and ``mean``, ``std`` > 0 that are each one
    number (grey models) or a list of one number per input channel (colour models).

    Raises ModelFileError naming the file and the field otherwise.
    """
    def per_channel(value, positive):
        values = value if isinstance(value, list) and len(value) in (1, channels) else [value]
        return all(_is_number(v) and (v > 0 or not positive) for v in values)

    ok = (isinstance(norm, dict) and _is_number(norm.get("scale")) and norm["scale"] > 0
          and per_channel(norm.get("mean"), False) and per_channel(norm.get("std"), True))
    if not ok:
        raise ModelFileError(f"{path}: field 'normalization' must hold finite mean, std > 0 (one number, or "
                             f"one per channel: {channels}) and scale > 0, found {norm!r}")
