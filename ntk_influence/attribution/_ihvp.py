"""Inverse-Hessian-vector products on a trained net, and the classic IHVP influence (eq. 12).

:func:`ihvp` applies ``H^-1``, ``H`` the Hessian of eq. (2) at the trained parameters
(``sum_i grad^2 l(x_i) + lam I``), to one or more vectors and returns an :class:`IHVPResult`
whose residual ``||H x - v|| / ||v||`` is always measured with exact Hessian-vector products
(:func:`hvp`, forward over reverse). Four methods, tested against each other:

1. ``"dense"``: :func:`hessian_dense` (``jax.hessian`` of eq. 2) and a dense solve (tiny nets;
   the ground truth);
2. ``"woodbury"``: ``H = J^T J + lam I``, exact for the two-layer ReLU net with fixed readout
   (the second derivative of ``f`` is 0 almost everywhere), applied through the ``n x n``
   empirical NTK: ``H^-1 v = (v - J^T (K + lam I)^-1 J v) / lam``
   (:func:`ntk_influence.nets.woodbury_core`). For other nets this is the Gauss-Newton Hessian,
   and the result says so;
3. ``"cg"``: conjugate gradients on matrix-free Hessian-vector products, exact for any model
   (run through directions of non-positive curvature: the exact Hessian of a deep net can be
   indefinite at its trained weights);
4. ``"lissa"``: Koh & Liang's stochastic recursion
   ``h_j = v + (1 - damping) h_{j-1} - H_batch h_{j-1} / scale`` with the estimate ``h / scale``,
   which converges to ``(H + damping * scale I)^-1 v`` when ``scale > lambda_max(H) / 2``.

:func:`ihvp_influence` gives eq. (12), ``grad l(x_te)^T H^-1 grad l(x_i)`` with
``l = 1/2 (f - y)^2``, i.e. ``r_te r_i J_te H^-1 J_i^T`` (``r = f - y``), as an
:class:`IHVPInfluence`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import precision
from .._validate import check_indices, check_lam, check_whole
from ..errors import InputError, MemoryPlanError
from ..nets import FunctionalNet, entk, regularised_loss, woodbury_core
from ..training import blas_single_thread, check_xy, estimate_lambda_max, objective

IHVP_METHODS = ("dense", "woodbury", "cg", "lissa")


DENSE_MAX_PARAMS = 6000


@dataclasses.dataclass(frozen=True)
class IHVPResult:
    """``H^-1 v`` for one or more vectors, and how the solve ended.

    Attributes:
      value: ``(P,)`` or ``(k, P)`` the products.
      method: ``dense``, ``woodbury``, ``cg`` or ``lissa``.
      hessian: ``"exact"`` or ``"gauss-newton"`` (Woodbury on a net other than eq. 1).
      iterations: CG iterations / LiSSA depth x repeats (0 for direct methods).
      residual: largest ``||H x - v|| / ||v||``, measured with exact Hessian-vector products.
      converged: whether the residual met the tolerance (always True for direct methods).
      seconds: wall time.
      settings: the method's settings.
    """

    value: jax.Array
    method: str
    hessian: str
    iterations: int
    residual: float
    converged: bool
    seconds: float
    settings: dict[str, Any]


def _in_net_precision(fn: Any) -> Any:
    """Run ``fn(net, ...)`` in the net's precision, whatever JAX's global x64 flag."""

    @functools.wraps(fn)
    def wrapped(net: FunctionalNet, *args: Any, **kwargs: Any) -> Any:
        with precision(net.dtype):
            return fn(net, *args, **kwargs)

    return wrapped


def _loss_fn(net: FunctionalNet, x: jax.Array, y: jax.Array, lam: float) -> Any:
    return lambda t: objective(net, t, x, y, lam)


@_in_net_precision
def hessian_dense(net: FunctionalNet, theta: jax.Array, x_train: Any, y_train: Any,
                  lam: float) -> jax.Array:
    """The dense Hessian of eq. (2) from ``jax.hessian`` (tiny nets only).

    Args:
      net: the network.
      theta: flat parameters.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      lam: the ridge.

    Returns:
      ``(P, P)`` Hessian.
    """
    if net.n_params > DENSE_MAX_PARAMS:
        raise MemoryPlanError(
            f"the dense Hessian has {net.n_params}^2 entries (P={net.n_params} > "
            f"{DENSE_MAX_PARAMS}); use method='woodbury' or 'cg'.")
    x, y = check_xy(net, x_train, y_train, "train")
    return jax.jit(jax.hessian(_loss_fn(net, x, y, check_lam(lam))))(theta)


def hvp(net: FunctionalNet, theta: jax.Array, x: jax.Array, y: jax.Array, lam: float) -> Any:
    """Matrix-free ``v -> H v`` for eq. (2), forward-over-reverse.

    Args:
      net: the network.
      theta: flat parameters.
      x: ``(n, d)`` training inputs (device array).
      y: ``(n,)`` labels.
      lam: the ridge.

    Returns:
      A function of ``v`` (``(P,)``).
    """
    grad = jax.grad(_loss_fn(net, x, y, lam))
    return lambda v: jax.jvp(grad, (theta,), (v,))[1]


def _as_vectors(net: FunctionalNet, v: Any) -> tuple[jax.Array, bool]:
    arr = jnp.asarray(v, net.dtype)
    single = arr.ndim == 1
    arr = arr[None] if single else arr
    if arr.ndim != 2 or arr.shape[1] != net.n_params:
        raise InputError(f"v must be (P,) or (k, P) with P={net.n_params}, got {np.shape(v)}.")
    return arr, single


def _residual(hv: Any, x: jax.Array, v: jax.Array) -> float:
    r = jax.vmap(hv)(x) - v
    return float(jnp.max(jnp.linalg.norm(r, axis=1) / jnp.linalg.norm(v, axis=1)))


def _cg(hv: Any, b: jax.Array, tol: float, maxiter: int) -> tuple[jax.Array, jax.Array]:
    """Plain conjugate gradients on ``H x = b`` from 0: ``(x, iterations)``.

    Unlike :func:`ntk_influence.nets.cg_solve` it does not stop at a direction of non-positive
    curvature: away from the two-layer net the exact Hessian of eq. (2) can be indefinite at the
    trained weights, and CG still solves the (nonsingular) system there.
    """
    bnorm = jnp.linalg.norm(b)

    def cond(c: tuple[Any, ...]) -> jax.Array:
        _, r, _, rs, k = c
        return (jnp.sqrt(rs) > tol * bnorm) & (k < maxiter)

    def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
        x, r, p, rs, k = c
        hp = hv(p)
        a = rs / jnp.dot(p, hp)
        x, r = x + a * p, r - a * hp
        rs_new = jnp.dot(r, r)
        return x, r, r + (rs_new / rs) * p, rs_new, k + 1

    x, _, _, _, k = jax.lax.while_loop(
        cond, body, (jnp.zeros_like(b), b, b, jnp.dot(b, b), jnp.asarray(0)))
    return x, k


def _lissa(hv_batch: Any, v: jax.Array, key: jax.Array, n: int, batch: int, depth: int,
           damping: float, scale: float) -> jax.Array:
    def step(h: jax.Array, k: jax.Array) -> tuple[jax.Array, None]:
        idx = jax.random.choice(k, n, (batch,), replace=False)
        return v + (1.0 - damping) * h - hv_batch(idx, h) / scale, None

    h, _ = jax.lax.scan(step, v, jax.random.split(key, depth))
    return h / scale


@_in_net_precision
def ihvp(net: FunctionalNet, theta: jax.Array, x_train: Any, y_train: Any, v: Any,
         lam: float = 0.1, *, method: str = "woodbury", tol: float = 1e-10,
         maxiter: int | None = None, depth: int = 5000, scale: float | None = None,
         damping: float = 0.0, repeats: int = 1, batch_size: int | None = None,
         seed: int = 0) -> IHVPResult:
    """``H^-1 v`` for the Hessian of eq. (2) at ``theta`` (used by eq. 12).

    Args:
      net: the network.
      theta: flat trained parameters.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      v: ``(P,)`` or ``(k, P)`` vectors.
      lam: the ridge ``> 0`` (the Hessian is singular at 0 for ``P > n``).
      method: ``"dense"``, ``"woodbury"``, ``"cg"`` or ``"lissa"``.
      tol: CG relative residual tolerance; LiSSA's ``converged`` uses ``max(tol, 1e-3)``.
      maxiter: CG iteration cap (default ``P``).
      depth: LiSSA recursion depth.
      scale: LiSSA scale (default ``1.05 * lambda_max(H)``, which makes the recursion contract).
      damping: LiSSA damping (0 is unbiased; ``> 0`` estimates ``(H + damping scale I)^-1 v``).
      repeats: LiSSA independent repeats, averaged.
      batch_size: LiSSA points per Hessian sample (default all: deterministic).
      seed: LiSSA sampling seed.

    Returns:
      :class:`IHVPResult`.
    """
    lam = check_lam(lam)
    if lam <= 0:
        raise InputError("lam must be > 0 for the IHVP: with P > n the Hessian J^T J is "
                         "singular at lam = 0.")
    if method not in IHVP_METHODS:
        raise InputError(f"method must be one of {IHVP_METHODS}, got {method!r}.")
    x, y = check_xy(net, x_train, y_train, "train")
    vs, single = _as_vectors(net, v)
    with blas_single_thread():
        return _ihvp(net, theta, x, y, vs, single, lam, method, tol, maxiter, depth, scale,
                     damping, repeats, batch_size, seed)


def _ihvp(net: FunctionalNet, theta: jax.Array, x: jax.Array, y: jax.Array, vs: jax.Array,
          single: bool, lam: float, method: str, tol: float, maxiter: int | None, depth: int,
          scale: float | None, damping: float, repeats: int, batch_size: int | None,
          seed: int) -> IHVPResult:
    n = x.shape[0]
    hv = hvp(net, theta, x, y, lam)
    t0 = time.perf_counter()
    hessian, iters, conv = "exact", 0, True
    settings: dict[str, Any] = {}
    if method == "dense":
        h = hessian_dense(net, theta, x, y, lam)
        out = jnp.linalg.solve(h, vs.T).T
    elif method == "woodbury":
        hessian = "exact" if net.exact_gauss_newton else "gauss-newton"
        kmat = entk(net, x, theta=theta)
        _, vjp = jax.vjp(lambda t: net.apply(t, x), theta)
        jv = jax.vmap(lambda u: jax.jvp(lambda t: net.apply(t, x), (theta,), (u,))[1])(vs)
        z = woodbury_core(kmat, lam)(jv.T).T  # (k, n): (K + lam I)^-1 J v
        out = (vs - jax.vmap(lambda u: vjp(u)[0])(z)) / lam
    elif method == "cg":
        mi = net.n_params if maxiter is None else check_whole(maxiter, "maxiter")
        settings = {"tol": tol, "maxiter": mi}
        out, ks = jax.jit(jax.vmap(lambda b: _cg(hv, b, tol, mi)))(vs)
        iters = int(jnp.max(ks))
    else:
        b = n if batch_size is None else check_whole(batch_size, "batch_size")
        if b > n:
            raise InputError(f"batch_size must be in [1, {n}], got {batch_size}.")
        depth, repeats = check_whole(depth, "depth"), check_whole(repeats, "repeats")
        if scale is None:
            scale = 1.05 * (estimate_lambda_max(net, theta, x) + lam)
        weights = jnp.full((b,), n / b, x.dtype)  # each sampled point stands for n / b points

        def hv_batch(idx: jax.Array, u: jax.Array) -> jax.Array:
            xb, yb = x[idx], y[idx]
            g = jax.grad(lambda t: regularised_loss(net.apply(t, xb) - yb, t - net.theta0, lam,
                                                    weights))
            return jax.jvp(g, (theta,), (u,))[1]

        keys = jax.random.split(jax.random.PRNGKey(seed), repeats)
        run = jax.jit(jax.vmap(lambda vv: jnp.mean(jax.vmap(
            lambda kk: _lissa(hv_batch, vv, kk, n, b, depth, damping, float(scale)))(keys),
            axis=0)))
        out = run(vs)
        iters = depth * repeats
        settings = {"depth": depth, "scale": float(scale), "damping": float(damping),
                    "repeats": repeats, "batch_size": b, "seed": seed}
    out = jax.block_until_ready(out)
    secs = time.perf_counter() - t0
    res = _residual(hv, out, vs)
    if method == "cg":
        conv = res <= 10 * tol or res <= 1e-8
    elif method == "lissa":
        conv = res <= max(tol, 1e-3)
    return IHVPResult(out[0] if single else out, method, hessian, iters, res, bool(conv), secs,
                      settings)


@dataclasses.dataclass(frozen=True)
class IHVPInfluence:
    """The classic IHVP influence (eq. 12) of training points on test losses.

    Attributes:
      influence: ``(len(train_index), n_test)`` ``grad l(te)^T H^-1 grad l(i)``.
      train_index: the training points.
      f_train: ``(n_train,)`` predictions of the trained net.
      f_test: ``(n_test,)`` its test predictions.
      solve: the :class:`IHVPResult` of ``H^-1 grad l(te)`` (vectors dropped for large P).
    """

    influence: np.ndarray
    train_index: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray
    solve: IHVPResult


@_in_net_precision
def ihvp_influence(net: FunctionalNet, theta: jax.Array, x_train: Any, y_train: Any, x_test: Any,
                   y_test: Any, lam: float = 0.1, *, train_index: Any | None = None,
                   method: str = "woodbury", **kwargs: Any) -> IHVPInfluence:
    """Eq. (12): ``I_hat(x_i, x_te) = grad l(x_te)^T H^-1 grad l(x_i)`` on the trained net.

    With ``l = 1/2 (f - y)^2``, ``grad l(x) = (f(x) - y) J(x)``; one ``H^-1`` solve per test
    point, then one Jacobian product gives every training point.

    Args:
      net: the network.
      theta: flat trained parameters.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      lam: the ridge.
      train_index: training points to report (default all).
      method: one of ``IHVP_METHODS``.
      **kwargs: options of :func:`ihvp` (tol, depth, scale, damping...).

    Returns:
      :class:`IHVPInfluence`.
    """
    x, y = check_xy(net, x_train, y_train, "train")
    xt, yt = check_xy(net, x_test, y_test, "test")
    n = x.shape[0]
    idx = np.arange(n) if train_index is None else check_indices(train_index, n, "train_index")
    f_tr, vjp_te = net.apply(theta, x), jax.vjp(lambda t: net.apply(t, xt), theta)[1]
    f_te = net.apply(theta, xt)
    r_tr, r_te = f_tr - y, f_te - yt
    grads_te = jax.vmap(lambda e: vjp_te(e)[0])(jnp.diag(r_te))  # (t, P)
    sol = ihvp(net, theta, x, y, grads_te, lam, method=method, **kwargs)
    z = sol.value if sol.value.ndim == 2 else sol.value[None]
    jz = jax.vmap(lambda u: jax.jvp(lambda t: net.apply(t, x), (theta,), (u,))[1])(z)  # (t, n)
    infl = np.asarray(jz.T * r_tr[:, None])[idx]
    light = dataclasses.replace(sol, value=jnp.zeros((0,), net.dtype))
    return IHVPInfluence(infl, idx, np.asarray(f_tr), np.asarray(f_te), light)
