"""The label-noise experiment of Figure 7: who is most influential along training, clean or noisy.

Holds :class:`NoiseShares` and :func:`noise_shares` (the share of clean and of flipped points among
the most influential points, per time),
:class:`LabelNoiseResult` and the driver :func:`label_noise_experiment`: flip a fraction of the
training labels, compute the time-``t`` influence of eq. (20) with
:func:`~ntk_influence.influence.influence_over_time` (exact chunks optionally resumable through a
:class:`~ntk_influence.io.ResultStore`), rank with
:func:`~ntk_influence.influence.most_influential` and count the noisy points at each time.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from ..data import check_fraction, flip_labels
from ..errors import InputError
from ..influence import (
    ByKind,
    TimeUnit,
    check_times,
    influence_over_time,
    most_influential,
)
from ..io import ResultStore
from ..kernels import Kernel


@dataclasses.dataclass(frozen=True)
class NoiseShares:
    """Share of clean and of noisy points among the most influential points, per time.

    Attributes:
      share_clean: ``(T,)`` share of (test point, rank) slots held by clean training points.
      share_noisy: ``(T,)`` the same for flipped points (``share_clean + share_noisy = 1``).
      count_noisy: ``(T,)`` number of slots held by noisy points.
      slots: number of slots per time (``n_test * k``).
      noise_fraction: share of noisy points in the training set (the chance level).
    """

    share_clean: np.ndarray
    share_noisy: np.ndarray
    count_noisy: np.ndarray
    slots: int
    noise_fraction: float


def noise_shares(top: Any, noisy_index: Any, n_train: int) -> NoiseShares:
    """Figure 7 bookkeeping: how many of the most influential points are noisy, at each time.

    Args:
      top: ``(T, m)`` or ``(T, k, m)`` training indices from :func:`most_influential`.
      noisy_index: indices of the training points whose labels were flipped.
      n_train: number of training points.

    Returns:
      :class:`NoiseShares`.
    """
    t = np.asarray(top)
    if t.ndim not in (2, 3) or not np.issubdtype(t.dtype, np.integer):
        raise InputError(f"top must be integer indices of shape (T, m) or (T, k, m), got {t.shape}.")
    if t.size and (t.min() < 0 or t.max() >= n_train):
        raise InputError(f"top holds indices outside [0, {n_train}).")
    noisy = np.asarray(noisy_index, np.int64).reshape(-1)
    if noisy.size and (noisy.min() < 0 or noisy.max() >= n_train):
        raise InputError(f"noisy_index holds indices outside [0, {n_train}).")
    mask = np.zeros(n_train, bool)
    mask[noisy] = True
    flat = t.reshape(t.shape[0], -1)
    cnt = mask[flat].sum(axis=1)
    slots = flat.shape[1]
    share = cnt / slots
    return NoiseShares(1.0 - share, share, cnt, slots, float(mask.mean()))


@dataclasses.dataclass(frozen=True)
class LabelNoiseResult:
    """The label-noise experiment of Figure 7.

    Attributes:
      times: times as given.
      time_unit: their unit.
      shares: :class:`NoiseShares` per time.
      most_influential: ``(T, m)`` (or ``(T, k, m)``) most influential training indices.
      noisy_index: the flipped training points.
      fraction: the requested noise fraction.
      y_train_noisy: the training labels after flipping.
      influence: ``(T, n, m)`` the influences used.
      method: ``"exact"`` or ``"first-order"``.
      by: ranking rule of :func:`most_influential`.
      lam: the ridge.
    """

    times: np.ndarray
    time_unit: str
    shares: NoiseShares
    most_influential: np.ndarray
    noisy_index: np.ndarray
    fraction: float
    y_train_noisy: np.ndarray
    influence: np.ndarray
    method: str
    by: str
    lam: float


def label_noise_experiment(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float,
                           times: Any, *, fraction: float = 0.4, seed: int = 0,
                           kernel: Kernel | str | Any = "paper", k_train: Any = None,
                           k_test: Any = None, time_unit: TimeUnit = "flow",
                           method: Literal["exact", "first-order"] = "exact",
                           by: ByKind = "abs", k: int = 1, chunk_size: int | None = None,
                           show_progress: bool = False,
                           store: ResultStore | None = None) -> LabelNoiseResult:
    """Figure 7: flip a fraction of training labels and track who is most influential over time.

    The labels are flipped with :func:`~ntk_influence.data.flip_labels` (``seed``); the influence of
    every training point on every test loss is computed at each time; for each test point the
    ``k`` most influential training points (``by``) are found, and the share of those slots held
    by clean and by noisy points is reported per time. The test labels are left clean.

    Args:
      x_train: ``(n, d)`` unit-norm inputs (ignored when kernels are given).
      y_train: clean training labels.
      x_test: ``(n_test, d)`` inputs.
      y_test: clean test labels.
      lam: ridge ``>= 0``.
      times: training times.
      fraction: share of training labels to flip, in ``[0, 1)`` (default 0.4 as in the paper).
      seed: flipping seed.
      kernel: kernel for the inputs.
      k_train: optional precomputed kernel (with ``k_test``).
      k_test: optional precomputed kernel.
      time_unit: ``"flow"`` or ``"paper"``.
      method: ``"exact"`` or ``"first-order"`` influences.
      by: ``"abs"``, ``"helpful"`` or ``"harmful"``.
      k: most influential points per test point.
      chunk_size: left-out points per batched ``eigh``.
      show_progress: progress bar.
      store: optional store of finished exact chunks (see
        :func:`~ntk_influence.influence.time_influence_from_kernels`); its ``meta`` must fix the
        data, the settings and ``chunk_size``.

    Returns:
      :class:`LabelNoiseResult`.
    """
    frac = check_fraction(fraction, "fraction")
    tt = check_times(times)
    y = np.asarray(y_train, float)
    y_noisy, noisy = flip_labels(y, frac, seed)
    infl = influence_over_time(x_train, y_noisy, x_test, y_test, lam, tt, kernel=kernel,
                               k_train=k_train, k_test=k_test, time_unit=time_unit,
                               method=method, chunk_size=chunk_size, show_progress=show_progress,
                               store=store)
    top = most_influential(infl, by=by, k=k)
    shares = noise_shares(top, noisy, infl.shape[1])
    return LabelNoiseResult(tt, time_unit, shares, top, noisy, frac, y_noisy, infl, method, by,
                            float(lam))
