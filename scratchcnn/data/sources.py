"""Finding a data set's files on disk, and downloading them when they are nowhere.

Search order for the folder holding the four IDX files (``.gz`` or raw):

1. ``data_dir`` (the CLI's ``--data-dir``), itself or its ``<folder>/`` subfolder;
2. ``$SCRATCHCNN_DATA``, likewise;
3. the user cache, ``platformdirs.user_cache_dir("scratchcnn")/<folder>``;
4. system folders (Debian's ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).

When none holds all four files, each is downloaded from the data set's mirrors
in turn into a temporary file in the cache folder, verified (IDX structure and
SHA-256), and only then moved into place. ``SCRATCHCNN_OFFLINE=1`` forbids
downloading (the tests set it).
"""
from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import platformdirs
from tqdm import tqdm  # the text bar: it needs no ipywidgets in a notebook

from scratchcnn.data.idx import read_idx
from scratchcnn.data.registry import IdxDataset
from scratchcnn.errors import DataError

__all__ = ["cache_dir", "candidate_dirs", "locate", "download", "find_or_download"]

_CHUNK = 1 << 16  # bytes per read while downloading


def cache_dir() -> Path:
    """The user cache folder of scratchcnn (e.g. ``~/.cache/scratchcnn`` on Linux)."""
    return Path(platformdirs.user_cache_dir("scratchcnn"))


def candidate_dirs(info: IdxDataset, data_dir=None) -> list[Path]:
    """Folders to look in, in order (see the module docstring)."""
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("SCRATCHCNN_DATA")):
        if root:
            dirs += [Path(root) / info.folder, Path(root)]
    dirs.append(cache_dir() / info.folder)
    dirs += [Path(d) for d in info.system_dirs]
    return dirs


def _file_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def locate(info: IdxDataset, data_dir=None) -> dict[str, Path] | None:
    """Paths of the four files from the first folder that holds all of them, or None."""
    for folder in candidate_dirs(info, data_dir):
        found = {key: _file_in(folder, f.name) for key, f in info.files.items()}
        if all(found.values()):
            return found
    return None


def _fetch(url: str, folder: Path, opener, progress: bool) -> Path:
    """Stream ``url`` into a new temporary file in ``folder``; return its path."""
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as sink, opener(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                      disable=not progress, leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    sink.write(chunk)
                    bar.update(len(chunk))
            sink.flush()
            os.fsync(sink.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def download(info: IdxDataset, folder=None, mirrors=None, opener=urllib.request.urlopen,
             progress: bool = True) -> dict[str, Path]:
    """Download the data set's four files into ``folder`` (default: the cache), verified.

    Parameters
    ----------
    info : IdxDataset
    folder : path, optional
    mirrors : sequence of str, optional
        Base URLs tried in turn for each file (default ``info.mirrors``).
    opener : callable
        ``opener(url, timeout=...)`` returning a response with ``read`` and
        ``headers``, as ``urllib.request.urlopen`` (tests pass a fake or a local server).
    progress : bool
        Show a tqdm progress bar per file.

    Returns
    -------
    paths : dict[str, Path], the verified files.

    Raises
    ------
    DataError
        If a file could not be fetched and verified from any mirror; the message
        lists what each mirror answered and where to put the files by hand.
    """
    folder = Path(folder) if folder else cache_dir() / info.folder
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, f in info.files.items():
        target = folder / f"{f.name}.gz"
        failures = []
        for base in mirrors or info.mirrors:
            url = f"{base}{f.name}.gz"
            try:
                tmp = _fetch(url, folder, opener, progress)
            except urllib.error.HTTPError as exc:
                failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
                continue
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
                continue
            try:
                read_idx(tmp, f.shape, "u1", f.sha256)
            except DataError as exc:
                tmp.unlink(missing_ok=True)
                failures.append(f"{url}: {exc}")
                continue
            os.replace(tmp, target)
            paths[key] = target
            break
        else:
            raise DataError(f"could not download {info.title} file {f.name}.gz ({'; '.join(failures)}); "
                            f"put the four files in {folder} or pass --data-dir")
    return paths


def find_or_download(info: IdxDataset, data_dir=None, progress: bool = True) -> dict[str, Path]:
    """The data set's files: found on disk (see ``candidate_dirs``) or else downloaded.

    Raises
    ------
    DataError
        If the files are nowhere and downloading is disabled (``SCRATCHCNN_OFFLINE=1``)
        or fails; the message lists the folders searched.
    """
    found = locate(info, data_dir)
    if found:
        return found
    searched = ", ".join(str(d) for d in candidate_dirs(info, data_dir))
    if os.environ.get("SCRATCHCNN_OFFLINE") == "1":
        raise DataError(f"{info.title} not found (looked in {searched}) and SCRATCHCNN_OFFLINE=1 forbids "
                        f"downloading; put the four files in one of those folders or pass --data-dir")
    try:
        return download(info, progress=progress)
    except DataError as exc:
        raise DataError(f"{info.title} not found (looked in {searched}) and {exc}") from None
