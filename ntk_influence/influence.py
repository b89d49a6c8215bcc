"""Exact NTK influence (eq. 8-9), the kernel-regime IHVP (eq. 13), Prop. 2 and Theorem 3.

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

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError
from ._precision import precision
from ._validate import as_array, check_features, check_indices, check_labels, check_lam
from .data import unit_normalize
from .kernels import Kernel, kernel_matrix, resolve_kernel
from .krr import KRRFactor, SpectrumMethod, cho_apply, factorize, lapack_cho_apply


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
      lambda_min: least eigenvalue of ``K``.
      lambda_max: largest eigenvalue of ``K``.
      cond: condition number of ``K + lam I``.
      spectrum_method: how the eigenvalues were obtained (``exact``/``lanczos``).
      kernel: kernel description.
      factor: the :class:`KRRFactor`, kept for exact group removal.
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
    lambda_min: float
    lambda_max: float
    cond: float
    spectrum_method: str
    kernel: str
    factor: KRRFactor | None = dataclasses.field(default=None, repr=False, compare=False)

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
        """``|I_ntk - Ihat_ntk| / |I_ntk|`` (inf where the influence is exactly 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.ihvp_error / np.abs(self.influence)

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
        with precision(self.factor.dtype):
            a_ss = np.asarray(self.factor.a_columns(s))[s]
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
        single = (isinstance(groups, np.ndarray) and groups.ndim == 1) or (
            isinstance(groups, (list, tuple)) and all(np.ndim(g) == 0 for g in groups))
        glist = [np.asarray(groups)] if single else [np.asarray(g) for g in groups]
        out = []
        r = self._y2(self.test_residual)
        for g in glist:
            d = self.group_delta(g).reshape(self.n_test, -1)
            out.append(np.sum(d * r + 0.5 * d * d, axis=1))
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
        if not 0 <= int(test_index) < self.n_test:
            raise InputError(f"test_index {test_index} outside [0, {self.n_test}).")
        col = self.influence[:, int(test_index)]
        order = {"helpful": np.argsort(-col, kind="stable"),
                 "harmful": np.argsort(col, kind="stable"),
                 "uninfluential": np.argsort(np.abs(col), kind="stable")}
        if kind not in order:
            raise InputError(f"kind must be 'helpful', 'harmful' or 'uninfluential', got {kind!r}.")
        return order[kind][: int(k)]


@jax.jit
def _test_side(chol: jax.Array, beta: jax.Array, a_diag: jax.Array, lam: jax.Array,
               k_test: jax.Array, y_test: jax.Array) -> tuple[jax.Array, ...]:
    alpha = cho_apply(chol, k_test)  # (n, t) = A K_te, two triangular solves
    f_te = k_test.T @ beta  # (t, k)
    r_te = f_te - y_test
    c = -beta / a_diag[:, None]  # LOO residuals (n, k)
    e = -lam * beta  # training residuals (n, k)
    influence = alpha * (c @ r_te.T) + 0.5 * alpha**2 * jnp.sum(c * c, axis=1)[:, None]
    ihvp = alpha * (e @ r_te.T)
    return alpha, f_te, influence, ihvp


def influence_from_factor(factor: KRRFactor, k_test: Any, y_test: Any, *, block_size: int = 4096,
                          kernel_name: str = "precomputed") -> InfluenceResult:
    """Exact NTK influence and IHVP for test kernels ``k_test`` from an existing factorisation.

    Args:
      factor: from :func:`ntk_influence.krr.factorize`.
      k_test: ``(n_train, n_test)`` kernel between training and test points.
      y_test: ``(n_test,)`` or ``(n_test, k)`` test labels.
      block_size: test points per block (jit-compiled on the JAX engine).
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
    alpha = np.empty((n, t), dt)
    infl = np.empty((n, t), dt)
    ihvp = np.empty((n, t), dt)
    f_te = np.empty((t, kk), dt)
    bs = max(1, min(int(block_size), t))
    if isinstance(factor.chol, np.ndarray):  # host (LAPACK) factor: stay on the host
        beta_h, ad = np.asarray(factor.beta), np.asarray(factor.a_diag)
        c = -beta_h / ad[:, None]  # LOO residuals (n, k)
        c2 = 0.5 * np.sum(c * c, axis=1)[:, None]
        e = -factor.lam * beta_h  # training residuals (n, k)
        for s in range(0, t, bs):
            kb = np.ascontiguousarray(kt[:, s:s + bs], dtype=dt)
            a_b = lapack_cho_apply(factor.chol, kb)
            f_b = kb.T @ beta_h
            r_b = f_b - yt2[s:s + bs]
            alpha[:, s:s + bs], f_te[s:s + bs] = a_b, f_b
            infl[:, s:s + bs] = a_b * (c @ r_b.T) + a_b * a_b * c2
            ihvp[:, s:s + bs] = a_b * (e @ r_b.T)
    else:
        with precision(dt):
            lam = jnp.asarray(factor.lam, dt)
            for s in range(0, t, bs):
                kb, yb = kt[:, s:s + bs], yt2[s:s + bs]
                m = kb.shape[1]
                if m < bs:  # pad so every block has one shape (one compilation)
                    kb = np.pad(kb, ((0, 0), (0, bs - m)))
                    yb = np.pad(yb, ((0, bs - m), (0, 0)))
                out = _test_side(factor.chol, factor.beta, factor.a_diag, lam,
                                 jnp.asarray(kb, dt), jnp.asarray(yb, dt))
                a_b, f_b, i_b, h_b = (np.asarray(o) for o in out)
                alpha[:, s:s + m], f_te[s:s + m] = a_b[:, :m], f_b[:m]
                infl[:, s:s + m], ihvp[:, s:s + m] = i_b[:, :m], h_b[:, :m]
    return assemble_result(factor, yt, alpha, infl, ihvp, f_te, kernel_name)


def assemble_result(factor: KRRFactor, y_test: np.ndarray, alpha: np.ndarray,
                    influence: np.ndarray, ihvp: np.ndarray, f_test: np.ndarray,
                    kernel_name: str) -> InfluenceResult:
    """Build an :class:`InfluenceResult` from a factorisation and the test-side arrays.

    The training-side quantities (leverage, residuals, self-influence, eq. 9 at ``x_i``) come
    from the factor; the test-side arrays come from any engine (host, device, sharded).

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
    with precision(factor.dtype):
        beta = np.asarray(factor.beta)
        a_diag = np.asarray(factor.a_diag)
        y = np.asarray(factor.y)
    yt = y_test
    f_te = f_test
    infl = influence
    lamf = factor.lam
    scalar = yt.ndim == 1
    h = 1.0 - lamf * a_diag
    r = -lamf * beta  # training residual
    d = -beta * h[:, None] / a_diag[:, None]  # f^(i)(x_i) - f(x_i), no cancellation
    self_infl = np.sum(d * (r + 0.5 * d), axis=1)
    shape = (lambda a: a[:, 0]) if scalar else (lambda a: a)
    sp = factor.spectrum
    return InfluenceResult(
        influence=infl, ihvp=ihvp, alpha=alpha, leverage=h, f_test=shape(f_te), y_test=yt,
        f_train=shape(y + r), loo_f_train=shape(y - beta / a_diag[:, None]), a_diag=a_diag,
        beta=shape(beta), self_influence=self_infl, lam=lamf, lambda_min=sp.lambda_min,
        lambda_max=sp.lambda_max, cond=factor.cond, spectrum_method=sp.method, kernel=kernel_name,
        factor=factor)


def influence_from_kernels(k_train: Any, k_test: Any, y_train: Any, y_test: Any, lam: float = 0.1,
                           *, spectrum: SpectrumMethod = "auto", block_size: int = 4096,
                           dtype: Any = np.float64, kernel_name: str = "precomputed",
                           keep_factor: bool = True) -> InfluenceResult:
    """Exact NTK influence (eq. 8-9) from precomputed kernel matrices.

    Args:
      k_train: ``(n_train, n_train)`` kernel on the training points.
      k_test: ``(n_train, n_test)`` kernel between training and test points.
      y_train: ``(n_train,)`` or ``(n_train, k)`` labels (e.g. one-hot).
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      lam: ridge ``lam >= 0`` (0 only when ``K`` is numerically positive definite).
      spectrum: ``"auto"``, ``"exact"``, ``"lanczos"`` or ``"none"`` (extreme eigenvalues).
      block_size: test points per block.
      dtype: float64 (default) or float32.
      kernel_name: description stored in the result.
      keep_factor: keep the factorisation in the result (needed by ``group_influence``).

    Returns:
      :class:`InfluenceResult`.
    """
    lam = check_lam(lam)
    k = as_array(k_train, "k_train", (2,))
    y = check_labels(y_train, k.shape[0], "y_train")
    factor = factorize(k, y, lam, spectrum_method=spectrum, dtype=dtype)
    res = influence_from_factor(factor, k_test, y_test, block_size=block_size,
                                kernel_name=kernel_name)
    return res if keep_factor else dataclasses.replace(res, factor=None)


def ntk_influence(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float = 0.1, *,
                  kernel: Kernel | str | Any = "paper", normalize: bool = False,
                  spectrum: SpectrumMethod = "auto", block_size: int = 2048,
                  dtype: Any = np.float64, keep_factor: bool = True) -> InfluenceResult:
    """Exact influence of every training point on every test loss for the infinite-width net.

    Computes the NTK (default: eq. 4, the paper's two-layer ReLU net with the first layer
    trained), factorises ``K + lam I`` once, and returns the exact leave-one-out influence
    (eq. 8-9), the kernel-regime IHVP (eq. 13), Prop. 2's terms, the ridge leverage and
    Theorem 3's bounds. Runs in float64 by default without touching the global x64 flag.

    Args:
      x_train: ``(n_train, d)`` inputs (unit norm for eq. 4; see ``normalize``).
      y_train: ``(n_train,)`` labels with ``|y| <= 1``, or ``(n_train, k)`` one-hot labels.
      x_test: ``(n_test, d)`` inputs.
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      lam: ridge of eq. (2)/(5), ``lam >= 0``.
      kernel: ``"paper"``, ``"paper-both"``, a :class:`Kernel` or a stax ``kernel_fn``.
      normalize: scale every input to unit norm first (otherwise non-unit inputs raise for
        kernels that assume it).
      spectrum: how to get ``lambda_min``/``lambda_max`` (``"auto"``: exact up to n=2048).
      block_size: rows per kernel block and test points per influence block.
      dtype: float64 (default) or float32.
      keep_factor: keep the factorisation for exact group removal.

    Returns:
      :class:`InfluenceResult` with ``influence``, ``ihvp``, ``leverage``, ``f_test`` and more.

    Example:
      >>> res = ni.ntk_influence(x_tr, y_tr, x_te, y_te, lam=0.1)
      >>> res.influence.shape  # (n_train, n_test)
    """
    lam = check_lam(lam)
    xtr, xte = check_features(x_train, x_test)
    ytr = check_labels(y_train, xtr.shape[0], "y_train")
    check_labels(y_test, xte.shape[0], "y_test")
    k = resolve_kernel(kernel)
    if normalize:
        xtr, xte = unit_normalize(xtr), unit_normalize(xte)
    k_train = kernel_matrix(k, xtr, block_size=block_size, dtype=dtype)
    k_test = kernel_matrix(k, xtr, xte, block_size=block_size, dtype=dtype)
    return influence_from_kernels(k_train, k_test, ytr, y_test, lam, spectrum=spectrum,
                                  block_size=block_size, dtype=dtype, kernel_name=k.name,
                                  keep_factor=keep_factor)
