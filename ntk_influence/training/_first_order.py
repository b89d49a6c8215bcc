"""The first-order loops for eq. (2) (GD, annealed GD, minibatch SGD through optax).

``"gd"`` is the faithful gradient-flow discretisation ``theta <- theta - eta grad L`` with
``eta = step_factor / (lambda_max(eNTK) + lam)`` (below the stability limit
``2 / (lambda_max + lam)``), optionally annealed (the step halves whenever the loss rises);
``"sgd"`` the same update with the data term's gradient from a seeded random minibatch of
``batch_size`` points, scaled by ``n / batch_size`` (an unbiased estimate). Both are
``optax.inject_hyperparams(optax.sgd)`` in a jit-compiled ``while_loop`` that vmaps over the
per-point weights, stopped by the function-space rule of :mod:`._gauss_newton` (or, for GD
with ``stop="gradient"``, by its ridge-relative gradient). Also here: the
step size (:func:`gd_step_size`, :func:`estimate_lambda_max`) and the divergence message.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._precision import precision
from ..errors import NotConvergedError
from ..nets import FunctionalNet, ntk_gram, regularised_loss
from ._gauss_newton import SolveOut, Tracker, exploded, ridge_ratio
from ._settings import SolverSettings


class FirstOrderState(NamedTuple):
    """State of the first-order (optax) loop.

    Attributes:
      theta: current parameters.
      opt_state: the optax state (holds the current learning rate).
      loss: current loss (full batch).
      grad: the gradient used for the next update (a minibatch estimate for SGD).
      f_all: current predictions on the train and test rows.
      track: the stopping rule's :class:`Tracker`.
      diverged: the loss became NaN/Inf or exploded.
      stalled: annealed GD shrank its step below ``2^-30 eta`` (stuck on a kink).
      evaluations: loss evaluations (one per step).
    """

    theta: jax.Array
    opt_state: Any
    loss: jax.Array
    grad: jax.Array
    f_all: jax.Array
    track: Tracker
    diverged: jax.Array
    stalled: jax.Array
    evaluations: jax.Array


def first_order_solver(net: FunctionalNet, s: SolverSettings, n: int,
                       test_from: int | None = None) -> Any:
    """The first-order loop: GD, annealed GD or minibatch SGD as optax transformations."""
    k = s.window
    split = n if test_from is None else test_from
    sgd = s.method == "sgd"
    batch = min(int(s.batch_size or 32), n)
    opt = optax.inject_hyperparams(optax.sgd)

    def solve(theta0: jax.Array, theta_init: jax.Array, x_all: jax.Array, y: jax.Array,
              weights: jax.Array, lam: jax.Array, eta: jax.Array,
              tol: jax.Array | None = None) -> SolveOut:
        f_tol = s.f_tol if tol is None else tol
        x_tr = x_all[:n]
        key = jax.random.PRNGKey(s.seed)

        def value_grad(theta: jax.Array, it: jax.Array | None
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
            # Full-batch loss and predictions; the gradient's data term on a minibatch for SGD.
            f_all, vjp = jax.vjp(lambda t: net.apply(t, x_all), theta)
            r = f_all[:n] - y
            dtheta = theta - theta0
            loss = regularised_loss(r, dtheta, lam, weights)
            wr = weights * r
            if it is not None:
                pick = jax.random.choice(jax.random.fold_in(key, it), n, (batch,), replace=False)
                wr = jnp.zeros_like(wr).at[pick].set(wr[pick] * (n / batch))
            cot = jnp.zeros_like(f_all).at[:n].set(wr)
            return loss, vjp(cot)[0] + lam * dtheta, f_all

        def train_loss(theta: jax.Array) -> jax.Array:
            return regularised_loss(net.apply(theta, x_tr) - y, theta - theta0, lam, weights)

        loss0, g0, f0 = value_grad(theta_init, None)
        g_start = value_grad(theta_init, jnp.asarray(0))[1] if sgd else g0
        tx = opt(learning_rate=eta)
        no = jnp.asarray(False)
        init = FirstOrderState(theta_init, tx.init(theta_init), loss0, g_start, f0,
                               Tracker.start(f0, k), no, no, jnp.asarray(0))

        def cond(c: FirstOrderState) -> jax.Array:
            if s.stop == "gradient":  # GD's gradient is the full one (SGD is refused)
                open_ = ridge_ratio(jnp.linalg.norm(c.grad), c.theta, theta0, lam)[0] > s.g_tol
            else:
                open_ = c.track.change > f_tol
            return (c.track.it < s.max_steps) & open_ & ~c.diverged & ~c.stalled

        def body(c: FirstOrderState) -> FirstOrderState:
            updates, opt_state = tx.update(c.grad, c.opt_state, c.theta)
            theta = optax.apply_updates(c.theta, updates)
            lr = opt_state.hyperparams["learning_rate"]
            stalled = c.stalled
            if s.anneal:  # a rise means a ReLU kink was crossed: reject and halve the step
                ok = ~(train_loss(theta) > c.loss + 1e-13 * jnp.abs(c.loss))
                lr = jnp.where(ok, lr, 0.5 * lr)
                opt_state = opt_state._replace(
                    hyperparams={**opt_state.hyperparams, "learning_rate": lr})
                stalled = stalled | (lr < eta * 2.0**-30)  # stuck on a kink: not converged
            else:
                ok = jnp.asarray(True)
            loss, g, f_all = value_grad(theta, c.track.it + 1 if sgd else None)
            track = c.track.record(f_all, k, split)
            keep = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
            return FirstOrderState(
                keep(theta, c.theta), opt_state, keep(loss, c.loss), keep(g, c.grad),
                keep(f_all, c.f_all), jax.tree_util.tree_map(keep, track, c.track),
                c.diverged | (ok & exploded(loss, loss0)), stalled, c.evaluations + 1)

        c = jax.lax.while_loop(cond, body, init)
        grad = value_grad(c.theta, None)[1] if sgd else c.grad
        gnorm = jnp.linalg.norm(grad)
        return SolveOut(c.theta, c.f_all, c.loss, gnorm, jnp.linalg.norm(g0),
                        c.track.change, c.track.change_test, c.track.it,
                        (c.track.change <= f_tol) & ~c.stalled, c.diverged, c.stalled,
                        c.evaluations, c.opt_state.hyperparams["learning_rate"],
                        ridge_ratio(gnorm, c.theta, theta0, lam)[1])

    return solve


def gd_step_size(net: FunctionalNet, theta: jax.Array, x: jax.Array, lam: float,
                 settings: SolverSettings) -> float:
    """The GD step ``eta``: ``settings.step_size`` or ``step_factor / (lambda_max + lam)``.

    Args:
      net: the network.
      theta: parameters where ``lambda_max`` of the eNTK is estimated (the start).
      x: ``(n, d)`` training inputs.
      lam: the ridge.
      settings: the solver settings.

    Returns:
      The step size.
    """
    if settings.step_size is not None:
        return float(settings.step_size)
    return settings.step_factor / (estimate_lambda_max(net, theta, x) + lam)


def divergence_error(eta: float, method: str) -> NotConvergedError:
    """The error raised when training diverged, naming the step size and the fix.

    Args:
      eta: the first-order step size used (NaN for Gauss-Newton).
      method: the solver method.

    Returns:
      :class:`NotConvergedError` to raise.
    """
    if method in ("gd", "sgd"):
        return NotConvergedError(
            f"training diverged (loss became NaN/Inf or exploded) with GD step size {eta:.4g}; "
            f"use a smaller step (step_factor < 1 or step_size < {eta:.4g}), or method='gn'.")
    return NotConvergedError("Gauss-Newton training diverged (NaN/Inf loss); check the inputs "
                             "for huge values and try param_dtype=float64.")


def estimate_lambda_max(net: FunctionalNet, theta: jax.Array, x: Any, *,
                        iterations: int = 50) -> float:
    """Largest eigenvalue of ``J^T J`` (= that of the eNTK ``J J^T``) on the training points.

    Exact (``eigvalsh`` of the eNTK) for the two-layer net or when the Jacobian is small, power
    iteration on ``J J^T`` through ``jvp``/``vjp`` otherwise.

    Args:
      net: the network.
      theta: flat parameters.
      x: ``(n, d)`` training inputs.
      iterations: power iterations when the eNTK is not formed.

    Returns:
      ``lambda_max``.
    """
    with precision(net.dtype):
        return _lambda_max(net, jnp.asarray(theta, net.dtype), jnp.asarray(x, net.dtype),
                           iterations)


def _lambda_max(net: FunctionalNet, theta: jax.Array, xa: jax.Array, iterations: int) -> float:
    if net.gram_fn is not None or xa.shape[0] * net.n_params <= 2**25:
        gram = net.program("ntk_gram", lambda: jax.jit(lambda t, xx: ntk_gram(net, t, xx)))
        return float(jnp.linalg.eigvalsh(gram(theta, xa))[-1])

    def build() -> Any:
        def kv(t: jax.Array, xx: jax.Array, u: jax.Array) -> jax.Array:  # J J^T u
            _, vjp = jax.vjp(lambda p: net.apply(p, xx), t)
            return jax.jvp(lambda p: net.apply(p, xx), (t,), (vjp(u)[0],))[1]

        return jax.jit(kv)

    kv = net.program("entk_matvec", build)
    u = jax.random.normal(jax.random.PRNGKey(0), (xa.shape[0],), net.dtype)
    lam_max = 0.0
    for _ in range(iterations):
        v = kv(theta, xa, u / jnp.linalg.norm(u))
        lam_max = float(jnp.linalg.norm(v))
        u = v
    return lam_max * 1.05  # power iteration approaches from below; keep a margin
