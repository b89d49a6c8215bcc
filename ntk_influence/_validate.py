"""Input checks shared by the public functions: every failure is an :class:`InputError`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._errors import InputError, TheoryAssumptionWarning

UNIT_NORM_TOL = 1e-6


def as_array(x: Any, name: str, ndim: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """Convert ``x`` to a finite host array of one of the allowed ranks.

    Args:
      x: array-like input.
      name: the argument's name, used in the message.
      ndim: the allowed numbers of dimensions.
      dtype: the dtype to convert to.

    Returns:
      ``np.ndarray`` of ``dtype``.
    """
    if x is None:
        raise InputError(f"{name} is None; pass an array.")
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} cannot be converted to a {np.dtype(dtype).name} array: {e}") from e
    if arr.ndim not in ndim:
        allowed = " or ".join(str(n) for n in ndim)
        raise InputError(f"{name} must have {allowed} dimensions, got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); pass at least one point.")
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise InputError(
            f"{name} contains {int(bad.sum())} NaN/Inf value(s), the first at index {where}; "
            "remove or impute them before calling."
        )
    return arr


def check_lam(lam: Any) -> float:
    """Return ``lam`` as a float after checking it is finite and non-negative."""
    try:
        lam_f = float(lam)
    except (TypeError, ValueError) as e:
        raise InputError(f"lam must be a number, got {lam!r}.") from e
    if not np.isfinite(lam_f) or lam_f < 0:
        raise InputError(f"lam must be finite and >= 0, got {lam!r}; use e.g. lam=0.1.")
    return lam_f


def check_features(x_train: Any, x_test: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Check inputs are finite ``(n, ...)`` arrays with matching trailing shapes."""
    xtr = as_array(x_train, "x_train", (2, 3, 4))
    xte = None
    if x_test is not None:
        xte = as_array(x_test, "x_test", (2, 3, 4))
        if xte.shape[1:] != xtr.shape[1:]:
            raise InputError(
                f"x_test has feature shape {xte.shape[1:]} but x_train has {xtr.shape[1:]}; "
                "both must describe points of the same shape."
            )
    return xtr, xte


def check_labels(y: Any, n: int, name: str) -> np.ndarray:
    """Check labels are finite, of length ``n``, shape ``(n,)`` or ``(n, k)``; warn if ``|y| > 1``."""
    arr = as_array(y, name, (1, 2))
    if arr.shape[0] != n:
        raise InputError(
            f"{name} has {arr.shape[0]} rows but there are {n} points; pass one label per point."
        )
    if np.abs(arr).max() > 1.0 + 1e-12:
        warnings.warn(
            f"{name} has |y| up to {np.abs(arr).max():.3g}; the paper's theory assumes |y| <= 1 "
            "(rescale labels to silence this).",
            TheoryAssumptionWarning,
            stacklevel=3,
        )
    return arr


def check_unit_norm(x: np.ndarray, name: str) -> None:
    """Raise unless every row of ``x`` has unit Euclidean norm."""
    norms = np.linalg.norm(x.reshape(x.shape[0], -1), axis=1)
    worst = int(np.argmax(np.abs(norms - 1.0)))
    if abs(norms[worst] - 1.0) > UNIT_NORM_TOL:
        raise InputError(
            f"{name}[{worst}] has norm {norms[worst]:.6g}, but this kernel (eq. 4) assumes "
            "||x|| = 1; pass normalize=True or call ni.unit_normalize(x) first."
        )


def check_indices(idx: Any, n: int, name: str) -> np.ndarray:
    """Check integer indices lie in ``[0, n)`` and are unique."""
    arr = np.asarray(idx)
    if arr.size == 0:
        raise InputError(f"{name} is empty; pass at least one index.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}.")
    arr = arr.reshape(-1).astype(np.int64)
    if arr.min() < 0 or arr.max() >= n:
        raise InputError(f"{name} has index {int(arr.min() if arr.min() < 0 else arr.max())} "
                         f"outside [0, {n}); indices count training points from 0.")
    if np.unique(arr).size != arr.size:
        raise InputError(f"{name} contains repeated indices; each point can be removed once.")
    return arr
