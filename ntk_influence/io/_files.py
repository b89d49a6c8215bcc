"""Atomic writes, result files, resumable result stores and progress bars for long jobs.

This module holds :func:`atomic_write_bytes` (temporary file, then rename) and the formats built
on it (:func:`save_json`/:func:`load_json` with :func:`jsonable`, :func:`save_npz`/
:func:`load_npz`), :func:`data_hash` and :func:`settings_differences` (the identity of a run's
data and settings), :class:`ResultStore` (one file per finished item, for resumable sweeps) and
:func:`progress` (a progress bar on stderr).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError

T = TypeVar("T")


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
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


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


class ResultStore:
    """A folder of finished work items, one atomic ``.npz`` per item, for resumable sweeps.

    A sweep asks :meth:`done` before each item and calls :meth:`save` after it; an interrupted
    sweep run again with the same folder skips what is finished. A ``meta.json`` records the
    settings, and a store opened with different settings refuses to mix results.
    """

    def __init__(self, root: str | os.PathLike[str], meta: dict[str, Any] | None = None,
                 resume: bool = True) -> None:
        """Open (or create) the store.

        Args:
          root: the folder.
          meta: settings that must match for results to be reused.
          resume: reuse finished items; False clears the folder's items first.
        """
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        meta_path = self.root / "meta.json"
        meta = jsonable(meta or {})
        if meta_path.exists() and resume:
            old = load_json(meta_path)
            if old != meta:
                raise InputError(
                    f"{self.root} holds results of other settings "
                    f"({settings_differences(old, meta)}); use another folder, or start over "
                    "without resuming.")
        if not resume:
            for f in self.root.glob("item_*.npz"):
                f.unlink()
        save_json(meta_path, meta)

    def _path(self, key: str | int) -> Path:
        return self.root / f"item_{key}.npz"

    def done(self, key: str | int) -> bool:
        """Whether item ``key`` is finished.

        Args:
          key: the item.

        Returns:
          True if it was saved.
        """
        return self._path(key).exists()

    def save(self, key: str | int, **arrays: Any) -> None:
        """Save item ``key`` atomically.

        Args:
          key: the item.
          **arrays: its arrays.
        """
        save_npz(self._path(key), **arrays)

    def load(self, key: str | int) -> dict[str, np.ndarray]:
        """Load item ``key``.

        Args:
          key: the item.

        Returns:
          Its arrays.
        """
        return load_npz(self._path(key))

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
