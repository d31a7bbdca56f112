"""A run folder held by one process at a time, checked before any work, and cleaned of leftovers.

``RunFolder(path)`` is a context manager around an exclusive lock on
``path/.lock`` (``fcntl.flock``, POSIX advisory locking): the operating system
releases it when the process ends, however it ends (a ``kill -9`` too), so a
lock is never left stale. A second training run, ``--resume`` or ``evaluate`` on
a held folder fails at once with one line naming the holder's PID, which the
holder writes into the lock file. The lock file is removed on release, so a
finished run folder holds only its results.

Entering also checks, before any data is loaded, that the folder can be created
and written (``OutputError`` naming the path otherwise), and on leaving with an
error it removes the folder again when this call created it and nothing but the
lock was written (no empty run folders after a failed start).
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
from pathlib import Path

from scratchcnn.errors import ConfigError, OutputError

__all__ = ["RunFolder", "FolderBusy", "LOCK_FILE", "remove_temporaries", "output_error"]

LOCK_FILE = ".lock"
# Temporaries of an interrupted atomic write: ".<name>.<random>.tmp" (scratchcnn.files.fileio.atomic_write)
# and ".<name>.tmp.png" (plots of older versions).
_TEMPORARY = re.compile(r"^\..+\.(tmp|tmp\.png)$")


class FolderBusy(ConfigError):
    """Another process holds the run folder's lock; the message names its PID."""


def output_error(path, exc: OSError, doing: str = "write") -> OutputError:
    """An ``OutputError`` for an ``OSError`` while writing ``path``: one line naming both."""
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot {doing} {path}: {reason} (errno {exc.errno})" if exc.errno
                       else f"cannot {doing} {path}: {reason}")


def remove_temporaries(folder) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in ``folder``; return them.

    Only call this while holding the folder's lock: then no write of this
    program is under way there.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class RunFolder:
    """Hold ``path`` (a run folder, or an evaluation's output folder) for the length of a ``with``.

    Parameters
    ----------
    path : path-like
    create : bool
        Create the folder (and its parents) if missing; else it must exist.
    what : str
        What the folder is, for messages ("run folder", "output folder").
    read_only_ok : bool
        If the folder cannot be written (a read-only copy of a run), go on without
        a lock instead of failing: no one can train there either.

    Raises (on entering)
    ------
    FolderBusy
        If another process holds the lock; the message names its PID.
    OutputError
        If the folder cannot be created or written (a file in the way, a
        read-only or full file system, no permission), naming the path and the
        operating system's reason.
    """

    def __init__(self, path, create: bool = True, what: str = "run folder", read_only_ok: bool = False):
        self.path, self.create, self.what, self.read_only_ok = Path(path), create, what, read_only_ok
        self.created: list[Path] = []  # folders this object made, innermost last
        self._fd = None

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def __enter__(self) -> "RunFolder":
        self._make_folder()
        try:
            self._lock()
        except BaseException:
            self._remove_created()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()
        if exc_type is not None:
            self._remove_created()

    # -- the folder -------------------------------------------------------------------
    def _make_folder(self) -> None:
        if self.path.is_symlink() and not self.path.exists():  # mkdir would only say "File exists"
            try:
                os.stat(self.path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OutputError(f"{self.what} {self.path} is a symbolic link that loops (it leads back to "
                                      "itself); choose another path") from None
            raise OutputError(f"{self.what} {self.path} is a symbolic link to {os.readlink(self.path)}, which "
                              "does not exist; choose another path")
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.what} {self.path} is a file, not a folder; choose another path")
        if self.path.is_dir():
            return
        if not self.create:
            raise ConfigError(f"{self.what} {self.path}: no such folder")
        missing = [p for p in [self.path, *self.path.parents] if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(self.path, exc, "create the folder") from None
        self.created = sorted(missing, key=lambda p: len(p.parts))

    def _remove_created(self) -> None:
        """Remove the folders this object created, if they are empty (nothing of value was written)."""
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: something was written; keep it

    # -- the lock ----------------------------------------------------------------------
    def _lock(self) -> None:
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                if self.read_only_ok and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                    return
                raise output_error(self.path, exc, f"write to the {self.what}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise output_error(self.lock_path, exc, "lock") from None
                raise FolderBusy(f"{self.what} {self.path} is in use by process {self._holder()} (a training "
                                 "run, --resume or evaluate); wait for it to finish, or choose another "
                                 "folder") from None
            # The holder before us may have removed the file between our open and our lock: then we
            # locked a file nobody else will open; start again on the current one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            self._unlock(fd)
            raise output_error(self.lock_path, exc) from None
        self._fd = fd

    def _holder(self) -> str:
        try:
            pid = self.lock_path.read_text().strip()
        except OSError:
            pid = ""
        return pid if pid.isdigit() else "(unknown PID)"

    def _unlock(self, fd) -> None:
        try:
            self.lock_path.unlink(missing_ok=True)  # before unlocking, so no one locks a removed file unseen
        except OSError:
            pass
        os.close(fd)  # closing releases the flock

    def release(self) -> None:
        """Remove the lock file and release the lock (also done by leaving the ``with``)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._unlock(fd)
