"""The paper's two-layer ReLU net of eq. (1), its closed forms and its structured step.

Eq. (1): ``f(x) = m^-1/2 sum_r a_r relu(w_r . x)`` with ``w_r(0) ~ N(0, kappa^2 I)`` and
``a_r ~ unif{-1, +1}`` fixed (not trained). The symmetric initialisation draws ``m/2`` neurons and
repeats them with the same ``w`` and the opposite ``a``, so the initial output ``f_0`` is exactly 0.

:class:`TwoLayerReLU` supplies every hook of the model protocol
(:mod:`ntk_influence.nets._functional`): the closed-form eNTK ``x_i.x_j (S S^T)_ij / m``, the
Jacobian's columns, the memory of a retrain and :func:`two_layer_step`, the damped Gauss-Newton
step on pre-activations ``Z = X W^T`` (``aux``): one ``n^2 m`` pattern Gram and two ``n m d``
products per step. ``J dtheta = f - J(W) W(0)`` by positive homogeneity and
``J g = K D r + lam J dtheta``, so the gradient is never formed inside the loop; ``Z_p = X P^T``
is formed once per step, every line-search trial is ``relu(Z + t Z_p)`` (``O(n m)``) and the
accepted ``Z`` is carried. It is the exact Newton step of eq. (2) for this net
(``H = J^T J + lam I``) and gives the autodiff step's iterates to rounding.
:func:`two_layer_net` builds the net as a :class:`~ntk_influence.nets.FunctionalNet`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._precision import precision
from .._validate import check_positive, check_whole
from ..errors import InputError
from ._budget import check_param_memory
from ._functional import FunctionalNet, functional
from ._grams import pattern_gram
from ._steps import Direction, GNStep, Problem, Start, regularised_loss, woodbury_core


class FixedWeight(nnx.Variable):
    """A weight that is part of the model but is never trained (the readout ``a`` of eq. 1)."""


def check_dtype(param_dtype: Any) -> np.dtype:
    dt = np.dtype(param_dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"param_dtype must be float32 or float64, got {dt}.")
    return dt


def _two_layer_apply(w: jax.Array, a: jax.Array, x: jax.Array, symmetric: bool) -> jax.Array:
    h = jax.nn.relu(x.astype(w.dtype) @ w.T)
    if symmetric:  # sum each half in the same order, so paired neurons cancel exactly at W(0)
        half = w.shape[0] // 2
        out = h[:, :half] @ a[:half] + h[:, half:] @ a[half:]
    else:
        out = h @ a
    return out / jnp.sqrt(jnp.asarray(w.shape[0], w.dtype))


class TwoLayerReLU(nnx.Module):
    """The paper's two-layer ReLU net, eq. (1), with the readout ``a`` fixed.

    Attributes:
      w: ``(width, d)`` trainable first layer (``nnx.Param``).
      a: ``(width,)`` fixed readout in ``{-1, +1}`` (:class:`FixedWeight`, not trained).
      width: number of hidden neurons ``m``.
      kappa: initialisation scale of ``w``.
      symmetric: whether neurons come in pairs with equal ``w`` and opposite ``a`` (``f_0 = 0``).
      seed: the PRNG seed of the initialisation.
    """

    def __init__(self, d: int, width: int, *, kappa: float = 1.0, symmetric: bool = False,
                 seed: int = 0, param_dtype: Any = np.float64) -> None:
        """Initialise ``w ~ N(0, kappa^2 I)`` and ``a ~ unif{-1, +1}`` (eq. 1).

        Args:
          d: input dimension.
          width: hidden width ``m >= 1`` (even when ``symmetric``).
          kappa: first-layer initialisation scale, ``> 0``.
          symmetric: pair neurons (same ``w``, opposite ``a``) so that ``f_0 = 0`` exactly.
          seed: PRNG seed.
          param_dtype: float64 (default; needs 64-bit mode) or float32.
        """
        d, m = check_whole(d, "d"), check_whole(width, "width")
        kappa = check_positive(kappa, "kappa", " The paper uses kappa=1.")
        dt = check_dtype(param_dtype)
        if symmetric and m % 2:
            raise InputError(f"symmetric initialisation pairs neurons, so width must be even; "
                             f"got {m}. Use width={m + 1}.")
        check_param_memory(m * d + m, dt.itemsize, m, "the two-layer net")
        with precision(dt):  # float64 parameters whatever the caller's x64 flag
            kw, ka = jax.random.split(jax.random.PRNGKey(int(seed)))
            half = m // 2 if symmetric else m
            w = kappa * jax.random.normal(kw, (half, d), dtype=dt)
            a = jnp.where(jax.random.bernoulli(ka, 0.5, (half,)), 1.0, -1.0).astype(dt)
            if symmetric:
                w = jnp.concatenate([w, w])
                a = jnp.concatenate([a, -a])
        self.w = nnx.Param(w)
        self.a = FixedWeight(a)
        self.width, self.d, self.kappa, self.symmetric, self.seed = m, d, kappa, symmetric, seed

    def __call__(self, x: jax.Array) -> jax.Array:
        """Outputs ``f(x)`` of eq. (1) for ``(n, d)`` inputs, shape ``(n,)``."""
        return _two_layer_apply(self.w[...], self.a[...], x, self.symmetric)

    exact_gauss_newton = True  # a fixed: the Hessian of eq. (2) is J^T J + lam I
    kind = "two_layer"

    def activation_pattern(self, x: jax.Array) -> jax.Array:
        """The activation pattern ``S_ir = 1{w_r . x_i > 0}``, shape ``(n, m)``.

        Args:
          x: ``(n, d)`` inputs.

        Returns:
          ``(n, m)`` 0/1 array in the parameters' dtype.
        """
        w = self.w[...]
        return jnp.where(x.astype(w.dtype) @ w.T > 0, 1.0, 0.0).astype(w.dtype)

    @staticmethod
    def gauss_newton_step(net: FunctionalNet, problem: Problem) -> GNStep:
        """The structured Gauss-Newton step of eq. (1) on pre-activations (exact Newton step).

        Args:
          net: this model as a :class:`FunctionalNet`.
          problem: the :class:`~ntk_influence.nets.Problem` being solved.

        Returns:
          :class:`~ntk_influence.nets.GNStep` (see :func:`two_layer_step`).
        """
        return two_layer_step(net, problem)

    @staticmethod
    def entk_gram(net: FunctionalNet, theta: jax.Array, x1: jax.Array,
                  x2: jax.Array | None = None) -> jax.Array:
        """Empirical NTK of eq. (1) in closed form, ``x_i.x_j (S1 S2^T)_ij / m``.

        Since ``a_r^2 = 1``, ``J_i . J_j = m^-1 sum_r 1{w_r.x_i > 0} 1{w_r.x_j > 0} x_i.x_j``.

        Args:
          net: this model as a :class:`FunctionalNet`.
          theta: flat parameters.
          x1: ``(n1, d)`` inputs.
          x2: ``(n2, d)`` inputs (default ``x1``).

        Returns:
          ``(n1, n2)`` kernel matrix.
        """
        w = theta.reshape(net.width, -1)
        s1 = (x1 @ w.T > 0).astype(w.dtype)
        if x2 is None:
            return (x1 @ x1.T) * pattern_gram(s1, s1) / net.width
        s2 = (x2 @ w.T > 0).astype(w.dtype)
        return (x1 @ x2.T) * pattern_gram(s1, s2) / net.width

    @staticmethod
    def flat_apply(net: FunctionalNet, theta: jax.Array, x: jax.Array) -> jax.Array:
        """Eq. (1) at flat parameters, without merging the graph (same maths as ``__call__``)."""
        return _two_layer_apply(theta.reshape(net.width, -1), net.state["a"][...], x,
                                bool(net.description["symmetric"]))

    @staticmethod
    def jacobian_columns(net: FunctionalNet, theta: jax.Array, x: jax.Array, start: int,
                         stop: int) -> jax.Array:
        """Columns ``start:stop`` of the output Jacobian of eq. (1), in closed form.

        ``J_i = m^-1/2 (a_r 1{w_r.x_i > 0} x_i)_r``; only the neurons the columns touch are formed.

        Args:
          net: this model as a :class:`FunctionalNet`.
          theta: flat parameters.
          x: ``(n, d)`` inputs in the net's dtype.
          start: first parameter index.
          stop: one past the last.

        Returns:
          ``(n, stop - start)`` array.
        """
        d = x.shape[1]
        r0, r1 = start // d, -(-stop // d)
        w = theta.reshape(net.width, d)[r0:r1]
        a = net.state["a"][...][r0:r1].astype(w.dtype)
        s = (x @ w.T > 0).astype(w.dtype) * a / jnp.sqrt(jnp.asarray(net.width, w.dtype))
        cols = (s[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1)
        return cols[:, start - r0 * d: stop - r0 * d]

    @staticmethod
    def jacobian_chunk(net: FunctionalNet, theta: jax.Array, x: jax.Array, start: jax.Array,
                       rows: int) -> jax.Array:
        """Columns ``start:start + rows`` of the Jacobian of eq. (1) from a traced ``start``.

        Forms only the ``rows // d + 2`` neurons that cover the columns; columns past ``P`` are 0.

        Args:
          net: this model as a :class:`FunctionalNet`.
          theta: flat parameters.
          x: ``(n, d)`` inputs in the net's dtype.
          start: first parameter index (may be traced).
          rows: number of columns (static).

        Returns:
          ``(n, rows)`` array.
        """
        d = x.shape[1]
        nr = rows // d + 2  # neurons covering any chunk of `rows` columns
        r0 = start // d
        w = jax.lax.dynamic_slice(jnp.pad(theta, (0, nr * d)), (r0 * d,), (nr * d,))
        a = jax.lax.dynamic_slice(jnp.pad(net.state["a"][...].astype(theta.dtype), (0, nr)),
                                  (r0,), (nr,))
        w = w.reshape(nr, d)
        s = (x @ w.T > 0).astype(w.dtype) * a / jnp.sqrt(jnp.asarray(net.width, w.dtype))
        cols = (s[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1)
        return jax.lax.dynamic_slice(cols, (0, start - r0 * d), (x.shape[0], rows))

    @staticmethod
    def retrain_bytes(net: FunctionalNet, n_points: int) -> int:
        """Memory of one retrain in a vmapped chunk: ten parameter vectors, six ``(n, m)`` arrays."""
        item = net.dtype.itemsize
        return 10 * net.n_params * item + 6 * n_points * net.width * item

    def reseeded(self, seed: int) -> TwoLayerReLU:
        """The same net (width, ``kappa``, symmetry, dtype) drawn from another seed."""
        return TwoLayerReLU(self.d, self.width, kappa=self.kappa, symmetric=self.symmetric,
                            seed=seed, param_dtype=self.w[...].dtype)

    def describe(self) -> dict[str, Any]:
        """The model's settings, for results."""
        return {"model": "TwoLayerReLU", "width": self.width, "d": self.d,
                "input_shape": [self.d], "kappa": self.kappa, "symmetric": self.symmetric,
                "seed": self.seed, "trained": "first layer (a fixed)"}


def two_layer_net(d: int, width: int, *, kappa: float = 1.0, symmetric: bool = False,
                  seed: int = 0, param_dtype: Any = np.float64) -> FunctionalNet:
    """The net of eq. (1) as a :class:`FunctionalNet` (see :class:`TwoLayerReLU`).

    Args:
      d: input dimension.
      width: hidden width ``m``.
      kappa: first-layer initialisation scale.
      symmetric: paired neurons so that ``f_0 = 0``.
      seed: PRNG seed.
      param_dtype: float64 or float32.

    Returns:
      :class:`FunctionalNet`.
    """
    return functional(TwoLayerReLU(d, width, kappa=kappa, symmetric=symmetric, seed=seed,
                                   param_dtype=param_dtype))


def initial_output(net: FunctionalNet, x: Any) -> np.ndarray:
    """The output ``f_0(x)`` of the net at initialisation ``W(0)``.

    Args:
      net: the network.
      x: ``(n, d)`` inputs.

    Returns:
      ``(n,)`` host array.
    """
    with precision(net.dtype):
        xa = jnp.asarray(np.asarray(x), net.dtype)
        return np.asarray(net.apply(net.theta0, xa))


def two_layer_step(net: FunctionalNet, pb: Problem) -> GNStep:
    """The damped Gauss-Newton step of the two-layer net of eq. (1), on pre-activations.

    The exact Newton step of eq. (2) for this net (``H = J^T J + lam I``).

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
        return regularised_loss(f_tr - pb.y, None, lam, w, dtheta_sq=dsq)

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
        u = woodbury_core(kmat, lam, sw)(jg)
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
