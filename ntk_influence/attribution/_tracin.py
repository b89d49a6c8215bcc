"""TracIn-CP (Pruthi et al., 2020) and plain gradient similarity on a net trained on eq. (2).

TracIn credits training point ``i`` with the test-loss decrease of every step that used it:
``sum_t eta_t grad l_te(theta_t) . grad l_i(theta_t)``, approximated on checkpoints (TracIn-CP,
:func:`tracin_scores`). For ``l = 1/2 (f - y)^2``, ``grad l(x) = (f(x) - y) J(x)``, so a
checkpoint contributes ``eta r_i r_te K_theta(x_i, x_te)`` with the empirical NTK ``K_theta``
(:func:`grad_dot_scores`, the same product at one set of weights). Positive means the point
pushed the test loss down, i.e. removing it would raise it: the library's sign.

:func:`training_path` records the checkpoints as a :class:`TrainingPath`: the library's
first-order loop (:func:`ntk_influence.training.train` with ``method="gd"`` or ``"sgd"``) from
``W(0)`` with one fixed step ``eta = step_factor / (lambda_max(eNTK at W(0)) + lam)`` (or
``step_size``), run ``steps`` steps in ``checkpoints`` equal segments; the weights at the end of
each segment are the checkpoints. GD has no optimiser state, so segment by segment is the same
path as one run. SGD draws its minibatches from ``seed + c`` in segment ``c``. Checkpoint ``c``
is weighted by ``eta`` times the steps of its segment (it stands for them), so the score
approximates the sum over every step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._precision import precision
from .._validate import check_lam, check_whole
from ..errors import InputError
from ..nets import FunctionalNet, entk
from ..training import SolverSettings, check_xy, gd_step_size, train


@dataclasses.dataclass(frozen=True)
class TrainingPath:
    """Checkpoints of a first-order training run from ``W(0)``.

    Attributes:
      thetas: ``(C, P)`` weights at the end of each segment.
      weights: ``(C,)`` ``eta`` times the steps each checkpoint stands for.
      step_size: ``eta``.
      steps: total steps.
      method: ``"gd"`` or ``"sgd"``.
    """

    thetas: np.ndarray
    weights: np.ndarray
    step_size: float
    steps: int
    method: str


def training_path(net: FunctionalNet, x_train: Any, y_train: Any, lam: float, *, steps: int = 500,
                  checkpoints: int = 5, method: str = "gd", step_factor: float = 1.0,
                  step_size: float | None = None, batch_size: int | None = None,
                  seed: int = 0) -> TrainingPath:
    """Train from ``W(0)`` with the library's first-order loop, saving checkpoints (see the module).

    Args:
      net: the network.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      lam: the ridge of eq. (2).
      steps: total optimiser steps (a multiple of ``checkpoints`` is used: rounded up).
      checkpoints: number of checkpoints ``C >= 1``.
      method: ``"gd"`` or ``"sgd"``.
      step_factor: ``eta = step_factor / (lambda_max + lam)`` (ignored with ``step_size``).
      step_size: a fixed step instead.
      batch_size: SGD minibatch size.
      seed: SGD minibatch seed of the first segment.

    Returns:
      :class:`TrainingPath`.
    """
    lam = check_lam(lam)
    if method not in ("gd", "sgd"):
        raise InputError(f"the training path is first order: method 'gd' or 'sgd', got {method!r}.")
    steps, checkpoints = check_whole(steps, "steps"), check_whole(checkpoints, "checkpoints")
    seg = -(-steps // checkpoints)
    with precision(net.dtype):
        xtr, ytr = check_xy(net, x_train, y_train, "train")
        base = SolverSettings(method, f_tol=1e-300, window=1, max_steps=seg,
                              step_factor=step_factor, step_size=step_size,
                              batch_size=batch_size, seed=seed)
        eta = float(gd_step_size(net, net.theta0, xtr, lam, base.resolved()))
        theta = net.theta0
        thetas = []
        for c in range(checkpoints):
            s = dataclasses.replace(base, step_size=eta,
                                    seed=seed + c if method == "sgd" else seed)
            theta = train(net, xtr, ytr, lam, settings=s, theta_init=theta, warn=False).theta
            thetas.append(np.asarray(theta))
    return TrainingPath(np.stack(thetas), np.full(checkpoints, eta * seg), eta,
                        seg * checkpoints, method)


def grad_dot_scores(net: FunctionalNet, theta: Any, x_train: Any, y_train: Any, x_test: Any,
                    y_test: Any) -> np.ndarray:
    """Gradient similarity ``grad l_te(theta) . grad l_i(theta) = r_i r_te K_theta(x_i, x_te)``.

    Args:
      net: the network.
      theta: flat parameters.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.

    Returns:
      ``(n, t)`` float64 dot products.
    """
    with precision(net.dtype):
        xtr, ytr = check_xy(net, x_train, y_train, "train")
        xte, yte = check_xy(net, x_test, y_test, "test")
        th = jnp.asarray(theta, net.dtype)
        r_tr = np.asarray(net.apply(th, xtr) - ytr, np.float64)
        r_te = np.asarray(net.apply(th, xte) - yte, np.float64)
        k = np.asarray(entk(net, xtr, xte, theta=th), np.float64)
    return r_tr[:, None] * k * r_te[None]


def tracin_scores(net: FunctionalNet, path: TrainingPath, x_train: Any, y_train: Any,
                  x_test: Any, y_test: Any) -> np.ndarray:
    """TracIn-CP: ``sum_c weight_c grad l_te(theta_c) . grad l_i(theta_c)`` over the checkpoints.

    Args:
      net: the network.
      path: checkpoints and their weights (:func:`training_path`).
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.

    Returns:
      ``(n, t)`` scores, positive when the point lowered the test loss along the path.
    """
    out = 0.0
    for theta, w in zip(path.thetas, path.weights, strict=True):
        out = out + float(w) * grad_dot_scores(net, theta, x_train, y_train, x_test, y_test)
    return np.asarray(out, np.float64)
