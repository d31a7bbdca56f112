"""Reader for the IDX format of MNIST and Fashion-MNIST.

An IDX file is: two zero bytes, a type code, the number of dimensions ``d``;
``d`` big-endian uint32 sizes; then the elements in C order
(LeCun, Cortes & Burges, "The MNIST database", http://yann.lecun.com/exdb/mnist/,
section "File formats for the MNIST database").
"""
from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from scratchcnn.errors import DataError

__all__ = ["IDX_TYPES", "read_idx", "parse_idx", "decompressed_bytes"]

# Type code -> element dtype (big-endian where it matters), from the format description.
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 2**31  # data bytes a header may declare (MNIST's training images: 47 MB)
_TRAILING_LIMIT = 2**20  # bytes read past the declared data to report trailing garbage


def decompressed_bytes(path) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic (whatever the name says).

    Raises
    ------
    DataError
        If the file cannot be read or its gzip stream is truncated or corrupt.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def parse_idx(raw: bytes, source: str, expected_shape=None, expected_dtype=None, sha256=None) -> np.ndarray:
    """Parse IDX bytes into an array, checking everything the header promises.

    Parameters
    ----------
    raw : bytes
        The decompressed file.
    source : str
        Name used in error messages (the file's path).
    expected_shape : tuple of int, optional
        e.g. ``(60000, 28, 28)``; the header must match it exactly.
    expected_dtype : numpy dtype, optional
        e.g. ``uint8``.
    sha256 : str, optional
        Published SHA-256 of the decompressed bytes.

    Returns
    -------
    array : ndarray of the header's type and shape (read-only view of ``raw``)

    Raises
    ------
    DataError
        Naming ``source`` and what was wrong: bad magic, unknown type, truncated
        header or data, trailing bytes, unexpected shape/type, checksum mismatch.
    """
    if len(raw) < 4:
        raise DataError(f"{source}: truncated: {len(raw)} bytes, but an IDX header needs at least 4")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{source}: bad magic number 0x{raw[:4].hex()}: an IDX file starts with two zero bytes")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise DataError(f"{source}: unknown IDX element type 0x{code:02x}; "
                        f"expected one of {', '.join(f'0x{c:02x}' for c in IDX_TYPES)}")
    if ndim == 0:
        raise DataError(f"{source}: the header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: truncated header: {ndim} dimensions need {header} bytes, file has {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[code]
    if expected_shape is not None and tuple(dims) != tuple(expected_shape):
        raise DataError(f"{source}: dimensions {tuple(dims)} in the header, expected {tuple(expected_shape)}")
    if expected_dtype is not None and dtype != np.dtype(expected_dtype):
        raise DataError(f"{source}: element type {dtype}, expected {np.dtype(expected_dtype)}")
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise DataError(f"{source}: truncated: the header promises {need} bytes of data, the file has {have}")
    if have > need:
        raise DataError(f"{source}: {have - need} unexpected bytes after the {need} bytes of data")
    if sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise DataError(f"{source}: SHA-256 of the decompressed data is {digest}, expected {sha256} "
                            "(corrupt, or not the published file)")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def read_idx(path, expected_shape=None, expected_dtype=None, sha256=None,
             max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, raw or gzipped, with the checks of ``parse_idx``.

    The header is read (and decompressed) first, and then exactly the bytes it
    declares, so a file whose header declares another shape than
    ``expected_shape`` (or more than ``max_bytes`` of data) is refused before any
    data is read, and a gzip stream that inflates to gigabytes (a "gzip bomb") is
    never decompressed past the declared size plus ``_TRAILING_LIMIT``.

    Returns the array in native byte order. Raises DataError naming ``path``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            stream = gzip.GzipFile(fileobj=f) if f.read(2) == _GZIP_MAGIC else f
            f.seek(0)
            raw = _read_declared(stream, str(path), expected_shape, max_bytes)
    except DataError:
        raise
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    array = parse_idx(raw, str(path), expected_shape, expected_dtype, sha256)
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _read_declared(stream, source: str, expected_shape, max_bytes: int) -> bytes:
    """The header and the data it declares, read from ``stream``; refuse trailing bytes.

    What cannot be judged from the header alone (bad magic, unknown type,
    truncation) is left to ``parse_idx``, which gets the bytes read.
    """
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_TYPES or head[3] == 0:
        return head
    dims_raw = stream.read(4 * head[3])
    if len(dims_raw) < 4 * head[3]:
        return head + dims_raw
    dims = struct.unpack(f">{head[3]}I", dims_raw)
    if expected_shape is not None and tuple(dims) != tuple(expected_shape):
        raise DataError(f"{source}: dimensions {tuple(dims)} in the header, expected {tuple(expected_shape)}")
    need = math.prod(dims) * IDX_TYPES[head[2]].itemsize
    if need > max_bytes:
        raise DataError(f"{source}: the header declares {need:,} bytes of data, more than the {max_bytes:,} "
                        "this reader takes")
    body = stream.read(need)
    extra = len(stream.read(_TRAILING_LIMIT))
    if extra:
        more = "at least " if extra == _TRAILING_LIMIT else ""
        raise DataError(f"{source}: {more}{extra} unexpected bytes after the {need} bytes of data")
    return head + dims_raw + body
