"""Training on eq. (2): gradient descent (gradient flow) and a damped Gauss-Newton solver.

The objective is eq. (2) with optional per-point weights ``w_i`` (``w_i = 0`` removes point i)::

    L(theta) = 1/2 sum_i w_i (f(x_i; theta) - y_i)^2 + lam/2 ||theta - theta(0)||^2

Two solvers, both pure jit-compiled loops that vmap over weights (leave-one-out masks):

- ``"gd"``: the faithful gradient-flow discretisation, ``theta <- theta - eta grad L`` with
  ``eta = step_factor / (lambda_max(eNTK) + lam)`` (``lambda_max`` estimated at the start), which is
  below the stability limit ``2 / (lambda_max + lam)`` for ``step_factor < 2``;
- ``"gn"``: damped Gauss-Newton (Levenberg-Marquardt with damping ``lam``) with an Armijo line
  search. The step solves ``(J^T D J + lam I) p = -grad L`` through the ``n x n`` empirical NTK
  (Woodbury), ``p = -(g - J^T D^1/2 (D^1/2 K D^1/2 + lam I)^-1 D^1/2 J g) / lam``. For the
  two-layer net of eq. (1) this is the exact Newton step (``H = J^T J + lam I``, DESIGN item 4);
  for other nets it is the Gauss-Newton step, whose fixed points are the same stationary points.

The regularised minimiser sits on ReLU kinks, where the gradient is discontinuous, so the
gradient norm plateaus and cannot serve as the stopping rule (DESIGN item 5). Both solvers stop
in function space: when the largest change of the predictions on the training and test points
over the last ``window`` steps is below ``f_tol``. The final gradient norm is always reported.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError, NotConvergedError, NotConvergedWarning
from ._validate import check_lam
from .entk import _pattern_gram
from .nets import FunctionalNet

METHODS = ("gn", "gd")


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """How a training run is solved and when it stops.

    Attributes:
      method: ``"gn"`` (damped Gauss-Newton, default) or ``"gd"`` (gradient descent).
      f_tol: stop when the largest change of the train/test predictions over the last
        ``window`` steps is at most ``f_tol``.
      window: steps over which that change is measured (default 2 for GN, 200 for GD).
      max_steps: iteration cap (default 200 for GN, 200000 for GD).
      step_size: GD step ``eta`` (default ``step_factor / (lambda_max + lam)``).
      step_factor: GD step as a fraction of ``1 / (lambda_max + lam)``; must be < 2.
      armijo: sufficient-decrease constant of the GN line search.
      anneal: off by default (fixed-step GD, the faithful discretisation, which chatters on
        ReLU kinks and then reports non-convergence). When on, GD halves its step whenever the
        loss rises (a ReLU kink was crossed), so it keeps
        following the gradient flow to the kink-limited minimiser instead of chattering.
    """

    method: str = "gn"
    f_tol: float = 1e-9
    window: int | None = None
    max_steps: int | None = None
    step_size: float | None = None
    step_factor: float = 1.0
    armijo: float = 1e-4
    anneal: bool = False

    def resolved(self) -> SolverSettings:
        """Settings with defaults filled in and checked."""
        if self.method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {self.method!r}.")
        if not (self.f_tol > 0):
            raise InputError(f"f_tol must be > 0, got {self.f_tol!r}.")
        if not (0 < self.step_factor < 2):
            raise InputError(f"step_factor must be in (0, 2) for GD to be stable, got "
                             f"{self.step_factor!r}.")
        if self.step_size is not None and not (self.step_size > 0):
            raise InputError(f"step_size must be > 0, got {self.step_size!r}.")
        gn = self.method == "gn"
        window = self.window if self.window is not None else (2 if gn else 200)
        max_steps = self.max_steps if self.max_steps is not None else (200 if gn else 200000)
        if window < 1 or max_steps < 1:
            raise InputError(f"window and max_steps must be >= 1, got {window}, {max_steps}.")
        return dataclasses.replace(self, window=int(window), max_steps=int(max_steps))


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


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """A trained net and how the training ended.

    Attributes:
      theta: ``(P,)`` final flat parameters.
      f_train: ``(n_train,)`` predictions on the training points.
      f_test: ``(n_test,)`` predictions on the test points (empty if none).
      loss: final value of eq. (2) (weighted).
      grad_norm: final ``||grad L||``.
      rel_grad_norm: ``grad_norm`` divided by the gradient norm at the start.
      f_change: largest change of any train/test prediction over the last ``window`` steps.
      f_change_test: the same over the test points only.
      iterations: steps taken.
      converged: whether ``f_change <= f_tol`` was met.
      stalled: the GN line search found no decrease, or annealed GD shrank its step below
        ``2^-30 eta`` (stuck on a kink); the run stopped there and is not converged.
      evaluations: loss evaluations (GN line-search trials, or GD steps).
      method: ``"gn"`` or ``"gd"``.
      step_size: GD step used (NaN for GN).
      lam: the ridge.
      settings: the :class:`SolverSettings` used.
      seconds: wall time.
    """

    theta: jax.Array
    f_train: np.ndarray
    f_test: np.ndarray
    loss: float
    grad_norm: float
    rel_grad_norm: float
    f_change: float
    f_change_test: float
    iterations: int
    converged: bool
    stalled: bool
    evaluations: int
    method: str
    step_size: float
    lam: float
    settings: SolverSettings
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a JSON-ready dict."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("theta", "f_train", "f_test", "settings")}
        out["settings"] = dataclasses.asdict(self.settings)
        return out


def blas_single_thread() -> Any:
    """Context limiting BLAS/LAPACK to one thread inside the solvers.

    The solvers factor small ``n x n`` matrices inside jit-compiled loops; multi-threaded
    OpenBLAS on such sizes spins and was measured 10-50x slower on a busy 2-core machine.

    Returns:
      A context manager (a no-op when threadpoolctl is missing).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _ntk_train(net: FunctionalNet, theta: jax.Array, x: jax.Array) -> jax.Array:
    """eNTK on the training points, usable inside jit (closed form for the two-layer net)."""
    if net.kind == "two_layer":
        w = theta.reshape(net.width, -1)
        s = (x @ w.T > 0).astype(w.dtype)
        return (x @ x.T) * _pattern_gram(s, s) / net.width
    jac = jax.jacrev(lambda t: net.apply(t, x))(theta)
    return jac @ jac.T


def objective(net: FunctionalNet, theta: jax.Array, x: jax.Array, y: jax.Array, lam: float,
              weights: jax.Array | None = None, theta0: jax.Array | None = None) -> jax.Array:
    """The regularised loss of eq. (2), optionally with per-point weights.

    Args:
      net: the network.
      theta: flat parameters.
      x: ``(n, d)`` training inputs.
      y: ``(n,)`` labels.
      lam: the ridge.
      weights: ``(n,)`` per-point weights (default 1).
      theta0: the regularisation centre (default ``net.theta0``).

    Returns:
      Scalar ``1/2 sum_i w_i (f_i - y_i)^2 + lam/2 ||theta - theta0||^2``.
    """
    t0 = net.theta0 if theta0 is None else theta0
    r = net.apply(theta, x) - y
    w = jnp.ones_like(r) if weights is None else weights
    return 0.5 * jnp.sum(w * r * r) + 0.5 * lam * jnp.sum((theta - t0) ** 2)


def _track_change(hist: jax.Array, it: jax.Array, new_f: jax.Array, k: int, n: int
                  ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Record ``new_f`` in the ring buffer of the last ``k + 1`` predictions.

    Returns the buffer, the new step count and the largest change of the predictions over the
    last ``k`` steps on all points and on the test points (rows ``n:``); inf before ``k`` steps.
    """
    it2 = it + 1
    hist2 = hist.at[it2 % (k + 1)].set(new_f)
    diff = jnp.abs(new_f - hist2[(it2 - k) % (k + 1)])
    ch = jnp.where(it2 >= k, jnp.max(diff), jnp.inf)
    ch_te = jnp.where(it2 >= k, jnp.max(diff[n:], initial=0.0), jnp.inf)
    return hist2, it2, ch, ch_te


def make_solver(net: FunctionalNet, settings: SolverSettings, n_train: int) -> Any:
    """A pure function that trains ``net`` on eq. (2) and returns a :class:`SolveOut`.

    The returned ``solve(theta0, theta_init, x_all, y, weights, lam, eta, tol=None)`` takes the
    regularisation centre, the starting point, the stacked train+test inputs (the first
    ``n_train`` rows are the training set), labels, per-point weights, the ridge, the GD step and
    optionally a traced ``f_tol`` (default ``settings.f_tol``); it is jit/vmap-compatible (vmap over
    ``theta_init`` and ``weights`` for leave-one-out runs).

    Args:
      net: the network.
      settings: resolved :class:`SolverSettings`.
      n_train: number of training rows in ``x_all``.

    Returns:
      The solve function.
    """
    s = settings.resolved()
    k, gn = s.window, s.method == "gn"
    n = n_train

    if gn and net.kind == "two_layer":
        return _two_layer_gn_solver(net, s, n_train)

    def solve(theta0: jax.Array, theta_init: jax.Array, x_all: jax.Array, y: jax.Array,
              weights: jax.Array, lam: jax.Array, eta: jax.Array,
              tol: jax.Array | None = None) -> SolveOut:
        f_tol = s.f_tol if tol is None else tol
        dt = theta0.dtype
        x_tr = x_all[:n]
        n_all = x_all.shape[0]
        sw = jnp.sqrt(weights)

        def value_grad(theta: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Any]:
            f_all, vjp = jax.vjp(lambda t: net.apply(t, x_all), theta)
            r = f_all[:n] - y
            dtheta = theta - theta0
            loss = 0.5 * jnp.sum(weights * r * r) + 0.5 * lam * jnp.sum(dtheta * dtheta)
            cot = jnp.zeros_like(f_all).at[:n].set(weights * r)
            g = vjp(cot)[0] + lam * dtheta
            return loss, g, f_all, None

        def train_loss(theta: jax.Array) -> jax.Array:
            r = net.apply(theta, x_tr) - y
            d = theta - theta0
            return 0.5 * jnp.sum(weights * r * r) + 0.5 * lam * jnp.sum(d * d)

        def gn_direction(theta: jax.Array, g: jax.Array) -> jax.Array:
            kmat = _ntk_train(net, theta, x_tr)
            kw = sw[:, None] * kmat * sw[None, :] + lam * jnp.eye(n, dtype=dt)
            jg = jax.jvp(lambda t: net.apply(t, x_tr), (theta,), (g,))[1]
            chol = jax.scipy.linalg.cho_factor(kw, lower=True)
            u = sw * jax.scipy.linalg.cho_solve(chol, sw * jg)
            _, vjp = jax.vjp(lambda t: net.apply(t, x_tr), theta)
            return -(g - vjp(u)[0]) / lam

        loss0, g0, f0, _ = value_grad(theta_init)
        gn0 = jnp.linalg.norm(g0)
        hist0 = jnp.zeros((k + 1, n_all), dt).at[0].set(f0)
        inf = jnp.asarray(jnp.inf, dt)
        # carry: theta, loss, g, f, hist, it, change, change_te, diverged, stalled, t_prev, n_ls
        init = (theta_init, loss0, g0, f0, hist0, jnp.asarray(0), inf, inf,
                jnp.asarray(False), jnp.asarray(False), jnp.asarray(1.0, dt) if gn else eta,
                jnp.asarray(0))

        def cond(c: tuple[Any, ...]) -> jax.Array:
            _, _, _, _, _, it, change, _, diverged, stalled, _, _ = c
            return (it < s.max_steps) & (change > f_tol) & ~diverged & ~stalled

        def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
            theta, loss, g, f, hist, it, change, change_te, diverged, stalled, t_prev, n_ls = c
            if gn:
                p = gn_direction(theta, g)
                slope = jnp.dot(g, p)
                slack = 1e-13 * jnp.abs(loss)

                def ls_cond(lc: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
                    t, new_loss, j = lc
                    return (new_loss > loss + s.armijo * t * slope + slack) & (j < 40)

                def ls_body(lc: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Any, ...]:
                    t, _, j = lc
                    t = 0.5 * t
                    return t, train_loss(theta + t * p), j + 1

                t_try = jnp.minimum(1.0, 4.0 * t_prev)  # start near the last accepted step
                t, _, j = jax.lax.while_loop(ls_cond, ls_body,
                                             (t_try, train_loss(theta + t_try * p),
                                              jnp.asarray(0)))
                ok = j < 40
                new_theta = jnp.where(ok, theta + t * p, theta)
                t_prev = jnp.where(ok, t, t_prev)
                n_ls = n_ls + j + 1
            else:
                # t_prev holds the current GD step; it is halved whenever the loss rises (the
                # step crossed a ReLU kink), so the iteration keeps tracking the gradient flow.
                new_theta = theta - t_prev * g
                rises = train_loss(new_theta) > loss + 1e-13 * jnp.abs(loss)
                ok = ~rises if s.anneal else jnp.asarray(True)
                t_prev = jnp.where(rises & s.anneal, 0.5 * t_prev, t_prev)
                stalled = stalled | (t_prev < eta * 2.0**-30)  # stuck on a kink: not converged
                n_ls = n_ls + 1
            new_loss, new_g, new_f, _ = value_grad(new_theta)
            bad = ~jnp.isfinite(new_loss) | (new_loss > 1e8 * (loss0 + 1.0))
            hist2, it2, ch, ch_te = _track_change(hist, it, new_f, k, n)
            keep = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
            stop = ~ok if gn else jnp.asarray(False)
            return (keep(new_theta, theta), keep(new_loss, loss), keep(new_g, g),
                    keep(new_f, f), keep(hist2, hist), keep(it2, it), keep(ch, change),
                    keep(ch_te, change_te), diverged | bad, stalled | stop, t_prev, n_ls)

        (theta, loss, g, f, _, it, change, change_te, diverged, stalled, _,
         n_ls) = jax.lax.while_loop(cond, body, init)
        return SolveOut(theta, f, loss, jnp.linalg.norm(g), gn0, change, change_te, it,
                        (change <= f_tol) & ~stalled, diverged, stalled, n_ls)

    return solve


def _two_layer_gn_solver(net: FunctionalNet, s: SolverSettings, n: int) -> Any:
    """Damped Gauss-Newton for the two-layer net of eq. (1), on pre-activations.

    The same iteration as the generic ``"gn"`` solver (same direction, line search and stopping
    rule), organised around ``Z = X W^T`` so that each step costs one ``n^2 m`` pattern Gram
    (float32, exact for 0/1 patterns) and two ``n m d`` products:

    - ``J dtheta = f - J(W) W(0)`` by positive homogeneity (``J(W) W = f``), and
      ``J g = K D r + lam J dtheta``, so the gradient is never formed inside the loop;
    - the direction ``p = -J^T (D r - u) / lam - dtheta`` needs one ``J^T`` product;
    - ``Z_p = X P^T`` is formed once per step; every line-search trial is then
      ``relu(Z + t Z_p)``, ``O(n m)``, and the accepted ``Z`` is carried to the next step.

    The final predictions and gradient are recomputed from ``theta`` at the end.

    Args:
      net: a two-layer :class:`FunctionalNet`.
      s: resolved settings (method ``"gn"``).
      n: number of training rows.

    Returns:
      The solve function, with the signature of :func:`make_solver`'s.
    """
    k, m = s.window, net.width
    a = net.state["a"][...]
    symmetric = bool(net.description["symmetric"])
    half = m // 2

    def f_of(z: jax.Array) -> jax.Array:
        h = jax.nn.relu(z)
        if symmetric:
            out = h[:, :half] @ a[:half] + h[:, half:] @ a[half:]
        else:
            out = h @ a
        return out / jnp.sqrt(jnp.asarray(m, z.dtype))

    def solve(theta0: jax.Array, theta_init: jax.Array, x_all: jax.Array, y: jax.Array,
              weights: jax.Array, lam: jax.Array, eta: jax.Array,
              tol: jax.Array | None = None) -> SolveOut:
        f_tol = s.f_tol if tol is None else tol
        dt = theta0.dtype
        av = a.astype(dt)
        rm = 1.0 / jnp.sqrt(jnp.asarray(m, dt))
        x_tr = x_all[:n]
        n_all = x_all.shape[0]
        sw = jnp.sqrt(weights)
        w0 = theta0.reshape(m, -1)
        z0_tr = x_tr @ w0.T  # J(W) W(0) needs the initial pre-activations
        gram_x = x_tr @ x_tr.T
        eye = jnp.eye(n, dtype=dt)

        def grad_of(theta: jax.Array) -> jax.Array:
            f_all, vjp = jax.vjp(lambda t: net.apply(t, x_all), theta)
            cot = jnp.zeros_like(f_all).at[:n].set(weights * (f_all[:n] - y))
            return vjp(cot)[0] + lam * (theta - theta0)

        def jt(sm: jax.Array, v: jax.Array) -> jax.Array:  # J^T v, flat (m d,)
            return ((av * rm)[:, None] * ((sm * v[:, None]).T @ x_tr)).reshape(-1)

        def loss_of(f_tr: jax.Array, dsq: jax.Array) -> jax.Array:
            r = f_tr - y
            return 0.5 * jnp.sum(weights * r * r) + 0.5 * lam * dsq

        z_init = x_all @ theta_init.reshape(m, -1).T
        f_init = f_of(z_init)
        d_init = theta_init - theta0
        loss0 = loss_of(f_init[:n], jnp.sum(d_init * d_init))
        g0 = grad_of(theta_init)
        hist0 = jnp.zeros((k + 1, n_all), dt).at[0].set(f_init)
        inf = jnp.asarray(jnp.inf, dt)
        # carry: theta, z, loss, f, hist, it, change, change_te, diverged, stalled, t_prev, n_ls
        init = (theta_init, z_init, loss0, f_init, hist0, jnp.asarray(0), inf, inf,
                jnp.asarray(False), jnp.asarray(False), jnp.asarray(1.0, dt), jnp.asarray(0))

        def cond(c: tuple[Any, ...]) -> jax.Array:
            _, _, _, _, _, it, change, _, diverged, stalled, _, _ = c
            return (it < s.max_steps) & (change > f_tol) & ~diverged & ~stalled

        def body(c: tuple[Any, ...]) -> tuple[Any, ...]:
            theta, z, loss, f, hist, it, change, change_te, diverged, stalled, t_prev, n_ls = c
            z_tr = z[:n]
            sm = (z_tr > 0).astype(dt)
            dtheta = theta - theta0
            dr = weights * (f[:n] - y)
            kmat = gram_x * _pattern_gram(sm, sm) * (rm * rm)
            j_dtheta = f[:n] - ((z0_tr * sm) @ av) * rm
            jg = kmat @ dr + lam * j_dtheta
            kw = sw[:, None] * kmat * sw[None, :] + lam * eye
            chol = jax.scipy.linalg.cho_factor(kw, lower=True)
            u = sw * jax.scipy.linalg.cho_solve(chol, sw * jg)
            p = -jt(sm, dr - u) / lam - dtheta
            z_p = x_all @ p.reshape(m, -1).T
            j_p = ((z_p[:n] * sm) @ av) * rm
            dp, pp, dd = jnp.dot(dtheta, p), jnp.dot(p, p), jnp.dot(dtheta, dtheta)
            slope = jnp.dot(dr, j_p) + lam * dp
            slack = 1e-13 * jnp.abs(loss)

            def trial(t: jax.Array) -> jax.Array:
                return loss_of(f_of(z_tr + t * z_p[:n]), dd + 2 * t * dp + t * t * pp)

            def ls_cond(lc: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
                t, new_loss, j = lc
                return (new_loss > loss + s.armijo * t * slope + slack) & (j < 40)

            def ls_body(lc: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Any, ...]:
                t, _, j = lc
                t = 0.5 * t
                return t, trial(t), j + 1

            t_try = jnp.minimum(1.0, 4.0 * t_prev)
            t, new_loss, j = jax.lax.while_loop(ls_cond, ls_body,
                                                (t_try, trial(t_try), jnp.asarray(0)))
            ok = j < 40
            new_theta = theta + t * p
            new_z = z + t * z_p
            new_f = f_of(new_z)
            bad = ~jnp.isfinite(new_loss) | (new_loss > 1e8 * (loss0 + 1.0))
            hist2, it2, ch, ch_te = _track_change(hist, it, new_f, k, n)
            keep = lambda u_, v_: jnp.where(ok, u_, v_)  # noqa: E731
            return (keep(new_theta, theta), keep(new_z, z), keep(new_loss, loss),
                    keep(new_f, f), keep(hist2, hist), keep(it2, it), keep(ch, change),
                    keep(ch_te, change_te), diverged | bad, stalled | ~ok,
                    jnp.where(ok, t, t_prev), n_ls + j + 1)

        (theta, _, _, _, _, it, change, change_te, diverged, stalled, _,
         n_ls) = jax.lax.while_loop(cond, body, init)
        # Recompute from theta: Z was updated incrementally inside the loop.
        f_all = net.apply(theta, x_all)
        dfin = theta - theta0
        loss = loss_of(f_all[:n], jnp.sum(dfin * dfin))
        return SolveOut(theta, f_all, loss, jnp.linalg.norm(grad_of(theta)),
                        jnp.linalg.norm(g0), change, change_te, it,
                        (change <= f_tol) & ~stalled, diverged, stalled, n_ls)

    return solve


@functools.lru_cache(maxsize=16)
def jitted_solver(net: FunctionalNet, settings: SolverSettings, n_train: int,
                  batched: bool = False) -> Any:
    """The jit-compiled :func:`make_solver`, cached so that repeated runs compile once.

    Args:
      net: the network.
      settings: resolved :class:`SolverSettings` (hashable: part of the cache key).
      n_train: number of training rows.
      batched: vmap over the per-point weights (one leave-one-out mask per row).

    Returns:
      The compiled solve function.
    """
    solve = make_solver(net, settings, n_train)
    if batched:  # one leave-one-out mask and one tolerance per row
        solve = jax.vmap(solve, in_axes=(None, None, None, None, 0, None, None, 0))
    return jax.jit(solve)


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
    xa = jnp.asarray(x, net.dtype)
    if net.kind == "two_layer" or xa.shape[0] * net.n_params <= 2**25:
        kmat = jax.jit(lambda t, xx: _ntk_train(net, t, xx))(theta, xa)
        return float(jnp.linalg.eigvalsh(kmat)[-1])

    @jax.jit
    def kv(u: jax.Array) -> jax.Array:
        f, vjp = jax.vjp(lambda t: net.apply(t, xa), theta)
        return jax.jvp(lambda t: net.apply(t, xa), (theta,), (vjp(u)[0],))[1]

    u = jax.random.normal(jax.random.PRNGKey(0), (xa.shape[0],), net.dtype)
    lam_max = 0.0
    for _ in range(iterations):
        v = kv(u / jnp.linalg.norm(u))
        lam_max = float(jnp.linalg.norm(v))
        u = v
    return lam_max * 1.05  # power iteration approaches from below; keep a margin


def check_xy(net: FunctionalNet, x: Any, y: Any, name: str) -> tuple[jax.Array, jax.Array]:
    """Check ``(n, d)`` inputs and ``(n,)`` labels for the net.

    Args:
      net: the network (its input dimension is checked when known).
      x: inputs.
      y: labels.
      name: ``"train"`` or ``"test"``, used in messages.

    Returns:
      ``(x, y)`` as device arrays in the net's dtype.
    """
    from ._validate import as_array

    xa = as_array(x, f"x_{name}", (2,))
    ya = as_array(y, f"y_{name}", (1,))
    if ya.shape[0] != xa.shape[0]:
        raise InputError(f"y_{name} has {ya.shape[0]} labels but x_{name} has {xa.shape[0]} rows.")
    d = net.description.get("d")
    if d is not None and xa.shape[1] != d:
        raise InputError(f"x_{name} has {xa.shape[1]} features but the net takes d={d}.")
    return jnp.asarray(xa, net.dtype), jnp.asarray(ya, net.dtype)


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


def _divergence_error(eta: float, method: str) -> NotConvergedError:
    if method == "gd":
        return NotConvergedError(
            f"training diverged (loss became NaN/Inf or exploded) with GD step size {eta:.4g}; "
            f"use a smaller step (step_factor < 1 or step_size < {eta:.4g}), or method='gn'.")
    return NotConvergedError("Gauss-Newton training diverged (NaN/Inf loss); check the inputs "
                             "for huge values and try param_dtype=float64.")


def train(net: FunctionalNet, x_train: Any, y_train: Any, lam: float = 0.1, *,
          x_test: Any | None = None, settings: SolverSettings | None = None,
          theta_init: jax.Array | None = None, weights: Any | None = None,
          warn: bool = True) -> TrainResult:
    """Train the net on eq. (2) from ``W(0)`` (or ``theta_init``) until the predictions settle.

    Args:
      net: the network (its ``theta0`` is ``W(0)``, the regularisation centre).
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      lam: ridge ``>= 0`` of eq. (2).
      x_test: ``(t, d)`` test inputs whose predictions are returned and watched for stopping.
      settings: :class:`SolverSettings` (default damped Gauss-Newton).
      theta_init: starting parameters (default ``W(0)``).
      weights: ``(n,)`` per-point weights (``0`` removes a point).
      warn: emit a :class:`NotConvergedWarning` when the tolerance was not met.

    Returns:
      :class:`TrainResult`.

    Raises:
      NotConvergedError: the loss became NaN/Inf (the message names the step size and the fix).
    """
    lam = check_lam(lam)
    s = (settings or SolverSettings()).resolved()
    xtr, ytr = check_xy(net, x_train, y_train, "train")
    n = xtr.shape[0]
    if x_test is None:
        xte = jnp.zeros((0, xtr.shape[1]), net.dtype)
    else:
        xte = jnp.asarray(np.asarray(x_test), net.dtype)
        if xte.ndim != 2 or xte.shape[1] != xtr.shape[1]:
            raise InputError(f"x_test must be (t, {xtr.shape[1]}), got shape {xte.shape}.")
    w = jnp.ones((n,), net.dtype) if weights is None else jnp.asarray(weights, net.dtype)
    if w.shape != (n,):
        raise InputError(f"weights must have shape ({n},), got {w.shape}.")
    t_init = net.theta0 if theta_init is None else jnp.asarray(theta_init, net.dtype)
    t0 = time.perf_counter()
    eta = gd_step_size(net, t_init, xtr, lam, s) if s.method == "gd" else float("nan")
    solve = jitted_solver(net, s, n)
    with blas_single_thread():
        out = solve(net.theta0, t_init, jnp.concatenate([xtr, xte]), ytr, w,
                    jnp.asarray(lam, net.dtype),
                    jnp.asarray(0.0 if np.isnan(eta) else eta, net.dtype))
        jax.block_until_ready(out.theta)
    secs = time.perf_counter() - t0
    if bool(out.diverged):
        raise _divergence_error(eta, s.method)
    f_all = np.asarray(out.f_all)
    res = TrainResult(
        theta=out.theta, f_train=f_all[:n], f_test=f_all[n:], loss=float(out.loss),
        grad_norm=float(out.grad_norm), rel_grad_norm=float(out.grad_norm / out.grad_norm0),
        f_change=float(out.f_change), f_change_test=float(out.f_change_test),
        iterations=int(out.iterations), converged=bool(out.converged),
        stalled=bool(out.stalled), evaluations=int(out.evaluations), method=s.method,
        step_size=eta, lam=lam, settings=s,
        seconds=secs)
    if warn and not res.converged:
        warnings.warn(
            f"{s.method} training stopped after {res.iterations} steps with prediction change "
            f"{res.f_change:.3g} > f_tol={s.f_tol:g} over the last {s.window} steps "
            f"(gradient norm {res.grad_norm:.3g}); raise max_steps or f_tol.",
            NotConvergedWarning, stacklevel=2)
    return res
