"""The decoded images of a folder, kept as one uint8 memory map in the user cache folder.

Layout: ``cache_dir()/folders/<hash of the root path>/``

- ``headers-<scan key>.json``: each image's width, height and whether it is grey
  (read from the file headers, to choose the default size and channels), as columns;
- ``<scan key>-<options key>/pixels.u8``: the images, uint8 (N, C, H, W), row after row;
  ``index.json``: the shape, one line per file that could not be used and those files'
  paths (the rows are the scan's entries without them, in order, so a later run needs
  no per-row record to reopen the cache); ``rows.json``: each row's file, size, mtime,
  part and class, read only when the folder changed (to copy the unchanged rows);
  ``stats-<rows hash>.json`` and ``test-split-<labels hash>.u8``: the training split's
  pixel histograms and the held-out test split (``loader``), kept so that a reopen
  computes neither again.

The scan key covers every file's path, size and modification time
(``Scan.key``), the options key the image size, channels and preprocessing, so a
changed file or option never reads a stale cache. A new cache is written into a
temporary folder that is renamed into place when complete (POSIX rename is
atomic): an interrupted decode leaves no cache that a later run could read, and
its temporary folder is removed by the next build once its process is gone.
When files changed, the rows of unchanged files are copied from the previous
cache of the same options instead of being decoded again, and the previous cache
is then removed.

Each image is read with ``scratchcnn.data.images.load_image`` and resized with
``preprocess_image(..., resize_only=True)``, exactly as ``predict`` and the web demo
prepare an image for a model trained on a folder, then rounded to 8 bits.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from itertools import compress
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from scratchcnn.data.images import load_image, preprocess_image
from scratchcnn.data.sources import cache_dir
from scratchcnn.data.streaming import open_uint8
from scratchcnn.errors import DataError, OutputError

__all__ = ["FolderCache", "Headers", "open_cache", "read_headers", "choose_options", "folder_cache_root",
           "decode_entry", "write_text_atomic", "write_bytes_atomic", "CACHE_VERSION", "MAX_DEFAULT_SIDE",
           "PIXELS_FILE", "INDEX_FILE", "ROWS_FILE"]

CACHE_VERSION = 1  # bump when decoding changes: older caches are then never read
MAX_DEFAULT_SIDE = 64  # the default image size is at most this many pixels per side
PIXELS_FILE, INDEX_FILE, ROWS_FILE = "pixels.u8", "index.json", "rows.json"
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_IDENTITY = {"mean": 0.0, "std": 1.0}  # preprocess_image's standardisation, switched off


@dataclass
class FolderCache:
    """An opened cache: ``pixels`` uint8 (N, C, H, W) mapped from ``path``; its rows are the
    ``scan``'s images in order, less those ``keep`` (bool (scan.count,), or None for all) leaves
    out; per row, the scan's block (``row_blocks``, int64 (N,)) or ``Entry`` (``rows``, made on
    first use; its file, part and class folder also as lists: ``files``, ``parts``, ``labels``);
    ``problems`` holds one line per file left out when decoding."""

    path: Path
    pixels: np.ndarray
    mapped: object
    scan: object
    keep: np.ndarray | None
    problems: list
    reused: bool

    @property
    def row_blocks(self) -> np.ndarray:
        blocks = self.scan.row_blocks()
        return blocks if self.keep is None else blocks[self.keep]

    @property
    def rows(self) -> list:
        entries = self.scan.entries
        return entries if self.keep is None else list(compress(entries, self.keep))

    @property
    def files(self) -> list:
        return [row.path for row in self.rows]

    @property
    def parts(self) -> list:
        return [row.part for row in self.rows]

    @property
    def labels(self) -> list:
        return [row.label for row in self.rows]


@dataclass
class Headers:
    """What the file headers of a scan's entries say: per entry ``width`` and ``height`` (pixels,
    int64 (N,), -1 where the header cannot be read) and ``grey`` (bool (N,)); ``problems`` maps
    the row of each unreadable file to its line."""

    width: np.ndarray
    height: np.ndarray
    grey: np.ndarray
    problems: dict


def write_text_atomic(path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (``write_bytes_atomic``; errors: the same)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder renamed over it
    (POSIX rename is atomic), so a reader never sees half a file.

    The cache's own writer: the data package sits below ``scratchcnn.files`` (whose
    ``atomic_write`` also fsyncs; a cache lost to a power cut is only rebuilt).

    Raises
    ------
    OutputError
        For an operating-system error (read-only or full cache folder), naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def folder_cache_root(root: Path) -> Path:
    """``cache_dir()/folders/<first 16 hex digits of the SHA-256 of the folder's absolute path>``."""
    return cache_dir() / "folders" / hashlib.sha256(str(root).encode("utf-8")).hexdigest()[:16]


def read_headers(scan, progress: bool = True) -> Headers:
    """The width, height and greyness of each entry of ``scan``, from the file headers.

    Read once per scan key and kept as ``headers-<key>.json`` in the folder's cache (as
    columns of numbers, which a later run parses quickly). A file counts as grey when its
    mode is a grey one (``L``, ``I;16``, ...) or a palette of greys; an RGB file whose
    channels happen to be equal counts as colour. A file Pillow cannot open is one line
    in ``Headers.problems``.
    """
    store = folder_cache_root(scan.root) / f"headers-{scan.key()}.json"
    n = scan.count
    try:
        stored = json.loads(store.read_text())
        headers = Headers(np.array(stored["width"], np.int64), np.array(stored["height"], np.int64),
                          np.array(stored["grey"], bool), {int(row): line for row, line in stored["problems"].items()})
        if headers.width.shape == headers.height.shape == headers.grey.shape == (n,):
            return headers
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    width, height, grey, problems = [-1] * n, [-1] * n, [False] * n, {}
    entries = tqdm(scan.entries, desc="reading image headers", unit="img", disable=not progress, leave=False)
    for row, entry in enumerate(entries):
        try:
            with Image.open(scan.root / entry.path) as img:
                grey[row] = img.mode in _GREY_MODES or (img.mode in ("P", "PA") and _grey_palette(img))
                width[row], height[row] = img.width, img.height
        except Exception as exc:  # Pillow raises many kinds for a bad file: each is one line, not a crash
            problems[row] = f"{entry.path}: not an image Pillow can read ({type(exc).__name__}: {exc}); skipped"
    write_text_atomic(store, json.dumps({"width": width, "height": height, "grey": grey, "problems": problems}))
    return Headers(np.array(width, np.int64), np.array(height, np.int64), np.array(grey, bool), problems)


def _grey_palette(img) -> bool:
    palette = img.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def choose_options(headers: Headers, image_size=None, channels=None, log=print) -> tuple[tuple, int]:
    """The image size (h, w) and channels to train at: the ones given, else chosen from ``headers``
    (those of the readable files; None when there are none).

    Size: the images' own when they all share one no larger than ``MAX_DEFAULT_SIDE``,
    else a square whose side is the median shorter side, at most ``MAX_DEFAULT_SIDE``.
    Channels: 1 when every image is grey, else 3. A chosen value is logged with why.
    """
    readable = headers.width >= 0
    heights, widths = headers.height[readable], headers.width[readable]
    if image_size is None and readable.any():
        one_size = (heights == heights[0]).all() and (widths == widths[0]).all()
        if one_size and max(heights[0], widths[0]) <= MAX_DEFAULT_SIDE:
            image_size, why = (heights[0], widths[0]), "the size of every image"
        else:
            side = min(MAX_DEFAULT_SIDE, int(np.median(np.minimum(heights, widths))))
            image_size, why = (side, side), f"median shorter side of the images, at most {MAX_DEFAULT_SIDE}"
        log(f"image size {image_size[0]}x{image_size[1]} ({why}; set it with --image-size)")
    if channels is None and readable.any():
        channels = 1 if headers.grey[readable].all() else 3
        log(f"channels {channels} ({'every image is grey' if channels == 1 else 'some images are in colour'}; "
            "set it with --channels)")
    return (tuple(int(v) for v in image_size) if image_size else None), channels


def decode_entry(path, shape) -> np.ndarray:
    """One image file as the cache holds it: uint8 (C, h, w) for ``shape`` (C, h, w).

    Raises DataError (from ``load_image``) for a file that cannot be decoded.
    """
    pixels = load_image(path, channels=shape[0])
    x, _ = preprocess_image(pixels, shape, _IDENTITY, resize_only=True)
    return np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)


def open_cache(scan, image_size: tuple, channels: int, strict: bool = False, progress: bool = True,
               log=print) -> FolderCache:
    """The cache of ``scan`` for images of (``channels``, *``image_size``*): opened, or made first.

    Raises
    ------
    DataError
        With ``strict``, for the first file that cannot be decoded (also one recorded by
        an earlier run); or if the cache folder cannot be written.
    """
    shape = (int(channels), *image_size)
    options = hashlib.sha256(json.dumps([CACHE_VERSION, shape, "lanczos"]).encode()).hexdigest()[:16]
    home = folder_cache_root(scan.root)
    path = home / f"{scan.key()[:32]}-{options}"
    reused = (path / INDEX_FILE).is_file()
    if not reused:
        _build(scan, shape, options, path, strict, progress, log)
    else:
        log(f"using the cache {path} (decoded images)")
    cache = _open(path, scan)
    if strict and cache.problems:
        raise DataError(f"{cache.problems[0].replace('; skipped', '')} (--strict)")
    cache.reused = reused
    return cache


def _open(path: Path, scan) -> FolderCache:
    """The cache at ``path`` made for ``scan``'s listing: its rows are the scan's entries less the
    files ``index.json`` lists as skipped (the folder's name holds the listing's key)."""
    try:
        index = json.loads((path / INDEX_FILE).read_text())
        skipped = set(index["skipped"])
        keep = np.fromiter((entry.path not in skipped for entry in scan.entries), bool, scan.count) if skipped else None
        rows = scan.count if keep is None else int(keep.sum())
        if rows != index["shape"][0]:
            raise ValueError(f"it holds {index['shape'][0]} images, the folder {rows} once the skipped files "
                             "are left out")
        pixels, mapped = open_uint8(path / PIXELS_FILE, tuple(index["shape"]))
        return FolderCache(path, pixels, mapped, scan, keep, list(index["problems"]), True)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataError(f"{path}: the image cache cannot be read ({exc}); delete that folder and run again") from None


def _previous(home: Path, options: str, path: Path) -> dict:
    """Rows of the newest other cache of these options in ``home``: path -> (size, mtime, row, pixels).

    Its rows are in ``rows.json``, or in ``index.json`` for a cache written before that file existed.
    """
    others = sorted((p for p in home.glob(f"*-{options}") if p != path and (p / INDEX_FILE).is_file()),
                    key=lambda p: p.stat().st_mtime)
    if not others:
        return {}
    try:
        index = json.loads((others[-1] / INDEX_FILE).read_text())
        rows = index["rows"] if "rows" in index else json.loads((others[-1] / ROWS_FILE).read_text())
        pixels, _ = open_uint8(others[-1] / PIXELS_FILE, tuple(index["shape"]))
        return {r[0]: (r[1], r[2], i, pixels) for i, r in enumerate(rows)}
    except (OSError, ValueError, KeyError, IndexError, TypeError):  # unreadable: decode everything again
        return {}


def _build(scan, shape, options: str, path: Path, strict: bool, progress: bool, log) -> None:
    home = path.parent
    home.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(home)
    previous = _previous(home, options, path)
    if previous:
        changed = [e.path for e in scan.entries if e.path in previous
                   and previous[e.path][:2] != (e.size, e.mtime_ns)]
        added = sum(e.path not in previous for e in scan.entries)
        gone = len(set(previous) - {e.path for e in scan.entries})
        for name in changed:
            log(f"{name}: changed since the cache was made; reading it again")
        if changed or added or gone:
            log(f"the folder changed since its cache was made ({len(changed)} changed, {added} new, {gone} removed "
                "files); updating the cache")
        else:  # the same files under another key: the key's layout (scan.py) changed
            log("the cache was made by another version of scratchcnn (no file changed); copying it to a new one")
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=home))
    rows, problems, skipped, copied = [], [], [], 0
    try:
        with open(tmp / PIXELS_FILE, "wb") as out:
            for entry in tqdm(scan.entries, desc="decoding images", unit="img", disable=not progress):
                old = previous.get(entry.path)
                if old is not None and old[:2] == (entry.size, entry.mtime_ns):
                    out.write(old[3][old[2]].tobytes())
                    copied += 1
                else:
                    try:
                        out.write(_decode_checked(scan.root, entry, shape).tobytes())
                    except DataError as exc:
                        line = f"{exc}; skipped"
                        if strict:
                            raise DataError(f"{exc} (--strict)") from None
                        problems.append(line)
                        skipped.append(entry.path)
                        continue
                rows.append([entry.path, entry.size, entry.mtime_ns, entry.part, entry.label])
            out.flush()
            os.fsync(out.fileno())
        index = {"version": CACHE_VERSION, "root": str(scan.root), "shape": [len(rows), *shape],
                 "problems": problems, "skipped": skipped}
        write_text_atomic(tmp / ROWS_FILE, json.dumps(rows))
        write_text_atomic(tmp / INDEX_FILE, json.dumps(index))
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / INDEX_FILE).is_file():  # another process made the same cache first: use theirs
                raise
        else:
            tmp = None
    except OSError as exc:
        raise DataError(f"cannot write the image cache in {home}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    # Caches and headers of another listing of the folder are stale, whatever their options.
    for stale in home.iterdir():
        if not stale.name.startswith(".") and scan.key()[:32] not in stale.name:
            (shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True))
    log(f"cached {len(rows)} images in {path}" + (f" ({copied} copied from the previous cache)" if copied else ""))


def _decode_checked(root: Path, entry, shape) -> np.ndarray:
    """``decode_entry``, refusing a file whose size or time changed since the scan (being written)."""
    try:
        image = decode_entry(root / entry.path, shape)
    except DataError as exc:  # load_image names the absolute path: name it as the other lines do
        raise DataError(str(exc).replace(str(root / entry.path), entry.path, 1)) from None
    try:
        stat = (root / entry.path).stat()
    except OSError as exc:
        raise DataError(f"{entry.path}: disappeared while being read ({exc.strerror})") from None
    if (stat.st_size, stat.st_mtime_ns) != (entry.size, entry.mtime_ns):
        raise DataError(f"{entry.path}: changed while being read (the next run reads it again)")
    return image


def _remove_abandoned(home: Path) -> None:
    """Remove the temporary folders of builds whose process is gone (killed mid-decode)."""
    for tmp in home.glob(".build-*"):
        try:
            pid = int(tmp.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue
