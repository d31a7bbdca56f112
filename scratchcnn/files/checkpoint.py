"""Training checkpoints: everything needed to continue a run exactly where it stopped."""
from __future__ import annotations

from pathlib import Path

import kernels

from scratchcnn.errors import ModelFileError
from scratchcnn.nn.optimizers import OPTIMIZERS
from scratchcnn.files.serialization import (FIELD_ERRORS, FORMAT_VERSION, PARAM_PREFIX, build_from_meta,
                                     check_finite, read_checked, write_archive)
from scratchcnn.engine.training import TrainState

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "scratchcnn-checkpoint"


def save_checkpoint(path, model, state: TrainState, config: dict) -> Path:
    """Atomically write a checkpoint of a compiled model mid-run.

    It holds the weights, the optimizer's moments and step count, the layers'
    random-stream counters (Dropout), the ``TrainState`` (epoch, step within the
    epoch, partial sums, history, early-stopping bookkeeping) and the run's
    ``config``. The trainer's shuffles and augmentations are functions of
    (seed, epoch, step), so these suffice to continue bit-for-bit.
    """
    opt = model.optimizer
    meta = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION,
            "architecture": model.get_config(), "layer_state": model.layer_states(),
            "optimizer": {"class": type(opt).__name__, "config": opt.get_config(), "t": opt.t},
            "train_state": state.to_json(), "config": config}
    arrays = {f"{PARAM_PREFIX}{key}": value for key, value in model.named_arrays().items()}
    arrays.update({f"optim/{key}": value for key, value in opt.state_arrays().items()})
    return write_archive(path, meta, arrays)


def _recorded(meta: dict):
    """The backend the run was trained on, if it is available here (else None: the default)."""
    recorded = meta.get("config", {}).get("backend") if isinstance(meta.get("config"), dict) else None
    return recorded if recorded in kernels.available() else None


def load_checkpoint(path, backend=None):
    """Read a checkpoint written by ``save_checkpoint``.

    ``backend`` (a name) defaults to the one the run was trained on when it is
    available here (results are bit-exact only on the same backend), else to
    ``kernels.get()``'s default.

    Returns
    -------
    model : Sequential, compiled with the restored optimizer (loss: SoftmaxCrossEntropy)
    state : TrainState
    config : dict

    Raises
    ------
    ModelFileError
        For an unreadable file or any field that does not match (see ``read_archive``).
    """
    from scratchcnn.nn.losses import SoftmaxCrossEntropy

    meta, arrays, model = read_checked(path, CHECKPOINT_FORMAT, backend if backend is not None else _recorded)
    model = build_from_meta(path, meta, arrays, model=model)
    try:
        spec = meta["optimizer"]
        optimizer = OPTIMIZERS[spec["class"]](**spec["config"])
        model.compile(optimizer, SoftmaxCrossEntropy())
        slots = {key[len("optim/"):]: value for key, value in arrays.items() if key.startswith("optim/")}
        check_finite(path, slots)
        params = {key: param for key, param, _ in model.parameters()}
        for name, value in slots.items():
            key, slot = name.rsplit("/", 1)
            if (key not in params or slot not in optimizer.slots or value.shape != tuple(params[key].shape)
                    or value.dtype != params[key].dtype):
                raise ValueError(f"optimizer state {name!r} {value.shape} {value.dtype} matches no parameter")
        t = spec["t"]
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise ValueError(f"optimizer step count 't' is {t!r}, expected an integer >= 0")
        expected = len(params) * len(optimizer.slots)
        if t and len(slots) != expected:  # a missing moment would silently restart from zero
            raise ValueError(f"optimizer state has {len(slots)} arrays after {t} steps, expected {expected}")
        optimizer.load_state_arrays(slots, t)
        state = TrainState.from_json(meta["train_state"])
        if not isinstance(meta["config"], dict):
            raise TypeError(f"'config' is {type(meta['config']).__name__}, expected an object")
        config = dict(meta["config"])
    except FIELD_ERRORS as exc:
        raise ModelFileError(f"{path}: bad checkpoint field: {exc}") from None
    return model, state, config
