"""Files and progress: atomic writes, JSON and ``.npz`` results, resumable stores.

- ``_files``: :func:`atomic_write_bytes`, :func:`save_json`/:func:`load_json` (with
  :func:`jsonable`), :func:`save_npz`/:func:`load_npz`, :func:`is_partial_file`/
  :func:`remove_partial_files`, :func:`load_saved` (a resumed run's saved piece),
  :func:`data_hash`, :func:`settings_differences`, :class:`ResultStore` (warning with
  :class:`~ntk_influence.errors.ResumeWarning`) and :func:`progress`.
"""

from ._files import (
    ResultStore,
    atomic_write_bytes,
    data_hash,
    is_partial_file,
    jsonable,
    load_json,
    load_npz,
    load_saved,
    progress,
    remove_partial_files,
    save_json,
    save_npz,
    settings_differences,
)

__all__ = [
    "ResultStore",
    "atomic_write_bytes",
    "data_hash",
    "is_partial_file",
    "jsonable",
    "load_json",
    "load_npz",
    "load_saved",
    "progress",
    "remove_partial_files",
    "save_json",
    "save_npz",
    "settings_differences",
]
