"""Gauss-Newton steps for eq. (2), plugged into the one solver loop of :mod:`ntk_influence.train`.

A step is a :class:`GNStep`: three pure functions of traced arrays that the loop calls,

- ``start(theta)``: loss, predictions, carried data (``aux``) and gradient norm at the start;
- ``direction(theta, aux, f_all, loss)``: the damped Gauss-Newton direction ``p`` solving
  ``(J^T D J + lam I) p = -grad L``, its slope ``grad L . p``, a cheap ``trial(t)`` loss for the
  line search, and ``advance(t, trial_loss)`` giving the next ``(theta, aux, f_all, loss)``;
- ``finish(theta, aux, f_all, loss)``: final predictions, loss and gradient norm.

Two step functions exist:

- :func:`linearized_step`, any net, given its :class:`Linearization` (outputs, eNTK, ``J v``
  and ``J^T u``): the ``n x n`` Woodbury solve
  ``p = -(g - J^T D^1/2 (D^1/2 K D^1/2 + lam I)^-1 D^1/2 J g) / lam`` with one ``J v`` and one
  ``J^T u`` per step. :func:`autodiff_step` is it with ``jax.linearize`` (any net); the deep
  nets of :mod:`ntk_influence.deep` plug in products from their layer taps;
- :func:`two_layer_step`, the net of eq. (1), on pre-activations ``Z = X W^T`` (``aux``): one
  ``n^2 m`` pattern Gram and two ``n m d`` products per step. ``J dtheta = f - J(W) W(0)`` by
  positive homogeneity, ``J g = K D r + lam J dtheta``, so the gradient is never formed inside the
  loop; ``Z_p = X P^T`` is formed once per step, every line-search trial is ``relu(Z + t Z_p)``
  (``O(n m)``) and the accepted ``Z`` is carried. Same iterates as the autodiff step to rounding.

A Flax model supplies its own step by defining ``gauss_newton_step(net, problem) -> GNStep``
(:class:`~ntk_influence.nets.TwoLayerReLU` does); :func:`~ntk_influence.nets.functional` records
it on the :class:`~ntk_influence.nets.FunctionalNet`, and nets without one use the autodiff step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from .empirical import ntk_gram, pattern_gram

if TYPE_CHECKING:
    from .nets import FunctionalNet


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


class SolveOut(NamedTuple):
    """Raw output of one jit-compiled solve (fields gain a leading axis when vmapped)."""

    theta: jax.Array
    f_all: jax.Array
    loss: jax.Array
    grad_norm: jax.Array
    grad_norm0: jax.Array
    f_change: jax.Array
    f_change_test: jax.Array
    iterations: jax.Array
    converged: jax.Array
    diverged: jax.Array
    stalled: jax.Array
    evaluations: jax.Array
    final_step: jax.Array


class Tracker(NamedTuple):
    """The function-space stopping rule's state: a ring buffer of the last ``k + 1`` predictions.

    Attributes:
      hist: ``(k + 1, n + t)`` predictions of the last steps.
      it: steps taken.
      change: largest change of any prediction over the last ``k`` steps (inf before ``k``).
      change_test: the same over the test rows only.
    """

    hist: jax.Array
    it: jax.Array
    change: jax.Array
    change_test: jax.Array

    @staticmethod
    def start(f0: jax.Array, k: int) -> Tracker:
        """A tracker holding the starting predictions ``f0``."""
        inf = jnp.asarray(jnp.inf, f0.dtype)
        return Tracker(jnp.zeros((k + 1, *f0.shape), f0.dtype).at[0].set(f0), jnp.asarray(0),
                       inf, inf)

    def record(self, new_f: jax.Array, k: int, n: int) -> Tracker:
        """Record ``new_f`` (one more step); ``n`` training rows come first."""
        it2 = self.it + 1
        hist2 = self.hist.at[it2 % (k + 1)].set(new_f)
        diff = jnp.abs(new_f - hist2[(it2 - k) % (k + 1)])
        ch = jnp.where(it2 >= k, jnp.max(diff), jnp.inf)
        ch_te = jnp.where(it2 >= k, jnp.max(diff[n:], initial=0.0), jnp.inf)
        return Tracker(hist2, it2, ch, ch_te)


class GNState(NamedTuple):
    """State of the Gauss-Newton loop.

    Attributes:
      theta: current parameters.
      aux: what the step carries (the gradient, or the two-layer pre-activations).
      loss: current loss.
      f_all: current predictions on the train and test rows.
      track: the stopping rule's :class:`Tracker`.
      diverged: the loss became NaN/Inf or exploded.
      stalled: the line search found no decrease.
      t_prev: the last accepted step length.
      evaluations: loss evaluations (line-search trials).
    """

    theta: jax.Array
    aux: Any
    loss: jax.Array
    f_all: jax.Array
    track: Tracker
    diverged: jax.Array
    stalled: jax.Array
    t_prev: jax.Array
    evaluations: jax.Array


def exploded(loss: jax.Array, loss0: jax.Array) -> jax.Array:
    """Whether a loss is NaN/Inf or exploded past ``1e8 (loss0 + 1)``: the divergence test."""
    return ~jnp.isfinite(loss) | (loss > 1e8 * (loss0 + 1.0))


def gauss_newton_solver(net: FunctionalNet, s: Any, n: int) -> Any:
    """The damped Gauss-Newton loop: the net's step, Armijo backtracking, stopping rule.

    Each step asks the net's :class:`GNStep` (``net.gn_step``, else :func:`autodiff_step`) for
    a direction, backtracks from ``min(1, 4 t_prev)`` by halving until the Armijo condition holds
    (at most 40 trials; no decrease stops the run as stalled), and records the predictions in
    the function-space stopping rule.

    Args:
      net: the network.
      s: resolved :class:`~ntk_influence.train.SolverSettings` (method ``"gn"``).
      n: number of training rows.

    Returns:
      ``solve(theta0, theta_init, x_all, y, weights, lam, eta, tol=None) -> SolveOut`` (see
      :func:`ntk_influence.train.make_solver`; ``eta`` is unused).
    """
    k = s.window
    factory = net.gn_step or autodiff_step

    def solve(theta0: jax.Array, theta_init: jax.Array, x_all: jax.Array, y: jax.Array,
              weights: jax.Array, lam: jax.Array, eta: jax.Array,
              tol: jax.Array | None = None) -> SolveOut:
        f_tol = s.f_tol if tol is None else tol
        step = factory(net, Problem(theta0, x_all, y, weights, lam, n, s.newton_cg))
        st = step.start(theta_init)
        no = jnp.asarray(False)
        init = GNState(theta_init, st.aux, st.loss, st.f_all, Tracker.start(st.f_all, k), no, no,
                       jnp.asarray(1.0, theta0.dtype), jnp.asarray(0))

        def cond(c: GNState) -> jax.Array:
            return ((c.track.it < s.max_steps) & (c.track.change > f_tol) & ~c.diverged
                    & ~c.stalled)

        def body(c: GNState) -> GNState:
            d = step.direction(c.theta, c.aux, c.f_all, c.loss)
            slack = 1e-13 * jnp.abs(c.loss)

            def ls_cond(lc: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
                t, new_loss, j = lc
                return (new_loss > c.loss + s.armijo * t * d.slope + slack) & (j < 40)

            def ls_body(lc: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Any, ...]:
                t = 0.5 * lc[0]
                return t, d.trial(t), lc[2] + 1

            t_try = jnp.minimum(1.0, 4.0 * c.t_prev)  # start near the last accepted step
            t, trial_loss, j = jax.lax.while_loop(ls_cond, ls_body,
                                                  (t_try, d.trial(t_try), jnp.asarray(0)))
            ok = j < 40
            theta, aux, f_all, loss = d.advance(t, trial_loss)
            track = c.track.record(f_all, k, n)
            new = GNState(theta, aux, loss, f_all, track, c.diverged | (ok & exploded(
                loss, st.loss)), c.stalled | ~ok, jnp.where(ok, t, c.t_prev),
                c.evaluations + j + 1)
            keep = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
            return new._replace(theta=keep(new.theta, c.theta),
                                aux=jax.tree_util.tree_map(keep, new.aux, c.aux),
                                loss=keep(new.loss, c.loss), f_all=keep(new.f_all, c.f_all),
                                track=jax.tree_util.tree_map(keep, new.track, c.track))

        c = jax.lax.while_loop(cond, body, init)
        f_all, loss, grad_norm = step.finish(c.theta, c.aux, c.f_all, c.loss)
        return SolveOut(c.theta, f_all, loss, grad_norm, st.grad_norm, c.track.change,
                        c.track.change_test, c.track.it, (c.track.change <= f_tol) & ~c.stalled,
                        c.diverged, c.stalled, c.evaluations, c.t_prev)

    return solve


NEWTON_CG_RTOL = 1e-2
"""The inner solve of a truncated Newton step stops when its preconditioned residual falls
below this fraction of the first."""


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
      :class:`Linearization` whose eNTK is :func:`~ntk_influence.empirical.ntk_gram` (the
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
    by :data:`NEWTON_CG_RTOL`, or at a direction of non-positive curvature (truncated Newton).
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
        r = f_tr - pb.y
        d = theta - pb.theta0
        return 0.5 * jnp.sum(w * r * r) + 0.5 * lam * jnp.sum(d * d)

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
        kw = sw[:, None] * kmat * sw[None, :] + lam * jnp.eye(n, dtype=theta.dtype)
        chol = jax.scipy.linalg.cho_factor(kw, lower=True)
        u = sw * jax.scipy.linalg.cho_solve(chol, sw * (kmat @ c + lam * j_dtheta))
        p = -jtv(c - u) / lam - dtheta
        slope = jnp.dot(c, -(kmat @ (c - u)) / lam - j_dtheta) + lam * jnp.dot(dtheta, p)
        if pb.newton_cg > 0:
            def gn_solve(v: jax.Array) -> jax.Array:  # (J^T D J + lam I)^-1 v by Woodbury
                uv = sw * jax.scipy.linalg.cho_solve(chol, sw * jv(v))
                return (v - jtv(uv)) / lam

            g = jtv(c) + lam * dtheta
            p = _newton_cg(jax.grad(train_loss), theta, g, p, gn_solve, pb.newton_cg)
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
               p_gn: jax.Array, precond: Callable[[jax.Array], jax.Array], iters: int
               ) -> jax.Array:
    """Preconditioned CG on ``H p = -g`` from ``p = 0``, truncated (see :func:`autodiff_step`).

    Args:
      grad_fn: the gradient of eq. (2); its forward derivative gives ``H v``.
      theta: where the Hessian is taken.
      g: the gradient there.
      p_gn: ``M^-1 (-g)``, the first preconditioned residual (the Gauss-Newton direction).
      precond: ``v -> M^-1 v``.
      iters: the most iterations.

    Returns:
      The direction ``p`` (``p_gn`` when the first curvature is not positive).
    """
    def hvp(v: jax.Array) -> jax.Array:
        return jax.jvp(grad_fn, (theta,), (v,))[1]

    rz0 = -jnp.dot(g, p_gn)  # r0 . M^-1 r0 with r0 = -g
    zero = jnp.zeros_like(g)

    def cond(c: tuple[Any, ...]) -> jax.Array:
        i, _, _, _, rz, done = c
        return (i < iters) & ~done & (rz > NEWTON_CG_RTOL ** 2 * rz0)

    def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
        i, x, r, d, rz, _ = c
        hd = hvp(d)
        curv = jnp.dot(d, hd)
        bad = ~(curv > 0)
        a = jnp.where(bad, 0.0, rz / jnp.where(bad, 1.0, curv))
        x2, r2 = x + a * d, r - a * hd
        z2 = precond(r2)
        rz2 = jnp.dot(r2, z2)
        d2 = z2 + (rz2 / rz) * d
        return (i + 1, jnp.where(bad, x, x2), r2, d2, jnp.where(bad, rz, rz2), bad)

    init = (jnp.asarray(0), zero, -g, p_gn, rz0, ~(rz0 > 0))
    _, x, _, _, _, _ = jax.lax.while_loop(cond, body, init)
    return jnp.where(jnp.any(x != 0), x, p_gn)


def two_layer_step(net: FunctionalNet, pb: Problem) -> GNStep:
    """The damped Gauss-Newton step of the two-layer net of eq. (1), on pre-activations.

    The exact Newton step of eq. (2) for this net (``H = J^T J + lam I``, DESIGN item 4).

    Args:
      net: a two-layer :class:`~ntk_influence.nets.FunctionalNet`.
      pb: the training problem.

    Returns:
      :class:`GNStep` whose ``aux`` is ``Z = X_all W^T``; ``finish`` recomputes the predictions,
      loss and gradient from ``theta`` (``Z`` was updated incrementally).
    """
    n, lam, w = pb.n, pb.lam, pb.weights
    m = net.width
    symmetric = bool(net.description["symmetric"])
    half = m // 2
    dt = pb.theta0.dtype
    av = net.state["a"][...].astype(dt)
    rm = 1.0 / jnp.sqrt(jnp.asarray(m, dt))
    x_tr = pb.x_all[:n]
    sw = jnp.sqrt(w)
    z0_tr = x_tr @ pb.theta0.reshape(m, -1).T  # J(W) W(0) needs the initial pre-activations
    gram_x = x_tr @ x_tr.T
    eye = jnp.eye(n, dtype=dt)

    def f_of(z: jax.Array) -> jax.Array:
        h = jax.nn.relu(z)
        out = h[:, :half] @ av[:half] + h[:, half:] @ av[half:] if symmetric else h @ av
        return out / jnp.sqrt(jnp.asarray(m, z.dtype))

    def grad_of(theta: jax.Array) -> jax.Array:
        f_all, vjp = jax.vjp(lambda t: net.apply(t, pb.x_all), theta)
        cot = jnp.zeros_like(f_all).at[:n].set(w * (f_all[:n] - pb.y))
        return vjp(cot)[0] + lam * (theta - pb.theta0)

    def jt(sm: jax.Array, v: jax.Array) -> jax.Array:  # J^T v, flat (m d,)
        return ((av * rm)[:, None] * ((sm * v[:, None]).T @ x_tr)).reshape(-1)

    def loss_of(f_tr: jax.Array, dsq: jax.Array) -> jax.Array:
        r = f_tr - pb.y
        return 0.5 * jnp.sum(w * r * r) + 0.5 * lam * dsq

    def start(theta: jax.Array) -> Start:
        z = pb.x_all @ theta.reshape(m, -1).T
        f = f_of(z)
        d = theta - pb.theta0
        return Start(loss_of(f[:n], jnp.sum(d * d)), f, z, jnp.linalg.norm(grad_of(theta)))

    def direction(theta: jax.Array, z: jax.Array, f: jax.Array, loss: jax.Array) -> Direction:
        z_tr = z[:n]
        sm = (z_tr > 0).astype(dt)
        dtheta = theta - pb.theta0
        dr = w * (f[:n] - pb.y)
        kmat = gram_x * pattern_gram(sm, sm) * (rm * rm)
        j_dtheta = f[:n] - ((z0_tr * sm) @ av) * rm
        jg = kmat @ dr + lam * j_dtheta
        kw = sw[:, None] * kmat * sw[None, :] + lam * eye
        chol = jax.scipy.linalg.cho_factor(kw, lower=True)
        u = sw * jax.scipy.linalg.cho_solve(chol, sw * jg)
        p = -jt(sm, dr - u) / lam - dtheta
        z_p = pb.x_all @ p.reshape(m, -1).T
        j_p = ((z_p[:n] * sm) @ av) * rm
        dp, pp, dd = jnp.dot(dtheta, p), jnp.dot(p, p), jnp.dot(dtheta, dtheta)

        def trial(t: jax.Array) -> jax.Array:
            return loss_of(f_of(z_tr + t * z_p[:n]), dd + 2 * t * dp + t * t * pp)

        def advance(t: jax.Array, trial_loss: jax.Array
                    ) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
            new_z = z + t * z_p
            return theta + t * p, new_z, f_of(new_z), trial_loss

        return Direction(jnp.dot(dr, j_p) + lam * dp, trial, advance)

    def finish(theta: jax.Array, z: jax.Array, f: jax.Array, loss: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
        f_all = net.apply(theta, pb.x_all)
        d = theta - pb.theta0
        return f_all, loss_of(f_all[:n], jnp.sum(d * d)), jnp.linalg.norm(grad_of(theta))

    return GNStep(start, direction, finish)
