"""Finding the images of a folder laid out as torchvision's ``ImageFolder`` expects.

Two layouts (``scan_folder``):

- ``ROOT/<class>/...`` : one sub-folder per class; a test split is held out later;
- ``ROOT/train/<class>/...`` and, optionally, ``ROOT/test/<class>/...``.

A class folder may hold sub-folders (read recursively, following symbolic links).
Files are images when Pillow knows their extension (``.png``, ``.jpg``, ``.bmp``,
``.gif``, ``.tif``, ``.webp``, ...); hidden files and folders (a leading ``.``) are
passed over, other files are counted as ignored. Whatever cannot be used (a
broken link, a symlink loop, a file outside any class folder, a class folder with
no images) becomes one line in ``Scan.problems``; with ``strict`` the first one is
raised as a ``DataError`` instead.

Order: within each part (train, then test), images are sorted by their path inside
their class folder, then by class, so that files numbered in a data set's order
(``python -m scratchcnn.to_folder``) come back in that order whatever their
class (the built-in loaders' order, which the round trip needs).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from scratchcnn.errors import DataError

__all__ = ["Entry", "Scan", "scan_folder", "image_extensions", "PARTS"]

PARTS = ("train", "test")


def image_extensions() -> frozenset:
    """The file extensions (lower case, with the dot) that Pillow can open."""
    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


@dataclass(frozen=True)
class Entry:
    """One image file: ``path`` relative to the root (POSIX separators), its part ("train" or
    "test"), its class folder's name, and the size (bytes) and modification time (ns) seen."""

    path: str
    part: str
    label: str
    size: int
    mtime_ns: int


@dataclass
class Scan:
    """What ``scan_folder`` found: the root (absolute), whether it has a ``test/`` folder, the
    image entries in order, one line per problem, and the files ignored for their extension."""

    root: Path
    has_test: bool
    entries: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    ignored: list = field(default_factory=list)

    def key(self) -> str:
        """A SHA-256 of the root and of every entry (path, part, class, size, mtime): any file
        added, removed, renamed or changed gives another key."""
        listing = [str(self.root)] + [[e.path, e.part, e.label, e.size, e.mtime_ns] for e in self.entries]
        return hashlib.sha256(json.dumps(listing).encode("utf-8")).hexdigest()


def scan_folder(root, strict: bool = False) -> Scan:
    """List the image files of ``root`` (layouts and order: the module docstring).

    Parameters
    ----------
    root : path of the folder
    strict : bool
        Raise the first problem instead of recording it.

    Returns
    -------
    Scan

    Raises
    ------
    DataError
        If ``root`` is missing or not a folder, if it holds no class folder, or (with
        ``strict``) for the first problem found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data-dir {root}: " + ("not a folder" if root.exists() else "no such folder"))
    root = root.resolve()
    split = (root / "train").is_dir()
    scan = Scan(root, split and (root / "test").is_dir())
    walker = _Walker(scan, strict, image_extensions())
    parts = [("train", root / "train"), ("test", root / "test")] if split else [("train", root)]
    for part, folder in parts:
        if part == "test" and not scan.has_test:
            continue
        entries = []
        for child in _children(folder, walker):
            if child.is_dir():
                found = walker.walk(child, part, child.name)
                if not found:
                    walker.problem(f"{_rel(child, root)}/: class folder holds no images; skipped")
                entries += found
            else:
                walker.problem(f"{_rel(child, root)}: not inside a class folder; skipped")
        entries.sort(key=lambda e: (e.path.split("/", 2 if split else 1)[-1], e.label))
        scan.entries += entries
    return scan


class _Walker:
    """The recursive part of ``scan_folder``: remembers the folders seen (symlink loops) and the problems."""

    def __init__(self, scan: Scan, strict: bool, extensions: frozenset):
        self.scan, self.strict, self.extensions = scan, strict, extensions
        self.seen: set = set()

    def problem(self, line: str) -> None:
        if self.strict:
            raise DataError(f"{line.replace('; skipped', '')} (--strict)")
        self.scan.problems.append(line)

    def walk(self, folder: Path, part: str, label: str) -> list:
        root = self.scan.root
        try:
            info = folder.stat()
        except OSError as exc:
            self.problem(f"{_rel(folder, root)}/: {_why(exc)}; skipped")
            return []
        if (info.st_dev, info.st_ino) in self.seen:
            self.problem(f"{_rel(folder, root)}/: links back to a folder already read (a symlink loop); skipped")
            return []
        self.seen.add((info.st_dev, info.st_ino))
        found = []
        for child in _children(folder, self):
            if child.is_dir():
                found += self.walk(child, part, label)
                continue
            if child.suffix.lower() not in self.extensions:
                self.scan.ignored.append(_rel(child, root))
                continue
            try:
                stat = child.stat()
            except OSError as exc:
                self.problem(f"{_rel(child, root)}: {_why(exc)}; skipped")
                continue
            found.append(Entry(_rel(child, root), part, label, stat.st_size, stat.st_mtime_ns))
        return found


def _children(folder: Path, walker: _Walker) -> list:
    """The visible entries of ``folder``, sorted by name; a link that leads nowhere (broken, or
    a loop) is recorded as a problem and left out."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        walker.problem(f"{_rel(folder, walker.scan.root)}/: cannot list the folder: {_why(exc)}; skipped")
        return []
    children = []
    for name in names:
        if name.startswith("."):
            continue
        child = folder / name
        try:
            child.stat()
        except OSError as exc:
            walker.problem(f"{_rel(child, walker.scan.root)}: {_why(exc)}; skipped")
            continue
        children.append(child)
    return children


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist)"
    return exc.strerror or str(exc)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
