"""Complexity of groups of training points (eq. 19) and the influence groups of Figure 5.

This module holds :func:`group_complexity` (eq. 19 for disjoint groups, from one
:func:`~ntk_influence.linalg.factorize`), :func:`influence_groups` (training points sorted by
influence into groups), :func:`complexity_of_influence_groups` (both, Figure 5) and their
results :class:`ComplexityResult` and :class:`InfluenceGroups`.

Eq. (19) defines the complexity of a subset ``X_I`` of the training set as the drop of the RKHS
norm of the kernel predictor when ``X_I`` is removed:

    ``C(X_I) = sqrt(y^T K^-1 y) - sqrt(y_rest^T K_rest^-1 y_rest)``.

With ``B = (K + lam I)^-1`` (``B = K^-1`` when ``lam = 0``) and ``b = B y``, the block-downdate
identity (Schur complement of the inverse) gives, for any set ``S``,

    ``y_rest^T (K_rest + lam I)^-1 y_rest = y^T B y - b_S^T (B_SS)^-1 b_S``,

so one factorisation of ``K + lam I`` serves every group: each group costs one ``|S| x |S|``
solve. The difference of square roots is evaluated as ``d / (sqrt(a) + sqrt(a - d))`` so that
no digits are lost to cancellation. For multi-output labels (one-hot) the squared norm is summed
over the outputs, ``tr(Y^T B Y)``.

The ridgeless ``K`` of eq. (4) can be singular or badly conditioned (duplicate points, large
``n``). Then a small ridge is used instead (``B = (K + ridge I)^-1``), and the result says which
matrix was used and its condition number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from .._validate import as_array, check_indices, check_labels, check_lam
from ..errors import InputError, SingularKernelError
from ..linalg import factorize

#: Condition number of ``K`` above which the ridgeless complexity switches to a small ridge.
MAX_COND = 1e10


@dataclasses.dataclass(frozen=True)
class ComplexityResult:
    """Complexity ``C(X_I)`` of each group (eq. 19) and how it was computed.

    Behaves like the array of values: ``np.asarray(res)``, ``len(res)``, ``res[g]`` and iteration
    give the per-group complexities.

    Attributes:
      values: ``(n_groups,)`` complexities ``C(X_I)``.
      norm_full: ``sqrt(y^T B y)``, the RKHS norm of the predictor on all points.
      norm_rest: ``(n_groups,)`` the same norm without each group.
      group_sizes: ``(n_groups,)`` number of points in each group.
      lam: the ridge requested.
      lam_used: the ridge actually in ``B`` (larger than ``lam`` when a small ridge was added).
      matrix: which ``B`` was used, e.g. ``"K^-1"`` or ``"(K + 1e-06 I)^-1"``.
      cond: condition number of ``K + lam_used I``.
      lambda_min: least eigenvalue of ``K``.
      lambda_max: largest eigenvalue of ``K``.
    """

    values: np.ndarray
    norm_full: float
    norm_rest: np.ndarray
    group_sizes: np.ndarray
    lam: float
    lam_used: float
    matrix: str
    cond: float
    lambda_min: float
    lambda_max: float

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The per-group complexities as an array."""
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self) -> int:
        """Number of groups."""
        return int(self.values.shape[0])

    def __getitem__(self, g: Any) -> Any:
        """Complexity of group ``g``."""
        return self.values[g]

    def __iter__(self) -> Iterator[float]:
        """Iterate over the per-group complexities."""
        return iter(self.values.tolist())


@dataclasses.dataclass(frozen=True)
class InfluenceGroups:
    """Training points split into groups by their influence (Figure 5).

    Attributes:
      groups: tuple of index arrays; group 0 holds the most harmful points (most negative
        score), the last group the most helpful (most positive score).
      score: ``(n_train,)`` the score each point was sorted by.
      group_score: ``(n_groups,)`` mean score of each group.
      reduce: ``"sum"`` or ``"mean"`` over the chosen test points.
      test_index: the test points the influence was reduced over.
    """

    groups: tuple[np.ndarray, ...]
    score: np.ndarray
    group_score: np.ndarray
    reduce: str
    test_index: np.ndarray


def check_groups(groups: Any, n: int) -> list[np.ndarray]:
    """Check groups are non-empty, disjoint, in range and leave at least one point.

    Args:
      groups: a sequence of index arrays (or one index array for a single group).
      n: number of training points.

    Returns:
      The groups as a list of ``int64`` arrays.
    """
    if isinstance(groups, InfluenceGroups):
        groups = groups.groups
    if isinstance(groups, np.ndarray) and groups.ndim == 1 and groups.dtype != object:
        groups = [groups]
    elif isinstance(groups, np.ndarray) and groups.ndim == 2:
        groups = list(groups)  # one group per row
    elif isinstance(groups, (list, tuple)) and groups and all(np.ndim(g) == 0 for g in groups):
        groups = [np.asarray(groups)]
    if not isinstance(groups, (list, tuple)) or len(groups) == 0:
        raise InputError("groups must be a non-empty sequence of index arrays, e.g. "
                         "[np.array([0, 1]), np.array([5, 6])].")
    out: list[np.ndarray] = []
    seen = np.full(n, -1, np.int64)
    for g_id, g in enumerate(groups):
        arr = check_indices(g, n, f"group {g_id}")
        clash = arr[seen[arr] >= 0]
        if clash.size:
            raise InputError(f"groups {int(seen[clash[0]])} and {g_id} overlap (both hold "
                             f"training point {int(clash[0])}); groups must be disjoint.")
        seen[arr] = g_id
        if arr.size >= n:
            raise InputError(f"group {g_id} holds every training point; leave at least one.")
        out.append(arr)
    return out


def group_complexity(k_train: Any, y_train: Any, groups: Any, lam: float = 0.0, *,
                     ridge: float | None = None, max_cond: float = MAX_COND) -> ComplexityResult:
    """Complexity ``C(X_I)`` of each group of training points, eq. (19), from one factorisation.

    Uses ``y_rest^T B_rest y_rest = y^T B y - b_S^T (B_SS)^-1 b_S`` with ``B = (K + lam I)^-1``
    and ``b = B y``. With ``lam = 0`` (the paper's definition) and a singular or badly conditioned
    ``K`` (condition number above ``max_cond``), ``B = (K + ridge I)^-1`` is used instead and
    ``matrix``/``lam_used``/``cond`` in the result say so.

    Args:
      k_train: ``(n, n)`` kernel matrix on the training points.
      y_train: ``(n,)`` or ``(n, k)`` labels (multi-output norms sum over outputs).
      groups: a sequence of disjoint, non-empty index arrays (an :class:`InfluenceGroups` works).
      lam: ridge in ``B``; 0 is eq. (19) as written.
      ridge: ridge used when ``lam = 0`` and ``K`` is too ill-conditioned; default
        ``1e-10 * lambda_max(K)`` raised until ``K + ridge I`` has condition ``<= max_cond``.
      max_cond: largest acceptable condition number of ``K + lam I``.

    Returns:
      :class:`ComplexityResult` (array-like: one value per group).
    """
    lam = check_lam(lam)
    k = as_array(k_train, "k_train", (2,))
    if k.shape[0] != k.shape[1]:
        raise InputError(f"k_train must be square, got shape {k.shape}.")
    n = k.shape[0]
    y = check_labels(y_train, n, "y_train").reshape(n, -1)
    glist = check_groups(groups, n)
    lam_used = lam
    try:
        factor = factorize(k, y, lam, spectrum_method="exact")
        too_bad = factor.cond > max_cond
    except SingularKernelError:
        factor, too_bad = None, True
    if too_bad and lam > 0:
        if factor is None:
            raise SingularKernelError(f"K + lam I is singular at lam={lam:g}; use a larger lam.")
        too_bad = False  # an explicit ridge is used as given; its condition is reported
    if too_bad:
        ev = np.linalg.eigvalsh(k)
        lmax = float(ev[-1])
        if ridge is None:
            # the smallest ridge that brings the condition number under max_cond
            lam_used = max(1e-10 * lmax, (lmax - max_cond * float(ev[0])) / (max_cond - 1.0))
        else:
            lam_used = check_lam(ridge)
            if lam_used <= lam:
                raise InputError(f"ridge={ridge!r} must exceed lam={lam:g} to help conditioning.")
        factor = factorize(k, y, lam_used, spectrum_method="exact")
    beta = factor.beta
    quad_full = float(np.sum(y * beta))
    norm_rest, sizes, values = [], [], []
    for s in glist:
        b_ss = factor.a_columns(s)[s]  # B_SS, one solve per group
        d = float(np.sum(beta[s] * np.linalg.solve(b_ss, beta[s])))
        rest = max(quad_full - d, 0.0)
        norm_rest.append(np.sqrt(rest))
        values.append(d / (np.sqrt(quad_full) + np.sqrt(rest)))
        sizes.append(s.size)
    matrix = "K^-1" if lam_used == 0 else f"(K + {lam_used:.3g} I)^-1"
    sp = factor.spectrum
    return ComplexityResult(np.asarray(values), float(np.sqrt(quad_full)), np.asarray(norm_rest),
                            np.asarray(sizes), lam, float(lam_used), matrix, float(factor.cond),
                            float(sp.lambda_min), float(sp.lambda_max))


def influence_groups(influence: Any, n_groups: int = 10, *, test_index: Any = None,
                     reduce: Literal["sum", "mean"] = "sum") -> InfluenceGroups:
    """Sort training points by influence into groups, most harmful (0) to most helpful (last).

    Each point's score is its influence summed (``reduce="sum"``, default) or averaged
    (``"mean"``) over the chosen test points; both give the same order, only the reported scores
    differ. Sign convention of the engine: positive influence = removing the point raises the
    test loss (helpful). Points are sorted by ascending score (stable) and cut into ``n_groups``
    contiguous groups whose sizes differ by at most one (``np.array_split``).

    Args:
      influence: ``(n_train, n_test)`` influences (e.g. ``InfluenceResult.influence``), or an
        :class:`~ntk_influence.influence.InfluenceResult`.
      n_groups: number of groups (10 in Figure 5).
      test_index: test points to reduce over (default: all).
      reduce: ``"sum"`` or ``"mean"``.

    Returns:
      :class:`InfluenceGroups`.
    """
    infl = getattr(influence, "influence", influence)
    a = as_array(infl, "influence", (1, 2))
    if a.ndim == 1:
        a = a[:, None]
    n, m = a.shape
    if not isinstance(n_groups, (int, np.integer)) or not 1 <= int(n_groups) <= n:
        raise InputError(f"n_groups must be an integer in [1, {n}], got {n_groups!r}.")
    if reduce not in ("sum", "mean"):
        raise InputError(f"reduce must be 'sum' or 'mean', got {reduce!r}.")
    tidx = np.arange(m) if test_index is None else np.asarray(test_index).reshape(-1)
    if tidx.size == 0 or not np.issubdtype(tidx.dtype, np.integer) or tidx.min() < 0 \
            or tidx.max() >= m:
        raise InputError(f"test_index must be non-empty integer indices in [0, {m}).")
    sub = a[:, tidx]
    score = sub.sum(axis=1) if reduce == "sum" else sub.mean(axis=1)
    order = np.argsort(score, kind="stable")
    groups = tuple(np.asarray(g, np.int64) for g in np.array_split(order, int(n_groups)))
    gscore = np.array([score[g].mean() for g in groups])
    return InfluenceGroups(groups, score, gscore, reduce, tidx.astype(np.int64))


def complexity_of_influence_groups(k_train: Any, y_train: Any, influence: Any,
                                   n_groups: int = 10, lam: float = 0.0, *,
                                   test_index: Sequence[int] | None = None,
                                   reduce: Literal["sum", "mean"] = "sum",
                                   ridge: float | None = None
                                   ) -> tuple[InfluenceGroups, ComplexityResult]:
    """Figure 5: split the training set by influence and compute each group's complexity.

    Args:
      k_train: ``(n, n)`` kernel on the training points.
      y_train: training labels.
      influence: ``(n_train, n_test)`` influences or an ``InfluenceResult``.
      n_groups: number of groups.
      lam: ridge in ``B`` for eq. (19) (0 as in the paper).
      test_index: test points the influence is summed over (default: all).
      reduce: ``"sum"`` or ``"mean"``.
      ridge: fallback ridge for an ill-conditioned ``K`` (see :func:`group_complexity`).

    Returns:
      ``(groups, complexity)``.
    """
    g = influence_groups(influence, n_groups, test_index=test_index, reduce=reduce)
    return g, group_complexity(k_train, y_train, g.groups, lam, ridge=ridge)
