"""Input checks shared by the public functions: every failure is an :class:`InputError`."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal, overload

import numpy as np

from .errors import InputError, NumericalError, TheoryAssumptionWarning

#: Rows whose norm is within this of 1 are rescaled to unit norm; rows further off raise.
UNIT_NORM_TOL = 1e-6
#: Rows whose norm is within this of 1 are taken as unit norm already (rounding of x / ||x||).
UNIT_NORM_ROUNDING = 64 * float(np.finfo(np.float64).eps)


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``np.asarray(x)``, refusing ``None`` and objects NumPy cannot convert with a clear error.

    Args:
      x: array-like input.
      name: the argument's name, used in the message.

    Returns:
      ``np.ndarray`` of whatever dtype NumPy infers.
    """
    if x is None:
        raise InputError(f"{name} is None; pass an array.")
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} cannot be converted to an array: {e}") from e


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
    raw = to_numpy(x, name)
    if np.iscomplexobj(raw):
        raise InputError(f"{name} is complex ({raw.dtype}); pass real values (e.g. the real part "
                         "or the modulus, whichever your data means).")
    try:
        arr = np.asarray(raw, dtype=dtype)
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


@overload
def check_whole(v: Any, name: str, low: int = 1, *, high: int | None = None,
                allow_none: Literal[False] = False) -> int: ...


@overload
def check_whole(v: Any, name: str, low: int = 1, *, high: int | None = None,
                allow_none: bool) -> int | None: ...


def check_whole(v: Any, name: str, low: int = 1, *, high: int | None = None,
                allow_none: bool = False) -> int | None:
    """A whole number ``>= low`` (widths, depths, counts, seeds), refusing bools and floats.

    The one whole-number check of the library: ``8.0``, ``2.5``, ``True`` and ``"8"`` are all
    refused, so every argument that counts something accepts exactly the same values.

    Args:
      v: the value.
      name: the argument's name, used in the message.
      low: the smallest allowed value.
      high: the largest allowed value (default: no limit).
      allow_none: accept ``None`` (returned as is; e.g. "all the points").

    Returns:
      ``int(v)``, or None.
    """
    if v is None and allow_none:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        extra = " (or None)" if allow_none else ""
        raise InputError(f"{name} must be a whole number >= {low}{extra}, got {v!r} "
                         f"({type(v).__name__}).")
    if v < low or (high is not None and v > high):
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"{name} must be {rng}, got {v!r}.")
    return int(v)


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """The working precision of a computation: float32 or float64.

    Args:
      dtype: anything ``np.dtype`` accepts.
      name: the argument's name, used in the message.

    Returns:
      The ``np.dtype``.
    """
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} must be float32 or float64 (the precision of the computation), "
                         f"got {dtype!r}.") from e
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"{name} must be float32 or float64 (the precision of the computation, "
                         f"not of the data), got {dt.name}; pass {name}=np.float64.")
    return dt


def check_positive(v: Any, name: str, hint: str = "", allow_none: bool = False) -> float | None:
    """A finite number ``> 0`` (scales such as ``kappa`` and ``W_std``), or ``None`` if allowed.

    Args:
      v: the value.
      name: the argument's name, used in the message.
      hint: a sentence appended to the message (e.g. the paper's value).
      allow_none: accept ``None`` (returned as is).

    Returns:
      ``float(v)``, or ``None``.
    """
    if v is None and allow_none:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} must be a number > 0, got {v!r}.{hint}") from e
    if not (np.isfinite(f) and f > 0):
        raise InputError(f"{name} must be finite and > 0, got {v!r}.{hint}")
    return f


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


@dataclasses.dataclass(frozen=True)
class UnitNormReport:
    """What :func:`ensure_unit_norm` did to the rows of one input.

    Attributes:
      name: the argument's name.
      n_rows: number of rows (points).
      n_renormalized: rows rescaled to unit norm (rows already unit to rounding are kept as
        they are and not counted).
      max_deviation: the largest ``| ||x_i|| - 1 |`` before rescaling.
      normalize: whether every row was asked to be scaled (``normalize=True``).
    """

    name: str
    n_rows: int
    n_renormalized: int
    max_deviation: float
    normalize: bool

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description.

        Returns:
          The fields as plain Python values.
        """
        return dataclasses.asdict(self)


#: The fix suggested for rows too far from unit norm, unless the caller gives its own.
UNIT_NORM_FIX = "pass normalize=True or normalise the data first (ni.unit_normalize(x))"
#: After scaling, every norm is verified to be within this of 1.
UNIT_NORM_VERIFIED = 1e-12


def row_scales(flat: np.ndarray, name: str, hint: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Row norms computed without overflow or underflow: ``||x_i|| = m_i ||x_i / m_i||``.

    ``m_i = max_j |x_ij|``, so ``x_i / m_i`` has entries in ``[-1, 1]`` and a norm in
    ``[1, sqrt(d)]`` whatever the scale of ``x_i`` (``1e200`` or ``1e-160``). All-zero rows raise.

    Args:
      flat: ``(n, d)`` finite array.
      name: the argument's name, used in the message.
      hint: text appended to the all-zero message (e.g. what produced the row).

    Returns:
      ``(m, r)``: the ``(n,)`` max-abs of each row and the ``(n,)`` norms of ``x_i / m_i``.
    """
    m = np.max(np.abs(flat), axis=1)
    if np.any(m == 0):
        raise InputError(f"{name}[{int(np.argmin(m))}] is all zeros{hint}, and an all-zero point "
                         "has no direction to scale to unit norm; drop that point.")
    return m, np.linalg.norm(flat / m[:, None], axis=1)


def ensure_unit_norm(x: Any, name: str = "x", *, normalize: bool = False,
                     tol: float = UNIT_NORM_TOL, fix: str = UNIT_NORM_FIX,
                     zero_hint: str = "") -> tuple[np.ndarray, UnitNormReport]:
    """Return ``x`` with unit-norm rows, as eq. (4) assumes, and a record of what was rescaled.

    Every row (point, flattened for its norm) with ``| ||x_i|| - 1 | <= tol`` is rescaled to
    ``x_i / ||x_i||`` (rows already unit to rounding are left as they are); any row further off
    raises, unless ``normalize=True``, which rescales every row. All-zero rows always raise.
    Rows are divided by their largest entry before their norm is taken, so any finite scale is
    handled, and every returned norm is verified to be within ``1e-12`` of 1.

    Args:
      x: ``(n, ...)`` finite real array.
      name: the argument's name, used in messages and the report.
      normalize: scale every row to unit norm instead of rejecting rows that are not.
      tol: the largest deviation of a norm from 1 that is corrected without ``normalize``.
      fix: what the message for a row too far from unit norm tells the caller to do.
      zero_hint: text added to the message for an all-zero row (what produced it).

    Returns:
      ``(x_unit, report)``: a float64 array of ``x``'s shape, and a :class:`UnitNormReport`.
    """
    arr = as_array(x, name, (2, 3, 4))
    flat = arr.reshape(arr.shape[0], -1)
    m, r = row_scales(flat, name, zero_hint)
    with np.errstate(over="ignore"):
        norms = m * r
    dev = np.abs(norms - 1.0)
    worst = int(np.argmax(dev))
    if not normalize and dev[worst] > tol:
        raise InputError(
            f"{name}[{worst}] has norm {norms[worst]:.10g}, but this kernel (eq. 4) assumes "
            f"||x|| = 1 (norms within {tol:g} of 1 are rescaled); {fix}."
        )
    scale = dev > UNIT_NORM_ROUNDING
    out = flat.copy()
    out[scale] = flat[scale] / m[scale, None] / r[scale, None]
    off = np.abs(np.linalg.norm(out, axis=1) - 1.0)
    if np.any(off > UNIT_NORM_VERIFIED):
        bad = int(np.argmax(off))
        raise NumericalError(f"{name}[{bad}] could not be scaled to unit norm (its norm is off by "
                             f"{off[bad]:.3g}); its entries span too many orders of magnitude.")
    report = UnitNormReport(name, int(arr.shape[0]), int(scale.sum()), float(dev[worst]),
                            bool(normalize))
    return out.reshape(arr.shape), report


def check_unit_norm(x: Any, name: str) -> UnitNormReport:
    """Raise unless every row of ``x`` is within ``UNIT_NORM_TOL`` of unit norm.

    Rows within the tolerance are accepted but not rescaled here; use :func:`ensure_unit_norm`
    to get the rescaled array.

    Args:
      x: ``(n, ...)`` array.
      name: the argument's name.

    Returns:
      The :class:`UnitNormReport` of the check.
    """
    return ensure_unit_norm(x, name)[1]


def check_classes(classes: Any) -> tuple[int, ...]:
    """Check a class list: at least two distinct integers (``bool`` is not an integer).

    Args:
      classes: a sequence of class labels, or a comma-separated string like ``"3,8"``.

    Returns:
      The classes as a tuple of ``int``.
    """
    if isinstance(classes, str):
        try:
            classes = tuple(int(c) for c in classes.split(","))
        except ValueError as e:
            raise InputError(f"classes must be comma-separated integers like 3,8, got {classes!r}.") from e
    try:
        items = list(classes)
    except TypeError as e:
        raise InputError(f"classes must be a sequence of integers like (3, 8), got {classes!r}.") from e
    bad = [c for c in items if isinstance(c, (bool, np.bool_))
           or not isinstance(c, (int, np.integer, float, np.floating))
           or not float(c).is_integer()]
    if bad:
        raise InputError(f"classes must be integer class labels, got {bad[0]!r} in {classes!r}.")
    cls = tuple(int(c) for c in items)
    if len(cls) < 2 or len(set(cls)) != len(cls):
        raise InputError(f"a task needs at least two distinct classes, got {classes!r}; "
                         "give e.g. classes=(3, 8).")
    return cls


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
