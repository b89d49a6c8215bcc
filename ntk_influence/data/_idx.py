"""The IDX reader behind the MNIST loader: the header is checked before any data is read.

An IDX file is a 4-byte magic number (``0, 0, 8, ndim`` for unsigned bytes), ``ndim`` big-endian
32-bit sizes, then the product of the sizes in bytes. :func:`read_idx` reads the header first
and compares the size it declares with what the file can hold: the file size for a plain file,
the most that ``deflate`` can expand the compressed bytes to for a ``.gz`` file. Only then is a
buffer of exactly the declared size allocated and filled by streaming, and a stream that is
longer than declared is refused after at most :data:`TRAILING_PROBE` more bytes, so a damaged
header or a gzip bomb is refused in bounded memory.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError

#: ``deflate`` expands a byte into at most 1032 (its largest compression ratio is 1032:1).
DEFLATE_MAX_RATIO = 1032
#: Bytes read past the declared data to tell a longer stream from a complete one.
TRAILING_PROBE = 1 << 20
#: Bytes decompressed per read.
CHUNK = 1 << 22


def _damaged(path: Path, gz: bool, e: Exception) -> InputError:
    return InputError(f"{path} cannot be read ({type(e).__name__}: {e}); expected an IDX file"
                      f"{', gzip-compressed' if gz else ''}.")


def _read_exact(f: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n:
        part = f.read(n - len(out))
        if not part:
            break
        out += part
    return out


def _fill(f: BinaryIO, buf: np.ndarray) -> int:
    """Stream into ``buf`` in chunks; return the number of bytes read (short at end of stream)."""
    view = memoryview(buf)
    got = 0
    while got < buf.size:
        n = f.readinto(view[got:got + CHUNK])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _header(f: BinaryIO, path: Path, ndim_expected: int | None) -> list[int]:
    magic = _read_exact(f, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08:
        raise InputError(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    ndim = magic[3]
    if ndim_expected is not None and ndim != ndim_expected:
        raise InputError(f"{path} holds a {ndim}-dimensional IDX array but a "
                         f"{'label' if ndim_expected == 1 else 'image'} file "
                         f"({ndim_expected} dimensions) was expected there.")
    raw = _read_exact(f, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise InputError(f"{path} is truncated inside its IDX header.")
    return [int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(ndim)]


def read_idx(path: Path, ndim_expected: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzipped when its name ends in ``.gz``).

    The sizes in the header are checked against the file before any data is allocated, and
    decompression stops at the declared size (plus a probe of :data:`TRAILING_PROBE` bytes to
    detect a longer stream), so memory stays at the declared array whatever the file holds.

    Args:
      path: the file.
      ndim_expected: the number of dimensions required (3 for images, 1 for labels), or None.

    Returns:
      The ``uint8`` array of the shape the header declares.
    """
    gz = path.suffix == ".gz"
    try:
        size = path.stat().st_size
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            dims = _header(f, path, ndim_expected)
            head = 4 + 4 * len(dims)
            want = math.prod(dims)
            if gz:
                room = DEFLATE_MAX_RATIO * size
                if want > room:
                    raise InputError(
                        f"{path} is damaged: its IDX header declares sizes {dims} ({want} bytes of "
                        f"data), more than a {size}-byte gzip file can decompress to (at most "
                        f"{room} bytes); refused before decompressing.")
            else:
                if want > size - head:
                    raise InputError(f"{path} is truncated: its header says {dims} ({want} bytes "
                                     f"of data), found {size - head} bytes.")
                if want < size - head:
                    raise InputError(f"{path} has {size - head - want} trailing bytes after the "
                                     f"{want} bytes of data its header ({dims}) declares; the file "
                                     "is damaged or not IDX.")
            try:
                data = np.empty(want, np.uint8)
            except MemoryError as e:
                raise InputError(f"{path}: its IDX header declares {dims} ({want} bytes), more "
                                 "than this machine can allocate.") from e
            got = _fill(f, data)
            if got < want:
                raise InputError(f"{path} is truncated: its header says {dims} ({want} bytes of "
                                 f"data), found {got} bytes.")
            extra = len(f.read(TRAILING_PROBE))
    except InputError:
        raise
    except (OSError, EOFError, zlib.error) as e:
        raise _damaged(path, gz, e) from e
    if extra:
        more = "at least 1 MiB of" if extra >= TRAILING_PROBE else f"{extra}"
        raise InputError(f"{path} has {more} trailing bytes after the {want} bytes of data its "
                         f"header ({dims}) declares; the file is damaged or not IDX (decompression "
                         "stopped there).")
    return data.reshape(dims)
