"""Model and checkpoint files: ``.npz`` archives of plain arrays plus one JSON entry, never pickle.

An archive holds ``meta`` (the UTF-8 bytes of a JSON object, stored as a uint8
array) and numeric arrays under ``param/<layer>.<name>`` (and, in checkpoints,
``optim/<layer>.<name>/<slot>``). It is read with ``numpy.load(...,
allow_pickle=False)``, so an untrusted file can hold only numbers and text:
loading it can never run code. Every field, array name, shape and dtype is
checked against the architecture the JSON describes before anything is used.

Nothing in a file can make loading take unbounded memory. Its whole declared work
is checked before any array is read or any layer allocated (``check_budget``):

- every member's ``.npy`` header is read first and must declare exactly the bytes
  the member holds; only ``meta`` and the format's own members (``param/``, and
  ``optim/`` in checkpoints) are accepted, at most ``MAX_MEMBERS`` of them, and
  their data, counted in bytes, at most 4 bytes per allowed parameter
  (``max_parameters``; three times that in a checkpoint, which also holds two
  optimizer moments per parameter);
- the JSON entry is at most ``MAX_META_BYTES`` and lists at most ``MAX_LAYERS`` layers;
- the architecture is built without allocating its parameters
  (``Sequential.from_config(..., initialize=False)``), its layers must chain, and
  every stored array must have exactly the name, shape and dtype (float32) that
  it declares, so the data read is the model's own;
- it declares at most ``max_parameters`` parameters, one image's activations (the
  input and every layer's output, all kept during a forward pass) number at most
  ``MAX_ACTIVATION_ELEMENTS`` in all, a convolution's unfolded input (im2col) at
  most that too, and a forward pass at most ``MAX_FLOPS`` per image.

``max_parameters`` defaults to ``$SCRATCHCNN_MAX_PARAMETERS``, else
``DEFAULT_MAX_PARAMETERS`` (100 million, 400 MB of float32; vgg-small has 0.87
million, 22 layers and 325,000 activations per 32x32 colour image).
"""
from __future__ import annotations

import io
import json
import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from scratchcnn.errors import ConfigError, ModelFileError
from scratchcnn.files.fileio import atomic_write
from scratchcnn.nn.model import Sequential, activation_elements

__all__ = ["MODEL_FORMAT", "FORMAT_VERSION", "MODEL_FILE", "BEST_MODEL_FILE", "CHECKPOINT_FILE", "EVALUATION_DIR",
           "write_archive", "read_archive", "save_model", "load_model", "model_meta", "param_arrays",
           "check_finite", "max_parameters", "DEFAULT_MAX_PARAMETERS", "FIELD_ERRORS", "plan_model",
           "check_budget", "activation_elements", "MAX_LAYERS", "MAX_MEMBERS", "MAX_ACTIVATION_ELEMENTS",
           "MAX_FLOPS", "MAX_META_BYTES", "read_checked", "check_headers"]

MODEL_FORMAT = "scratchcnn-model"
FORMAT_VERSION = 1
# The files of a run folder that hold models (scratchcnn.apps.run writes them; predict and evaluate read them).
MODEL_FILE, BEST_MODEL_FILE, CHECKPOINT_FILE = "model.npz", "best_model.npz", "checkpoint.npz"
EVALUATION_DIR = "evaluation"  # where python -m scratchcnn.evaluate writes a run's reports by default
PARAM_PREFIX = "param/"  # archive key of a parameter or buffer: "param/<layer>.<name>"
DEFAULT_MAX_PARAMETERS = 100_000_000  # see the module docstring; $SCRATCHCNN_MAX_PARAMETERS overrides it
# The JSON entry (architecture, history, options) is a few kB in practice; parsed, 4 MiB of the
# worst JSON (nested empty objects) takes about 100 MB.
MAX_META_BYTES = 4 * 2**20
MAX_LAYERS = 1000  # vgg-small has 22; 20,000 ReLUs once took evaluate to 24 GB
MAX_MEMBERS = 4 * MAX_LAYERS  # arrays in an archive: at most 4 per layer, plus 2 optimizer moments each
MAX_ACTIVATION_ELEMENTS = 2**26  # one image's activations, all layers together (256 MB of float32)
MAX_FLOPS = 10**11  # per image and forward pass: 2,000 times vgg-small's 5e7
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


def read_archive(path, expected_format: str, check=None) -> tuple[dict, dict]:
    """Read and check an archive written by ``write_archive``.

    Parameters
    ----------
    path : path-like
    expected_format : str, ``meta["format"]`` must equal it (``MODEL_FORMAT``, or a checkpoint's)
    check : callable ``check(meta, headers)``, optional
        Called after ``meta`` is read and before any other array is: ``headers``
        maps each array's name (without ``.npy``) to its declared ``(shape, dtype)``;
        it raises ModelFileError to refuse the file (``load_model`` checks them
        against the architecture there).

    Returns
    -------
    meta : dict
    arrays : dict[str, ndarray], every entry but ``meta``

    Raises
    ------
    ModelFileError
        Naming the file and the problem: unreadable, truncated or not an .npz
        archive, object arrays (pickle), a member the format does not have, more
        data than the budget (module docstring), missing or malformed ``meta``,
        another format, or a format version this code does not read.
    """
    path = Path(path)
    try:
        headers = _check_members(path, max_parameters())
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ModelFileError(f"{path}: not an .npz archive")
        with archive:
            raw = archive["meta"] if "meta" in archive.files else None
            meta = _parse_meta(path, raw, expected_format)
            _check_names(path, expected_format, headers, max_parameters())
            if check is not None:
                check(meta, {name[:-4]: value for name, value in headers.items() if name != "meta.npy"})
            arrays = {name: archive[name] for name in archive.files if name != "meta"}
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: cannot read the archive (truncated, corrupt or not an .npz "
                             f"file): {_reason(exc)}") from None
    for name, array in arrays.items():
        if array.dtype.kind not in "fiub":
            raise ModelFileError(f"{path}: array {name!r} has dtype {array.dtype}, expected numbers")
    return meta, arrays


def _reason(exc: OSError | Exception) -> str:
    """An exception's message without the path it may repeat (an OSError's strerror)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})" if exc.errno else exc.strerror
    return str(exc)


def _parse_meta(path: Path, raw, expected_format: str) -> dict:
    """The archive's ``meta`` entry parsed and checked (format and version)."""
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
    return meta


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


def _check_names(path: Path, expected_format: str, headers: dict, cap: int) -> None:
    """Only the format's own members (``meta``, ``param/``, and ``optim/`` in a checkpoint), and at most
    4 bytes per allowed parameter (12 in a checkpoint, which also holds two moments per parameter)."""
    prefixes = (PARAM_PREFIX,) if expected_format == MODEL_FORMAT else (PARAM_PREFIX, "optim/")
    for name in headers:
        if name != "meta.npy" and not name.startswith(prefixes):
            raise ModelFileError(f"{path}: member {name[:-4]!r} is not part of a {expected_format} file "
                                 f"(expected 'meta' and arrays named {' or '.join(p + '...' for p in prefixes)})")
    budget = 4 * cap * (1 if expected_format == MODEL_FORMAT else 3)
    total = sum(math.prod(shape) * dtype.itemsize for name, (shape, dtype) in headers.items() if name != "meta.npy")
    if total > budget:
        raise ModelFileError(f"{path}: the arrays hold {total:,} bytes, more than the {budget:,} that "
                             f"{cap:,} float32 parameters need (SCRATCHCNN_MAX_PARAMETERS sets the cap)")


def _check_members(path: Path, cap: int) -> dict:
    """Check every member's ``.npy`` header before any array is read (see the module docstring).

    Returns ``{member name: (shape, dtype)}``. Raises ModelFileError naming the member: not
    an ``.npy`` array (a raw pickle, say), object or other non-numeric dtype, a header that
    promises more or fewer bytes than the member holds, more members than ``MAX_MEMBERS``,
    or more bytes than a checkpoint's budget (``_check_names`` applies the format's own).
    """
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ModelFileError(f"{path}: not an .npz archive (a bare .npy array)")
    budget = 3 * 4 * cap  # float32 bytes of a checkpoint (2 moments per parameter); _check_names is exact
    total, headers = 0, {}
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS + 1:
            raise ModelFileError(f"{path}: the archive has {len(infos):,} members, more than the "
                                 f"{MAX_MEMBERS + 1:,} a model of at most {MAX_LAYERS:,} layers can have")
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise ModelFileError(f"{path}: member {name!r} is not an .npy array")
            with archive.open(info) as member:
                head = io.BytesIO(member.read(min(info.file_size, _NPY_HEADER_BYTES)))
            try:
                version = np.lib.format.read_magic(head)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(head) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(head))
            # NumPy parses the header's dict with the tokenizer: a flipped byte may raise TokenError too.
            except (ValueError, SyntaxError, TypeError, EOFError, tokenize.TokenError) as exc:
                raise ModelFileError(f"{path}: member {name!r} is not an .npy array ({exc})") from None
            if dtype.hasobject:
                raise ModelFileError(f"{path}: array {name[:-4]!r} holds Python objects (pickle); refused")
            if dtype.kind not in "fiub":
                raise ModelFileError(f"{path}: array {name[:-4]!r} has dtype {dtype}, expected numbers")
            size = math.prod(shape) * dtype.itemsize
            if size != info.file_size - head.tell():
                raise ModelFileError(f"{path}: array {name[:-4]!r} declares shape {shape} ({size} "
                                     f"bytes) but holds {info.file_size - head.tell()} bytes")
            if name == "meta.npy":
                if size > MAX_META_BYTES:
                    raise ModelFileError(f"{path}: the 'meta' entry holds {size:,} bytes, more than the "
                                         f"{MAX_META_BYTES:,} allowed (a model description is a few kB)")
            else:
                total += size
                if total > budget:
                    raise ModelFileError(f"{path}: the arrays hold more than {budget:,} bytes in all, more than "
                                         f"{cap:,} float32 parameters need (SCRATCHCNN_MAX_PARAMETERS sets the cap)")
            headers[name] = (tuple(shape), dtype)
    return headers


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


def check_budget(model: Sequential) -> None:
    """Refuse an architecture whose declared work exceeds the budget of the module docstring.

    Raises
    ------
    ValueError
        Naming the quantity, the amount and the cap: parameters (``max_parameters``),
        one image's activations or a convolution's unfolded input
        (``MAX_ACTIVATION_ELEMENTS``), forward FLOPs (``MAX_FLOPS``); or layers that do
        not chain.
    """
    activations, unfolded, flops = activation_elements(model)
    if activations > MAX_ACTIVATION_ELEMENTS:
        raise ValueError(f"one image's activations reach {activations:,} elements, more than the "
                         f"{MAX_ACTIVATION_ELEMENTS:,} allowed")
    if unfolded > MAX_ACTIVATION_ELEMENTS:
        raise ValueError(f"a convolution's unfolded input (im2col) reaches {unfolded:,} elements per image, "
                         f"more than the {MAX_ACTIVATION_ELEMENTS:,} allowed")
    if flops > MAX_FLOPS:
        raise ValueError(f"a forward pass takes {flops:,} FLOPs per image, more than the {MAX_FLOPS:,} allowed")
    count = sum(math.prod(s) for s in model.declared_shapes().values())
    if count > max_parameters():
        raise ValueError(f"the architecture declares {count:,} parameters, more than the "
                         f"{max_parameters():,} allowed (SCRATCHCNN_MAX_PARAMETERS sets the cap)")


def plan_model(path, meta: dict, backend=None) -> Sequential:
    """The architecture of ``meta``, built without allocating parameters, and within the budget.

    Raises
    ------
    ModelFileError
        If ``meta`` has no architecture, more than ``MAX_LAYERS`` layers (counted before
        any layer is built), an invalid one, or one over the budget (``check_budget``).
    """
    architecture = meta.get("architecture")
    layers = architecture.get("layers") if isinstance(architecture, dict) else None
    if isinstance(layers, list) and len(layers) > MAX_LAYERS:
        raise ModelFileError(f"{path}: the architecture lists {len(layers):,} layers, more than the "
                             f"{MAX_LAYERS:,} allowed")
    try:
        # Layers without parameters: nothing is allocated before the checks below pass.
        model = Sequential.from_config(architecture, backend=backend, initialize=False)
        check_budget(model)
    except FIELD_ERRORS as exc:
        raise ModelFileError(f"{path}: architecture mismatch: {exc}") from None
    return model


def check_headers(path, model: Sequential, headers: dict) -> None:
    """Refuse stored arrays (``{name: (shape, dtype)}`` from ``read_archive``'s ``check``) that are
    not exactly the declared ones: every ``param/<layer>.<name>`` float32 of its declared shape,
    and in a checkpoint at most two ``optim/<layer>.<name>/<slot>`` moments of that shape each.

    Raises ModelFileError naming the file and the array, before any array is read.
    """
    declared = model.declared_shapes()
    stored = {k[len(PARAM_PREFIX):]: v for k, v in headers.items() if k.startswith(PARAM_PREFIX)}
    missing, extra = sorted(set(declared) - set(stored)), sorted(set(stored) - set(declared))
    if missing or extra:
        raise ModelFileError(f"{path}: architecture mismatch: arrays do not match the architecture: missing "
                             f"{missing}, unexpected {extra}")
    for key, shape in declared.items():
        found, dtype = stored[key]
        if found != tuple(shape) or dtype != np.float32:
            raise ModelFileError(f"{path}: architecture mismatch: array {key!r}: expected shape {tuple(shape)} "
                                 f"float32, found {found} {dtype}")
    slots: dict[str, int] = {}
    for name, (found, dtype) in headers.items():
        if name.startswith("optim/"):
            key = name[len("optim/"):].rsplit("/", 1)[0]
            slots[key] = slots.get(key, 0) + 1
            if key not in declared or found != tuple(declared[key]) or slots[key] > 2:
                raise ModelFileError(f"{path}: bad checkpoint field: optimizer state {name[6:]!r} {found} {dtype} "
                                     "matches no parameter")


def build_from_meta(path, meta: dict, arrays: dict, backend=None, model: Sequential | None = None) -> Sequential:
    """Rebuild a model from an archive's ``meta`` and ``param/`` arrays, checking both.

    ``model``, if given, is ``plan_model``'s result for this ``meta`` (not built again).

    Raises
    ------
    ModelFileError
        If the architecture is invalid or over the budget, the arrays do not match it
        (names, shapes, dtypes), or an array holds NaN or infinite values.
    """
    params = param_arrays(arrays)
    check_finite(path, params)
    if model is None:
        model = plan_model(path, meta, backend)
    try:
        model.load_named_arrays(params)
        model.load_layer_states(meta.get("layer_state", {}))
    except FIELD_ERRORS as exc:
        raise ModelFileError(f"{path}: architecture mismatch: {exc}") from None
    return model


def read_checked(path, expected_format: str, backend=None) -> tuple[dict, dict, Sequential]:
    """``read_archive`` whose arrays are checked against the architecture before any is read.

    ``backend`` is a backend name, None (the default), or a callable taking ``meta`` and
    returning one of those. Returns ``(meta, arrays, model)``, ``model`` built by
    ``plan_model`` (no parameters yet: pass it to ``build_from_meta``).
    """
    planned = []

    def check(meta, headers):
        planned.append(plan_model(path, meta, backend(meta) if callable(backend) else backend))
        check_headers(path, planned[0], headers)

    meta, arrays = read_archive(path, expected_format, check)
    return meta, arrays, planned[0]


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
    meta, arrays, planned = read_checked(path, MODEL_FORMAT, backend)
    model = build_from_meta(path, meta, arrays, backend, planned)
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
