"""The matrix function of gradient flow and the leave-one-out changes of its predictor (eq. 20).

``g_t(mu) = (1 - exp(-t mu)) / mu`` maps the eigenvalues of ``M = K + lam I`` to the predictor
``f_te(t) = K_te^T g_t(M) y`` of the linearised network after flow time ``t``. This module holds
``g_t`` (:func:`g_flow`, and :func:`g_flow_jax` for traced code), its derivative
(:func:`g_flow_prime`) and divided differences (:func:`divided_differences`, for the Frechet
derivative by Daleckii-Krein), and the two routes the influence over training time
(:func:`ntk_influence.influence.influence_over_time`) uses for the leave-one-out change
``Delta`` of the predictor: exact (one ``eigh`` of the reduced ``M`` per left-out point, batched
with JAX in :func:`loo_delta_jax` or looped with LAPACK in :func:`loo_delta_lapack`) and first
order (:func:`first_order_delta`, from one ``eigh`` of ``M`` for every point). A matrix function
needs the eigendecomposition, so these do not go through the Cholesky factor of
:mod:`ntk_influence.linalg`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


_GL_NODES = 0.5 * (_GL_NODES + 1.0)  # on [0, 1]


_GL_WEIGHTS = 0.5 * _GL_WEIGHTS


def g_flow(t: float, mu: np.ndarray) -> np.ndarray:
    """``g_t(mu) = (1 - exp(-t mu)) / mu`` (``t`` at ``mu = 0``; ``1/mu`` at ``t = inf``), eq. (20).

    Args:
      t: flow time (``np.inf`` allowed).
      mu: eigenvalues of ``K + lam I``.

    Returns:
      ``g_t(mu)``, shaped like ``mu``.
    """
    if np.isinf(t):
        return 1.0 / mu
    safe = np.where(mu == 0, 1.0, mu)
    return np.where(mu == 0, t, -np.expm1(-t * mu) / safe)


def g_flow_prime(t: float, mu: np.ndarray) -> np.ndarray:
    """``g_t'(mu) = -(1 - e^{-x}(1 + x)) / mu^2`` with ``x = t mu``, a series for small ``|x|``.

    Args:
      t: flow time (``np.inf`` allowed).
      mu: eigenvalues.

    Returns:
      ``g_t'(mu)``, shaped like ``mu``.
    """
    if np.isinf(t):
        return -1.0 / mu**2
    x = t * mu
    small = np.abs(x) < 0.5
    xs = np.where(small, x, 0.0)
    # 1 - e^{-x}(1 + x) = sum_{k>=2} (-1)^k (k - 1) x^k / k!, so g' = -t^2 sum (-1)^k (k-1) x^(k-2)/k!
    series = np.zeros_like(xs)
    term = np.ones_like(xs) / 2.0  # x^(k-2)/k! at k = 2
    for k in range(2, 24):
        series += (-1) ** k * (k - 1) * term
        term = term * xs / (k + 1)
    xl = np.where(small, 1.0, x)
    mul = np.where(small, 1.0, mu)
    large = -(-np.expm1(-xl) - xl * np.exp(-xl)) / mul**2
    return np.where(small, -t * t * series, large)


def divided_differences(t: float, mu: np.ndarray) -> np.ndarray:
    """First divided differences ``G_jl = g_t[mu_j, mu_l]`` (``g_t'(mu_j)`` on the diagonal).

    Pairs closer than a quarter of the local scale ``max(min(|mu_j|, |mu_l|), 1/t)`` use an
    8-point Gauss-Legendre rule on ``int_0^1 g'(mu_l + s (mu_j - mu_l)) ds`` instead of the
    quotient, so there is no cancellation.

    Args:
      t: flow time (``np.inf`` allowed).
      mu: ``(n,)`` eigenvalues of ``K + lam I``.

    Returns:
      ``(n, n)`` symmetric matrix.
    """
    a, b = mu[:, None], mu[None, :]
    if t == 0:
        return np.zeros((mu.size, mu.size))
    if np.isinf(t):
        return -1.0 / (a * b)
    diff = a - b
    scale = np.maximum(np.minimum(np.abs(a), np.abs(b)), 1.0 / t)
    close = np.abs(diff) <= 0.25 * scale
    ga, gb = g_flow(t, mu)[:, None], g_flow(t, mu)[None, :]
    out = (ga - gb) / np.where(close, 1.0, diff)
    ii, jj = np.nonzero(close)
    lo, d = mu[jj], mu[ii] - mu[jj]
    quad = np.zeros(ii.size)
    for s, w in zip(_GL_NODES, _GL_WEIGHTS):
        quad += w * g_flow_prime(t, lo + s * d)
    out[ii, jj] = quad
    return out


def g_flow_jax(t: jax.Array, mu: jax.Array) -> jax.Array:
    """:func:`g_flow` in JAX (traceable; ``t`` may be ``inf``).

    Args:
      t: flow times, broadcastable with ``mu``.
      mu: eigenvalues.

    Returns:
      ``g_t(mu)``.
    """
    zero = mu == 0
    safe = jnp.where(zero, 1.0, mu)
    val = jnp.where(jnp.isinf(t), 1.0 / safe, -jnp.expm1(-jnp.where(jnp.isinf(t), 0.0, t) * mu)
                    / safe)
    return jnp.where(zero, t, val)


@jax.jit
def loo_delta_jax(k: jax.Array, k_test: jax.Array, y: jax.Array, lam: jax.Array,
                  times: jax.Array, fill: jax.Array, f_full: jax.Array, idx: jax.Array) -> jax.Array:
    """Exact leave-one-out change ``Delta`` of the time-``t`` test predictions, batched (``vmap``).

    Row and column ``i`` of ``K`` are zeroed and ``M_ii`` set to ``fill`` (so one shape serves the
    batch): that decoupled problem has exactly the predictions of the reduced one.

    Args:
      k: ``(n, n)`` training kernel.
      k_test: ``(n, m)`` train-test kernel.
      y: ``(n, k)`` labels.
      lam: ridge.
      times: ``(T,)`` flow times.
      fill: a positive diagonal value for the removed point.
      f_full: ``(T, m, k)`` predictions with every point.
      idx: ``(b,)`` left-out points.

    Returns:
      ``(b, T, m, k)`` changes ``f^(i) - f``.
    """
    n = k.shape[0]
    eye = jnp.eye(n, dtype=k.dtype)

    def one(i: jax.Array) -> jax.Array:
        keep = (jnp.arange(n) != i).astype(k.dtype)
        m = k * keep[:, None] * keep[None, :] + lam * eye
        m = m.at[i, i].set(fill)
        mu, u = jnp.linalg.eigh(m)
        yt = u.T @ (y * keep[:, None])
        kt = u.T @ (k_test * keep[:, None])
        g = g_flow_jax(times[:, None], mu[None, :])
        f = jnp.einsum("nm,tn,nk->tmk", kt, g, yt)
        return f - f_full

    return jax.vmap(one)(idx)


def loo_delta_lapack(k: np.ndarray, kt: np.ndarray, y2: np.ndarray, lam: float,
                     ft: np.ndarray, f_full: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Exact leave-one-out ``Delta`` with a host loop of LAPACK's ``eigh`` on the reduced matrices.

    Args:
      k: ``(n, n)`` training kernel.
      kt: ``(n, m)`` train-test kernel.
      y2: ``(n, k)`` labels.
      lam: ridge.
      ft: ``(T,)`` flow times.
      f_full: ``(T, m, k)`` predictions with every point.
      idx: ``(b,)`` left-out points.

    Returns:
      ``(b, T, m, k)`` changes ``f^(i) - f``.
    """
    n = k.shape[0]
    out = np.empty((idx.size, *f_full.shape))
    for b, i in enumerate(idx):
        keep = np.arange(n) != i
        mu, u = np.linalg.eigh(k[np.ix_(keep, keep)] + lam * np.eye(n - 1))
        ktt, yt = u.T @ kt[keep], u.T @ y2[keep]
        g = np.stack([g_flow(t, mu) for t in ft])  # (T, n-1)
        out[b] = np.einsum("nm,tn,nk->tmk", ktt, g, yt) - f_full
    return out


def first_order_delta(k: np.ndarray, kt: np.ndarray, y2: np.ndarray, lam: float,
                      ft: np.ndarray, mu: np.ndarray, u: np.ndarray) -> np.ndarray:
    """First-order change ``Delta_hat = -dF/dw_i`` for every point (Daleckii-Krein derivative).

    Args:
      k: ``(n, n)`` training kernel.
      kt: ``(n, m)`` train-test kernel.
      y2: ``(n, k)`` labels.
      lam: ridge.
      ft: ``(T,)`` flow times.
      mu: ``(n,)`` eigenvalues of ``K + lam I``.
      u: ``(n, n)`` its eigenvectors.

    Returns:
      ``(T, n, m, k)`` first-order changes.
    """
    s = mu - lam  # eigenvalues of K
    ktt, yt = u.T @ kt, u.T @ y2
    ssum = 0.5 * (s[:, None] + s[None, :])
    out = []
    for t in ft:
        gm = g_flow(t, mu)
        gy = u @ (gm[:, None] * yt)  # g(M) y, (n, k)
        gk = u @ (gm[:, None] * ktt)  # g(M) K_te, (n, m)
        p = divided_differences(t, mu) * ssum
        d = np.empty((k.shape[0], kt.shape[1], y2.shape[1]))
        for c in range(y2.shape[1]):
            cmat = (u * yt[:, c][None, :]) @ p  # C_ij = sum_l U_il y~_l P_lj
            r = (u * cmat) @ ktt  # R_i,te = sum_j U_ij C_ij k~_j,te
            d[:, :, c] = 0.5 * kt * gy[:, c][:, None] + 0.5 * gk * y2[:, c][:, None] + r
        out.append(-d)
    return np.stack(out)
