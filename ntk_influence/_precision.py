"""Precision context: float64 for kernel algebra without flipping the caller's global setting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np


@contextlib.contextmanager
def precision(dtype: np.dtype | type | str = np.float64) -> Iterator[np.dtype]:
    """Enable JAX 64-bit mode inside the block when ``dtype`` is 64-bit; restore it after.

    Args:
      dtype: the floating dtype the computation uses (float64 or float32).

    Returns:
      A context manager that yields the resolved ``np.dtype``.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}.")
    want = dt == np.dtype(np.float64)
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # older JAX
        from jax.experimental import enable_x64 as old_ctx  # type: ignore[attr-defined]

        manager = old_ctx() if want else contextlib.nullcontext()
    else:
        manager = ctx(want)
    with manager:
        yield dt


def device_has_float64(device: Any | None = None) -> bool:
    """Whether ``device`` computes in float64 (CPU and GPU do; TPU does not).

    Args:
      device: a JAX device (default: the first device).

    Returns:
      True when float64 arithmetic is native there.
    """
    dev = device or jax.devices()[0]
    return dev.platform in ("cpu", "gpu", "cuda", "rocm")
