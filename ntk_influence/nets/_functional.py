"""Finite-width Flax NNX networks: the paper's two-layer ReLU net (eq. 1) and a deeper ReLU MLP.

The solvers in :mod:`ntk_influence.train`, :mod:`ntk_influence.ihvp` and
:mod:`ntk_influence.retrain` work on a :class:`FunctionalNet`: the model split once with
``nnx.split`` into its graph, its trainable parameters (flattened into one vector ``theta``) and
its fixed state, so that training steps are pure functions that jit and vmap over ``theta``.

Eq. (1): ``f(x) = m^-1/2 sum_r a_r relu(w_r . x)`` with ``w_r(0) ~ N(0, kappa^2 I)`` and
``a_r ~ unif{-1, +1}`` fixed (not trained). The symmetric initialisation draws ``m/2`` neurons and
repeats them with the same ``w`` and the opposite ``a``, so the initial output ``f_0`` is exactly 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from .._precision import precision
from ..errors import InputError


@dataclasses.dataclass(frozen=True, eq=False)
class FunctionalNet:
    """A Flax model split into a pure function of a flat trainable parameter vector.

    Attributes:
      graphdef: the model's graph (``nnx.split``).
      state: the fixed (non-trained) state, e.g. the readout ``a``.
      theta0: ``(P,)`` the initial trainable parameters ``W(0)``, flattened.
      unravel: maps a flat vector back to the parameter pytree.
      kind: the model's name (``"two_layer"`` for :class:`TwoLayerReLU`), for results only.
      width: hidden width.
      description: settings of the model, for results.
      gn_step: the model's own Gauss-Newton step, ``(net, problem) -> GNStep``, or ``None``
        (the autodiff step).
      gram_fn: the model's structured eNTK, ``(net, theta, x1, x2) -> K``, or ``None`` (the
        Jacobian route).
      apply_fn: the model's outputs at flat parameters, ``(net, theta, x) -> f``, or ``None``
        (merge the graph and call the model).
      bytes_fn: memory of one retrain, ``(net, n_points) -> bytes``, or ``None`` (Jacobian-sized).
      exact_gn: whether the Hessian of eq. (2) is exactly ``J^T J + lam I``.
      cols_fn: the model's Jacobian columns, ``(net, theta, x, start, stop) -> (n, stop - start)``,
        or ``None`` (``jax.jacrev``).

    The model protocol: a Flax model class plugs into the solvers by defining any of the static
    methods ``gauss_newton_step``, ``entk_gram``, ``flat_apply``, ``retrain_bytes`` and
    ``jacobian_columns`` with these signatures, the class attribute ``exact_gauss_newton``, and
    the methods ``describe()`` and ``reseeded(seed)`` (the same model from another seed);
    :func:`functional` records them here. Nothing in the library dispatches on the model's name.
    """

    graphdef: Any
    state: Any
    theta0: jax.Array
    unravel: Any
    kind: str
    width: int
    description: dict[str, Any]
    gn_step: Any = None
    gram_fn: Any = None
    apply_fn: Any = None
    bytes_fn: Any = None
    exact_gn: bool = False
    cols_fn: Any = None

    @property
    def n_params(self) -> int:
        """Number of trainable parameters ``P``."""
        return int(self.theta0.size)

    @property
    def dtype(self) -> np.dtype:
        """Parameter dtype."""
        return np.dtype(self.theta0.dtype)

    @property
    def exact_gauss_newton(self) -> bool:
        """Whether the Hessian of eq. (2) is exactly ``J^T J + lam I`` (two-layer ReLU, fixed a)."""
        return self.exact_gn

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-example input shape, when the model records it."""
        s = self.description.get("input_shape")
        return None if s is None else tuple(int(v) for v in s)

    def apply(self, theta: jax.Array, x: jax.Array) -> jax.Array:
        """Outputs ``(n,)`` of the net with flat parameters ``theta`` on ``(n, ...)`` inputs."""
        if self.apply_fn is not None:
            return self.apply_fn(self, theta, x)
        model = nnx.merge(self.graphdef, self.unravel(theta), self.state)
        return model(x)

    def jacobian_columns(self, theta: jax.Array, x: jax.Array, start: int,
                         stop: int) -> jax.Array:
        """Columns ``start:stop`` of the output Jacobian ``J(x)`` at ``theta``.

        Args:
          theta: flat parameters.
          x: ``(n, ...)`` inputs in the net's dtype.
          start: first parameter index.
          stop: one past the last.

        Returns:
          ``(n, stop - start)`` array: the model's closed form where it has one, else
          ``jax.jacrev``.
        """
        if self.cols_fn is not None:
            return self.cols_fn(self, theta, x, start, stop)
        return jax.jacrev(lambda t: self.apply(t, x))(theta)[:, start:stop]

    def reseeded(self, seed: int) -> FunctionalNet:
        """The same net drawn again from another seed (ensembles, e.g. TRAK's).

        Args:
          seed: the new PRNG seed.

        Returns:
          :class:`FunctionalNet` of the model's ``reseeded(seed)``.

        Raises:
          InputError: the model class defines no ``reseeded``.
        """
        model = self.model()
        if not hasattr(model, "reseeded"):
            raise InputError(f"{type(model).__name__} defines no reseeded(seed), so it cannot be "
                             f"drawn again from another seed; define one, or use one net.")
        return functional(model.reseeded(int(seed)))

    def activation_pattern(self, theta: jax.Array, x: jax.Array) -> jax.Array:
        """For the two-layer net: ``S_ir = a_r 1{w_r . x_i > 0}``, shape ``(n, m)``."""
        if self.description.get("model") != "TwoLayerReLU":
            raise InputError("activation_pattern is defined for the two-layer net only.")
        w = theta.reshape(self.width, -1)
        return jnp.where(x.astype(w.dtype) @ w.T > 0, 1.0, 0.0).astype(w.dtype)

    def model(self, theta: jax.Array | None = None) -> nnx.Module:
        """The Flax model with parameters ``theta`` (default ``W(0)``)."""
        t = self.theta0 if theta is None else theta
        return nnx.merge(self.graphdef, self.unravel(t), self.state)


def functional(model: nnx.Module) -> FunctionalNet:
    """Split a Flax NNX model into a :class:`FunctionalNet` (trainable ``nnx.Param`` s flattened).

    Args:
      model: a model whose ``__call__`` maps ``(n, d)`` inputs to ``(n,)`` outputs; only its
        ``nnx.Param`` variables are trained.

    Returns:
      :class:`FunctionalNet`.
    """
    if not isinstance(model, nnx.Module):
        raise InputError(f"model must be a flax.nnx.Module, got {type(model).__name__}.")
    graphdef, params, state = nnx.split(model, nnx.Param, ...)
    leaves = jax.tree_util.tree_leaves(params)
    dt = np.result_type(*[leaf.dtype for leaf in leaves]) if leaves else np.float32
    with precision(np.float64 if dt == np.float64 else np.float32):
        theta0, unravel = ravel_pytree(params)
    if theta0.size == 0:
        raise InputError("the model has no nnx.Param to train.")
    width = int(getattr(model, "width", 0))
    if hasattr(model, "describe"):
        desc = dict(model.describe())
    else:
        desc = {"model": type(model).__name__, "width": width}
        for k in ("depth", "W_std", "seed", "d"):
            if hasattr(model, k):
                desc[k] = getattr(model, k)
        if hasattr(model, "d"):
            desc["input_shape"] = [int(model.d)]
    desc.update(param_dtype=str(theta0.dtype), n_params=int(theta0.size))
    kind = "two_layer" if desc["model"] == "TwoLayerReLU" else str(desc["model"])
    cls = type(model)
    return FunctionalNet(graphdef, state, theta0, unravel, kind, width, desc,
                         getattr(cls, "gauss_newton_step", None), getattr(cls, "entk_gram", None),
                         getattr(cls, "flat_apply", None), getattr(cls, "retrain_bytes", None),
                         bool(getattr(cls, "exact_gauss_newton", False)),
                         getattr(cls, "jacobian_columns", None))
