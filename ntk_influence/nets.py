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
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from ._errors import InputError
from ._precision import precision
from ._validate import check_positive, check_whole


class FixedWeight(nnx.Variable):
    """A weight that is part of the model but is never trained (the readout ``a`` of eq. 1)."""


def _check_dtype(param_dtype: Any) -> np.dtype:
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
        dt = _check_dtype(param_dtype)
        if symmetric and m % 2:
            raise InputError(f"symmetric initialisation pairs neurons, so width must be even; "
                             f"got {m}. Use width={m + 1}.")
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

    @staticmethod
    def gauss_newton_step(net: FunctionalNet, problem: Any) -> Any:
        """The structured Gauss-Newton step of eq. (1) on pre-activations (exact Newton step).

        Args:
          net: this model as a :class:`FunctionalNet`.
          problem: the :class:`~ntk_influence.gauss_newton.Problem` being solved.

        Returns:
          :class:`~ntk_influence.gauss_newton.GNStep` (see :func:`gauss_newton.two_layer_step`).
        """
        from .gauss_newton import two_layer_step  # the step module needs FunctionalNet

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
        from .empirical import pattern_gram

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


class ReLUMLP(nnx.Module):
    """A fully-connected ReLU net in the NTK parameterisation, every layer trained.

    Layer ``l`` computes ``W_std / sqrt(fan_in) * W_l h`` with ``W_l ~ N(0, 1)``, matching
    Neural Tangents' ``stax.Dense(width, W_std, b_std=None)`` stacks, so its empirical NTK
    approaches :func:`ntk_influence.relu_mlp_kernel` with the same ``depth`` and ``W_std``.

    Attributes:
      layers: the weight matrices (``nnx.Param``), hidden ones then the readout.
      width: hidden width.
      depth: number of hidden ReLU layers.
    """

    def __init__(self, d: int, width: int, depth: int = 2, *, W_std: float = math.sqrt(2.0),
                 seed: int = 0, param_dtype: Any = np.float64) -> None:
        """Initialise every weight from ``N(0, 1)`` (NTK parameterisation).

        Args:
          d: input dimension.
          width: hidden width ``>= 1``.
          depth: hidden ReLU layers ``>= 1``.
          W_std: hidden-layer weight scale; the readout uses 1.
          seed: PRNG seed.
          param_dtype: float64 (default) or float32.
        """
        d, m, depth = check_whole(d, "d"), check_whole(width, "width"), check_whole(depth, "depth")
        dt = _check_dtype(param_dtype)
        W_std = check_positive(W_std, "W_std")
        dims = [d] + [m] * depth + [1]
        with precision(dt):
            keys = jax.random.split(jax.random.PRNGKey(int(seed)), depth + 1)
            self.layers = nnx.List([nnx.Param(jax.random.normal(
                keys[i], (dims[i], dims[i + 1]), dtype=dt)) for i in range(depth + 1)])
        self.stds = tuple([W_std] * depth + [1.0])
        self.width, self.depth, self.d, self.W_std, self.seed = m, depth, d, W_std, seed

    def reseeded(self, seed: int) -> ReLUMLP:
        """The same net (width, depth, ``W_std``, dtype) drawn from another seed."""
        return ReLUMLP(self.d, self.width, self.depth, W_std=self.W_std, seed=seed,
                       param_dtype=self.layers[0][...].dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Outputs for ``(n, d)`` inputs, shape ``(n,)``."""
        h = x.astype(self.layers[0][...].dtype)
        for i, (layer, std) in enumerate(zip(self.layers, self.stds, strict=True)):
            w = layer[...]
            h = h @ w * (std / math.sqrt(w.shape[0]))
            if i < self.depth:
                h = jax.nn.relu(h)
        return h[:, 0]


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
