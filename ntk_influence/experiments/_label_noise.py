"""Predictions and influence of the linearised network along training (eq. 20, Figures 6-7).

**Time unit.** Eq. (2) is ``L(W) = 1/2 sum_i (f(x_i) - y_i)^2 + lam/2 ||W - W(0)||^2`` and training
is the gradient flow ``dW/dt = -grad L``; ``t`` is therefore "learning rate x number of steps" of
gradient descent on that *sum* loss (``time_unit="flow"``, the default). Linearising the network
around ``W(0)`` with ``f_0 = 0`` gives, with ``M = K + lam I`` (DESIGN item 7),

    ``f_te(t) = K_te^T M^-1 (I - exp(-t M)) y = K_te^T g_t(M) y``,   ``g_t(mu) = (1 - e^{-t mu})/mu``.

The paper's eq. (20) is the ridgeless case written for the *mean* loss
``(1/n) sum_i (f(x_i) - y_i)^2``, whose flow runs ``2/n`` times slower:
``time_unit="paper"`` maps a paper time ``t`` to the flow time ``2 t / n`` (applied to the whole
matrix ``K + lam I``). ``t = inf`` (``np.inf``) is the end of training: kernel ridge regression.

**Influence at time t.** Removing training point ``i`` gives the predictor
``f^(i)_te(t) = K_te,-i^T g_t(M_-i,-i) y_-i`` of the reduced problem, and the influence is the
change of the time-``t`` test loss, ``I_t = Delta (f_te(t) - y_te) + Delta^2 / 2`` with
``Delta = f^(i)_te(t) - f_te(t)`` (summed over outputs; never a difference of two losses).

- *Exact* (:func:`time_influence_from_kernels` with ``method="exact"``): one ``eigh`` per
  left-out point, ``O(n^4)`` in total, in chunks of points. The ``"jax"`` backend batches a chunk
  with ``vmap`` (for GPU/TPU); to keep one shape per batch, row and column ``i`` of ``K`` are
  zeroed, ``M_ii`` is set to a positive constant and ``y_i``, ``K_te[i]`` to zero: that
  decoupled ``n x n`` problem has exactly the predictions of the ``(n-1) x (n-1)`` one. The
  ``"lapack"`` backend (the default on CPU) loops LAPACK's ``eigh`` (``syevd``) over the reduced
  ``(n-1) x (n-1)`` matrices.
- *First order* (``method="first-order"``): weight the loss of point ``i`` by ``w_i``; the flow
  of the weighted eq. (2) predicts ``F(w) = K_te^T S g_t(S K S + lam I) S y`` with
  ``S = diag(sqrt(w))``, and ``w_i = 0`` is exactly the leave-one-out problem. The first-order
  change is ``Delta_hat = -dF/dw_i`` at ``w = 1``, whose matrix part is the Frechet derivative
  of ``g_t`` at ``M`` (Daleckii-Krein: ``U (G o (U^T E U)) U^T`` with the divided differences
  ``G_jl = g_t[mu_j, mu_l]``), so one eigendecomposition serves every point and every time.
  The first-order influence is ``Delta_hat (f_te(t) - y_te)``, the time-``t`` analogue of the
  classic estimate: at ``t = inf`` it *is* the kernel IHVP of eq. (13), and for ``t -> 0`` it is
  exact to leading order in ``t``.

The matrix function ``g_t`` and the two routes' kernels live in :mod:`ntk_influence.flow`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from ..data import flip_labels
from ..errors import InputError
from ..influence import (
    ByKind,
    TimeUnit,
    check_times,
    influence_over_time,
    most_influential,
)
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


def check_fraction(fraction: Any) -> float:
    """Check a label-noise fraction lies in ``[0, 1)``."""
    try:
        f = float(fraction)
    except (TypeError, ValueError) as e:
        raise InputError(f"noise fraction must be a number in [0, 1), got {fraction!r}.") from e
    if not 0.0 <= f < 1.0:
        raise InputError(f"noise fraction must be in [0, 1), got {fraction!r}; e.g. 0.4 flips "
                         "40% of the training labels.")
    return f


def label_noise_experiment(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float,
                           times: Any, *, fraction: float = 0.4, seed: int = 0,
                           kernel: Kernel | str | Any = "paper", k_train: Any = None,
                           k_test: Any = None, time_unit: TimeUnit = "flow",
                           method: Literal["exact", "first-order"] = "exact",
                           by: ByKind = "abs", k: int = 1, chunk_size: int | None = None,
                           show_progress: bool = False) -> LabelNoiseResult:
    """Figure 7: flip a fraction of training labels and track who is most influential over time.

    The labels are flipped with :func:`ntk_influence.flip_labels` (``seed``); the influence of
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

    Returns:
      :class:`LabelNoiseResult`.
    """
    frac = check_fraction(fraction)
    tt = check_times(times)
    y = np.asarray(y_train, float)
    y_noisy, noisy = flip_labels(y, frac, seed)
    infl = influence_over_time(x_train, y_noisy, x_test, y_test, lam, tt, kernel=kernel,
                               k_train=k_train, k_test=k_test, time_unit=time_unit,
                               method=method, chunk_size=chunk_size, show_progress=show_progress)
    top = most_influential(infl, by=by, k=k)
    shares = noise_shares(top, noisy, infl.shape[1])
    return LabelNoiseResult(tt, time_unit, shares, top, noisy, frac, y_noisy, infl, method, by,
                            float(lam))
