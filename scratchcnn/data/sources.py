"""Finding a data set's files on disk, and downloading them with ``pooch`` when they are nowhere.

Search order for the folder holding the data set's files (IDX files ``.gz`` or
raw; CIFAR-10's ``.bin`` record files):

1. ``data_dir`` (the CLI's ``--data-dir``), its ``<folder>/`` subfolder, then itself;
2. ``$SCRATCHCNN_DATA``, likewise;
3. the user cache, ``platformdirs.user_cache_dir("scratchcnn")/<folder>`` (``~/.cache/scratchcnn``
   on Linux; the folder ``pooch.os_cache`` names);
4. system folders (Debian's ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).

When no folder holds every file, they are fetched with ``pooch`` (requests,
retries, a tqdm progress bar, tar extraction), one ``pooch`` fetch per mirror in
turn, into a temporary folder inside the cache folder; each file is verified
(IDX: structure and the SHA-256 of its decompressed bytes; CIFAR-10: the
archive's published MD5, checked by ``pooch``, then every record) and only then
moved into place, so an interrupted or failed download leaves nothing behind.
``SCRATCHCNN_OFFLINE=1`` forbids downloading (the tests set it).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import platformdirs

from scratchcnn.data.cifar import read_records
from scratchcnn.data.idx import read_idx
from scratchcnn.data.registry import CifarDataset, IdxDataset
from scratchcnn.errors import DataError

__all__ = ["cache_dir", "candidate_dirs", "locate", "download", "find_or_download", "DOWNLOAD_TIMEOUT"]

DOWNLOAD_TIMEOUT = 30  # seconds without an answer before a mirror counts as failed
RETRIES = 2  # extra attempts per mirror (pooch waits 1 s, then 2 s, between them)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")  # the useful end of a urllib3 connection error


def cache_dir() -> Path:
    """The user cache folder of scratchcnn (e.g. ``~/.cache/scratchcnn`` on Linux)."""
    return Path(platformdirs.user_cache_dir("scratchcnn"))


def candidate_dirs(info, data_dir=None) -> list[Path]:
    """Folders to look in, in order (see the module docstring)."""
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("SCRATCHCNN_DATA")):
        if root:
            dirs += [Path(root) / info.folder, Path(root)]
    dirs.append(cache_dir() / info.folder)
    dirs += [Path(d) for d in info.system_dirs]
    return dirs


def _file_in(folder: Path, names) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
        if (folder / name).is_dir():  # never skip it silently for a file found elsewhere
            raise DataError(f"{folder / name}: is a folder, expected the data file {name}")
    return None


def locate(info, data_dir=None) -> dict[str, Path] | None:
    """Paths of the data set's files from the first folder that holds all of them, or None."""
    for folder in candidate_dirs(info, data_dir):
        found = {key: _file_in(folder, names) for key, names in info.file_names().items()}
        if all(found.values()):
            return found
    return None


def _reason(exc: Exception) -> str:
    """One short line for a failed fetch: the HTTP status, the OS error, or pooch's message."""
    import requests

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.exceptions.RequestException):
        match = _ERRNO.search(str(exc))
        return match.group(0).strip() if match else f"{type(exc).__name__}: {exc}"
    return str(exc)


@contextlib.contextmanager
def _pooch_quiet(quiet: bool):
    """Silence pooch's "Downloading ..." lines when there is no progress bar either."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    if quiet:
        logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


def _fetch(base: str, fname: str, known_hash, staging: Path, progress: bool, retries: int, processor=None):
    """One pooch fetch of ``base + fname`` into ``staging``; pooch checks ``known_hash`` if given."""
    import pooch  # imported when downloading only: with requests it takes a noticeable part of a second

    fetcher = pooch.create(path=staging, base_url=base, registry={fname: known_hash}, retry_if_failed=retries)
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=DOWNLOAD_TIMEOUT)
    with _pooch_quiet(not progress):
        return fetcher.fetch(fname, processor=processor, downloader=downloader)


def _fetch_errors() -> tuple:
    """What a failed fetch raises: requests' errors, pooch's ValueError (checksum), OSError."""
    import requests

    return (requests.exceptions.RequestException, ValueError, OSError)


def _manual_hint(info, where) -> str:
    """What to do by hand: which files to put ``where``."""
    if isinstance(info, CifarDataset):
        return (f"put the files of {info.archive} ({info.folder}/: {', '.join(info.file_names())}) "
                f"in {where} or pass --data-dir")
    return f"put the four files in {where} or pass --data-dir"


def _download_idx(info: IdxDataset, folder: Path, mirrors, progress: bool, retries: int) -> dict[str, Path]:
    fetch_errors, paths = _fetch_errors(), {}
    for key, f in info.files.items():
        fname, failures = f"{f.name}.gz", []
        for base in mirrors:
            url = f"{base}{fname}"
            staging = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
            try:
                # The published SHA-256 is of the decompressed bytes, so read_idx checks it, not pooch.
                tmp = Path(_fetch(base, fname, None, staging, progress, retries))
                read_idx(tmp, f.shape, "u1", f.sha256)
                os.replace(tmp, folder / fname)
            except fetch_errors as exc:
                failures.append(f"{url}: {_reason(exc)}")
                continue
            except DataError as exc:
                failures.append(f"{url}: {exc}")
                continue
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            paths[key] = folder / fname
            break
        else:
            raise DataError(f"could not download {info.title} file {fname} ({'; '.join(failures)}); "
                            f"{_manual_hint(info, folder)}")
    return paths


def _download_cifar(info: CifarDataset, folder: Path, mirrors, progress: bool, retries: int) -> dict[str, Path]:
    import pooch

    members = [f"{info.folder}/{name}" for name in info.file_names()]
    failures, fetch_errors = [], _fetch_errors()
    for base in mirrors:
        url = f"{base}{info.archive}"
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
        try:
            _fetch(base, info.archive, info.archive_hash, staging, progress, retries,
                   processor=pooch.Untar(members=members, extract_dir="extracted"))
            unpacked = staging / "extracted" / info.folder
            for name in info.file_names():
                if not (unpacked / name).is_file():
                    raise DataError(f"the archive holds no {info.folder}/{name}")
                read_records(unpacked / name, info.image_shape, len(info.class_names), info.records_per_file)
            for name in info.file_names():
                os.replace(unpacked / name, folder / name)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            failures.append(f"{url}: not a readable .tar.gz archive ({exc})")
            continue
        except fetch_errors as exc:
            failures.append(f"{url}: {_reason(exc)}")
            continue
        except DataError as exc:
            failures.append(f"{url}: {exc}")
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {name: folder / name for name in info.file_names()}
    raise DataError(f"could not download {info.title} archive {info.archive} ({'; '.join(failures)}); "
                    f"{_manual_hint(info, folder)}")


def download(info, folder=None, mirrors=None, progress: bool = True, retries: int = RETRIES) -> dict[str, Path]:
    """Download a data set's files into ``folder`` (default: the cache), verified.

    Parameters
    ----------
    info : IdxDataset or CifarDataset
    folder : path, optional
        Where the files go (default ``cache_dir()/info.folder``).
    mirrors : sequence of str, optional
        Base URLs tried in turn, one ``pooch`` fetch each (default ``info.mirrors``).
    progress : bool
        Show pooch's tqdm progress bar per file.
    retries : int
        Extra attempts per mirror after a network error or checksum mismatch.

    Returns
    -------
    paths : dict[str, Path], the verified files (keys as in ``info.file_names()``).

    Raises
    ------
    DataError
        If the files could not be fetched and verified from any mirror; the
        message lists what each mirror answered and where to put the files by hand.
    """
    folder = Path(folder) if folder else cache_dir() / info.folder
    folder.mkdir(parents=True, exist_ok=True)
    mirrors = tuple(mirrors or info.mirrors)
    if isinstance(info, CifarDataset):
        return _download_cifar(info, folder, mirrors, progress, retries)
    return _download_idx(info, folder, mirrors, progress, retries)


def find_or_download(info, data_dir=None, progress: bool = True) -> dict[str, Path]:
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
                        f"downloading; {_manual_hint(info, 'one of those folders')}")
    try:
        return download(info, progress=progress)
    except DataError as exc:
        raise DataError(f"{info.title} not found (looked in {searched}) and {exc}") from None
