"""One factorisation of ``K + lam I`` that serves every exact computation (eq. 5, 6, 9).

:func:`factorize` computes the Cholesky factor ``L`` of ``K + lam I``, the diagonal of
``A = (K + lam I)^-1``, ``beta = A y`` and the extreme eigenvalues of ``K``. Everything downstream
(KRR predictions, exact leave-one-out, leverage, group removal, complexity) reuses it.

Cost and memory (float64, ``n`` training points): one Cholesky (``n^3/3`` flops), the inverse's
diagonal from ``L^-1``, computed by a recursive blocked inverse (``n^3/3`` flops in matrix
products, far faster than a triangular solve against the identity), and a Lanczos estimate of
the spectrum that stops as soon as it has converged (memory-bound ``O(n^2)`` products with ``L``
and ``L^-1``). ``L^-1`` is then dropped: :attr:`KRRFactor.chol_inv` recomputes it on first use,
and every later solve uses triangular solves with ``L``. Peak memory: the host ``K``, ``L`` and
``L^-1`` (three ``n x n`` arrays).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from ._errors import InputError, NotConvergedWarning, SingularKernelError
from ._precision import precision
from ._validate import as_array, check_indices, check_lam

SpectrumMethod = Literal["auto", "exact", "lanczos", "none"]
Engine = Literal["auto", "lapack", "jax"]
EXACT_SPECTRUM_MAX_N = 512
LANCZOS_MAX_STEPS = 4
LANCZOS_BLOCK = 32
LANCZOS_TOL = 1e-2
_INV_LEAF = 256


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Extreme eigenvalues of ``K`` and how they were obtained.

    Attributes:
      lambda_min: least eigenvalue of ``K``.
      lambda_max: largest eigenvalue of ``K``.
      method: ``"exact"`` (dense eigvalsh), ``"lanczos"`` or ``"none"``.
      residual: Lanczos residual bound on each estimate (0 for exact).
      converged: whether the estimates met the tolerance.
      steps: Lanczos steps taken for ``(lambda_min, lambda_max)`` (0 for exact).
    """

    lambda_min: float
    lambda_max: float
    method: str
    residual: tuple[float, float] = (0.0, 0.0)
    converged: bool = True
    steps: tuple[int, int] = (0, 0)


@dataclasses.dataclass(frozen=True)
class KRRFactor:
    """The factorisation of ``K + lam I`` and the quantities every influence needs.

    Attributes:
      chol: lower Cholesky factor ``L`` of ``K + lam I`` (``A = L^-T L^-1``).
      a_diag: ``diag(A)``.
      beta: ``A y``, shape ``(n, k)``.
      y: training labels as ``(n, k)``.
      lam: the ridge.
      spectrum: extreme eigenvalues of ``K``.
      cond: condition number of ``K + lam I``, ``(lambda_max + lam)/(lambda_min + lam)``.
      dtype: the dtype of the factor.
    """

    chol: jax.Array
    a_diag: jax.Array
    beta: jax.Array
    y: jax.Array
    lam: float
    spectrum: Spectrum
    cond: float
    dtype: np.dtype

    @property
    def n(self) -> int:
        """Number of training points."""
        return int(self.a_diag.shape[0])

    @functools.cached_property
    def chol_inv(self) -> jax.Array:
        """``L^-1`` (computed on first use and cached; costs one more ``n x n`` array)."""
        if isinstance(self.chol, np.ndarray):
            return _lapack(self.dtype, "trtri")(self.chol, lower=1)[0]
        with precision(self.dtype):
            return tri_inv(self.chol)

    def solve(self, b: Any) -> jax.Array:
        """Return ``A b = (K + lam I)^-1 b`` for ``b`` of shape ``(n,)`` or ``(n, m)``."""
        if isinstance(self.chol, np.ndarray):
            return lapack_cho_apply(self.chol, np.asarray(b, self.dtype))
        with precision(self.dtype):
            return cho_apply(self.chol, jnp.asarray(b, self.dtype))

    def a_columns(self, idx: Any) -> jax.Array:
        """Return the columns ``A[:, idx]`` (shape ``(n, len(idx))``)."""
        idx = check_indices(idx, self.n, "idx")
        if isinstance(self.chol, np.ndarray):
            e = np.zeros((self.n, idx.size), self.dtype)
            e[idx, np.arange(idx.size)] = 1.0
            return lapack_cho_apply(self.chol, e)
        with precision(self.dtype):
            e = jnp.zeros((self.n, idx.size), self.dtype).at[idx, jnp.arange(idx.size)].set(1.0)
            return cho_apply(self.chol, e)

    @property
    def leverage(self) -> jax.Array:
        """Ridge leverage scores ``h_i = 1 - lam A_ii`` (Theorem 3)."""
        return 1.0 - self.lam * self.a_diag


def resolve_engine(engine: str) -> str:
    """``"lapack"`` or ``"jax"`` for an engine argument (``"auto"``: LAPACK on a CPU backend).

    Args:
      engine: ``"auto"``, ``"lapack"`` or ``"jax"``.

    Returns:
      The engine to use.
    """
    if engine not in ("auto", "lapack", "jax"):
        raise InputError(f"engine must be 'auto', 'lapack' or 'jax', got {engine!r}.")
    if engine == "auto":
        return "lapack" if jax.default_backend() == "cpu" else "jax"
    return engine


@jax.jit
def cho_apply(chol: jax.Array, b: jax.Array) -> jax.Array:
    """``(L L^T)^-1 b`` by two triangular solves with the lower Cholesky factor ``L``.

    Args:
      chol: ``(n, n)`` lower-triangular factor.
      b: ``(n,)`` or ``(n, m)`` right-hand side.

    Returns:
      The solution, shaped like ``b``.
    """
    z = solve_triangular(chol, b, lower=True)
    return solve_triangular(chol, z, lower=True, trans=1)


def _lapack(dtype: Any, name: str) -> Any:
    from scipy.linalg import get_lapack_funcs

    return get_lapack_funcs(name, dtype=np.dtype(dtype))


def lapack_cho_apply(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(L L^T)^-1 b`` by LAPACK ``potrs`` with the lower Cholesky factor ``L`` (host arrays).

    Args:
      chol: ``(n, n)`` lower-triangular factor (host array).
      b: ``(n,)`` or ``(n, m)`` right-hand side.

    Returns:
      The solution, shaped like ``b``.
    """
    x, info = _lapack(chol.dtype, "potrs")(chol, np.asarray(b, chol.dtype), lower=1)
    if info != 0:
        raise InputError(f"potrs failed (info={info}).")
    return x


def _factor_lapack(k: np.ndarray, y: np.ndarray, lam: float, dt: np.dtype
                   ) -> tuple[np.ndarray, ...]:
    """Host factorisation: ``potrf`` on a copy of ``K + lam I``, ``trtri``, ``potrs``."""
    kk = np.array(k, dtype=dt, order="F", copy=True)
    kk[np.diag_indices_from(kk)] += lam
    chol, info = _lapack(dt, "potrf")(kk, lower=1, overwrite_a=1, clean=1)
    del kk
    if info != 0 or not np.all(np.isfinite(np.diagonal(chol))):
        return chol, None, None, None, False
    inv, info = _lapack(dt, "trtri")(chol, lower=1)
    if info != 0:
        return chol, None, None, None, False
    a_diag = np.einsum("ij,ij->j", inv, inv)
    beta = lapack_cho_apply(chol, y.astype(dt))
    return chol, inv, a_diag, beta, True


def _block_lanczos_np(matvec: Any, n: int, dt: np.dtype, block: int, steps: int,
                      seed: int) -> tuple[float, float]:
    """NumPy twin of :func:`_block_lanczos` for host factors (same algorithm).

    Runs BLAS on one thread: the products are memory-bound, and skinny products on several
    threads are ten times slower on a busy machine.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _block_lanczos_np_body(matvec, n, dt, block, steps, seed)


def _block_lanczos_np_body(matvec: Any, n: int, dt: np.dtype, block: int, steps: int,
                           seed: int) -> tuple[float, float]:
    def orth(w: np.ndarray) -> np.ndarray:
        for _ in range(2):
            g = w.T @ w
            g[np.diag_indices_from(g)] += max(1e-13, 10 * float(np.finfo(dt).eps)) * np.trace(g) \
                + np.finfo(dt).tiny
            r = np.linalg.cholesky(g)
            w = np.linalg.solve(r, w.T).T
        return w

    qs = [orth(np.random.default_rng(seed).normal(size=(n, block)).astype(dt))]
    ms = []
    for i in range(steps):
        w = matvec(qs[-1])
        ms.append(w)
        if i == steps - 1:
            break
        v = np.concatenate(qs, axis=1)
        w = w - v @ (v.T @ w)
        w = w - v @ (v.T @ w)
        qs.append(orth(w))
    v, mv = np.concatenate(qs, axis=1), np.concatenate(ms, axis=1)
    gs, gu = np.linalg.eigh(v.T @ v)
    keep = gs > max(1e-10, 100 * float(np.finfo(dt).eps)) * gs[-1]
    w = gu[:, keep] / np.sqrt(gs[keep])
    v, mv = v @ w, mv @ w
    h = v.T @ mv
    evals, evecs = np.linalg.eigh(0.5 * (h + h.T))
    u, theta = evecs[:, -1], evals[-1]
    return float(theta), float(np.linalg.norm(mv @ u - theta * (v @ u)))


def _tri_inv(chol: jax.Array) -> jax.Array:
    """Inverse of a lower-triangular matrix by 2x2 block recursion (matrix products)."""
    n = chol.shape[0]
    if n <= _INV_LEAF:
        return solve_triangular(chol, jnp.eye(n, dtype=chol.dtype), lower=True)
    h = n // 2
    p = _tri_inv(chol[:h, :h])
    r = _tri_inv(chol[h:, h:])
    q = -(r @ (chol[h:, :h] @ p))
    top = jnp.concatenate([p, jnp.zeros((h, n - h), chol.dtype)], axis=1)
    return jnp.concatenate([top, jnp.concatenate([q, r], axis=1)], axis=0)


tri_inv = jax.jit(_tri_inv)
tri_inv.__doc__ = """Inverse of a lower-triangular ``(n, n)`` matrix (blocked, ``n^3/3`` flops)."""


@functools.partial(jax.jit, donate_argnums=(0,))
def _factor(k: jax.Array, y: jax.Array, lam: jax.Array) -> tuple[jax.Array, ...]:
    n = k.shape[0]
    idx = jnp.arange(n)
    chol = jnp.linalg.cholesky(k.at[idx, idx].add(lam))
    ok = jnp.all(jnp.isfinite(jnp.diagonal(chol))) & jnp.all(jnp.diagonal(chol) > 0)
    chol = jnp.where(ok, chol, jnp.eye(n, dtype=k.dtype))  # keep the solves below finite
    # L^-1 by matrix products; the barrier keeps XLA from fusing the squares into the products.
    inv = jax.lax.optimization_barrier(_tri_inv(chol))
    a_diag = jnp.sum(inv * inv, axis=0)
    beta = inv.T @ (inv @ y)
    return chol, inv, a_diag, beta, ok


def _matvec(kind: str, mat: jax.Array, lam: jax.Array, v: jax.Array) -> jax.Array:
    """``K v = L L^T v - lam v`` for kind ``"k"`` (``mat = L``); ``A v = L^-T L^-1 v`` for kind
    ``"a"`` (``mat = L^-1``: dense products are far faster than triangular solves of vectors)."""
    if kind == "k":
        return mat @ (mat.T @ v) - lam * v
    if kind == "a_chol":  # A v by triangular solves with L (no L^-1 in memory)
        return cho_apply(mat, v)
    return mat.T @ (mat @ v)


def _orthonormalize(w: jax.Array) -> jax.Array:
    """Orthonormal columns spanning ``w`` by Cholesky QR, twice (XLA's CPU QR is far slower)."""
    for _ in range(2):
        g = w.T @ w
        shift = max(1e-13, 10 * float(jnp.finfo(w.dtype).eps)) * jnp.trace(g) + \
            jnp.finfo(w.dtype).tiny
        r = jnp.linalg.cholesky(g + shift * jnp.eye(g.shape[0], dtype=g.dtype))
        w = solve_triangular(r, w.T, lower=True).T
    return w


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _block_lanczos(kind: str, mat: jax.Array, lam: jax.Array, block: int, steps: int,
                   key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Block Lanczos (block Krylov + Rayleigh-Ritz, full reorthogonalisation) for the top pair.

    The products are ``n x n`` by ``n x block``: as memory-bound as a single matrix-vector
    product on a CPU or GPU, so a block of b vectors grows the Krylov space b times faster.

    Returns ``(theta, residual)``: the largest Ritz value and ``||M u - theta u||`` for its unit
    Ritz vector ``u``; some eigenvalue of ``M`` lies within ``residual`` of ``theta``.
    """
    n = mat.shape[0]
    m = block * steps
    q = _orthonormalize(jax.random.normal(key, (n, block), mat.dtype))
    v = jnp.zeros((n, m), mat.dtype).at[:, :block].set(q)
    mv = jnp.zeros((n, m), mat.dtype)

    def body(i: jax.Array, c: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        v, mv = c
        qi = jax.lax.dynamic_slice_in_dim(v, i * block, block, axis=1)
        w = _matvec(kind, mat, lam, qi)
        mv = jax.lax.dynamic_update_slice_in_dim(mv, w, i * block, axis=1)
        w = w - v @ (v.T @ w)  # full reorthogonalisation (unfilled columns are 0), twice
        w = w - v @ (v.T @ w)
        qn = _orthonormalize(w)
        nxt = jnp.minimum((i + 1) * block, m - block)  # last iteration writes a dummy block
        v = jnp.where(i + 1 < steps, jax.lax.dynamic_update_slice_in_dim(v, qn, nxt, axis=1), v)
        return v, mv

    v, mv = jax.lax.fori_loop(0, steps, body, (v, mv))
    # Rayleigh-Ritz on a re-orthonormalised basis: directions that lost rank (an exhausted
    # Krylov space) are dropped; M V is linear in V, so the same recombination serves both.
    gs, gu = jnp.linalg.eigh(v.T @ v)
    cut = max(1e-10, 100 * float(jnp.finfo(v.dtype).eps)) * gs[-1]
    w = jnp.where(gs > cut, 1.0 / jnp.sqrt(jnp.maximum(gs, jnp.finfo(v.dtype).tiny)), 0.0)
    v, mv = v @ (gu * w), mv @ (gu * w)
    h = v.T @ mv
    evals, evecs = jnp.linalg.eigh(0.5 * (h + h.T))
    u = evecs[:, -1]
    theta = evals[-1]
    return theta, jnp.linalg.norm(mv @ u - theta * (v @ u))


def _lanczos(kind: str, mat: jax.Array, lam: float, steps: int, tol: float,
             seed: int = 0, block: int = LANCZOS_BLOCK, retry: bool = False) -> tuple[float, float, int]:
    """Largest eigenvalue of ``K`` (kind ``"k"``, pass ``L``) or ``A`` (``"a"``, pass ``L^-1``).

    Runs block Lanczos with ``steps`` blocks; with ``retry``, if the residual misses ``tol``
    (relative to the Ritz value) it runs once more with twice the steps. Kind ``"kmat"`` takes
    ``K`` itself (host arrays). Returns ``(theta, residual, steps)``.
    """
    n = mat.shape[0]
    block = int(max(1, min(block, n)))
    s = int(max(1, min(steps, -(-n // block))))
    key = jax.random.PRNGKey(seed)
    host = isinstance(mat, np.ndarray)
    if host:
        mv = {"k": lambda q: mat @ (mat.T @ q) - lam * q, "kmat": lambda q: mat @ q,
              "a": lambda q: mat.T @ (mat @ q)}[kind]
    for attempt in range(2 if retry else 1):
        if host:
            theta, res = _block_lanczos_np(mv, n, mat.dtype, block, s, seed)
        else:
            theta, res = (float(t) for t in _block_lanczos(
                kind, mat, jnp.asarray(lam, mat.dtype), block, s, key))
        if res <= tol * abs(theta) or s * block >= n or attempt == (1 if retry else 0):
            break
        s = int(min(2 * s, -(-n // block)))
    return theta, res, s


def spectrum(k: Any, chol: Any, lam: float, method: SpectrumMethod = "auto",
             steps: int = LANCZOS_MAX_STEPS, tol: float = LANCZOS_TOL, *,
             chol_inv: Any = None, retry: bool = False) -> Spectrum:
    """Extreme eigenvalues of ``K``: dense ``eigvalsh`` or Lanczos (``lambda_min`` through ``A``).

    Block Lanczos on ``K`` (or ``L L^T - lam I``) gives ``lambda_max``; on
    ``A = (K + lam I)^-1`` it gives ``lambda_min = 1/mu_max(A) - lam``. Each runs ``steps`` blocks
    of 32 vectors (and, with ``retry``, once more with twice as many when the Ritz residual
    misses ``tol`` relative to the Ritz value).
    The Ritz value can only under-estimate ``mu_max``, so the Lanczos ``lambda_min`` is an upper
    estimate, and the residual bound says by how much it may be off.

    Args:
      k: ``(n, n)`` kernel matrix (``"exact"`` needs it; Lanczos uses it for ``lambda_max`` on
        host factors; may be None).
      chol: lower Cholesky factor of ``K + lam I``.
      lam: ridge.
      method: ``"auto"`` (exact up to n=512, else Lanczos), ``"exact"``, ``"lanczos"``, ``"none"``.
      steps: block Lanczos steps (blocks of 32 vectors) of the first run.
      tol: relative residual tolerance of each Ritz value.
      chol_inv: ``L^-1`` if already at hand (host factors compute it otherwise; device factors
        use triangular solves with ``L`` instead).
      retry: double the steps once when a residual misses ``tol``.

    Returns:
      :class:`Spectrum`.
    """
    n = int(chol.shape[0])
    if method == "auto":
        method = "exact" if (n <= EXACT_SPECTRUM_MAX_N and k is not None) else "lanczos"
    if method == "none":
        return Spectrum(float("nan"), float("nan"), "none", (float("nan"),) * 2, False)
    if method == "exact":
        if k is None:
            raise InputError("spectrum='exact' needs the kernel matrix; pass k or use 'lanczos'.")
        ev = np.asarray(jnp.linalg.eigvalsh(jnp.asarray(k)))
        return Spectrum(float(ev[0]), float(ev[-1]), "exact")
    if method != "lanczos":
        raise InputError(f"spectrum must be 'auto', 'exact', 'lanczos' or 'none', got {method!r}.")
    host_k = isinstance(chol, np.ndarray) and isinstance(k, np.ndarray)
    lmax, rmax, smax = _lanczos("kmat", k, lam, steps, tol, retry=retry) if host_k else \
        _lanczos("k", chol, lam, steps, tol, retry=retry)
    if chol_inv is not None:
        inv = chol_inv
    elif isinstance(chol, np.ndarray):
        inv = _lapack(chol.dtype, "trtri")(chol, lower=1)[0]
    else:
        inv = None  # device factor: triangular solves with L, no n x n L^-1
    if inv is None:
        mu, rmu, smin = _lanczos("a_chol", chol, lam, steps, tol, seed=1, retry=retry)
    else:
        mu, rmu, smin = _lanczos("a", inv, lam, steps, tol, seed=1, retry=retry)
    lmin = 1.0 / mu - lam
    # |delta lambda_min| <= r/mu^2 to first order in the residual.
    rmin = rmu / mu**2
    conv = rmax <= tol * lmax and rmu <= tol * mu
    if not conv:
        warnings.warn(
            f"Lanczos spectrum estimate not converged (residuals {rmin:.2e} "
            f"on lambda_min, {rmax:.2e} on lambda_max); use spectrum='exact' for exact values.",
            NotConvergedWarning, stacklevel=3)
    return Spectrum(float(lmin), float(lmax), "lanczos", (float(rmin), float(rmax)), bool(conv),
                    (smin, smax))


def _check_symmetric(k: np.ndarray, block: int = 1024) -> None:
    """Raise unless ``k`` is symmetric to ``1e-8`` relative (blocked: no ``n x n`` temporaries)."""
    n = k.shape[0]
    scale = max(float(np.abs(np.diagonal(k)).max()), 1.0)
    worst = 0.0
    for s in range(0, n, block):
        worst = max(worst, float(np.abs(k[s:s + block] - k[:, s:s + block].T).max()))
        scale = max(scale, float(np.abs(k[s:s + block]).max()))
    if worst > 1e-8 * scale:
        raise InputError(f"k_train is not symmetric (max |K - K^T| = {worst:.3g}); pass K(x, x).")


def factorize(k_train: Any, y_train: Any, lam: float, *, spectrum_method: SpectrumMethod = "auto",
              dtype: Any = np.float64, engine: Engine = "auto") -> KRRFactor:
    """Factorise ``K + lam I`` once (Cholesky) and compute ``A``'s diagonal, ``beta`` and spectrum.

    Eq. (5)-(6): ``beta = (K + lam I)^-1 y``. Raises :class:`SingularKernelError` when
    ``K + lam I`` is not numerically positive definite (suggesting a larger ``lam``).

    Args:
      k_train: ``(n, n)`` symmetric kernel matrix.
      y_train: ``(n,)`` or ``(n, k)`` labels.
      lam: ridge ``lam >= 0``.
      spectrum_method: how to get ``lambda_min``/``lambda_max`` (see :func:`spectrum`).
      dtype: float64 (default) or float32.
      engine: ``"lapack"`` (host LAPACK through SciPy; the factor's arrays are NumPy arrays),
        ``"jax"`` (one jit program on the default device) or ``"auto"`` (LAPACK when JAX's
        default backend is the CPU, where XLA's matrix products are slower than OpenBLAS; JAX on
        GPU/TPU). Both give the same numbers to rounding.

    Returns:
      :class:`KRRFactor`.
    """
    lam = check_lam(lam)
    engine = resolve_engine(engine)
    k = as_array(k_train, "k_train", (2,))
    if k.shape[0] != k.shape[1]:
        raise InputError(f"k_train must be square, got shape {k.shape}.")
    y = as_array(y_train, "y_train", (1, 2))
    if y.shape[0] != k.shape[0]:
        raise InputError(f"y_train has {y.shape[0]} rows but k_train is {k.shape[0]} x {k.shape[0]}.")
    y2 = y.reshape(y.shape[0], -1)
    _check_symmetric(k)
    n = k.shape[0]
    with precision(dtype) as dt:
        use_exact = spectrum_method == "exact" or (spectrum_method == "auto"
                                                   and n <= EXACT_SPECTRUM_MAX_N)
        # The device copy of K is donated to the Cholesky (no second n x n buffer when XLA can
        # alias it); the exact spectrum, for small n, reads the host matrix instead.
        if engine == "lapack":
            yj = y2.astype(dt)
            chol, inv, a_diag, beta, ok = _factor_lapack(k, yj, lam, dt)
        else:
            kj = jnp.array(k, dt, copy=True)
            yj = jnp.asarray(y2, dt)
            chol, inv, a_diag, beta, ok = _factor(kj, yj, jnp.asarray(lam, dt))
            del kj
        if not bool(ok):
            raise SingularKernelError(
                f"K + lam*I is not numerically positive definite (lam={lam:g}, n={n}); "
                "the kernel matrix is singular or has duplicate points. Use lam > 0 "
                "(e.g. lam=1e-3 or larger).")
        spec = spectrum(k if (use_exact or engine == "lapack") else None, chol, lam,
                        spectrum_method, chol_inv=inv)
        del inv
        eps = float(np.finfo(dt).eps)
        dg = np.asarray(jnp.diagonal(chol))
        cond = (spec.lambda_max + lam) / (spec.lambda_min + lam) if spec.method != "none" else \
            float(dg.max() / dg.min()) ** 2
        if spec.method != "none" and (spec.lambda_min + lam) <= 10 * n * eps * spec.lambda_max:
            raise SingularKernelError(
                f"K + lam*I is numerically singular: lambda_min(K) + lam = "
                f"{spec.lambda_min + lam:.3g} against lambda_max = {spec.lambda_max:.3g} "
                f"(condition {cond:.3g}, {np.dtype(dt).name}). Use lam > 0, e.g. lam="
                f"{max(1e-6 * spec.lambda_max, 1e-3):.1g}.")
    return KRRFactor(chol, a_diag, beta, yj, lam, spec, float(cond), np.dtype(dt))
