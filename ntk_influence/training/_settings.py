"""Solver settings for eq. (2), its objective, and the BLAS thread limit of the solvers.

:class:`SolverSettings` chooses the solver (``"gn"``, ``"gd"``, ``"sgd"``, see
:mod:`ntk_influence.training._train`) and its stopping rule; :func:`objective` is the weighted
regularised loss of eq. (2) for a net (:func:`~ntk_influence.nets.regularised_loss` of its
residuals); :func:`blas_single_thread` keeps the small solves of the loops on one BLAS thread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from ..errors import InputError
from ..nets import FunctionalNet, regularised_loss

METHODS = ("gn", "gd", "sgd")
STOP_RULES = ("predictions", "gradient")


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
        :func:`ntk_influence.nets.linearized_step`); ``0`` (default): plain Gauss-Newton.
        For nets whose Hessian is not ``J^T J + lam I`` (deep nets), where Gauss-Newton drops
        the curvature ``sum_i r_i d^2 f_i`` and converges linearly; each inner iteration costs
        a Hessian-vector product and a Gauss-Newton solve. The two-layer net's own step is
        already Newton's and ignores it.
      stop: what ends the run. ``"predictions"`` (default): the largest change of the
        predictions over the last ``window`` steps is at most ``f_tol`` (the rule for ReLU
        nets, whose regularised minimiser sits on kinks where the gradient cannot vanish);
        ``"gradient"``: the ridge-relative gradient ``||grad L|| / ||lam (theta - theta0)||``
        is at most ``g_tol`` (a stationary point; for smooth nets, with ``newton_cg``). GN and
        GD only: a minibatch gradient cannot certify stationarity.
      g_tol: the stationarity tolerance on that ratio. Whatever the stopping rule, a run is
        ``converged`` only when its final ratio is at most ``g_tol``.
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
    stop: str = "predictions"
    g_tol: float = 1e-8

    @classmethod
    def stationary(cls, **overrides: Any) -> SolverSettings:
        """Truncated Newton to a stationary point: the settings for smooth nets.

        Gauss-Newton preconditioned conjugate gradients on the exact Hessian (``newton_cg=50``)
        until ``||grad L|| / ||lam (theta - theta0)|| <= 1e-8`` (``stop="gradient"``), at most
        100 steps. The inner tolerance shrinks with the gradient (forcing term
        ``min(1e-2, ratio)``), so the outer steps converge quadratically near the solution and
        a warm start from the trained weights takes a few steps.

        Args:
          **overrides: fields to change (e.g. ``g_tol``, ``max_steps``).

        Returns:
          :class:`SolverSettings`.
        """
        base = {"method": "gn", "stop": "gradient", "g_tol": 1e-8, "newton_cg": 50,
                "max_steps": 100}
        return cls(**{**base, **overrides})

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
        if self.stop not in STOP_RULES:
            raise InputError(f"stop must be one of {STOP_RULES}, got {self.stop!r}.")
        if not (self.g_tol > 0):
            raise InputError(f"g_tol must be > 0, got {self.g_tol!r}.")
        if self.stop == "gradient" and self.method == "sgd":
            raise InputError("stop='gradient' needs the full gradient: use method='gn' or "
                             "'gd' (a minibatch gradient cannot certify a stationary point).")
        gn = self.method == "gn"
        window = self.window if self.window is not None else (2 if gn else 200)
        max_steps = self.max_steps if self.max_steps is not None else (200 if gn else 200000)
        if window < 1 or max_steps < 1:
            raise InputError(f"window and max_steps must be >= 1, got {window}, {max_steps}.")
        return dataclasses.replace(self, window=int(window), max_steps=int(max_steps))


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

    Computes :func:`~ntk_influence.nets.regularised_loss` of the net's residuals, in the
    precision of its inputs (enter :func:`ntk_influence.precision` for float64 when JAX's x64
    flag is off).

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
    return regularised_loss(net.apply(theta, x) - y, theta - t0, lam, weights)
