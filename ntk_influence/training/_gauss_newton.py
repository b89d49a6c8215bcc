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

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from ..nets import Problem, autodiff_step

if TYPE_CHECKING:
    from ..nets import FunctionalNet


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
