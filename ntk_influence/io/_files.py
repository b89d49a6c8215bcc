"""Atomic writes, result files, resumable result stores and progress bars for long jobs.

This module holds :func:`atomic_write_bytes` (temporary file, then rename) and the formats built
on it (:func:`save_json`/:func:`load_json` with :func:`jsonable`, :func:`save_npz`/
:func:`load_npz`), :func:`remove_partial_files` (the temporary files of a killed writer; only
names :func:`atomic_write_bytes` makes are touched), :func:`data_hash` and
:func:`settings_differences` (the identity of a run's data and settings), :class:`ResultStore`
(one file per finished item, for resumable sweeps; a damaged item or ``meta.json`` is computed
again with a warning) and :func:`progress` (a progress bar on stderr).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import stat
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError, ResumeWarning

T = TypeVar("T")


TEMP_MARK = ".ntk-partial-"
"""Part of every temporary file name :func:`atomic_write_bytes` makes: ``.NAME.ntk-partial-XXXXXXXX.tmp``."""
_TEMP_NAME = re.compile(r"^\..+" + re.escape(TEMP_MARK) + r"[a-z0-9_]{8}\.tmp$")
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
      path: destination.
      data: bytes to write.

    Returns:
      The destination path.

    Raises:
      InputError: ``path`` or its folder cannot be written (permissions, a read-only file
        system, a folder in the way); the message names the file.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}{TEMP_MARK}", suffix=".tmp", dir=p.parent)
    except OSError as e:
        _raise_unwritable(p, e)
        raise
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            _raise_unwritable(p, e)
        raise
    return p


def _raise_unwritable(p: Path, e: OSError) -> None:
    """Turn a permission-like OSError on writing ``p`` into an InputError naming the file."""
    if e.errno in _UNWRITABLE:
        raise InputError(f"cannot write {p} ({e.strerror}); make it (and its folder) writable, "
                         "or use another output folder.") from e


def is_partial_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_write_bytes`.

    Args:
      path: a file path (only its name is read).

    Returns:
      True for ``.NAME.ntk-partial-XXXXXXXX.tmp``.
    """
    return bool(_TEMP_NAME.match(Path(path).name))


def remove_partial_files(folder: str | os.PathLike[str]) -> int:
    """Delete the temporary files a killed :func:`atomic_write_bytes` left under ``folder``.

    Only regular files named as :func:`is_partial_file` says are removed; symbolic links are
    neither followed nor removed, so nothing outside ``folder`` is touched. Call it only while
    no writer uses ``folder``: a running writer's files look the same.

    Args:
      folder: the folder (searched recursively).

    Returns:
      How many files were removed.
    """
    n = 0
    for top, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            f = os.path.join(top, name)
            if _TEMP_NAME.match(name) and stat.S_ISREG(os.lstat(f).st_mode):
                os.unlink(f)
                n += 1
    return n


def jsonable(x: Any) -> Any:
    """Convert ``x`` to plain JSON types: NumPy arrays and scalars, tuples and paths included.

    Non-finite floats become None (JSON has no NaN/Inf), so two settings dicts compare equal after
    a round trip through a file exactly when their :func:`jsonable` forms are equal.

    Args:
      x: dicts, lists, tuples, NumPy arrays and scalars, paths, or plain values.

    Returns:
      The same data in dicts (string keys), lists, ints, floats, bools, strings and None.
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        xf = float(x)
        return xf if np.isfinite(xf) else None
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix or "value": d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flat(v, key) if isinstance(v, dict) else {key: v})
    return out


def settings_differences(stored: Any, requested: Any, limit: int = 3) -> str:
    """Say which settings differ, briefly: ``"lam: 0.1 stored, 0.5 requested"``.

    Nested dicts are compared key by key (dotted names); long values are shortened.

    Args:
      stored: the settings found (a dict, usually read from a file).
      requested: the settings of the current run.
      limit: how many differences are named (the rest are counted).

    Returns:
      One line naming the differences.
    """
    old, new = _flat(jsonable(stored)), _flat(jsonable(requested))
    missing = object()

    def show(v: Any) -> str:
        if v is missing:
            return "absent"
        text = str(v)
        if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
            text = v[:8]  # a hash
        return text if len(text) <= 28 else text[:25] + "..."

    keys = [k for k in dict.fromkeys([*new, *old])
            if old.get(k, missing) != new.get(k, missing)]
    parts = [f"{k}: {show(old.get(k, missing))} stored, {show(new.get(k, missing))} requested"
             for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"{len(keys) - limit} more")
    return "; ".join(parts) or "no difference"


def data_hash(*arrays: Any) -> str:
    """SHA-256 of arrays' dtypes, shapes and bytes (the data's identity in a fingerprint).

    Args:
      *arrays: NumPy arrays (or array-likes).

    Returns:
      The hex digest.
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NumPy values converted; NaN/Inf become null).

    Args:
      path: destination.
      obj: JSON-able data (dicts, lists, NumPy arrays and scalars, paths).

    Returns:
      The destination path.
    """
    text = json.dumps(jsonable(obj), indent=2, sort_keys=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file.

    Args:
      path: the file.

    Returns:
      The decoded data.
    """
    with open(path) as f:
        return json.load(f)


def save_npz(path: str | os.PathLike[str], **arrays: Any) -> Path:
    """Write arrays to a compressed ``.npz`` atomically.

    Args:
      path: destination.
      **arrays: name -> array.

    Returns:
      The destination path.
    """
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file into a dict.

    Args:
      path: the file.

    Returns:
      name -> array.
    """
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_saved(path: str | os.PathLike[str]) -> Any | None:
    """A piece an earlier run saved (``.json`` or ``.npz``), or ``None`` to compute it again.

    What a resumed run reuses must be its own regular file, whole: a missing file gives
    ``None``; a symbolic link, something not a regular file, or a file that does not read back
    gives ``None`` with a :class:`~ntk_influence.errors.ResumeWarning`, and a link or damaged
    file is removed so that the new piece can take its place.

    Args:
      path: the saved piece (``.npz`` is read with :func:`load_npz`, anything else as JSON).

    Returns:
      The decoded data, or ``None``.
    """
    p = Path(path)
    if not os.path.lexists(p):
        return None
    why = ""
    if p.is_symlink() or not p.is_file():
        why = "is not a regular file"
    else:
        try:
            return load_npz(p) if p.suffix == ".npz" else load_json(p)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            why = f"is damaged ({type(e).__name__})"
    warnings.warn(f"{p} {why}; computing it again", ResumeWarning, stacklevel=2)
    if p.is_symlink() or p.is_file():
        p.unlink()
    return None


class ResultStore:
    """A folder of finished work items, one atomic ``.npz`` per item, for resumable sweeps.

    A sweep asks :meth:`done` before each item and calls :meth:`save` after it; an interrupted
    sweep run again with the same folder skips what is finished. A ``meta.json`` records the
    settings, and a store opened with different settings refuses to mix results. A damaged
    ``meta.json`` (or none beside existing items) starts the store afresh, and a damaged item
    (a truncated or unreadable file) counts as not finished; both say so with a
    :class:`ResumeWarning`. The folder must not be a symbolic link: items are written only where
    the caller asked.
    """

    def __init__(self, root: str | os.PathLike[str], meta: dict[str, Any] | None = None,
                 resume: bool = True) -> None:
        """Open (or create) the store.

        Args:
          root: the folder (not a symbolic link).
          meta: settings that must match for results to be reused.
          resume: reuse finished items; False clears the folder's items first.

        Raises:
          InputError: ``root`` is a symbolic link or not a folder, or holds results of other
            settings (under ``resume``).
        """
        self.root = Path(root)
        if self.root.is_symlink():
            raise InputError(f"{self.root} is a symbolic link (to {os.readlink(self.root)}); "
                             "results are written only into a real folder: remove the link.")
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root} is a file, not a folder; remove it or use another "
                             "folder.")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.root} cannot be created ({e.strerror}).") from e
        self._checked: set[str] = set()
        self._last: tuple[str, dict[str, np.ndarray]] | None = None  # read by done(), for load()
        meta_path = self.root / "meta.json"
        meta = jsonable(meta or {})
        if resume:
            old = self._read_meta(meta_path)
            if old is None:
                resume = False
            elif old != meta:
                raise InputError(
                    f"{self.root} holds results of other settings "
                    f"({settings_differences(old, meta)}); use another folder, or start over "
                    "without resuming.")
        if not resume:
            for f in self.root.glob("item_*.npz"):
                f.unlink()
        save_json(meta_path, meta)

    def _read_meta(self, meta_path: Path) -> Any:
        """The stored settings; None (with a warning when items exist) if they cannot be used."""
        items = any(self.root.glob("item_*.npz"))
        if meta_path.is_symlink() or (meta_path.exists() and not meta_path.is_file()):
            why = "is not a regular file"
        elif not meta_path.exists():
            why = "is missing"
        else:
            try:
                return load_json(meta_path)
            except (OSError, ValueError) as e:
                why = f"is damaged ({type(e).__name__})"
        if items:
            warnings.warn(f"{meta_path} {why}: the finished items beside it cannot be checked; "
                          "computing them again", ResumeWarning, stacklevel=3)
        return None

    def _path(self, key: str | int) -> Path:
        return self.root / f"item_{key}.npz"

    def done(self, key: str | int) -> bool:
        """Whether item ``key`` is finished (saved and readable).

        A damaged item file (truncated, unreadable, or a symbolic link) is removed with a
        :class:`ResumeWarning` and counts as not finished.

        Args:
          key: the item.

        Returns:
          True if it was saved and reads back whole.
        """
        if str(key) in self._checked and os.path.lexists(self._path(key)):
            return True
        arrays = load_saved(self._path(key))
        if arrays is None:
            return False
        self._last = (str(key), arrays)
        self._checked.add(str(key))
        return True

    def save(self, key: str | int, **arrays: Any) -> None:
        """Save item ``key`` atomically.

        Args:
          key: the item.
          **arrays: its arrays.
        """
        save_npz(self._path(key), **arrays)
        self._checked.add(str(key))
        if self._last is not None and self._last[0] == str(key):
            self._last = None

    def load(self, key: str | int) -> dict[str, np.ndarray]:
        """Load item ``key``.

        Args:
          key: the item.

        Returns:
          Its arrays.

        Raises:
          InputError: the item is damaged (run again: :meth:`done` then computes it afresh).
        """
        p = self._path(key)
        if self._last is not None and self._last[0] == str(key):
            got, self._last = self._last[1], None
            return got
        try:
            return load_npz(p)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(f"{p} is damaged or missing ({type(e).__name__}); run again to "
                             "compute it afresh.") from e

    def keys(self) -> list[str]:
        """Keys of the finished items.

        Returns:
          The keys, sorted.
        """
        return sorted(p.stem[len("item_"):] for p in self.root.glob("item_*.npz"))


def progress(it: Iterable[T], total: int | None = None, desc: str = "",
             enabled: bool = True) -> Iterator[T]:
    """Wrap an iterable in a progress bar on stderr (line updates when not a terminal).

    Args:
      it: the iterable.
      total: its length if known.
      desc: label.
      enabled: False for no output.

    Returns:
      An iterator over ``it``.
    """
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return iter(tqdm(it, total=total, desc=desc, disable=not enabled, file=sys.stderr,
                     mininterval=0.5 if tty else 10.0, dynamic_ncols=True, leave=tty))
