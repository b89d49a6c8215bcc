"""TODO."""

from ._files import (
    ResultStore,
    atomic_write_bytes,
    data_hash,
    jsonable,
    load_json,
    load_npz,
    progress,
    save_json,
    save_npz,
    settings_differences,
)

__all__ = [
    "ResultStore",
    "atomic_write_bytes",
    "data_hash",
    "jsonable",
    "load_json",
    "load_npz",
    "progress",
    "save_json",
    "save_npz",
    "settings_differences",
]
