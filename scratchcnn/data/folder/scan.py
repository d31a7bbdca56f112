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
from itertools import compress
from operator import attrgetter, methodcaller, or_
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from scratchcnn.errors import DataError

__all__ = ["Entry", "Block", "Scan", "scan_folder", "image_extensions", "PARTS"]

PARTS = ("train", "test")
# The key's first bytes; change them with the key's layout, so that older caches are never read.
_KEY_FORMAT = b"scratchcnn folder listing 3\0"


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


class Block(NamedTuple):
    """The image files directly inside one folder, as listed: the folder's path from the root
    (``rel``, with a trailing ``/``) and from its class folder (``inner``, ``""`` for the class
    folder itself), its part and class, and per file (sorted by name) its name, size (bytes,
    int64 (n,)) and modification time (ns, int64 (n,))."""

    rel: str
    inner: str
    part: str
    label: str
    names: list
    sizes: np.ndarray
    mtimes: np.ndarray


@dataclass
class Scan:
    """What ``scan_folder`` found: the root (absolute), whether it has a ``test/`` folder, the
    image files folder by folder (``blocks``), one line per problem, and the files ignored for
    their extension.

    The images in order (``entries``, one ``Entry`` each) are made on first use: reopening a
    cache needs only the ``key`` and, per image, its block (``row_blocks``), which a folder of
    200,000 images gives without 200,000 Python objects.
    """

    root: Path
    has_test: bool
    blocks: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)
    _rows: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _entries: list | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def count(self) -> int:
        """The number of image files found."""
        return sum(len(block.names) for block in self.blocks)

    def row_blocks(self) -> np.ndarray:
        """Per image in order, the index of its block in ``blocks`` (int64 (count,))."""
        return self._arrangement()[0]

    @property
    def entries(self) -> list:
        """The images in order (module docstring), one ``Entry`` each; made once per scan."""
        if self._entries is None:
            block_of, index = (a.tolist() for a in self._arrangement())
            sizes = [block.sizes.tolist() for block in self.blocks]
            mtimes = [block.mtimes.tolist() for block in self.blocks]
            blocks = self.blocks
            with _paused_gc():
                self._entries = [Entry(blocks[b].rel + blocks[b].names[i], blocks[b].part, blocks[b].label,
                                       sizes[b][i], mtimes[b][i]) for b, i in zip(block_of, index)]
        return self._entries

    def _arrangement(self) -> tuple:
        """(block, index in the block) of each image in order: per part, a stable sort by the path
        inside the class folder of the images listed block after block (classes in name order)."""
        if self._rows is None:
            blocks_of, indices = [], []
            for part in PARTS:
                keys, lengths, ids = [], [], []
                for i, block in enumerate(self.blocks):
                    if block.part == part:
                        keys += map(block.inner.__add__, block.names) if block.inner else block.names
                        lengths.append(len(block.names))
                        ids.append(i)
                if not keys:
                    continue
                order = np.array(sorted(range(len(keys)), key=keys.__getitem__), np.int64)
                blocks_of.append(np.repeat(np.array(ids, np.int64), lengths)[order])
                indices.append(np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])[order])
            empty = np.zeros(0, np.int64)
            self._rows = (np.concatenate(blocks_of) if blocks_of else empty,
                          np.concatenate(indices) if indices else empty)
        return self._rows

    def key(self) -> str:
        """A SHA-256 (64 hex digits) of the root and of every image file (folder, name, part,
        class, size, mtime): any file added, removed, renamed or changed gives another key.
        Computed once per scan, block by block (the images' order follows from the listing).

        Each block is hashed as NUL-separated text (no name holds a NUL or a ``/``) with its
        number of files first, and its sizes and times as int64 bytes, so two listings never
        hash the same text.
        """
        if self._key is None:
            head = f"{self.root}\0{len(self.blocks)}\0"
            digest = hashlib.sha256(_KEY_FORMAT + head.encode("utf-8", "surrogateescape"))
            for block in self.blocks:
                head = f"{block.rel}\0{block.part}\0{block.label}\0{len(block.names)}\0"
                digest.update((head + "\0".join(block.names) + "\0").encode("utf-8", "surrogateescape"))
                digest.update(block.sizes.tobytes())
                digest.update(block.mtimes.tobytes())
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
            for child in walker.children(os.path.join(top, rel), rel):
                if child.is_dir():
                    before = len(scan.blocks)
                    walker.walk(child, f"{rel}{child.name}/", "", part, child.name)
                    if len(scan.blocks) == before:
                        walker.problem(f"{rel}{child.name}/: class folder holds no images; skipped")
                else:
                    walker.problem(f"{rel}{child.name}: not inside a class folder; skipped")
    return scan


class _Walker:
    """The recursive part of ``scan_folder``: remembers the folders seen (symlink loops) and the problems.

    Paths are plain strings: ``rel`` is a folder's path from the root with a trailing ``/``
    (``""`` for the root), ``inner`` its path from its class folder.
    """

    def __init__(self, scan: Scan, strict: bool, extensions: frozenset):
        self.scan, self.strict, self.extensions = scan, strict, extensions
        self.ends_as_image = methodcaller("endswith", tuple(extensions))
        self.seen: set = set()

    def problem(self, line: str) -> None:
        if self.strict:
            raise DataError(f"{line.replace('; skipped', '')} (--strict)")
        self.scan.problems.append(line)

    def walk(self, folder: os.DirEntry, rel: str, inner: str, part: str, label: str) -> None:
        """Add a block for the images directly inside ``folder`` (a listed child, stat-ed by
        ``children``), if it holds any, and walk its sub-folders."""
        info = folder.stat()  # cached by ``children``, which stat-ed this folder (following a link)
        if (info.st_dev, info.st_ino) in self.seen:
            self.problem(f"{rel}: links back to a folder already read (a symlink loop); skipped")
            return
        self.seen.add((info.st_dev, info.st_ino))
        children = self.children(folder.path, rel)
        if not any(map(_IS_DIR, children)):  # a folder of files only, the usual case: all at once
            try:
                self._files(children, rel, inner, part, label)
                return
            except OSError:  # a file that cannot be stat-ed: the loop below names it
                pass
        extensions, ignored = self.extensions, self.scan.ignored
        names, stats = [], []
        for child in children:
            name = child.name
            if child.is_dir():
                self.walk(child, f"{rel}{name}/", f"{inner}{name}/", part, label)
                continue
            dot = name.rfind(".")
            if dot <= 0 or name[dot:].lower() not in extensions:
                ignored.append(rel + name)
                continue
            try:
                stats.append(child.stat())  # the one stat of a plain file; a link's was made (and kept) by ``children``
            except OSError as exc:
                self.problem(f"{rel}{name}: {_why(exc)}; skipped")
                continue
            names.append(name)
        self._add(rel, inner, part, label, names, stats)

    def _files(self, children: list, rel: str, inner: str, part: str, label: str) -> None:
        """``walk``'s loop for a folder without sub-folders, as a few passes of C-level calls.

        Raises OSError, having changed nothing, if a file cannot be stat-ed.
        """
        names = list(map(_NAME, children))
        # A C-level pass for names ending in a lower-case extension, the usual case; the rest one by one.
        wanted = list(map(self.ends_as_image, names))
        if not all(wanted):
            wanted = [keep or name[name.rfind("."):].lower() in self.extensions for keep, name in zip(wanted, names)]
        if not all(wanted):
            children, images = list(compress(children, wanted)), list(compress(names, wanted))
        else:
            images = names
        stats = list(map(_STAT, children))
        if images is not names:
            self.scan.ignored.extend(rel + name for name, keep in zip(names, wanted) if not keep)
        self._add(rel, inner, part, label, images, stats)

    def _add(self, rel: str, inner: str, part: str, label: str, names: list, stats: list) -> None:
        if names:
            n = len(names)
            self.scan.blocks.append(Block(rel, inner, part, label, names, np.fromiter(map(_SIZE, stats), np.int64, n),
                                          np.fromiter(map(_MTIME, stats), np.int64, n)))

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


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist)"
    return exc.strerror or str(exc)
