"""Exact NTK influence (eq. 8-9) and the kernel-regime IHVP (eq. 13) from one factorisation.

This module holds :class:`InfluenceResult` (the influences with Prop. 2's terms, the leverage,
Theorem 3's bounds and exact group removal) and the functions that fill it:
:func:`influence_from_factor` (test kernels against a :class:`~ntk_influence.linalg.KRRFactor`),
:func:`influence_from_kernels` (precomputed kernel matrices), :func:`prepare_inputs` (input
checks and the unit-norm step) and :func:`ntk_influence` (inputs to influences).

Notation (paper): ``A = (K + lam I)^-1``, ``beta = A y``, ``alpha(te) = K_te^T A`` and
``f(te) = K_te^T beta``. Removing training point ``i`` changes every prediction by

    ``Delta_i(te) = f^(i)(te) - f(te) = -alpha_i(te) beta_i / A_ii``            (eq. 9)

and the test loss by ``I_ntk = Delta (f(te) - y_te) + Delta^2 / 2`` (eq. 8), computed in this form
rather than as a difference of two squared losses, which would lose the influence (1e-3 to 1e-6 of
the loss) to cancellation. With ``c_i = f^(i)(x_i) - y_i = -beta_i / A_ii`` (the leave-one-out
residual) Prop. 2 reads ``I = alpha_i r_te c_i + alpha_i^2 c_i^2 / 2`` (terms I and II), and the
IHVP of eq. (13) is ``alpha_i r_te e_i`` with ``e_i = f(x_i) - y_i = -lam beta_i``. Since
``e_i = (1 - h_i) c_i`` with the ridge leverage ``h_i = 1 - lam A_ii``, the IHVP misses exactly the
fraction ``h_i`` of term I, and ``lam_min/(lam_min+lam) <= h_i <= lam_max/(lam_max+lam)``
(Theorem 3). Multi-output labels sum every loss over the outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from .._validate import (
    as_array,
    check_features,
    check_indices,
    check_labels,
    check_lam,
    check_whole,
    ensure_unit_norm,
)
from ..data import unit_normalize
from ..errors import InputError
from ..kernels import Kernel, kernel_matrix, resolve_kernel
from ..linalg import (
    Backend,
    DeviceFactor,
    KRRFactor,
    Spectrum,
    SpectrumMethod,
    factorize,
    loss_change,
    memory_plan,
    resolve_backend,
)
from ._diagnostics import pair_error_rate


@dataclasses.dataclass(frozen=True)
class InfluenceResult:
    """Exact NTK influences of every training point on every test loss, and their diagnostics.

    Sign convention: ``influence[i, j] > 0`` means removing training point ``i`` increases the
    loss on test point ``j`` (point ``i`` is *helpful* to ``j``); negative means *harmful*.

    Attributes:
      influence: ``(n_train, n_test)`` exact ``I_ntk(x_i, x_te)``, eq. (8) via eq. (9).
      ihvp: ``(n_train, n_test)`` kernel-regime IHVP estimate ``Ihat_ntk``, eq. (13).
      alpha: ``(n_train, n_test)`` ``alpha(x_i, x_te) = [K_te^T A]_i`` (Prop. 1).
      leverage: ``(n_train,)`` ridge leverage ``h_i = 1 - lam A_ii``.
      f_test: ``(n_test,)`` (or ``(n_test, k)``) KRR prediction, eq. (6).
      y_test: test labels as given.
      f_train: KRR prediction on the training points, ``y - lam beta``.
      loo_f_train: leave-one-out prediction ``f^(i)(x_i)``, ``y - beta / A_ii``.
      a_diag: ``diag((K + lam I)^-1)``.
      beta: ``(K + lam I)^-1 y``.
      self_influence: ``(n_train,)`` influence of each point on its own loss.
      lam: the ridge.
      cond_estimate: the factorisation's cheap lower bound on ``cond(K + lam I)``.
      kernel: kernel description.
      factor: the :class:`KRRFactor`, kept for exact group removal and the spectrum.
      spectrum_cache: the spectrum, when it was computed before the factor was dropped.
      input_norms: what the unit-norm step did to ``x_train`` and ``x_test`` (rows rescaled,
        largest deviation; :class:`~ntk_influence.data.UnitNormReport`), for kernels that assume
        ``||x|| = 1``; None when the kernel does not.

    The extreme eigenvalues (``lambda_min``, ``lambda_max``, ``cond`` and the Theorem 3 bounds)
    are properties computed on first read from the factorisation.
    """

    influence: np.ndarray
    ihvp: np.ndarray
    alpha: np.ndarray
    leverage: np.ndarray
    f_test: np.ndarray
    y_test: np.ndarray
    f_train: np.ndarray
    loo_f_train: np.ndarray
    a_diag: np.ndarray
    beta: np.ndarray
    self_influence: np.ndarray
    lam: float
    cond_estimate: float
    kernel: str
    factor: KRRFactor | None = dataclasses.field(default=None, repr=False, compare=False)
    spectrum_cache: Spectrum | None = dataclasses.field(default=None, repr=False, compare=False)
    input_norms: dict[str, Any] | None = None

    @property
    def spectrum(self) -> Spectrum:
        """Extreme eigenvalues of ``K`` (computed on first read, then cached by the factor)."""
        if self.spectrum_cache is not None:
            return self.spectrum_cache
        if self.factor is None:
            raise InputError("this result was made with keep_factor=False and spectrum='none'; "
                             "recompute with keep_factor=True or another spectrum method.")
        return self.factor.spectrum

    @property
    def lambda_min(self) -> float:
        """Least eigenvalue of ``K``."""
        return self.spectrum.lambda_min

    @property
    def lambda_max(self) -> float:
        """Largest eigenvalue of ``K``."""
        return self.spectrum.lambda_max

    @property
    def spectrum_method(self) -> str:
        """How the eigenvalues were obtained (``"exact"``, ``"iterative"`` or ``"none"``)."""
        return self.spectrum.method

    @property
    def cond(self) -> float:
        """``cond(K + lam I) = (lambda_max + lam) / (lambda_min + lam)``."""
        sp = self.spectrum
        return float((sp.lambda_max + self.lam) / (sp.lambda_min + self.lam))

    @classmethod
    def from_test_side(cls, factor: KRRFactor, y_test: np.ndarray, alpha: np.ndarray,
                       influence: np.ndarray, ihvp: np.ndarray, f_test: np.ndarray,
                       kernel_name: str) -> InfluenceResult:
        """Build the result from a factorisation and the test-side arrays of any backend.

        The training-side quantities (leverage, residuals, self-influence: eq. 9 at ``x_i``)
        come from the factor.

        Args:
          factor: the factorisation of ``K + lam I``.
          y_test: ``(n_test,)`` or ``(n_test, k)`` test labels.
          alpha: ``(n_train, n_test)`` ``A K_te``.
          influence: ``(n_train, n_test)`` exact influences.
          ihvp: ``(n_train, n_test)`` IHVP estimates.
          f_test: ``(n_test, k)`` predictions.
          kernel_name: description stored in the result.

        Returns:
          :class:`InfluenceResult`.
        """
        beta, a_diag, y, lam = factor.beta, factor.a_diag, factor.y, factor.lam
        h = factor.leverage
        r = -lam * beta  # training residual f(x_i) - y_i
        d = -beta * h[:, None] / a_diag[:, None]  # f^(i)(x_i) - f(x_i), no cancellation
        self_infl = loss_change(d, r, axis=1)
        shape = (lambda a: a[:, 0]) if y_test.ndim == 1 else (lambda a: a)
        return cls(influence=influence, ihvp=ihvp, alpha=alpha, leverage=h,
                   f_test=shape(f_test), y_test=y_test, f_train=shape(y + r),
                   loo_f_train=shape(y - beta / a_diag[:, None]), a_diag=a_diag,
                   beta=shape(beta), self_influence=self_infl, lam=lam,
                   cond_estimate=factor.cond_estimate, kernel=kernel_name, factor=factor)

    @property
    def n_train(self) -> int:
        """Number of training points."""
        return int(self.influence.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test points."""
        return int(self.influence.shape[1])

    def _y2(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], -1)

    @property
    def train_residual(self) -> np.ndarray:
        """``f(x_i) - y_i = -lam beta_i``, shape like ``y_train``."""
        return -self.lam * self.beta.reshape(self.f_train.shape)

    @property
    def loo_residual(self) -> np.ndarray:
        """``f^(i)(x_i) - y_i = -beta_i / A_ii``, shape like ``y_train``."""
        return (-self._y2(self.beta) / self.a_diag[:, None]).reshape(self.f_train.shape)

    @property
    def test_residual(self) -> np.ndarray:
        """``f(te) - y_te``, shape like ``y_test``."""
        return self.f_test - self.y_test

    @property
    def term2(self) -> np.ndarray:
        """Term II of Prop. 2: ``alpha_i^2 |c_i|^2 / 2`` with ``c_i`` the LOO residual."""
        c2 = np.sum(self._y2(self.loo_residual) ** 2, axis=1)
        return 0.5 * self.alpha**2 * c2[:, None]

    @property
    def term1(self) -> np.ndarray:
        """Term I of Prop. 2: ``alpha_i (f(te) - y_te) . c_i``."""
        return self.alpha * (self._y2(self.loo_residual) @ self._y2(self.test_residual).T)

    @property
    def delta(self) -> np.ndarray:
        """Leave-one-out change of the test predictions, ``f^(i)(te) - f(te)`` (eq. 9).

        Shape ``(n_train, n_test)`` for scalar labels, ``(n_train, n_test, k)`` for ``k`` outputs.
        """
        c = self._y2(self.loo_residual)
        d = self.alpha[:, :, None] * c[:, None, :]
        return d[:, :, 0] if self.f_test.ndim == 1 else d

    @property
    def ihvp_error(self) -> np.ndarray:
        """``|I_ntk - Ihat_ntk|`` for every pair."""
        return np.abs(self.influence - self.ihvp)

    @property
    def ihvp_error_rate(self) -> np.ndarray:
        """``|I_ntk - Ihat_ntk| / |I_ntk|``, NaN where ``I_ntk = 0`` (see :func:`pair_error_rate`)."""
        return pair_error_rate(self)

    @property
    def theorem3_lower(self) -> float:
        """``lambda_min / (lambda_min + lam)``, the lower bound on the IHVP's error rate."""
        return self.lambda_min / (self.lambda_min + self.lam)

    @property
    def theorem3_upper(self) -> float:
        """``lambda_max / (lambda_max + lam)``, the upper counterpart (remark after Theorem 3)."""
        return self.lambda_max / (self.lambda_max + self.lam)

    @property
    def theorem3_bound(self) -> np.ndarray:
        """Right-hand side of eq. (16) for every pair: ``lo |I| - term II <= |I - Ihat|``."""
        return self.theorem3_lower * np.abs(self.influence) - self.term2

    def group_delta(self, idx: Any) -> np.ndarray:
        """Exact change of the test predictions when the set ``idx`` is removed at once.

        Block downdate: ``Delta(te) = -alpha_S(te)^T (A_SS)^-1 beta_S``.

        Args:
          idx: indices of the training points to remove together.

        Returns:
          ``(n_test,)`` (or ``(n_test, k)``) change of the predictions.
        """
        if self.factor is None:
            raise InputError("this result was made with keep_factor=False; recompute with True.")
        s = check_indices(idx, self.n_train, "idx")
        if s.size >= self.n_train:
            raise InputError("cannot remove every training point; leave at least one.")
        a_ss = self.factor.a_columns(s)[s]
        beta_s = self._y2(self.beta)[s]
        coef = np.linalg.solve(a_ss, beta_s)  # (|S|, k)
        d = -(self.alpha[s].T @ coef)
        return d[:, 0] if self.f_test.ndim == 1 else d

    def group_influence(self, groups: Any) -> np.ndarray:
        """Exact influence of removing each group of training points at once (not a sum).

        Args:
          groups: one index array, or a list of index arrays.

        Returns:
          ``(n_test,)`` for one group, ``(n_groups, n_test)`` for a list.
        """
        if np.isscalar(groups) or (isinstance(groups, np.ndarray) and groups.ndim == 0):
            raise InputError(f"groups must be an index array or a list of index arrays, got "
                             f"{groups!r}; for one point pass [i].")
        single = (isinstance(groups, np.ndarray) and groups.ndim == 1) or (
            isinstance(groups, (list, tuple)) and all(np.ndim(g) == 0 for g in groups))
        glist = [np.asarray(groups)] if single else [np.asarray(g) for g in groups]
        r = self._y2(self.test_residual)
        out = [loss_change(self.group_delta(g).reshape(self.n_test, -1), r, axis=1)
               for g in glist]
        res = np.stack(out)
        return res[0] if single else res

    def ranking(self, test_index: int, k: int = 10,
                kind: Literal["helpful", "harmful", "uninfluential"] = "helpful") -> np.ndarray:
        """Indices of the ``k`` most helpful, most harmful or least influential training points.

        Args:
          test_index: which test point.
          k: how many.
          kind: ``"helpful"`` (largest positive), ``"harmful"`` (most negative) or
            ``"uninfluential"`` (smallest ``|I|``).

        Returns:
          ``(k,)`` training indices, most extreme first.
        """
        j = check_whole(test_index, "test_index", 0, high=self.n_test - 1)
        k = check_whole(k, "k")
        col = self.influence[:, j]
        order = {"helpful": np.argsort(-col, kind="stable"),
                 "harmful": np.argsort(col, kind="stable"),
                 "uninfluential": np.argsort(np.abs(col), kind="stable")}
        if kind not in order:
            raise InputError(f"kind must be 'helpful', 'harmful' or 'uninfluential', got {kind!r}.")
        return order[kind][:k]


def influence_from_factor(factor: KRRFactor, k_test: Any, y_test: Any, *, block_size: int = 4096,
                          kernel_name: str = "precomputed") -> InfluenceResult:
    """Exact NTK influence (eq. 8-9) and IHVP (eq. 13) for test kernels from a factorisation.

    The test points are processed in blocks by :meth:`KRRFactor.test_side` of the factor's
    backend (host LAPACK solves, one jit program on a device, or refined float32 solves), all
    through the one eq. (8)-(9) block function of :mod:`ntk_influence.linalg`.

    Args:
      factor: from :func:`ntk_influence.linalg.factorize`.
      k_test: ``(n_train, n_test)`` kernel between training and test points.
      y_test: ``(n_test,)`` or ``(n_test, k)`` test labels.
      block_size: test points per block (one jit compilation on a device).
      kernel_name: description stored in the result.

    Returns:
      :class:`InfluenceResult`.
    """
    n = factor.n
    kt = as_array(k_test, "k_test", (2,))
    if kt.shape[0] != n:
        hint = " (transpose it: k_test is (n_train, n_test))" if kt.shape[1] == n else ""
        raise InputError(f"k_test has shape {kt.shape} but there are {n} training points{hint}.")
    t = kt.shape[1]
    yt = check_labels(y_test, t, "y_test")
    kk = factor.y.shape[1]
    yt2 = yt.reshape(t, -1)
    if yt2.shape[1] != kk:
        raise InputError(f"y_test has {yt2.shape[1]} outputs but y_train has {kk}.")
    dt = factor.dtype
    alpha, infl, ihvp = (np.empty((n, t), dt) for _ in range(3))
    f_te = np.empty((t, kk), dt)
    bs = max(1, min(int(block_size), t))
    pad = isinstance(factor, DeviceFactor)  # one block shape, one compilation
    for s in range(0, t, bs):
        kb, yb = kt[:, s:s + bs], yt2[s:s + bs]
        m = kb.shape[1]
        if pad and m < bs:
            kb = np.pad(kb, ((0, 0), (0, bs - m)))
            yb = np.pad(yb, ((0, bs - m), (0, 0)))
        a_b, f_b, i_b, h_b = factor.test_side(kb, yb)
        alpha[:, s:s + m], f_te[s:s + m] = a_b[:, :m], f_b[:m]
        infl[:, s:s + m], ihvp[:, s:s + m] = i_b[:, :m], h_b[:, :m]
    return InfluenceResult.from_test_side(factor, np.asarray(yt, dt), alpha, infl, ihvp, f_te,
                                          kernel_name)


def _finish(res: InfluenceResult, keep_factor: bool) -> InfluenceResult:
    """Drop the factor when asked, computing the spectrum first unless its method is "none"."""
    if keep_factor or res.factor is None:
        return res
    sp = res.factor.spectrum if res.factor.spectrum_method != "none" else None
    return dataclasses.replace(res, factor=None, spectrum_cache=sp)


def influence_from_kernels(k_train: Any, k_test: Any, y_train: Any, y_test: Any, lam: float = 0.1,
                           *, spectrum: SpectrumMethod = "auto", block_size: int = 4096,
                           dtype: Any = np.float64, kernel_name: str = "precomputed",
                           keep_factor: bool = True, backend: Backend = "auto",
                           overwrite_k: bool = False, check_symmetry: bool = True
                           ) -> InfluenceResult:
    """Exact NTK influence (eq. 8-9) from precomputed kernel matrices.

    Args:
      k_train: ``(n_train, n_train)`` kernel on the training points.
      k_test: ``(n_train, n_test)`` kernel between training and test points.
      y_train: ``(n_train,)`` or ``(n_train, k)`` labels (e.g. one-hot).
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      lam: ridge ``lam >= 0`` (0 only when ``K`` is numerically positive definite).
      spectrum: how the extreme eigenvalues are computed when first read: ``"auto"`` (dense up to
        n = 1024, else iterative), ``"exact"``, ``"iterative"`` or ``"none"``.
      block_size: test points per block.
      dtype: float64 (default) or float32: the dtype of every returned array.
      kernel_name: description stored in the result.
      keep_factor: keep the factorisation in the result (group removal, lazy spectrum); when
        False the spectrum is computed before the factor is dropped.
      backend: where the factorisation runs (see :func:`ntk_influence.linalg.factorize`).
      overwrite_k: let the host backend factorise ``k_train`` in place (it is destroyed).
      check_symmetry: check that ``k_train`` is symmetric (skipped for kernels the library
        computed itself).

    Returns:
      :class:`InfluenceResult`.
    """
    lam = check_lam(lam)
    k = as_array(k_train, "k_train", (2,))
    y = check_labels(y_train, k.shape[0], "y_train")
    factor = factorize(k, y, lam, spectrum_method=spectrum, dtype=dtype, backend=backend,
                       overwrite_k=overwrite_k, check_symmetry=check_symmetry)
    del k
    res = influence_from_factor(factor, k_test, y_test, block_size=block_size,
                                kernel_name=kernel_name)
    return _finish(res, keep_factor)


def prepare_inputs(kernel: Kernel | str | Any, x_train: Any, y_train: Any, x_test: Any,
                   y_test: Any, *, normalize: bool = False
                   ) -> tuple[Kernel, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                              dict[str, Any] | None]:
    """Check the inputs of an influence computation and apply the unit-norm step.

    For kernels that assume ``||x|| = 1`` (eq. 4), rows within 1e-6 of unit norm are rescaled
    exactly and recorded, other rows raise unless ``normalize=True`` (see
    :func:`ntk_influence.data.ensure_unit_norm`).

    Args:
      kernel: a :class:`Kernel`, a name or a stax ``kernel_fn``.
      x_train: ``(n_train, ...)`` inputs.
      y_train: ``(n_train,)`` or ``(n_train, k)`` labels.
      x_test: ``(n_test, ...)`` inputs.
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      normalize: scale every input to unit norm.

    Returns:
      ``(kernel, x_train, y_train, x_test, y_test, input_norms)``; ``input_norms`` describes the
      unit-norm step (None for kernels that do not assume unit norm).
    """
    xtr, xte = check_features(x_train, x_test)
    ytr = check_labels(y_train, xtr.shape[0], "y_train")
    yte = check_labels(y_test, xte.shape[0], "y_test")
    k = resolve_kernel(kernel)
    norms = None
    if k.unit_norm:
        xtr, rep_tr = ensure_unit_norm(xtr, "x_train", normalize=normalize)
        xte, rep_te = ensure_unit_norm(xte, "x_test", normalize=normalize)
        norms = {"x_train": rep_tr.describe(), "x_test": rep_te.describe()}
    elif normalize:
        xtr, xte = unit_normalize(xtr, "x_train"), unit_normalize(xte, "x_test")
    return k, xtr, ytr, xte, yte, norms


def ntk_influence(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float = 0.1, *,
                  kernel: Kernel | str | Any = "paper", normalize: bool = False,
                  spectrum: SpectrumMethod = "auto", block_size: int = 2048,
                  dtype: Any = np.float64, keep_factor: bool = True,
                  backend: Backend = "auto") -> InfluenceResult:
    """Exact influence of every training point on every test loss for the infinite-width net.

    Computes the NTK (default: eq. 4, the paper's two-layer ReLU net with the first layer
    trained), factorises ``K + lam I`` once, and returns the exact leave-one-out influence
    (eq. 8-9), the kernel-regime IHVP (eq. 13), Prop. 2's terms, the ridge leverage and
    Theorem 3's bounds. The memory plan is checked before anything large is allocated
    (:class:`MemoryPlanError` otherwise). Returns float64 by default whatever JAX's global x64
    flag is.

    Args:
      x_train: ``(n_train, d)`` inputs (unit norm for eq. 4; see ``normalize``).
      y_train: ``(n_train,)`` labels with ``|y| <= 1``, or ``(n_train, k)`` one-hot labels.
      x_test: ``(n_test, d)`` inputs.
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      lam: ridge of eq. (2)/(5), ``lam >= 0``.
      kernel: ``"paper"``, ``"paper-both"``, a :class:`Kernel` or a stax ``kernel_fn``.
      normalize: scale every input to unit norm first. Otherwise, for kernels that assume unit
        norm, rows within 1e-6 of it are rescaled exactly (recorded in ``input_norms``) and
        any other row raises.
      spectrum: how the extreme eigenvalues are computed when first read (``"auto"``: dense up
        to n = 1024, else iterative; ``"none"``).
      block_size: rows per kernel block and test points per influence block.
      dtype: float64 (default) or float32.
      keep_factor: keep the factorisation for exact group removal and the lazy spectrum.
      backend: where the factorisation runs (see :func:`ntk_influence.linalg.factorize`); for a mesh of
        several devices use :func:`ntk_influence.scale.large_influence`.

    Returns:
      :class:`InfluenceResult` with ``influence``, ``ihvp``, ``leverage``, ``f_test`` and more.

    Example:
      >>> res = ni.ntk_influence(x_tr, y_tr, x_te, y_te, lam=0.1)
      >>> res.influence.shape  # (n_train, n_test)
    """
    lam = check_lam(lam)
    block_size = check_whole(block_size, "block_size")
    k, xtr, ytr, xte, yte, norms = prepare_inputs(kernel, x_train, y_train, x_test, y_test,
                                                  normalize=normalize)
    bk = resolve_backend(backend, dtype)
    memory_plan(xtr.shape[0], xte.shape[0], int(np.prod(xtr.shape[1:])),
                outputs=ytr.reshape(xtr.shape[0], -1).shape[1],
                dtype=np.float64 if bk.startswith("float32") else dtype,
                backend="lapack" if bk == "lapack" else "jax", test_block=block_size)
    k_train = kernel_matrix(k, xtr, block_size=block_size, dtype=dtype, names=("x_train", "x_train"))
    k_test = kernel_matrix(k, xtr, xte, block_size=block_size, dtype=dtype, names=("x_train", "x_test"))
    res = influence_from_kernels(k_train, k_test, ytr, yte, lam, spectrum=spectrum,
                                 block_size=block_size, dtype=dtype, kernel_name=k.name,
                                 keep_factor=keep_factor, backend=bk, overwrite_k=True,
                                 check_symmetry=False)
    return dataclasses.replace(res, input_norms=norms)
