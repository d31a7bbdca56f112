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
import gc
import hashlib
import os
from bisect import bisect_left
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, itemgetter, methodcaller, or_
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from scratchcnn.errors import DataError

__all__ = ["Entry", "Scan", "scan_folder", "image_extensions", "PARTS"]

PARTS = ("train", "test")
# The key's first bytes; change them with the key's layout, so that older caches are never read.
_KEY_FORMAT = b"scratchcnn folder listing 2\0"


def image_extensions() -> frozenset:
    """The file extensions (lower case, with the dot) that Pillow can open."""
    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


class Entry(NamedTuple):
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
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    def key(self) -> str:
        """A SHA-256 (64 hex digits) of the root and of every entry (path, part, class, size, mtime):
        any file added, removed, renamed or changed gives another key. Computed once per scan.

        The fields are hashed as NUL-separated text (no path holds a NUL) and the numbers as
        int64 bytes, after the number of entries, so two listings never hash the same text.
        """
        if self._key is None:
            head = f"{self.root}\0{len(self.entries)}\0"
            digest = hashlib.sha256(_KEY_FORMAT + head.encode("utf-8", "surrogateescape"))
            if self.entries:
                for field_of in itemgetter(0), itemgetter(1), itemgetter(2):  # path, part, class
                    digest.update("\0".join(map(field_of, self.entries)).encode("utf-8", "surrogateescape") + b"\0")
                for field_of in itemgetter(3), itemgetter(4):  # size, mtime
                    digest.update(np.fromiter(map(field_of, self.entries), np.int64, len(self.entries)).tobytes())
            self._key = digest.hexdigest()
        return self._key


@contextmanager
def _paused_gc():
    """Python's cycle collector off for the block (back on after, if it was on).

    Listing a large folder makes a few objects per file, none in a cycle; with the collector on,
    each batch of new objects triggers a pass over all the older ones (a second or more for 200,000 files).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def scan_folder(root, strict: bool = False) -> Scan:
    """List the image files of ``root`` (layouts and order: the module docstring).

    One ``os.scandir`` per folder and one ``stat`` per image file (a link's target is
    stat-ed once, to follow it), so that a later run's scan, which only checks the
    listing against the cache's key, costs little more than the file system's own work.

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
    top = str(root)
    split = os.path.isdir(os.path.join(top, "train"))
    scan = Scan(root, split and os.path.isdir(os.path.join(top, "test")))
    walker = _Walker(scan, strict, image_extensions())
    with _paused_gc():
        for part in PARTS if split else ("train",):
            if part == "test" and not scan.has_test:
                continue
            rel = f"{part}/" if split else ""
            found = _Found([], [])
            for child in walker.children(os.path.join(top, rel), rel):
                if child.is_dir():
                    before = len(found.entries)
                    walker.walk(child, f"{rel}{child.name}/", "", part, child.name, found)
                    if len(found.entries) == before:
                        walker.problem(f"{rel}{child.name}/: class folder holds no images; skipped")
                else:
                    walker.problem(f"{rel}{child.name}: not inside a class folder; skipped")
            # By path inside the class folder, then class: the classes were walked in name order and
            # the sort is stable, so comparing the paths alone is enough.
            order = sorted(range(len(found.inner)), key=found.inner.__getitem__)
            scan.entries += map(found.entries.__getitem__, order)
    return scan


class _Found(NamedTuple):
    """The images of one part as walked: each one's path inside its class folder, and its Entry."""

    inner: list
    entries: list


class _Walker:
    """The recursive part of ``scan_folder``: remembers the folders seen (symlink loops) and the problems.

    Paths are plain strings: ``rel`` is a folder's path from the root with a trailing ``/``
    (``""`` for the root), ``inner`` its path from its class folder.
    """

    def __init__(self, scan: Scan, strict: bool, extensions: frozenset):
        self.scan, self.strict, self.extensions = scan, strict, extensions
        self.seen: set = set()

    def problem(self, line: str) -> None:
        if self.strict:
            raise DataError(f"{line.replace('; skipped', '')} (--strict)")
        self.scan.problems.append(line)

    def walk(self, folder: os.DirEntry, rel: str, inner: str, part: str, label: str, found: _Found) -> None:
        """Add each image under ``folder`` (a listed child, stat-ed by ``children``) to ``found``."""
        info = folder.stat()  # cached by ``children``, which stat-ed this folder (following a link)
        if (info.st_dev, info.st_ino) in self.seen:
            self.problem(f"{rel}: links back to a folder already read (a symlink loop); skipped")
            return
        self.seen.add((info.st_dev, info.st_ino))
        children = self.children(folder.path, rel)
        if not any(map(_IS_DIR, children)):  # a folder of files only, the usual case: all at once
            try:
                self._files(children, rel, inner, part, label, found)
                return
            except OSError:  # a file that cannot be stat-ed: the loop below names it
                pass
        extensions, ignored = self.extensions, self.scan.ignored
        for child in children:
            name = child.name
            if child.is_dir():
                self.walk(child, f"{rel}{name}/", f"{inner}{name}/", part, label, found)
                continue
            dot = name.rfind(".")
            if dot <= 0 or name[dot:].lower() not in extensions:
                ignored.append(rel + name)
                continue
            try:
                stat = child.stat()  # the one stat of a plain file; a link's was made (and kept) by ``children``
            except OSError as exc:
                self.problem(f"{rel}{name}: {_why(exc)}; skipped")
                continue
            found.inner.append(inner + name)
            found.entries.append(Entry(rel + name, part, label, stat.st_size, stat.st_mtime_ns))

    def _files(self, children: list, rel: str, inner: str, part: str, label: str, found: _Found) -> None:
        """``walk``'s loop for a folder without sub-folders, as a few passes of C-level calls.

        Raises OSError, having changed nothing, if a file cannot be stat-ed.
        """
        names = list(map(_NAME, children))
        wanted = [name[name.rfind("."):].lower() in self.extensions for name in names]
        if not all(wanted):
            children, images = list(compress(children, wanted)), list(compress(names, wanted))
        else:
            images = names
        stats = list(map(_STAT, children))
        if images is not names:
            self.scan.ignored.extend(rel + name for name, keep in zip(names, wanted) if not keep)
        found.inner.extend(map(inner.__add__, images))
        found.entries.extend(map(_ENTRY, zip(map(rel.__add__, images), repeat(part), repeat(label), map(_SIZE, stats),
                                             map(_MTIME, stats))))

    def children(self, path: str, rel: str) -> list:
        """The visible entries of the folder ``path`` (``rel`` from the root), sorted by name; a link
        that leads nowhere (broken, or a loop) or a folder that cannot be stat-ed is recorded as a
        problem and left out. Links and folders are stat-ed here (the result is kept by the entry);
        plain files are not, as the file type comes with the listing."""
        try:
            with os.scandir(path) as listing:
                entries = sorted(listing, key=_NAME)
        except OSError as exc:
            self.problem(f"{rel or './'}: cannot list the folder: {_why(exc)}; skipped")
            return []
        # Hidden names (a leading ".") sort together, before those starting with "/" (which no name does).
        names = list(map(_NAME, entries))
        first, end = bisect_left(names, "."), bisect_left(names, "/")
        if end > first:
            entries = entries[:first] + entries[end:]
        bad = set()
        for child in compress(entries, map(or_, map(_IS_LINK, entries), map(_IS_FOLDER_HERE, entries))):
            try:
                child.stat()
            except OSError as exc:
                self.problem(f"{rel}{child.name}: {_why(exc)}; skipped")
                bad.add(child)
        return [e for e in entries if e not in bad] if bad else entries


_NAME, _STAT, _SIZE, _MTIME = attrgetter("name"), methodcaller("stat"), attrgetter("st_size"), attrgetter("st_mtime_ns")
_IS_DIR = methodcaller("is_dir")  # follows a link (its stat is kept by the DirEntry)
_IS_LINK, _IS_FOLDER_HERE = methodcaller("is_symlink"), methodcaller("is_dir", follow_symlinks=False)
_ENTRY = partial(tuple.__new__, Entry)  # an Entry from a tuple of its fields, without a Python-level call


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist)"
    return exc.strerror or str(exc)
