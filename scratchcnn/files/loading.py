"""Loading a trained model from a run folder or a model file (shared by ``predict`` and ``evaluate``)."""
from __future__ import annotations

from pathlib import Path

from scratchcnn.errors import ConfigError
from scratchcnn.files.serialization import MODEL_FILE, load_model

__all__ = ["resolve_model_file", "load_saved_model"]


def resolve_model_file(target) -> Path:
    """``target`` itself if it is a file, else ``target/model.npz`` (a run folder).

    Raises
    ------
    ConfigError
        If ``target`` does not exist, or is a folder without ``model.npz`` (an
        unfinished run: the message says how to finish it).
    """
    path = Path(target)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise ConfigError(f"{path}: the folder holds no {MODEL_FILE} (an unfinished run? "
                              f"finish it with python -m scratchcnn.train --resume {path})")
        return path / MODEL_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    return path


def load_saved_model(target, backend=None):
    """Load the model of a run folder or a model file.

    Parameters
    ----------
    target : path of a run folder (its ``model.npz`` is used) or of a model ``.npz``
    backend : str, optional; see ``kernels.get``

    Returns
    -------
    model : Sequential
    meta : dict, the file's JSON entry (class names, normalisation, data set, ...)
    path : Path of the model file read

    Raises
    ------
    ConfigError
        If ``target`` names no model (see ``resolve_model_file``).
    ModelFileError
        If the file cannot be loaded (see ``scratchcnn.files.serialization.load_model``).
    """
    path = resolve_model_file(target)
    model, meta = load_model(path, backend=backend)
    return model, meta, path
