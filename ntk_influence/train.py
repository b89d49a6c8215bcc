"""Training on eq. (2): damped Gauss-Newton, and first-order optimisers through optax.

The objective is eq. (2) with optional per-point weights ``w_i`` (``w_i = 0`` removes point i)::

    L(theta) = 1/2 sum_i w_i (f(x_i; theta) - y_i)^2 + lam/2 ||theta - theta(0)||^2

Two solver loops, both pure jit-compiled ``while_loop`` s that vmap over weights (removal masks):

- ``"gn"``: damped Gauss-Newton (Levenberg-Marquardt with damping ``lam``) with an Armijo line
  search. The step solves ``(J^T D J + lam I) p = -grad L`` through the ``n x n`` empirical NTK
  (Woodbury); it comes from the net (:mod:`ntk_influence.gauss_newton`: the structured step of
  eq. (1), or the autodiff step of any net). For the two-layer net of eq. (1) this is the exact
  Newton step (``H = J^T J + lam I``, DESIGN item 4); for other nets it is the Gauss-Newton step,
  whose fixed points are the same stationary points.
- first order, as optax transformations (``optax.inject_hyperparams(optax.sgd)``):
  ``"gd"``, the faithful gradient-flow discretisation ``theta <- theta - eta grad L`` with
  ``eta = step_factor / (lambda_max(eNTK) + lam)`` (below the stability limit
  ``2 / (lambda_max + lam)``), optionally annealed (the step halves whenever the loss rises);
  ``"sgd"``, the same update with the data term's gradient from a seeded random minibatch of
  ``batch_size`` points, scaled by ``n / batch_size`` (an unbiased estimate).

The regularised minimiser sits on ReLU kinks, where the gradient is discontinuous, so the
gradient norm plateaus and cannot serve as the stopping rule (DESIGN item 5). Every solver stops
in function space: when the largest change of the predictions on the training and test points
over the last ``window`` steps is below ``f_tol``. The final gradient norm is always reported.
Training runs in the net's precision (float64 by default) whatever JAX's global x64 flag is.
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
import optax

from ._errors import InputError, NotConvergedError, NotConvergedWarning
from ._precision import precision
from ._validate import check_lam
from .chunks import call_interruptibly
from .empirical import ntk_gram
from .gauss_newton import SolveOut, Tracker, exploded, gauss_newton_solver
from .nets import FunctionalNet

METHODS = ("gn", "gd", "sgd")


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """How a training run is solved and when it stops.

    Attributes:
      method: ``"gn"`` (damped Gauss-Newton, default), ``"gd"`` (gradient descent) or ``"sgd"``
        (minibatch stochastic gradient descent).
      f_tol: stop when the largest change of the train/test predictions over the last
        ``window`` steps is at most ``f_tol``.
      window: steps over which that change is measured (default 2 for GN, 200 otherwise).
      max_steps: iteration cap (default 200 for GN, 200000 otherwise).
      step_size: first-order step ``eta`` (default ``step_factor / (lambda_max + lam)``).
      step_factor: first-order step as a fraction of ``1 / (lambda_max + lam)``; must be < 2.
      armijo: sufficient-decrease constant of the GN line search.
      anneal: off by default (fixed-step GD, the faithful discretisation, which chatters on
        ReLU kinks and then reports non-convergence). When on, GD halves its step whenever the
        loss rises (a ReLU kink was crossed), so it keeps
        following the gradient flow to the kink-limited minimiser instead of chattering.
      batch_size: SGD minibatch size (default ``min(32, n)``).
      seed: SGD minibatch seed (every retrain of a batch sees the same minibatches).
      newton_cg: GN only: conjugate-gradient iterations per step on the exact Hessian,
        preconditioned by the Gauss-Newton matrix, a truncated Newton step (see
        :func:`ntk_influence.gauss_newton.autodiff_step`); ``0`` (default): plain Gauss-Newton.
        For nets whose Hessian is not ``J^T J + lam I`` (deep nets), where Gauss-Newton drops
        the curvature ``sum_i r_i d^2 f_i`` and converges linearly; each inner iteration costs
        a Hessian-vector product and a Gauss-Newton solve. The two-layer net's own step is
        already Newton's and ignores it.
    """

    method: str = "gn"
    f_tol: float = 1e-9
    window: int | None = None
    max_steps: int | None = None
    step_size: float | None = None
    step_factor: float = 1.0
    armijo: float = 1e-4
    anneal: bool = False
    batch_size: int | None = None
    seed: int = 0
    newton_cg: int = 0

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
        if self.batch_size is not None and (self.method != "sgd" or self.batch_size < 1):
            raise InputError(f"batch_size must be >= 1 and is for method='sgd' only, got "
                             f"{self.batch_size!r} with method={self.method!r}.")
        if self.anneal and self.method != "gd":
            raise InputError("anneal is for method='gd' only.")
        cg = self.newton_cg
        if isinstance(cg, bool) or not isinstance(cg, (int, np.integer)) or cg < 0:
            raise InputError(f"newton_cg must be a whole number >= 0 (0: plain Gauss-Newton), "
                             f"got {cg!r}.")
        if cg and self.method != "gn":
            raise InputError(f"newton_cg is for method='gn' only, got method={self.method!r}.")
        gn = self.method == "gn"
        window = self.window if self.window is not None else (2 if gn else 200)
        max_steps = self.max_steps if self.max_steps is not None else (200 if gn else 200000)
        if window < 1 or max_steps < 1:
            raise InputError(f"window and max_steps must be >= 1, got {window}, {max_steps}.")
        return dataclasses.replace(self, window=int(window), max_steps=int(max_steps))


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
      final_step: the step in use at the end. GN: the last accepted line-search step ``t``
        (``1`` is the full Gauss-Newton step). A stop with ``t << 1`` means the iterate is
        pinned at ReLU kinks: every direction crosses a kink where the loss rises, the Armijo
        step shrinks geometrically, and the ``f_change`` rule is met by shrinking steps while
        ``rel_grad_norm`` stays put; the predictions are then determined only up to where such
        a solver stalls (``benchmarks/bench_floor.py`` measures how far). GD: ``eta``, or the
        smaller step annealing left.
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
    final_step: float
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


def objective(net: FunctionalNet, theta: jax.Array, x: jax.Array, y: jax.Array, lam: float,
              weights: jax.Array | None = None, theta0: jax.Array | None = None) -> jax.Array:
    """The regularised loss of eq. (2), optionally with per-point weights (traceable).

    Computes in the precision of its inputs (enter :func:`ntk_influence.precision` for float64
    when JAX's x64 flag is off).

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


def make_solver(net: FunctionalNet, settings: SolverSettings, n_train: int) -> Any:
    """A pure function that trains ``net`` on eq. (2) and returns a :class:`SolveOut`.

    The returned ``solve(theta0, theta_init, x_all, y, weights, lam, eta, tol=None)`` takes the
    regularisation centre, the starting point, the stacked train+test inputs (the first
    ``n_train`` rows are the training set), labels, per-point weights, the ridge, the
    first-order step and optionally a traced ``f_tol`` (default ``settings.f_tol``); it is
    jit/vmap-compatible (vmap over ``theta_init`` and ``weights`` for removal runs). It runs in
    the precision of its array arguments.

    Args:
      net: the network.
      settings: resolved :class:`SolverSettings`.
      n_train: number of training rows in ``x_all``.

    Returns:
      The solve function.
    """
    s = settings.resolved()
    if s.method == "gn":
        return gauss_newton_solver(net, s, n_train)
    return _first_order_solver(net, s, n_train)


def _first_order_solver(net: FunctionalNet, s: SolverSettings, n: int) -> Any:
    """The first-order loop: GD, annealed GD or minibatch SGD as optax transformations."""
    k = s.window
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
            loss = 0.5 * jnp.sum(weights * r * r) + 0.5 * lam * jnp.sum(dtheta * dtheta)
            wr = weights * r
            if it is not None:
                pick = jax.random.choice(jax.random.fold_in(key, it), n, (batch,), replace=False)
                wr = jnp.zeros_like(wr).at[pick].set(wr[pick] * (n / batch))
            cot = jnp.zeros_like(f_all).at[:n].set(wr)
            return loss, vjp(cot)[0] + lam * dtheta, f_all

        def train_loss(theta: jax.Array) -> jax.Array:
            r = net.apply(theta, x_tr) - y
            d = theta - theta0
            return 0.5 * jnp.sum(weights * r * r) + 0.5 * lam * jnp.sum(d * d)

        loss0, g0, f0 = value_grad(theta_init, None)
        g_start = value_grad(theta_init, jnp.asarray(0))[1] if sgd else g0
        tx = opt(learning_rate=eta)
        no = jnp.asarray(False)
        init = FirstOrderState(theta_init, tx.init(theta_init), loss0, g_start, f0,
                               Tracker.start(f0, k), no, no, jnp.asarray(0))

        def cond(c: FirstOrderState) -> jax.Array:
            return ((c.track.it < s.max_steps) & (c.track.change > f_tol) & ~c.diverged
                    & ~c.stalled)

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
            track = c.track.record(f_all, k, n)
            keep = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
            return FirstOrderState(
                keep(theta, c.theta), opt_state, keep(loss, c.loss), keep(g, c.grad),
                keep(f_all, c.f_all), jax.tree_util.tree_map(keep, track, c.track),
                c.diverged | (ok & exploded(loss, loss0)), stalled, c.evaluations + 1)

        c = jax.lax.while_loop(cond, body, init)
        grad = value_grad(c.theta, None)[1] if sgd else c.grad
        return SolveOut(c.theta, c.f_all, c.loss, jnp.linalg.norm(grad), jnp.linalg.norm(g0),
                        c.track.change, c.track.change_test, c.track.it,
                        (c.track.change <= f_tol) & ~c.stalled, c.diverged, c.stalled,
                        c.evaluations, c.opt_state.hyperparams["learning_rate"])

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
    with precision(net.dtype):
        return _lambda_max(net, jnp.asarray(theta, net.dtype), jnp.asarray(x, net.dtype),
                           iterations)


def _lambda_max(net: FunctionalNet, theta: jax.Array, xa: jax.Array, iterations: int) -> float:
    if net.gram_fn is not None or xa.shape[0] * net.n_params <= 2**25:
        kmat = jax.jit(lambda t, xx: ntk_gram(net, t, xx))(theta, xa)
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
    """Check ``(n, *input_shape)`` inputs and ``(n,)`` labels for the net.

    Args:
      net: the network (its per-example input shape is checked when known; ``(n, d)`` else).
      x: inputs.
      y: labels.
      name: ``"train"`` or ``"test"``, used in messages.

    Returns:
      ``(x, y)`` as device arrays in the net's dtype.
    """
    from ._validate import as_array

    shape = net.input_shape
    if shape is not None and x is not None and np.ndim(x) != 1 + len(shape):
        want = ", ".join(map(str, shape))
        raise InputError(f"x_{name} must be (n, {want}) for this net, got shape {np.shape(x)}; "
                         "reshape the inputs (e.g. images as (n, H, W, C)).")
    xa = as_array(x, f"x_{name}", (2,) if shape is None else (1 + len(shape),))
    ya = as_array(y, f"y_{name}", (1,))
    if ya.shape[0] != xa.shape[0]:
        raise InputError(f"y_{name} has {ya.shape[0]} labels but x_{name} has {xa.shape[0]} rows.")
    if shape is not None and len(shape) == 1 and xa.shape[1] != shape[0]:
        raise InputError(f"x_{name} has {xa.shape[1]} features but the net takes d={shape[0]}.")
    if shape is not None and tuple(xa.shape[1:]) != shape:
        raise InputError(f"x_{name} has points of shape {tuple(xa.shape[1:])} but the net takes "
                         f"{shape}; reshape the inputs (e.g. images as (n, H, W, C)).")
    with precision(net.dtype):
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


def train(net: FunctionalNet, x_train: Any, y_train: Any, lam: float = 0.1, *,
          x_test: Any | None = None, settings: SolverSettings | None = None,
          theta_init: jax.Array | None = None, weights: Any | None = None,
          warn: bool = True) -> TrainResult:
    """Train the net on eq. (2) from ``W(0)`` (or ``theta_init``) until the predictions settle.

    Args:
      net: the network (its ``theta0`` is ``W(0)``, the regularisation centre).
      x_train: ``(n, d)`` training inputs (``(n, *input_shape)`` for nets on images).
      y_train: ``(n,)`` labels.
      lam: ridge ``>= 0`` of eq. (2).
      x_test: ``(t, ...)`` test inputs whose predictions are returned and watched for stopping.
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
    with precision(net.dtype):  # the net's dtype whatever the global x64 flag
        xtr, ytr = check_xy(net, x_train, y_train, "train")
        n = xtr.shape[0]
        if x_test is None:
            xte = jnp.zeros((0, *xtr.shape[1:]), net.dtype)
        else:
            xte = jnp.asarray(np.asarray(x_test), net.dtype)
            if xte.shape[1:] != xtr.shape[1:]:
                want = ", ".join(map(str, xtr.shape[1:]))
                raise InputError(f"x_test must be (t, {want}), got shape {xte.shape}.")
        w = jnp.ones((n,), net.dtype) if weights is None else jnp.asarray(weights, net.dtype)
        if w.shape != (n,):
            raise InputError(f"weights must have shape ({n},), got {w.shape}.")
        t_init = net.theta0 if theta_init is None else jnp.asarray(theta_init, net.dtype)
        t0 = time.perf_counter()
        eta = gd_step_size(net, t_init, xtr, lam, s) if s.method != "gn" else float("nan")
        solve = jitted_solver(net, s, n)
        args = (net.theta0, t_init, jnp.concatenate([xtr, xte]), ytr, w,
                jnp.asarray(lam, net.dtype), jnp.asarray(0.0 if np.isnan(eta) else eta,
                                                         net.dtype))

        def run() -> SolveOut:
            with blas_single_thread():
                o = solve(*args)
                jax.block_until_ready(o.theta)
                return o

        out = call_interruptibly(run)  # Ctrl-C / SIGTERM act during a long training too
    secs = time.perf_counter() - t0
    if bool(out.diverged):
        raise divergence_error(eta, s.method)
    f_all = np.asarray(out.f_all)
    res = TrainResult(
        theta=out.theta, f_train=f_all[:n], f_test=f_all[n:], loss=float(out.loss),
        grad_norm=float(out.grad_norm),
        rel_grad_norm=float(out.grad_norm) / float(out.grad_norm0),
        f_change=float(out.f_change), f_change_test=float(out.f_change_test),
        iterations=int(out.iterations), converged=bool(out.converged),
        stalled=bool(out.stalled), evaluations=int(out.evaluations), method=s.method,
        step_size=eta, final_step=float(out.final_step), lam=lam, settings=s,
        seconds=secs)
    if warn and not res.converged:
        warnings.warn(
            f"{s.method} training stopped after {res.iterations} steps with prediction change "
            f"{res.f_change:.3g} > f_tol={s.f_tol:g} over the last {s.window} steps "
            f"(gradient norm {res.grad_norm:.3g}); raise max_steps or f_tol.",
            NotConvergedWarning, stacklevel=2)
    return res
