"""Training on eq. (2): :func:`train`, the solver it compiles, and the input checks.

The objective is eq. (2) with optional per-point weights ``w_i`` (``w_i = 0`` removes point i)::

    L(theta) = 1/2 sum_i w_i (f(x_i; theta) - y_i)^2 + lam/2 ||theta - theta(0)||^2

Two solver loops, both pure jit-compiled ``while_loop`` s that vmap over weights (removal masks):

- ``"gn"``: damped Gauss-Newton (Levenberg-Marquardt with damping ``lam``) with an Armijo line
  search. The step solves ``(J^T D J + lam I) p = -grad L`` through the ``n x n`` empirical NTK
  (Woodbury); it comes from the net (:class:`~ntk_influence.nets.GNStep`: the structured step of
  eq. (1), or the autodiff step of any net) and runs in :mod:`._gauss_newton`'s loop. For the
  two-layer net of eq. (1) this is the exact Newton step (``H = J^T J + lam I``, DESIGN item 4);
  for other nets it is the Gauss-Newton step, whose fixed points are the same stationary points.
- first order, as optax transformations (``optax.inject_hyperparams(optax.sgd)``):
  ``"gd"``, the faithful gradient-flow discretisation ``theta <- theta - eta grad L`` with
  ``eta = step_factor / (lambda_max(eNTK) + lam)`` (below the stability limit
  ``2 / (lambda_max + lam)``), optionally annealed (the step halves whenever the loss rises);
  ``"sgd"``, the same update with the data term's gradient from a seeded random minibatch of
  ``batch_size`` points, scaled by ``n / batch_size`` (an unbiased estimate); the loop is
  :mod:`._first_order`'s.

The regularised minimiser of a ReLU net sits on kinks, where the gradient is discontinuous, so
the gradient norm plateaus and cannot serve as the stopping rule (DESIGN item 5). Such runs stop
in function space (``stop="predictions"``): when the largest change of the predictions on the
training and test points over the last ``window`` steps is below ``f_tol``; they are then
``settled``, not ``converged``. Smooth nets (erf, GELU) stop at a stationary point
(``stop="gradient"``, :meth:`SolverSettings.stationary`): truncated Newton until the
ridge-relative gradient is at most ``g_tol``. ``converged`` always means stationary. The final
gradient norm is always reported: absolute, relative to the start (``rel_grad_norm``) and
relative to the ridge term in float64 (``ridge_rel_grad_norm``, :func:`ridge_relative_grad_norm`).
Training runs in the net's precision (float64 by default) whatever JAX's global x64 flag is.

:func:`jitted_solver` keeps each compiled solver on the net
(:meth:`~ntk_influence.nets.FunctionalNet.program`), so a second run compiles nothing.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from .._precision import precision
from .._validate import as_array, check_lam
from ..errors import InputError, NotConvergedWarning
from ..nets import FunctionalNet, regularised_loss
from ._chunks import call_interruptibly
from ._first_order import divergence_error, first_order_solver, gd_step_size
from ._gauss_newton import SolveOut, gauss_newton_solver
from ._results import TrainResult
from ._settings import SolverSettings, blas_single_thread


def make_solver(net: FunctionalNet, settings: SolverSettings, n_train: int,
                test_from: int | None = None) -> Any:
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
      test_from: first row whose prediction change is reported as ``f_change_test`` (default
        ``n_train``; rows between are tracked by the stopping rule but not fitted).

    Returns:
      The solve function.
    """
    s = settings.resolved()
    if s.method == "gn":
        return gauss_newton_solver(net, s, n_train, test_from)
    return first_order_solver(net, s, n_train, test_from)


def jitted_solver(net: FunctionalNet, settings: SolverSettings, n_train: int) -> Any:
    """The jit-compiled :func:`make_solver`, kept on the net so that repeated runs compile once.

    Args:
      net: the network (owns the compiled solver: :meth:`FunctionalNet.program`).
      settings: resolved :class:`SolverSettings` (hashable: part of the key).
      n_train: number of training rows.

    Returns:
      The compiled solve function.
    """
    return net.program(("solver", settings, int(n_train)),
                       lambda: jax.jit(make_solver(net, settings, n_train)))


def check_net(net: Any) -> FunctionalNet:
    """Refuse anything but a :class:`~ntk_influence.nets.FunctionalNet`, saying how to make one.

    Args:
      net: what the caller passed as the net.

    Returns:
      ``net``.
    """
    if isinstance(net, FunctionalNet):
        return net
    if isinstance(net, nnx.Module):
        raise InputError(f"{type(net).__name__} is a Flax model, not a FunctionalNet; wrap it "
                         "first: ni.nets.functional(model).")
    raise InputError(f"net must be a FunctionalNet (ni.two_layer_net(...), or "
                     f"ni.nets.functional(model) for a Flax model), got {type(net).__name__}.")


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


def ridge_relative_grad_norm(net: FunctionalNet, theta: jax.Array, x: jax.Array, y: jax.Array,
                             weights: jax.Array, lam: float) -> float:
    """``||grad L(theta)|| / max(||lam (theta - theta0)||, tiny)`` for eq. (2), in float64.

    The parameters, inputs, labels and weights are cast to float64 (exactly) and the gradient of
    the weighted eq. (2) is taken by autodiff through the model with float64 parameters, so a
    float32 net's ratio is not limited by float32 rounding of the gradient.

    Args:
      net: the network (its ``theta0`` is the regularisation centre).
      theta: flat parameters where the gradient is taken.
      x: ``(n, ...)`` training inputs.
      y: ``(n,)`` labels.
      weights: ``(n,)`` per-point weights.
      lam: the ridge.

    Returns:
      The ratio (a Python float).
    """
    with precision(np.float64):
        f64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
        t, unravel = ravel_pytree(jax.tree.map(f64, net.unravel(jnp.asarray(theta, net.dtype))))
        t0 = ravel_pytree(jax.tree.map(f64, net.unravel(net.theta0)))[0]
        xa, ya, wa = f64(x), f64(y), f64(weights)

        def loss(v: jax.Array) -> jax.Array:
            f = nnx.merge(net.graphdef, unravel(v), net.state)(xa)
            return regularised_loss(f64(f) - ya, v - t0, lam, wa)

        grad = np.asarray(jax.grad(loss)(t), np.float64)
        ridge = float(np.linalg.norm(lam * (np.asarray(t) - np.asarray(t0))))
    return float(np.linalg.norm(grad)) / max(ridge, float(np.finfo(np.float64).tiny))


def train(net: FunctionalNet, x_train: Any, y_train: Any, lam: float = 0.1, *,
          x_test: Any | None = None, settings: SolverSettings | None = None,
          theta_init: jax.Array | None = None, weights: Any | None = None,
          warn: bool = True) -> TrainResult:
    """Train the net on eq. (2) from ``W(0)`` (or ``theta_init``) until its stopping rule holds.

    The rule is ``settings.stop``: the predictions settle (default), or the ridge-relative
    gradient falls to ``g_tol`` (:meth:`SolverSettings.stationary`, for smooth nets). Either
    way the result is ``converged`` only at a stationary point (``ridge_rel_grad_norm <=
    g_tol``) and ``settled`` when the prediction rule was met.

    Args:
      net: the network (its ``theta0`` is ``W(0)``, the regularisation centre).
      x_train: ``(n, d)`` training inputs (``(n, *input_shape)`` for nets on images).
      y_train: ``(n,)`` labels.
      lam: ridge ``>= 0`` of eq. (2).
      x_test: ``(t, ...)`` test inputs whose predictions are returned and watched for stopping.
      settings: :class:`SolverSettings` (default damped Gauss-Newton).
      theta_init: starting parameters (default ``W(0)``).
      weights: ``(n,)`` per-point weights (``0`` removes a point).
      warn: emit a :class:`NotConvergedWarning` when the stopping rule was not met.

    Returns:
      :class:`TrainResult`.

    Raises:
      NotConvergedError: the loss became NaN/Inf (the message names the step size and the fix).
    """
    check_net(net)
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
    ratio = ridge_relative_grad_norm(net, out.theta, xtr, ytr, w, lam)
    res = TrainResult(
        theta=out.theta, f_train=f_all[:n], f_test=f_all[n:], loss=float(out.loss),
        grad_norm=float(out.grad_norm),
        rel_grad_norm=float(out.grad_norm) / float(out.grad_norm0),
        f_change=float(out.f_change), f_change_test=float(out.f_change_test),
        iterations=int(out.iterations), converged=bool(ratio <= s.g_tol),
        stalled=bool(out.stalled), evaluations=int(out.evaluations), method=s.method,
        step_size=eta, final_step=float(out.final_step), lam=lam, settings=s,
        seconds=secs, ridge_rel_grad_norm=ratio, settled=bool(out.settled))
    if warn and s.stop == "predictions" and not res.settled:
        warnings.warn(
            f"{s.method} training stopped after {res.iterations} steps with prediction change "
            f"{res.f_change:.3g} > f_tol={s.f_tol:g} over the last {s.window} steps "
            f"(gradient norm {res.grad_norm:.3g}); raise max_steps or f_tol.",
            NotConvergedWarning, stacklevel=2)
    elif warn and s.stop == "gradient" and not res.converged:
        warnings.warn(
            f"{s.method} training stopped after {res.iterations} steps "
            f"{'(line search stalled) ' if res.stalled else ''}at ridge-relative gradient "
            f"{ratio:.3g} > g_tol={s.g_tol:g}: not a stationary point; raise max_steps or "
            "newton_cg (or g_tol, in float32).", NotConvergedWarning, stacklevel=2)
    return res
