"""The model protocol and :class:`FunctionalNet`, the form every solver works on.

:func:`functional` splits a Flax NNX model once with ``nnx.split`` into its graph, its trainable
parameters (flattened into one vector ``theta``) and its fixed state, so that training
(:mod:`ntk_influence.training`), IHVPs and TRAK (:mod:`ntk_influence.attribution`) and the
eNTK (:func:`~ntk_influence.nets.entk`) are pure functions of ``theta`` that jit and vmap.

Any model whose ``__call__`` maps ``(n, ...)`` inputs to ``(n,)`` outputs works (autodiff
everywhere). A model makes itself faster or better described by supplying hooks, each a small
``typing.Protocol`` below that :func:`functional` checks with ``isinstance`` and records on the
:class:`FunctionalNet`: :class:`GaussNewtonStepHook`, :class:`EntkGramHook`,
:class:`FlatApplyHook`, :class:`JacobianColumnsHook`, :class:`JacobianChunkHook`,
:class:`RetrainBytesHook`, :class:`ExactGaussNewtonHook`, :class:`DescribeHook`,
:class:`ReseededHook`, :class:`KindHook` and :class:`WidthHook`. The library never dispatches
on a model's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from .._precision import precision
from ..errors import InputError

T = TypeVar("T")


@runtime_checkable
class ModelProtocol(Protocol):
    """What every model provides: ``(n, ...)`` inputs to ``(n,)`` outputs (a ``nnx.Module``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        """Outputs ``(n,)`` for ``(n, ...)`` inputs."""


@runtime_checkable
class GaussNewtonStepHook(Protocol):
    """The model's own damped Gauss-Newton step (default: :func:`autodiff_step`)."""

    @staticmethod
    def gauss_newton_step(net: FunctionalNet, problem: Any) -> Any:
        """The :class:`~ntk_influence.nets.GNStep` of ``net`` on a :class:`~ntk_influence.nets.Problem`."""


@runtime_checkable
class EntkGramHook(Protocol):
    """The model's structured eNTK (default: Jacobian contraction)."""

    @staticmethod
    def entk_gram(net: FunctionalNet, theta: jax.Array, x1: jax.Array,
                  x2: jax.Array | None = None) -> jax.Array:
        """``(n1, n2)`` eNTK ``J(x1) J(x2)^T`` at flat parameters (``x2`` default ``x1``)."""


@runtime_checkable
class FlatApplyHook(Protocol):
    """The model's outputs at flat parameters (default: merge the graph and call the model)."""

    @staticmethod
    def flat_apply(net: FunctionalNet, theta: jax.Array, x: jax.Array) -> jax.Array:
        """``(n,)`` outputs at flat parameters ``theta``."""


@runtime_checkable
class JacobianColumnsHook(Protocol):
    """The model's Jacobian columns in closed form (default: ``jax.jacrev``)."""

    @staticmethod
    def jacobian_columns(net: FunctionalNet, theta: jax.Array, x: jax.Array, start: int,
                         stop: int) -> jax.Array:
        """``(n, stop - start)`` columns ``start:stop`` of the output Jacobian."""


@runtime_checkable
class JacobianChunkHook(Protocol):
    """Jacobian columns from a traced offset, without the whole Jacobian (TRAK's projection)."""

    @staticmethod
    def jacobian_chunk(net: FunctionalNet, theta: jax.Array, x: jax.Array, start: jax.Array,
                       rows: int) -> jax.Array:
        """``(n, rows)`` columns ``start:start + rows`` (zero past ``P``); ``start`` traced."""


@runtime_checkable
class RetrainBytesHook(Protocol):
    """The model's memory per retrain (default: Jacobian-sized)."""

    @staticmethod
    def retrain_bytes(net: FunctionalNet, n_points: int) -> int:
        """Bytes one retrain of a vmapped chunk needs on ``n_points`` train + test points."""


@runtime_checkable
class ExactGaussNewtonHook(Protocol):
    """Whether the Hessian of eq. (2) is exactly ``J^T D J + lam I`` (default ``False``)."""

    exact_gauss_newton: bool


@runtime_checkable
class DescribeHook(Protocol):
    """The model's settings for results (default: class name, width and a few attributes)."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings, with at least ``"model"``."""


@runtime_checkable
class ReseededHook(Protocol):
    """The same model drawn from another seed (TRAK ensembles)."""

    def reseeded(self, seed: int) -> nnx.Module:
        """The model re-initialised from ``seed``."""


@runtime_checkable
class KindHook(Protocol):
    """A short name of the model family, for results (default: ``describe()["model"]``)."""

    kind: str


@runtime_checkable
class WidthHook(Protocol):
    """The model's hidden width, for results and closed forms (default 0)."""

    width: int


@dataclasses.dataclass(frozen=True, eq=False)
class FunctionalNet:
    """A Flax model split into a pure function of a flat trainable parameter vector.

    Built by :func:`functional`, which records the model's hooks (module docstring) here.

    Attributes:
      graphdef: the model's graph (``nnx.split``).
      state: the fixed (non-trained) state, e.g. the readout ``a``.
      theta0: ``(P,)`` the initial trainable parameters ``W(0)``, flattened.
      unravel: maps a flat vector back to the parameter pytree.
      kind: the model family's short name (:class:`KindHook`), for results.
      width: hidden width (:class:`WidthHook`).
      description: settings of the model, for results (:class:`DescribeHook`).
      gn_step: :class:`GaussNewtonStepHook`'s ``(net, problem) -> GNStep``, or ``None`` (the
        autodiff step).
      gram_fn: :class:`EntkGramHook`'s ``(net, theta, x1, x2) -> K``, or ``None`` (the
        Jacobian route).
      apply_fn: :class:`FlatApplyHook`'s ``(net, theta, x) -> f``, or ``None`` (merge the
        graph and call the model).
      bytes_fn: :class:`RetrainBytesHook`'s ``(net, n_points) -> bytes``, or ``None``
        (Jacobian-sized).
      exact_gn: :class:`ExactGaussNewtonHook`: whether the Hessian of eq. (2) is exactly
        ``J^T J + lam I``.
      cols_fn: :class:`JacobianColumnsHook`'s ``(net, theta, x, start, stop) -> (n, stop -
        start)``, or ``None`` (``jax.jacrev``).
      chunk_fn: :class:`JacobianChunkHook`'s ``(net, theta, x, start, rows) -> (n, rows)``, or
        ``None``.

    Compiled programs that serve the net (solvers, eNTK blocks) are kept on it by
    :meth:`program`, so they are built once and freed with the net.
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
    chunk_fn: Any = None
    _programs: dict[Hashable, Any] = dataclasses.field(default_factory=dict, init=False,
                                                      repr=False, compare=False)

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
    def closed_form_jacobian(self) -> bool:
        """Whether :meth:`jacobian_chunk` is the model's closed form (no Jacobian is formed)."""
        return self.chunk_fn is not None

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-example input shape, when the model records it."""
        s = self.description.get("input_shape")
        return None if s is None else tuple(int(v) for v in s)

    def program(self, key: Hashable, build: Callable[[], T]) -> T:
        """A compiled program serving this net, built on first use and kept on the net.

        The program (typically a ``jax.jit``) lives as long as the net: a second call with the
        same key returns it without retracing, and nothing outside the net holds it.

        Args:
          key: what the program depends on besides the net (hashable static settings).
          build: makes the program.

        Returns:
          The program for ``key``.
        """
        if key not in self._programs:
            self._programs[key] = build()
        return self._programs[key]

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

    def jacobian_chunk(self, theta: jax.Array, x: jax.Array, start: jax.Array,
                       rows: int) -> jax.Array:
        """Columns ``start:start + rows`` of ``J(x)``, zero past ``P``, with ``start`` traced.

        Args:
          theta: flat parameters.
          x: ``(n, ...)`` inputs in the net's dtype.
          start: first parameter index (may be traced).
          rows: number of columns (static).

        Returns:
          ``(n, rows)`` array: the model's closed form (:class:`JacobianChunkHook`) where it has
          one, else a slice of the whole ``jax.jacrev`` Jacobian.
        """
        if self.chunk_fn is not None:
            return self.chunk_fn(self, theta, x, start, rows)
        jac = jax.jacrev(lambda t: self.apply(t, x))(theta)
        return jax.lax.dynamic_slice(jnp.pad(jac, ((0, 0), (0, rows))), (0, start),
                                     (jac.shape[0], rows))

    def reseeded(self, seed: int) -> FunctionalNet:
        """The same net drawn again from another seed (ensembles, e.g. TRAK's).

        Args:
          seed: the new PRNG seed.

        Returns:
          :class:`FunctionalNet` of the model's ``reseeded(seed)`` (:class:`ReseededHook`).

        Raises:
          InputError: the model class defines no ``reseeded``.
        """
        model = self.model()
        if not isinstance(model, ReseededHook):
            raise InputError(f"{type(model).__name__} defines no reseeded(seed), so it cannot be "
                             f"drawn again from another seed; define one, or use one net.")
        return functional(model.reseeded(int(seed)))

    def model(self, theta: jax.Array | None = None) -> nnx.Module:
        """The Flax model with parameters ``theta`` (default ``W(0)``)."""
        t = self.theta0 if theta is None else theta
        return nnx.merge(self.graphdef, self.unravel(t), self.state)


def _hook(model: Any, protocol: type, name: str) -> Any:
    """The model's hook ``name`` when it supplies ``protocol``, else ``None``."""
    return getattr(type(model), name) if isinstance(model, protocol) else None


def functional(model: nnx.Module) -> FunctionalNet:
    """Split a Flax NNX model into a :class:`FunctionalNet` (trainable ``nnx.Param`` s flattened).

    Args:
      model: a :class:`ModelProtocol` model whose ``__call__`` maps ``(n, ...)`` inputs to
        ``(n,)`` outputs; only its ``nnx.Param`` variables are trained. The hooks it supplies
        (module docstring) are recorded on the result.

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
    width = int(model.width) if isinstance(model, WidthHook) else 0
    if isinstance(model, DescribeHook):
        desc = dict(model.describe())
    else:
        desc = {"model": type(model).__name__, "width": width}
        for k in ("depth", "W_std", "seed", "d"):  # plain settings, when the model has them
            if hasattr(model, k):
                desc[k] = getattr(model, k)
        if hasattr(model, "d"):
            desc["input_shape"] = [int(model.d)]
    desc.update(param_dtype=str(theta0.dtype), n_params=int(theta0.size))
    kind = model.kind if isinstance(model, KindHook) else str(desc["model"])
    return FunctionalNet(
        graphdef, state, theta0, unravel, kind, width, desc,
        gn_step=_hook(model, GaussNewtonStepHook, "gauss_newton_step"),
        gram_fn=_hook(model, EntkGramHook, "entk_gram"),
        apply_fn=_hook(model, FlatApplyHook, "flat_apply"),
        bytes_fn=_hook(model, RetrainBytesHook, "retrain_bytes"),
        exact_gn=bool(isinstance(model, ExactGaussNewtonHook) and model.exact_gauss_newton),
        cols_fn=_hook(model, JacobianColumnsHook, "jacobian_columns"),
        chunk_fn=_hook(model, JacobianChunkHook, "jacobian_chunk"))
