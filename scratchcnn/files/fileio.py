"""Writing files so that a crash never leaves a half-written one behind."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from scratchcnn.errors import OutputError

__all__ = ["atomic_write", "atomic_write_text", "write_json", "json_safe"]


def atomic_write(path, write) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file in the same folder,
    which is flushed, fsync'ed and then renamed over ``path`` with ``os.replace``.

    A reader sees either the old file or the complete new one, never a partial
    one, even if the process is killed mid-write (POSIX rename is atomic within
    a file system; the folder is fsync'ed too so the rename survives a power loss).

    Parameters
    ----------
    path : path-like
    write : callable taking a binary file object

    Returns
    -------
    The path written.

    Raises
    ------
    OutputError
        For an operating-system error while writing (no space left, read-only file
        system, permission, a file where a folder should be): one line naming
        ``path`` and the reason. The previous ``path``, if any, is unchanged and
        the temporary file is removed.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}"
                          f"{f' (errno {exc.errno})' if exc.errno else ''}; the previous {path.name}, "
                          "if any, is unchanged") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def json_safe(value):
    """Replace NaN and infinities (not valid JSON) by None, recursively; NumPy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, data) -> Path:
    """Atomically write ``data`` as indented, standard JSON (NaN -> null)."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2) + "\n")
