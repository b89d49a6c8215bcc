"""The damped Gauss-Newton loop for eq. (2) and the function-space stopping rule.

:func:`gauss_newton_solver` is Levenberg-Marquardt with damping ``lam`` and an Armijo line
search, as one jit-compiled ``while_loop`` that vmaps over per-point weights (removal masks).
Each step comes from the net (:class:`~ntk_influence.nets.GNStep`: the model's
``gauss_newton_step`` hook, else :func:`~ntk_influence.nets.autodiff_step`). For the two-layer
net of eq. (1) it is the exact Newton step (``H = J^T J + lam I``); for other nets the
Gauss-Newton step, whose fixed points are the same stationary points, optionally refined
towards Newton's by truncated conjugate gradients (``newton_cg``).

:class:`Tracker` is the stopping rule shared with the first-order loops
(:mod:`._first_order`): the largest change of the train/test predictions over the last
``window`` steps, since on ReLU kinks the gradient norm plateaus and cannot serve (DESIGN
item 5). With ``stop="gradient"`` (smooth nets) the loop instead stops at a stationary point:
the ridge-relative gradient :func:`ridge_ratio` at most ``g_tol``. :class:`SolveOut` is what one
compiled solve returns.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..nets import FunctionalNet, Problem, autodiff_step


class SolveOut(NamedTuple):
    """Raw output of one jit-compiled solve (fields gain a leading axis when vmapped).

    ``settled`` is the prediction-change rule (``f_change <= f_tol``, no stall);
    ``ridge_norm`` is ``||lam (theta - theta0)||``, the scale of :func:`ridge_ratio`.
    """

    theta: jax.Array
    f_all: jax.Array
    loss: jax.Array
    grad_norm: jax.Array
    grad_norm0: jax.Array
    f_change: jax.Array
    f_change_test: jax.Array
    iterations: jax.Array
    settled: jax.Array
    diverged: jax.Array
    stalled: jax.Array
    evaluations: jax.Array
    final_step: jax.Array
    ridge_norm: jax.Array


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
      ratio: the ridge-relative gradient at ``theta`` (``stop="gradient"``; else inf).
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
    ratio: jax.Array


def ridge_ratio(grad_norm: jax.Array, theta: jax.Array, theta0: jax.Array, lam: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
    """The ridge-relative gradient ``||grad L|| / max(||lam (theta - theta0)||, tiny)``.

    At a stationary point of eq. (2) the data term ``J^T D (f - y)`` cancels the ridge term
    ``lam (theta - theta0)``, so this scale-free ratio measures how far from stationary a point
    is; it is the stopping rule of ``stop="gradient"`` and defines ``converged``.

    Args:
      grad_norm: ``||grad L(theta)||``.
      theta: the parameters.
      theta0: the regularisation centre.
      lam: the ridge.

    Returns:
      ``(ratio, ridge_norm)``.
    """
    ridge = jnp.linalg.norm(lam * (theta - theta0))
    return grad_norm / jnp.maximum(ridge, jnp.finfo(ridge.dtype).tiny), ridge


def exploded(loss: jax.Array, loss0: jax.Array) -> jax.Array:
    """Whether a loss is NaN/Inf or exploded past ``1e8 (loss0 + 1)``: the divergence test."""
    return ~jnp.isfinite(loss) | (loss > 1e8 * (loss0 + 1.0))


def gauss_newton_solver(net: FunctionalNet, s: Any, n: int, test_from: int | None = None) -> Any:
    """The damped Gauss-Newton loop: the net's step, Armijo backtracking, stopping rule.

    Each step asks the net's :class:`GNStep` (``net.gn_step``, the model's hook, else
    :func:`autodiff_step`) for a direction, backtracks from ``min(1, 4 t_prev)`` by halving until
    the Armijo condition holds (at most 40 trials; no decrease stops the run as stalled), and
    records the predictions in the function-space stopping rule; with ``stop="gradient"`` it
    stops instead when :func:`ridge_ratio` at the accepted point is at most ``g_tol``.

    Args:
      net: the network.
      s: resolved :class:`~ntk_influence.training.SolverSettings` (method ``"gn"``).
      n: number of training rows.
      test_from: first row of ``x_all`` whose change is the test error ``f_change_test``
        (default ``n``; a gathered retrain tracks its removed points between the two).

    Returns:
      ``solve(theta0, theta_init, x_all, y, weights, lam, eta, tol=None) -> SolveOut`` (see
      :func:`ntk_influence.training._train.make_solver`; ``eta`` is unused).
    """
    k = s.window
    split = n if test_from is None else test_from
    gstop = s.stop == "gradient"
    factory = net.gn_step or autodiff_step

    def solve(theta0: jax.Array, theta_init: jax.Array, x_all: jax.Array, y: jax.Array,
              weights: jax.Array, lam: jax.Array, eta: jax.Array,
              tol: jax.Array | None = None) -> SolveOut:
        f_tol = s.f_tol if tol is None else tol
        step = factory(net, Problem(theta0, x_all, y, weights, lam, n, s.newton_cg))
        st = step.start(theta_init)
        no = jnp.asarray(False)
        inf = jnp.asarray(jnp.inf, theta0.dtype)
        ratio0 = ridge_ratio(st.grad_norm, theta_init, theta0, lam)[0] if gstop else inf
        init = GNState(theta_init, st.aux, st.loss, st.f_all, Tracker.start(st.f_all, k), no, no,
                       jnp.asarray(1.0, theta0.dtype), jnp.asarray(0), ratio0)

        def cond(c: GNState) -> jax.Array:
            open_ = c.ratio > s.g_tol if gstop else c.track.change > f_tol
            return (c.track.it < s.max_steps) & open_ & ~c.diverged & ~c.stalled

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
            track = c.track.record(f_all, k, split)
            if gstop:  # one more J^T u per step: the gradient at the new point
                ratio = ridge_ratio(step.finish(theta, aux, f_all, loss)[2], theta, theta0,
                                    lam)[0]
            else:
                ratio = c.ratio
            new = GNState(theta, aux, loss, f_all, track, c.diverged | (ok & exploded(
                loss, st.loss)), c.stalled | ~ok, jnp.where(ok, t, c.t_prev),
                c.evaluations + j + 1, ratio)
            keep = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
            return new._replace(theta=keep(new.theta, c.theta),
                                aux=jax.tree_util.tree_map(keep, new.aux, c.aux),
                                loss=keep(new.loss, c.loss), f_all=keep(new.f_all, c.f_all),
                                track=jax.tree_util.tree_map(keep, new.track, c.track),
                                ratio=keep(new.ratio, c.ratio))

        c = jax.lax.while_loop(cond, body, init)
        f_all, loss, grad_norm = step.finish(c.theta, c.aux, c.f_all, c.loss)
        return SolveOut(c.theta, f_all, loss, grad_norm, st.grad_norm, c.track.change,
                        c.track.change_test, c.track.it, (c.track.change <= f_tol) & ~c.stalled,
                        c.diverged, c.stalled, c.evaluations, c.t_prev,
                        ridge_ratio(grad_norm, c.theta, theta0, lam)[1])

    return solve
