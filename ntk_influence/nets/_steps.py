"""Gauss-Newton steps for eq. (2), and the one copy of its objective, Woodbury solve and CG.

The solver loop (:mod:`ntk_influence.training`) calls a :class:`GNStep`: three pure functions
of traced arrays,

- ``start(theta)``: loss, predictions, carried data (``aux``) and gradient norm at the start;
- ``direction(theta, aux, f_all, loss)``: the damped Gauss-Newton direction ``p`` solving
  ``(J^T D J + lam I) p = -grad L``, its slope ``grad L . p``, a cheap ``trial(t)`` loss for the
  line search, and ``advance(t, trial_loss)`` giving the next ``(theta, aux, f_all, loss)``;
- ``finish(theta, aux, f_all, loss)``: final predictions, loss and gradient norm.

:func:`linearized_step` builds one for any net from its :class:`Linearization` (outputs, eNTK,
``J v`` and ``J^T u``): the ``n x n`` Woodbury solve
``p = -(g - J^T D^1/2 (D^1/2 K D^1/2 + lam I)^-1 D^1/2 J g) / lam`` with one ``J v`` and one
``J^T u`` per step. :func:`autodiff_step` is it with ``jax.linearize`` (any net); the deep nets
(:class:`~ntk_influence.nets.DeepReLU`) plug in products from their layer taps, and the
two-layer net of eq. (1) has its own step (:func:`ntk_influence.nets._two_layer.two_layer_step`).
A Flax model supplies its step through the ``gauss_newton_step`` hook
(:class:`~ntk_influence.nets.GaussNewtonStepHook`); nets without one use the autodiff step.

The building blocks every solver, step and estimator shares live here once:
:func:`regularised_loss` (eq. 2), :func:`woodbury_core` (the ``n x n`` core of
``(J^T D J + lam I)^-1``) and :func:`cg_solve` (preconditioned, truncated conjugate gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from ._grams import ntk_gram

if TYPE_CHECKING:
    from ._functional import FunctionalNet


class Problem(NamedTuple):
    """One weighted training problem of eq. (2), as seen inside the solver.

    Attributes:
      theta0: ``(P,)`` the regularisation centre ``W(0)``.
      x_all: ``(n + t, d)`` inputs, the ``n`` training rows first.
      y: ``(n,)`` labels.
      weights: ``(n,)`` per-point weights (``0`` removes a point).
      lam: the ridge.
      n: number of training rows (static).
      newton_cg: conjugate-gradient iterations on the exact Hessian per step (static; ``0``:
        the plain Gauss-Newton direction). Steps that are exact Newton steps ignore it.
    """

    theta0: jax.Array
    x_all: jax.Array
    y: jax.Array
    weights: jax.Array
    lam: jax.Array
    n: int
    newton_cg: int = 0


class Start(NamedTuple):
    """What a step knows at the starting point: loss, predictions, carried data, gradient norm."""

    loss: jax.Array
    f_all: jax.Array
    aux: Any
    grad_norm: jax.Array


class Direction(NamedTuple):
    """A Gauss-Newton direction with its line-search helpers.

    Attributes:
      slope: ``grad L . p`` (negative for a descent direction).
      trial: ``t -> L(theta + t p)`` on the training points.
      advance: ``(t, trial_loss) -> (theta, aux, f_all, loss)`` at ``theta + t p``.
    """

    slope: jax.Array
    trial: Callable[[jax.Array], jax.Array]
    advance: Callable[[jax.Array, jax.Array], tuple[jax.Array, Any, jax.Array, jax.Array]]


class GNStep(NamedTuple):
    """A Gauss-Newton step for the solver loop (see the module docstring)."""

    start: Callable[[jax.Array], Start]
    direction: Callable[[jax.Array, Any, jax.Array, jax.Array], Direction]
    finish: Callable[[jax.Array, Any, jax.Array, jax.Array],
                     tuple[jax.Array, jax.Array, jax.Array]]


StepFactory = Callable[["FunctionalNet", Problem], GNStep]


NEWTON_CG_RTOL = 1e-2


"""The largest forcing term: the inner solve of a truncated Newton step stops when its
preconditioned residual falls below this fraction of the first (or below the ridge-relative
gradient, when that is smaller)."""


class Linearization(NamedTuple):
    """How a Gauss-Newton step sees the net: outputs, the eNTK and the Jacobian's products.

    Attributes:
      at: ``theta -> (f_all, aux)``: predictions on all rows and what the step carries to the
        next call (``()``, or data that makes the products below cheap, e.g. layer taps).
      gram: ``(theta, aux) -> K``, the ``n x n`` empirical NTK on the training rows.
      linear: ``(theta, aux) -> (jv, jtv)``: ``v -> J v`` and ``u -> J^T u`` on the training rows.
    """

    at: Callable[[jax.Array], tuple[jax.Array, Any]]
    gram: Callable[[jax.Array, Any], jax.Array]
    linear: Callable[[jax.Array, Any], tuple[Callable[[jax.Array], jax.Array],
                                             Callable[[jax.Array], jax.Array]]]


def autodiff_linearization(net: FunctionalNet, pb: Problem) -> Linearization:
    """The :class:`Linearization` of any net: ``jax.linearize`` and its transpose, ``aux = ()``.

    Args:
      net: the network.
      pb: the training problem.

    Returns:
      :class:`Linearization` whose eNTK is :func:`~ntk_influence.nets.ntk_gram` (the
      model's structured hook, else the Jacobian).
    """
    x_tr = pb.x_all[:pb.n]

    def linear(theta: jax.Array, _: Any) -> tuple[Callable[..., jax.Array], ...]:
        _, jv = jax.linearize(lambda t: net.apply(t, x_tr), theta)
        transpose = jax.linear_transpose(jv, theta)
        return jv, lambda u: transpose(u)[0]

    return Linearization(lambda theta: (net.apply(theta, pb.x_all), ()),
                         lambda theta, _: ntk_gram(net, theta, x_tr), linear)


def autodiff_step(net: FunctionalNet, pb: Problem) -> GNStep:
    """The damped Gauss-Newton step of any net, from autodiff (:func:`linearized_step`).

    Args:
      net: the network.
      pb: the training problem.

    Returns:
      :class:`GNStep` (``aux = ()``).
    """
    return linearized_step(net, pb, autodiff_linearization(net, pb))


def linearized_step(net: FunctionalNet, pb: Problem, lin: Linearization) -> GNStep:
    """The damped Gauss-Newton step of a net, given its :class:`Linearization`.

    With ``c = D r`` (weighted residuals) and ``dtheta = theta - theta(0)``, the gradient is
    ``g = J^T c + lam dtheta`` and ``J g = K c + lam J dtheta``, so the Woodbury direction
    ``p = -(g - J^T u) / lam`` with ``u = D^1/2 (D^1/2 K D^1/2 + lam I)^-1 D^1/2 J g`` is
    ``p = -J^T (c - u) / lam - dtheta``: one ``J v`` and one ``J^T u`` per step, and the
    gradient is never formed inside the loop. Its slope ``g . p = c . J p + lam dtheta . p``
    uses ``J p = -K (c - u) / lam - J dtheta``. Each line-search trial is one forward pass on
    the training rows; the accepted point's ``lin.at`` gives the next predictions and ``aux``.

    With ``pb.newton_cg > 0`` the direction is refined towards Newton's: preconditioned
    conjugate gradients on ``H p = -g`` with the exact Hessian ``H`` of eq. (2) (Hessian-vector
    products, forward over reverse), preconditioned by the Gauss-Newton matrix
    ``M = J^T D J + lam I`` (its Woodbury inverse, one ``n x n`` factor per step). The first
    iterate is the Gauss-Newton direction scaled by an exact line search on the quadratic model;
    the iteration stops at ``pb.newton_cg`` iterations, when the preconditioned residual falls
    by the forcing term ``min(NEWTON_CG_RTOL, ||g|| / ||lam dtheta||)`` (so the outer steps
    converge quadratically near a stationary point), or at a direction of non-positive
    curvature (truncated Newton).
    Where ``M^-1 H`` is near the identity (wide nets) this is the Gauss-Newton step; where the
    curvature that Gauss-Newton drops (``sum_i r_i d^2 f_i``) matters, Gauss-Newton converges
    only linearly and stops short of the stationary point, while the truncated Newton step
    reaches it. Each inner iteration costs one Hessian-vector product and one Gauss-Newton
    solve (a ``J v`` and a ``J^T u``), so a step costs several Gauss-Newton steps.

    Args:
      net: the network.
      pb: the training problem.
      lin: the net's :class:`Linearization` on ``pb.x_all`` (training rows first).

    Returns:
      :class:`GNStep` carrying ``lin``'s ``aux``.
    """
    n, lam, w = pb.n, pb.lam, pb.weights
    x_tr = pb.x_all[:n]
    sw = jnp.sqrt(w)

    def loss_of(f_tr: jax.Array, theta: jax.Array) -> jax.Array:
        return regularised_loss(f_tr - pb.y, theta - pb.theta0, lam, w)

    def train_loss(theta: jax.Array) -> jax.Array:
        return loss_of(net.apply(theta, x_tr), theta)

    def grad_norm(theta: jax.Array, aux: Any, f: jax.Array) -> jax.Array:
        jtv = lin.linear(theta, aux)[1]
        return jnp.linalg.norm(jtv(w * (f[:n] - pb.y)) + lam * (theta - pb.theta0))

    def start(theta: jax.Array) -> Start:
        f, aux = lin.at(theta)
        return Start(loss_of(f[:n], theta), f, aux, grad_norm(theta, aux, f))

    def direction(theta: jax.Array, aux: Any, f: jax.Array, loss: jax.Array) -> Direction:
        kmat = lin.gram(theta, aux)
        jv, jtv = lin.linear(theta, aux)
        c = w * (f[:n] - pb.y)
        dtheta = theta - pb.theta0
        j_dtheta = jv(dtheta)
        core = woodbury_core(kmat, lam, sw)
        u = core(kmat @ c + lam * j_dtheta)
        p = -jtv(c - u) / lam - dtheta
        slope = jnp.dot(c, -(kmat @ (c - u)) / lam - j_dtheta) + lam * jnp.dot(dtheta, p)
        if pb.newton_cg > 0:
            def gn_solve(v: jax.Array) -> jax.Array:  # (J^T D J + lam I)^-1 v by Woodbury
                return (v - jtv(core(jv(v)))) / lam

            g = jtv(c) + lam * dtheta
            ratio = jnp.linalg.norm(g) / jnp.maximum(jnp.linalg.norm(lam * dtheta),
                                                     jnp.finfo(g.dtype).tiny)
            p = _newton_cg(jax.grad(train_loss), theta, g, p, gn_solve, pb.newton_cg,
                           jnp.minimum(NEWTON_CG_RTOL, ratio))
            slope = jnp.dot(g, p)

        def advance(t: jax.Array, trial_loss: jax.Array
                    ) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
            new = theta + t * p
            new_f, new_aux = lin.at(new)
            return new, new_aux, new_f, trial_loss

        return Direction(slope, lambda t: train_loss(theta + t * p), advance)

    def finish(theta: jax.Array, aux: Any, f: jax.Array, loss: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
        return f, loss, grad_norm(theta, aux, f)

    return GNStep(start, direction, finish)


def _newton_cg(grad_fn: Callable[[jax.Array], jax.Array], theta: jax.Array, g: jax.Array,
               p_gn: jax.Array, precond: Callable[[jax.Array], jax.Array], iters: int,
               rtol: jax.Array) -> jax.Array:
    """Preconditioned CG on ``H p = -g`` from ``p = 0``, truncated (see :func:`linearized_step`).

    Args:
      grad_fn: the gradient of eq. (2); its forward derivative gives ``H v``.
      theta: where the Hessian is taken.
      g: the gradient there.
      p_gn: the Gauss-Newton direction ``M^-1 (-g)``, kept when the first curvature is not
        positive.
      precond: ``v -> M^-1 v``.
      iters: the most iterations.
      rtol: the inner relative tolerance (the forcing term).

    Returns:
      The direction ``p``.
    """
    def hvp(v: jax.Array) -> jax.Array:
        return jax.jvp(grad_fn, (theta,), (v,))[1]

    x, _, _ = cg_solve(hvp, -g, tol=rtol, maxiter=iters, M=precond)
    return jnp.where(jnp.any(x != 0), x, p_gn)


def cg_solve(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, *, tol: Any,
             maxiter: int, M: Callable[[jax.Array], jax.Array] | None = None
             ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Preconditioned conjugate gradients on ``A x = b`` from ``x = 0``: the one CG loop.

    Stops after ``maxiter`` iterations, when the preconditioned residual ``r . M r`` falls to
    ``tol^2`` times its first value (without ``M``: ``||r|| <= tol ||b||``), or at a direction of
    non-positive curvature ``d . A d <= 0``, where the iterate before it is kept (truncated
    Newton; for a positive definite ``A`` this never happens). Pure JAX: traceable under
    ``jit`` and ``vmap``.

    Args:
      matvec: ``v -> A v`` for a symmetric ``A``.
      b: the right-hand side.
      tol: the relative tolerance on the (preconditioned) residual (a float or a traced scalar).
      maxiter: the most iterations.
      M: ``v -> M v``, a symmetric positive definite preconditioner approximating ``A^-1``
        (default: none).

    Returns:
      ``(x, iterations, converged)``: the solution, the iterations taken (a traced integer) and
      whether the tolerance was met (a traced bool).
    """
    precond = (lambda v: v) if M is None else M
    z0 = precond(b)
    rz0 = jnp.dot(b, z0)
    stop = tol * tol * rz0

    def cond(c: tuple[Any, ...]) -> jax.Array:
        i, _, _, _, rz, bad = c
        return (i < maxiter) & ~bad & (rz > stop)

    def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
        i, x, r, d, rz, _ = c
        ad = matvec(d)
        curv = jnp.dot(d, ad)
        bad = ~(curv > 0)
        a = jnp.where(bad, 0.0, rz / jnp.where(bad, 1.0, curv))
        x2, r2 = x + a * d, r - a * ad
        z2 = precond(r2)
        rz2 = jnp.dot(r2, z2)
        d2 = z2 + (rz2 / rz) * d
        return (jnp.where(bad, i, i + 1), jnp.where(bad, x, x2), r2, d2,
                jnp.where(bad, rz, rz2), bad)

    init = (jnp.asarray(0), jnp.zeros_like(b), b, z0, rz0, ~(rz0 > 0))
    i, x, _, _, rz, _ = jax.lax.while_loop(cond, body, init)
    return x, i, rz <= stop


def regularised_loss(residual: jax.Array, dtheta: jax.Array | None, lam: Any,
                     weights: jax.Array | None = None, *,
                     dtheta_sq: jax.Array | None = None) -> jax.Array:
    """The objective of eq. (2) from its parts: ``1/2 sum_i w_i r_i^2 + lam/2 ||dtheta||^2``.

    The one place the regularised loss is written; every solver, step and estimator calls it.

    Args:
      residual: ``(n,)`` residuals ``f(x_i) - y_i``.
      dtheta: parameters minus the regularisation centre, ``theta - theta(0)`` (any shape).
      lam: the ridge ``lam >= 0``.
      weights: ``(n,)`` per-point weights ``w_i`` (``0`` removes a point; default all ones).
      dtheta_sq: ``||dtheta||^2`` when the caller already has it (``dtheta`` is then unused).

    Returns:
      the scalar loss.
    """
    sq = residual * residual if weights is None else weights * residual * residual
    reg = jnp.sum(dtheta * dtheta) if dtheta_sq is None else dtheta_sq
    return 0.5 * jnp.sum(sq) + 0.5 * lam * reg


def woodbury_core(kmat: jax.Array, lam: Any, sqrt_weights: jax.Array | None = None
                  ) -> Callable[[jax.Array], jax.Array]:
    """The ``n x n`` core of the Woodbury identity for ``(J^T D J + lam I)^-1`` (eq. 12's IHVP).

    ``(J^T D J + lam I)^-1 v = (v - J^T S (S K S + lam I)^-1 S J v) / lam`` with ``K = J J^T``
    and ``S = D^1/2``. This factors ``S K S + lam I`` once (Cholesky) and returns
    ``u -> S (S K S + lam I)^-1 S u``; the caller supplies ``J v`` and applies ``J^T``.

    Args:
      kmat: ``(n, n)`` empirical NTK ``J J^T``.
      lam: the ridge ``lam > 0``.
      sqrt_weights: ``(n,)`` square roots of the point weights (default all ones).

    Returns:
      the solve ``u -> S (S K S + lam I)^-1 S u`` for ``u`` of shape ``(n,)`` or ``(n, k)``.
    """
    n = kmat.shape[0]
    sw = jnp.ones((n,), kmat.dtype) if sqrt_weights is None else sqrt_weights
    chol = jax.scipy.linalg.cho_factor(sw[:, None] * kmat * sw[None, :]
                                       + lam * jnp.eye(n, dtype=kmat.dtype), lower=True)

    def solve(u: jax.Array) -> jax.Array:
        s = sw if u.ndim == 1 else sw[:, None]
        return s * jax.scipy.linalg.cho_solve(chol, s * u)

    return solve
