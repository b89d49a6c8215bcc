"""One factorisation of ``K + lam I`` that serves every exact computation (eq. 5, 6, 9).

This module holds :func:`factorize`, the factor classes (:class:`KRRFactor` and its backends
:class:`LapackFactor`, :class:`DeviceFactor`, :class:`Float32Factor`) and the input and
conditioning checks; the backends' kernels are in :mod:`._backends`, the spectrum in
:mod:`._spectrum`.

:func:`factorize` returns a :class:`KRRFactor`: ``diag(A)`` of ``A = (K + lam I)^-1``,
``beta = A y``, solves with ``A``, the ridge leverage and, on demand, the spectrum. Everything
downstream (KRR predictions, exact leave-one-out, group removal, complexity) reuses it. One
argument, ``backend``, chooses where the work runs; every backend returns host arrays in the
dtype asked for (float64 by default; always float64 from the float32 backends), whatever JAX's
global x64 flag is:

* ``"lapack"``: host LAPACK through SciPy (``potrf``, ``trtri`` for ``diag(A)``, ``potrs`` for
  every solve). The default on a CPU backend, where OpenBLAS beats XLA's CPU products.
* ``"jax"``: one jit program on the default device (GPU, or CPU when asked): Cholesky,
  ``diag(A)`` from ``L^-1`` (a recursive blocked inverse, or ``n x b`` column blocks when memory
  is tight), solves by triangular solves. The default on a GPU.
  :func:`ntk_influence.scale.large_influence` shards its test side over a device mesh.
* ``"float32-refined"``: Cholesky in float32 on the device, every solve (``beta``, ``A K_te``)
  refined to float64 accuracy with float64 residuals from the host ``K`` (:func:`refine_solve`);
  ``diag(A)`` keeps float32's relative error, about ``cond * eps32``, which is reported. The
  default on a device without float64 (TPU).
* ``"float32"``: the same without refinement.

The factorisation also checks the conditioning, the same way for every backend: a cheap lower
bound ``cond(K + lam I) >= max(max_i M_ii, 1^T M 1 / n) * max_i A_ii`` (``M = K + lam I``) raises
:class:`SingularKernelError` when the matrix is numerically singular and warns
(:class:`PrecisionWarning`) when ``cond * eps`` exceeds the dtype's tolerance. The exact extreme
eigenvalues (Theorem 3) are computed only when read (:attr:`KRRFactor.spectrum`).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import precision
from .._validate import as_array, check_dtype, check_indices, check_lam, check_whole
from ..errors import InputError, PrecisionWarning, SingularKernelError
from ._backends import (
    WARN_RTOL,
    Backend,
    cho_apply,
    chol_device,
    device_test_side,
    inverse_diagonal,
    lapack,
    lapack_cho_apply,
    refine_solve,
    resolve_backend,
)
from ._losses import influence_block
from ._spectrum import ITERATIVE_TOL, Spectrum, check_method, compute_spectrum


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class KRRFactor:
    """The factorisation of ``K + lam I`` and the quantities every influence needs.

    Subclasses hold the backend's factor; every public method returns host arrays in
    :attr:`dtype`.

    Attributes:
      a_diag: ``(n,)`` ``diag(A)``, ``A = (K + lam I)^-1``.
      beta: ``(n, k)`` ``A y`` (eq. 6).
      y: ``(n, k)`` training labels.
      lam: the ridge.
      dtype: the dtype of every returned array.
      backend: ``"lapack"``, ``"jax"``, ``"float32-refined"`` or ``"float32"``.
      cond_estimate: a cheap lower bound on ``cond(K + lam I)``, used for the singularity check
        and the precision warning (see the module docstring).
      spectrum_method: how :attr:`spectrum` is computed when first read.
    """

    a_diag: np.ndarray
    beta: np.ndarray
    y: np.ndarray
    lam: float
    dtype: np.dtype
    backend: str
    cond_estimate: float
    spectrum_method: str = "auto"

    @property
    def n(self) -> int:
        """Number of training points."""
        return int(self.a_diag.shape[0])

    @property
    def leverage(self) -> np.ndarray:
        """Ridge leverage scores ``h_i = 1 - lam A_ii`` (Theorem 3)."""
        return 1.0 - self.lam * self.a_diag

    def inverse_diagonal(self) -> np.ndarray:
        """``diag(A)``."""
        return self.a_diag

    def solve(self, b: Any) -> np.ndarray:
        """Return ``A b = (K + lam I)^-1 b`` for ``b`` of shape ``(n,)`` or ``(n, m)``."""
        raise NotImplementedError

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """Return ``K v`` (used by the iterative spectrum)."""
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        """Return ``K + lam I`` as a dense float64 host array (used by the exact spectrum)."""
        raise NotImplementedError

    def a_columns(self, idx: Any) -> np.ndarray:
        """Return the columns ``A[:, idx]`` (shape ``(n, len(idx))``)."""
        idx = check_indices(idx, self.n, "idx")
        e = np.zeros((self.n, idx.size), self.dtype)
        e[idx, np.arange(idx.size)] = 1.0
        return self.solve(e)

    @functools.cached_property
    def spectrum(self) -> Spectrum:
        """Extreme eigenvalues of ``K``, computed on first read (Theorem 3, condition number)."""
        tol = ITERATIVE_TOL if self.dtype == np.float64 else 1e-5
        return compute_spectrum(self.n, self.lam, self.spectrum_method, matvec_k=self.matvec,
                                matvec_a=self.solve, dense_m=self.dense, tol=tol)

    @property
    def cond(self) -> float:
        """``cond(K + lam I) = (lambda_max + lam) / (lambda_min + lam)`` from :attr:`spectrum`."""
        sp = self.spectrum
        return float((sp.lambda_max + self.lam) / (sp.lambda_min + self.lam))

    def test_side(self, k_test: np.ndarray, y_test: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``alpha``, predictions, influence and IHVP for one block of test points (eq. 6-9, 13).

        Args:
          k_test: ``(n, t)`` kernel between the training points and the block.
          y_test: ``(t, k)`` labels of the block.

        Returns:
          ``(alpha (n, t), f_test (t, k), influence (n, t), ihvp (n, t))`` host arrays.
        """
        kb = np.asarray(k_test, self.dtype)
        alpha = self.solve(kb)
        f = kb.T @ self.beta
        infl, ihvp = influence_block(alpha, self.beta, self.a_diag, self.lam,
                                     f - np.asarray(y_test, self.dtype))
        return alpha, f, infl, ihvp


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class LapackFactor(KRRFactor):
    """Host LAPACK backend: ``chol`` is the NumPy lower Cholesky factor ``L``."""

    chol: np.ndarray

    def solve(self, b: Any) -> np.ndarray:
        """Return ``A b`` by ``potrs``."""
        return lapack_cho_apply(self.chol, np.asarray(b, self.dtype))

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """Return ``K v = L (L^T v) - lam v``."""
        v = np.asarray(v, self.dtype)
        return self.chol @ (self.chol.T @ v) - self.lam * v

    def dense(self) -> np.ndarray:
        """Return ``L L^T``."""
        c = self.chol.astype(np.float64)
        return c @ c.T


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DeviceFactor(KRRFactor):
    """JAX backend: ``chol`` is the lower Cholesky factor on a device."""

    chol: jax.Array

    def device_arrays(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(L, beta, diag(A))`` on the factor's device, for device test sides."""
        with precision(self.dtype):
            dev = next(iter(self.chol.devices()))
            return (self.chol, jax.device_put(jnp.asarray(self.beta, self.dtype), dev),
                    jax.device_put(jnp.asarray(self.a_diag, self.dtype), dev))

    def solve(self, b: Any) -> np.ndarray:
        """Return ``A b`` by two triangular solves on the device."""
        with precision(self.dtype):
            return np.asarray(cho_apply(self.chol, jnp.asarray(b, self.dtype)))

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """Return ``K v = L (L^T v) - lam v``."""
        with precision(self.dtype):
            vj = jnp.asarray(v, self.dtype)
            return np.asarray(self.chol @ (self.chol.T @ vj) - self.lam * vj)

    def dense(self) -> np.ndarray:
        """Return ``L L^T``."""
        c = np.asarray(self.chol, np.float64)
        return c @ c.T

    def test_side(self, k_test: np.ndarray, y_test: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The test block in one jit program on the device (see :meth:`KRRFactor.test_side`)."""
        with precision(self.dtype):
            chol, beta, a_diag = self.device_arrays()
            out = device_test_side(chol, beta, a_diag, jnp.asarray(self.lam, self.dtype),
                                   jnp.asarray(k_test, self.dtype),
                                   jnp.asarray(y_test, self.dtype))
            return tuple(np.asarray(o) for o in out)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Float32Factor(KRRFactor):
    """Float32 backends: a float32 Cholesky on the device, solves refined in float64.

    Attributes:
      chol: float32 lower Cholesky factor on the device.
      k64: the float64 host ``K`` that gives the refinement's residuals.
      refine: whether solves are refined (``"float32-refined"``).
      max_steps: refinement steps at most per solve.
      stats: the worst refinement steps and residuals so far (``beta`` and test blocks).
    """

    chol: jax.Array
    k64: np.ndarray
    refine: bool = True
    max_steps: int = 5
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    def _solve32(self, r: np.ndarray) -> np.ndarray:
        with precision(np.float32):
            return np.asarray(cho_apply(self.chol, jnp.asarray(r, jnp.float32)), np.float64)

    def solve(self, b: Any, *, record: str | None = None) -> np.ndarray:
        """Return ``A b``: a float32 solve, refined with float64 residuals when ``refine``."""
        b = np.asarray(b, np.float64)
        if not self.refine:
            return self._solve32(b)
        x, steps, res = refine_solve(self._solve32, lambda v: self.k64 @ v + self.lam * v, b,
                                     max_steps=self.max_steps)
        if record is not None:
            st, rs = self.stats.get(record, (0, 0.0))
            self.stats[record] = (max(st, steps), max(rs, res))
        return x

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """Return ``K v`` from the float64 host ``K``."""
        return self.k64 @ v

    def dense(self) -> np.ndarray:
        """Return ``K + lam I`` from the float64 host ``K``."""
        m = np.array(self.k64, np.float64)
        m[np.diag_indices_from(m)] += self.lam
        return m

    def test_side(self, k_test: np.ndarray, y_test: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The test block with refined solves on the host (see :meth:`KRRFactor.test_side`)."""
        kb = np.asarray(k_test, np.float64)
        alpha = self.solve(kb, record="test")
        f = kb.T @ self.beta
        infl, ihvp = influence_block(alpha, self.beta, self.a_diag, self.lam,
                                     f - np.asarray(y_test, np.float64))
        return alpha, f, infl, ihvp


def check_symmetric(k: np.ndarray, block: int = 1024) -> None:
    """Raise unless ``k`` is symmetric to ``1e-8`` relative (blocked: no ``n x n`` temporaries).

    Args:
      k: ``(n, n)`` host matrix.
    """
    n = k.shape[0]
    scale = max(float(np.abs(np.diagonal(k)).max()), 1.0)
    worst = 0.0
    for s in range(0, n, block):
        worst = max(worst, float(np.abs(k[s:s + block] - k[:, s:s + block].T).max()))
    if worst > 1e-8 * scale:
        raise InputError(f"k_train is not symmetric (max |K - K^T| = {worst:.3g}); pass K(x, x).")


def check_conditioning(cond: float, lambda_max: float, n: int, lam: float, dtype: Any, *,
                       warn: bool = True) -> None:
    """Raise when ``K + lam I`` is numerically singular; warn when ``cond * eps`` is large.

    Every backend and every public path calls this with the same estimate (a lower bound on the
    condition number), so the same input gets the same verdict everywhere. Singular means
    ``cond >= 1 / (10 n eps)`` in float64 (the Cholesky's backward error then reaches the
    smallest eigenvalue) and ``cond >= 1 / eps`` in float32; the warning fires above
    ``cond * eps > 1e-6`` (float64) or ``1e-2`` (float32).

    Args:
      cond: lower bound on ``cond(K + lam I)``.
      lambda_max: lower bound on ``lambda_max(K + lam I)``.
      n: training points.
      lam: the ridge.
      dtype: the dtype the factor is computed in.
      warn: emit the :class:`PrecisionWarning` (the float32 backends report instead).
    """
    dt = np.dtype(dtype)
    eps = float(np.finfo(dt).eps)
    limit = 1.0 / (10 * n * eps) if dt == np.float64 else 1.0 / eps
    fix = f"use lam > 0 large enough, e.g. lam={max(1e-6 * lambda_max, 1e-3):.1g}, or remove " \
        "duplicate and near-duplicate points"
    if not np.isfinite(cond) or cond >= limit:
        raise SingularKernelError(
            f"K + lam*I is numerically singular (lam={lam:g}, n={n}, {dt.name}): its condition "
            f"number is at least {cond:.3g}. The kernel has duplicate points or lam is too small; "
            f"{fix}.")
    if warn and cond * eps > WARN_RTOL[dt]:
        warnings.warn(
            f"cond(K + lam*I) >= {cond:.3g} in {dt.name}, so the influences may carry a relative "
            f"error of about {cond * eps:.1g}; {fix}.", PrecisionWarning, stacklevel=4)


def factorize(k_train: Any, y_train: Any, lam: float, *, backend: Backend = "auto",
              dtype: Any = np.float64, spectrum_method: str = "auto",
              inverse: Literal["recursive", "blocked"] = "recursive", inv_block: int = 1024,
              overwrite_k: bool = False, max_refine_steps: int = 5,
              check_symmetry: bool = True) -> KRRFactor:
    """Factorise ``K + lam I`` once: ``diag(A)``, ``beta = A y`` (eq. 5-6) and solves with ``A``.

    Raises :class:`SingularKernelError` when ``K + lam I`` is not numerically positive definite
    (the message suggests a ``lam``), and warns (:class:`PrecisionWarning`) when its condition
    number costs more than the dtype's tolerance. The spectrum is left for the first read of
    :attr:`KRRFactor.spectrum`.

    Args:
      k_train: ``(n, n)`` symmetric kernel matrix (a host array, or a device ``jax.Array`` for
        the ``"jax"`` backend, whose buffer is then donated to the Cholesky).
      y_train: ``(n,)`` or ``(n, k)`` labels.
      lam: ridge ``lam >= 0``.
      backend: ``"auto"``, ``"lapack"``, ``"jax"``, ``"float32-refined"`` or ``"float32"``
        (see the module docstring).
      dtype: dtype of the results, float64 (default) or float32 (the float32 backends always
        return float64 results).
      spectrum_method: how the spectrum is computed when read: ``"auto"`` (dense up to n = 1024,
        else iterative), ``"exact"``, ``"iterative"`` or ``"none"``.
      inverse: ``"recursive"`` or ``"blocked"`` ``diag(A)`` on a device (see
        :func:`inverse_diagonal`).
      inv_block: columns per block for ``inverse="blocked"``.
      overwrite_k: let the LAPACK backend factorise a C-ordered host ``k_train`` in place (saves
        one ``n x n`` copy; the caller's matrix is destroyed).
      max_refine_steps: refinement steps per solve for ``"float32-refined"``.
      check_symmetry: check that ``k_train`` is symmetric (an ``O(n^2)`` pass); the library
        skips it for kernel matrices it computed itself (the Cholesky reads one triangle).

    Returns:
      A :class:`KRRFactor`.
    """
    lam = check_lam(lam)
    dt = check_dtype(dtype)
    inv_block = check_whole(inv_block, "inv_block")
    max_refine_steps = check_whole(max_refine_steps, "max_refine_steps", low=0)
    bk = resolve_backend(backend, dt)
    on_device = isinstance(k_train, jax.Array) and bk == "jax"
    k = k_train if on_device else as_array(k_train, "k_train", (2,))
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise InputError(f"k_train must be square, got shape {k.shape}.")
    n = k.shape[0]
    y = as_array(y_train, "y_train", (1, 2))
    if y.shape[0] != n:
        raise InputError(f"y_train has {y.shape[0]} rows but k_train is {n} x {n}.")
    y2 = y.reshape(n, -1)
    if check_symmetry and not on_device:
        check_symmetric(k)
    spectrum_method = check_method(spectrum_method)
    common = dict(lam=lam, backend=bk, spectrum_method=spectrum_method)
    singular = SingularKernelError(
        f"K + lam*I is not numerically positive definite (lam={lam:g}, n={n}); the kernel matrix "
        "is singular or has duplicate points. Use lam > 0 (e.g. lam=1e-3 or larger).")
    if bk == "lapack":
        kk = k.T if (overwrite_k and k.flags.c_contiguous and k.dtype == dt) else \
            np.array(k, dtype=dt, order="F", copy=True)
        lmax_lb = max(float(np.max(np.diagonal(kk))), float(kk.sum()) / n) + lam
        kk[np.diag_indices_from(kk)] += lam
        chol, info = lapack(dt, "potrf")(kk, lower=1, overwrite_a=1, clean=1)
        del kk
        if info != 0 or not np.all(np.isfinite(np.diagonal(chol))):
            raise singular
        inv, info = lapack(dt, "trtri")(chol, lower=1)
        if info != 0:
            raise singular
        a_diag = np.einsum("ij,ij->j", inv, inv)
        del inv
        beta = lapack_cho_apply(chol, y2.astype(dt))
        factor: KRRFactor = LapackFactor(chol=chol, a_diag=a_diag, beta=beta, y=y2.astype(dt),
                                         dtype=dt, cond_estimate=0.0, **common)
    elif bk == "jax":
        with precision(dt):
            kj = k if on_device else jnp.array(k, dt, copy=True)
            chol, ok, lmax = chol_device(kj.astype(dt), jnp.asarray(lam, dt))
            del kj
            if not bool(ok):
                raise singular
            a_diag = np.asarray(inverse_diagonal(chol, mode=inverse, block=inv_block))
            beta = np.asarray(cho_apply(chol, jnp.asarray(y2, dt)))
            lmax_lb = float(lmax)
        factor = DeviceFactor(chol=chol, a_diag=a_diag, beta=beta, y=y2.astype(dt), dtype=dt,
                              cond_estimate=0.0, **common)
    else:
        k64 = np.asarray(k, np.float64)
        with precision(np.float32):
            chol, ok, lmax = chol_device(jnp.asarray(k64, jnp.float32),
                                          jnp.asarray(lam, jnp.float32))
            if not bool(ok):
                raise SingularKernelError(
                    f"K + lam*I is not positive definite in float32 (lam={lam:g}, n={n}); use a "
                    "larger lam or the float64 backends.")
            a_diag = np.asarray(inverse_diagonal(chol, mode=inverse, block=inv_block),
                                np.float64)
            lmax_lb = float(lmax)
        f32 = Float32Factor(chol=chol, k64=k64, refine=bk == "float32-refined",
                            max_steps=int(max_refine_steps), a_diag=a_diag,
                            beta=np.zeros_like(y2, np.float64), y=y2.astype(np.float64),
                            dtype=np.dtype(np.float64), cond_estimate=0.0, **common)
        beta = f32.solve(y2, record="beta")
        factor = dataclasses.replace(f32, beta=beta, stats=f32.stats)
    if not np.all(np.isfinite(factor.a_diag)) or not np.all(factor.a_diag > 0):
        raise singular
    cond = lmax_lb * float(np.max(factor.a_diag))
    f32 = bk.startswith("float32")
    check_conditioning(cond, lmax_lb, n, lam, np.float32 if f32 else dt, warn=not f32)
    object.__setattr__(factor, "cond_estimate", float(cond))
    return factor
