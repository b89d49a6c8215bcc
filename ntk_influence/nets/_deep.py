"""Deep nets in the NTK parameterisation, every layer trained: MLPs and conv nets.

Each layer computes ``z = W_std / sqrt(fan_in) * (h * W) + b_std * b`` with ``W, b ~ N(0, 1)``,
exactly Neural Tangents' ``stax.Dense`` / ``stax.Conv(..., padding="SAME")`` with the same
``W_std`` and ``b_std``, so :meth:`DeepReLU.limit_kernel` (NT's ``kernel_fn``) is the
infinite-width limit of the net's empirical NTK.

The layer stacks are built by :func:`~ntk_influence.nets.mlp` and
:func:`~ntk_influence.nets.cnn` (:mod:`ntk_influence.nets._architecture`):

- ``mlp:L``: ``L`` dense ReLU layers of ``width`` units, then a dense readout;
- ``cnn:L``: ``L`` 3x3 conv + ReLU layers of ``width`` channels on ``(n, H, W, C)`` images,
  SAME padding, global average pooling (``:flatten``: the flattened map), a dense readout;
- ``mlp:L:ACT`` / ``cnn:L:ACT``: activation ``ACT`` in ``relu`` (the default), ``erf`` or
  ``gelu`` (:mod:`ntk_influence.nets._activations`; NT's ``Relu``, ``Erf``, ``Gelu``).

**Symmetric initialisation.** The model is a pair of identical networks with opposite readouts,
``f = (g(theta_1) - g(theta_2)) / sqrt(2)`` with ``theta_1(0) = theta_2(0)``: ``f_0 = 0``
exactly, and the eNTK ``(K_1 + K_2) / 2`` has the same infinite-width limit as one network's.

**Structured eNTK** (:meth:`DeepReLU.entk_gram`, the model protocol's hook used by the
Gauss-Newton step, :func:`~ntk_influence.nets.entk` and retraining). One forward and one backward pass
give every layer's input ``h`` and pre-activation cotangent ``delta``. A dense layer contributes
``c^2 (h h'^T) * (delta delta'^T) + b_std^2 delta delta'^T``; a conv layer
``c^2 G G'^T + b_std^2 (sum_p delta)(sum_p delta')^T`` with ``G = sum_p patch_p(h) (x) delta_p``
its per-example weight gradient (``9 C_in C_out`` numbers). So the ``n x n`` eNTK costs
``O(n P)`` for the passes plus ``O(n^2 sum width)`` for the Grams, with no ``(n, P)`` Jacobian.

**Gauss-Newton step** (:meth:`DeepReLU.gauss_newton_step`). The same taps give ``J v`` (each
layer's affine map applied to the tangent's weights, against ``delta``) and ``J^T u`` (its
transpose), so the step of :func:`~ntk_influence.nets.linearized_step` needs one forward
and one backward pass per accepted point, two forward-sized products (``J v``, ``J^T u``) and one
forward pass per line-search trial.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._precision import precision
from ..errors import InputError
from ..kernels import Kernel, stax_kernel
from ..kernels import stax as nt_stax
from ._activations import ACTIVATIONS
from ._budget import check_param_memory
from ._steps import GNStep, Linearization, Problem, linearized_step

SQRT2 = math.sqrt(2.0)


#: Memory bound of one block of per-example conv weight gradients in the structured eNTK.
GRAD_BLOCK_BYTES = 2**27


@dataclasses.dataclass(frozen=True)
class Dense:
    """A dense layer ``z = W_std / sqrt(fan_in) h W + b_std b`` (NT's ``stax.Dense``).

    Attributes:
      fan_in: input features.
      fan_out: output features.
      W_std: weight scale.
      b_std: bias scale (``None``: no bias).
      activation: the activation after the layer (``"relu"``, ``"erf"``, ``"gelu"``), or
        ``None`` (the readout).
      pool: how a spatial input ``(n, H, W, C)`` enters: ``None`` (flat input, unchanged),
        ``"gap"`` (NT's ``GlobalAvgPool``, ``fan_in = C``) or ``"flatten"`` (``H W C``).
    """

    fan_in: int
    fan_out: int
    W_std: float
    b_std: float | None
    activation: str | None
    pool: str | None = None

    @property
    def w_shape(self) -> tuple[int, ...]:
        """Shape of the weight."""
        return (self.fan_in, self.fan_out)

    def activate(self, z: jax.Array) -> jax.Array:
        """The layer's output: its activation of the pre-activations ``z`` (``z`` if none)."""
        return z if self.activation is None else ACTIVATIONS[self.activation].fn(z)

    def inputs(self, h: jax.Array) -> jax.Array:
        """The layer's input: ``h``, spatially averaged or flattened as ``pool`` says."""
        if self.pool == "gap":
            return h.mean(axis=tuple(range(1, h.ndim - 1)))
        return h.reshape(h.shape[0], -1) if self.pool == "flatten" else h

    def affine(self, w: jax.Array, b: jax.Array | None, h: jax.Array) -> jax.Array:
        """Pre-activations ``(n, fan_out)`` of the (pooled) input ``h``."""
        z = h @ w * (self.W_std / math.sqrt(self.fan_in))
        return z if b is None else z + self.b_std * b

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example pre-activation shape."""
        return (self.fan_out,)

    def gram(self, h1: jax.Array, d1: jax.Array, h2: jax.Array, d2: jax.Array) -> jax.Array:
        """This layer's eNTK block ``c^2 (h1 h2^T) * (d1 d2^T) + b_std^2 d1 d2^T``."""
        dd = d1 @ d2.T
        k = (h1 @ h2.T) * dd * (self.W_std ** 2 / self.fan_in)
        return k if self.b_std is None else k + self.b_std ** 2 * dd

    def stax(self) -> list[Any]:
        """The Neural Tangents layers this layer is the finite version of."""
        st = nt_stax()
        out = {None: [], "gap": [st.GlobalAvgPool()], "flatten": [st.Flatten()]}[self.pool]
        out.append(st.Dense(1, W_std=self.W_std, b_std=self.b_std))
        return out + ([] if self.activation is None else [ACTIVATIONS[self.activation].layer()])


@dataclasses.dataclass(frozen=True)
class Conv:
    """A 3x3 SAME conv layer ``z = W_std / sqrt(9 C_in) conv(h, W) + b_std b`` (NT's ``stax.Conv``).

    Attributes:
      fan_in: input channels ``C_in``.
      fan_out: output channels.
      W_std: weight scale.
      b_std: bias scale (``None``: no bias).
      activation: the activation after the layer (``"relu"``, ``"erf"`` or ``"gelu"``).
    """

    fan_in: int
    fan_out: int
    W_std: float
    b_std: float | None
    activation: str = "relu"

    activate = Dense.activate

    @property
    def w_shape(self) -> tuple[int, ...]:
        """Shape of the weight (HWIO)."""
        return (3, 3, self.fan_in, self.fan_out)

    def inputs(self, h: jax.Array) -> jax.Array:
        """The layer's input (unchanged)."""
        return h

    @staticmethod
    def patches(h: jax.Array) -> jax.Array:
        """The 3x3 SAME patches ``(n, H, W, 9 C)`` of ``(n, H, W, C)``, ordered ``(kh, kw, c)``.

        Written as nine shifted slices of the zero-padded input, so the convolution is one
        matrix product (XLA's CPU convolution has no fast float64 kernel).
        """
        hp = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        rows, cols = h.shape[1], h.shape[2]
        return jnp.concatenate([hp[:, i:i + rows, j:j + cols, :] for i in range(3)
                                for j in range(3)], axis=-1)

    def affine(self, w: jax.Array, b: jax.Array | None, h: jax.Array) -> jax.Array:
        """Pre-activations ``(n, H, W, fan_out)``: the cross-correlation of NT's ``Conv``."""
        z = self.patches(h) @ w.reshape(9 * self.fan_in, self.fan_out)
        z = z * (self.W_std / math.sqrt(9 * self.fan_in))
        return z if b is None else z + self.b_std * b

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example pre-activation shape (SAME padding keeps ``H, W``)."""
        return (*in_shape[:-1], self.fan_out)

    @staticmethod
    def weight_grads(patches: jax.Array, d: jax.Array) -> jax.Array:
        """Per-example weight gradients (without the scale ``c``), ``(n, 9 C_in C_out)``.

        Args:
          patches: ``(n, H, W, 9 C_in)`` from :meth:`patches`.
          d: ``(n, H, W, C_out)`` pre-activation cotangents (or a block of their channels).
        """
        g = jnp.einsum("nhwk,nhwc->nkc", patches, d)
        return g.reshape(g.shape[0], -1)

    def gram(self, h1: jax.Array, d1: jax.Array, h2: jax.Array, d2: jax.Array) -> jax.Array:
        """This layer's eNTK block ``c^2 G1 G2^T + b_std^2 (sum_p d1)(sum_p d2)^T``.

        ``G1 G2^T`` is summed over blocks of output channels, so that a block of per-example
        gradients holds at most :data:`GRAD_BLOCK_BYTES`.
        """
        p1 = self.patches(h1)
        same = h2 is h1 and d2 is d1
        p2 = p1 if same else self.patches(h2)
        per_channel = max(h1.shape[0], h2.shape[0]) * p1.shape[-1] * p1.dtype.itemsize
        cb = int(max(1, min(self.fan_out, GRAD_BLOCK_BYTES // per_channel)))
        k = 0.0
        for c0 in range(0, self.fan_out, cb):
            g1 = self.weight_grads(p1, d1[..., c0:c0 + cb])
            g2 = g1 if same else self.weight_grads(p2, d2[..., c0:c0 + cb])
            k = k + g1 @ g2.T
        k = k * (self.W_std ** 2 / (9 * self.fan_in))
        if self.b_std is None:
            return k
        s1, s2 = d1.sum(axis=(1, 2)), d2.sum(axis=(1, 2))
        return k + self.b_std ** 2 * (s1 @ s2.T)

    def stax(self) -> list[Any]:
        """The Neural Tangents layers this layer is the finite version of."""
        st = nt_stax()
        return [st.Conv(1, (3, 3), padding="SAME", W_std=self.W_std, b_std=self.b_std),
                ACTIVATIONS[self.activation].layer()]


class DeepReLU(nnx.Module):
    """A deep net (MLP or conv net) in the NTK parameterisation, as a symmetric pair.

    Build it with :func:`mlp` or :func:`cnn` (ReLU by default, or erf / GELU). Every weight is
    an ``nnx.Param`` of shape ``(2, *w_shape)``: the two networks of the pair, equal at
    initialisation.

    Attributes:
      layers: the layer descriptions (:class:`Dense`, :class:`Conv`), readout last.
      weights: the weights (``nnx.Param``), one per layer.
      biases: the biases (``nnx.Param``), one per layer, or empty without biases.
      input_shape: per-example input shape, ``(d,)`` or ``(H, W, C)``.
      width: hidden units (MLP) or channels (CNN).
      depth: hidden layers.
      arch: ``"mlp:L"`` or ``"cnn:L"`` (ReLU), ``"mlp:L:ACT"`` or ``"cnn:L:ACT"`` otherwise.
      seed: the PRNG seed of the initialisation.
    """

    exact_gauss_newton = False  # the Hessian of eq. (2) is not J^T J + lam I for these nets

    def __init__(self, input_shape: tuple[int, ...], layers: tuple[Dense | Conv, ...], *,
                 width: int, arch: str, seed: int = 0, param_dtype: Any = np.float64) -> None:
        """Draw every weight and bias from ``N(0, 1)`` (NTK parameterisation), pair duplicated.

        Args:
          input_shape: per-example input shape.
          layers: the layers, readout last (``fan_out == 1``).
          width: hidden units or channels (recorded).
          arch: the architecture name (recorded).
          seed: PRNG seed.
          param_dtype: float64 (default) or float32.

        Raises:
          MemoryPlanError: the parameters do not fit the host (or accelerator) memory.
        """
        dt = np.dtype(param_dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InputError(f"param_dtype must be float32 or float64, got {dt}.")
        n_params = 2 * sum(math.prod(lay.w_shape) + (lay.b_std is not None) * lay.fan_out
                           for lay in layers)
        check_param_memory(n_params, dt.itemsize, width, arch)
        with precision(dt):
            keys = jax.random.split(jax.random.PRNGKey(int(seed)), 2 * len(layers))
            pair = lambda a: jnp.stack([a, a])  # noqa: E731
            self.weights = nnx.List([nnx.Param(pair(jax.random.normal(
                keys[2 * i], lay.w_shape, dtype=dt))) for i, lay in enumerate(layers)])
            self.biases = nnx.List([nnx.Param(pair(jax.random.normal(
                keys[2 * i + 1], (lay.fan_out,), dtype=dt)))
                for i, lay in enumerate(layers) if lay.b_std is not None])
        self.layers = tuple(layers)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.width, self.depth, self.arch, self.seed = width, len(layers) - 1, arch, seed

    # ----------------------------------------------------------------------------- forward

    def _params(self) -> tuple[tuple[jax.Array, ...], tuple[jax.Array | None, ...]]:
        ws = tuple(w[...] for w in self.weights)
        it = iter(b[...] for b in self.biases)
        bs = tuple(next(it) if lay.b_std is not None else None for lay in self.layers)
        return ws, bs

    def _single(self, ws: tuple[jax.Array, ...], bs: tuple[Any, ...], x: jax.Array,
                eps: tuple[jax.Array, ...] | None) -> tuple[jax.Array, list[jax.Array]]:
        h, ins = x, []
        for i, lay in enumerate(self.layers):
            hin = lay.inputs(h)
            ins.append(hin)
            z = lay.affine(ws[i], bs[i], hin)
            if eps is not None:
                z = z + eps[i]
            h = lay.activate(z)
        return h[:, 0], ins

    def _pair(self, x: jax.Array, eps: tuple[jax.Array, ...] | None = None
              ) -> tuple[jax.Array, list[jax.Array]]:
        ws, bs = self._params()
        g, ins = jax.vmap(lambda w, b, e: self._single(w, b, x, e))(ws, bs, eps)
        return (g[0] - g[1]) / jnp.sqrt(jnp.asarray(2.0, g.dtype)), ins

    def __call__(self, x: jax.Array) -> jax.Array:
        """Outputs ``f(x)`` for ``(n, *input_shape)`` inputs, shape ``(n,)``."""
        return self._pair(x.astype(self.weights[0][...].dtype))[0]

    def reseeded(self, seed: int) -> DeepReLU:
        """The same architecture (layers, width, dtype) drawn from another seed."""
        return DeepReLU(self.input_shape, self.layers, width=self.width, arch=self.arch,
                        seed=seed, param_dtype=self.weights[0][...].dtype)

    def pre_activation_shapes(self) -> list[tuple[int, ...]]:
        """Per-example pre-activation shape of every layer (a dense readout ignores its input's)."""
        shape, out = self.input_shape, []
        for lay in self.layers:
            shape = lay.out_shape(shape)
            out.append(shape)
        return out

    def taps(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array], list[jax.Array]]:
        """Outputs, and every layer's input ``h`` and pre-activation cotangent ``df/dz``.

        One forward and one backward pass (no weight gradients).

        Args:
          x: ``(n, *input_shape)`` inputs.

        Returns:
          ``(f, inputs, cotangents)``: ``(n,)`` outputs, and lists over layers of
          ``(2, n, ...)`` arrays (pair first).
        """
        x = x.astype(self.weights[0][...].dtype)
        eps = [jnp.zeros((2, x.shape[0], *shape), x.dtype)
               for shape in self.pre_activation_shapes()]

        def total(e: tuple[jax.Array, ...]) -> tuple[jax.Array, Any]:
            f, ins = self._pair(x, e)
            return jnp.sum(f), (f, ins)  # outputs depend on their own example only

        cot, (f, ins) = jax.grad(total, has_aux=True)(tuple(eps))
        return f, ins, list(cot)

    def tap_gram(self, h1: list[jax.Array], d1: list[jax.Array],
                 h2: list[jax.Array] | None = None, d2: list[jax.Array] | None = None
                 ) -> jax.Array:
        """Empirical NTK from layer taps (:meth:`taps`): the sum of the layers' Gram blocks.

        Args:
          h1: layer inputs of the first points.
          d1: their cotangents.
          h2: layer inputs of the second points (default the first).
          d2: their cotangents.

        Returns:
          ``(n1, n2)`` kernel matrix.
        """
        k = 0.0
        for i, lay in enumerate(self.layers):
            for m in range(2):
                a, b = h1[i][m], d1[i][m]
                c, e = (a, b) if h2 is None else (h2[i][m], d2[i][m])
                k = k + lay.gram(a, b, c, e)
        return k

    def tap_jvp(self, h: list[jax.Array], d: list[jax.Array]) -> jax.Array:
        """``J v`` from layer taps, with this model's parameters as the tangent ``v``.

        ``J v = sum_l <df/dz_l, dz_l(v)>``, and the tangent ``dz_l(v)`` of a layer's
        pre-activation is the layer's affine map applied to the tangent's weights and biases.

        Args:
          h: layer inputs (:meth:`taps`) at the point where ``J`` is taken.
          d: their cotangents.

        Returns:
          ``(n,)`` products.
        """
        ws, bs = self._params()
        out = 0.0
        for i, lay in enumerate(self.layers):
            for m in range(2):
                dz = lay.affine(ws[i][m], None if bs[i] is None else bs[i][m], h[i][m])
                out = out + jnp.sum((dz * d[i][m]).reshape(dz.shape[0], -1), axis=1)
        return out

    def gram(self, x1: jax.Array, x2: jax.Array | None = None) -> jax.Array:
        """Empirical NTK ``J(x1) J(x2)^T`` from the layer structure (module docstring).

        Args:
          x1: ``(n1, *input_shape)`` inputs.
          x2: ``(n2, *input_shape)`` inputs (default ``x1``).

        Returns:
          ``(n1, n2)`` kernel matrix.
        """
        _, h1, d1 = self.taps(x1)
        if x2 is None:
            return self.tap_gram(h1, d1)
        _, h2, d2 = self.taps(x2)
        return self.tap_gram(h1, d1, h2, d2)

    # -------------------------------------------------------------------- model protocol

    @staticmethod
    def gauss_newton_step(net: Any, problem: Problem) -> GNStep:
        """The model protocol's Gauss-Newton step: products from layer taps, no autodiff Jacobian.

        :func:`~ntk_influence.nets.linearized_step` with ``aux`` the layer taps on all
        rows: the eNTK is :meth:`tap_gram`, ``J v`` is :meth:`tap_jvp` and ``J^T u`` its
        transpose (cost: module docstring). The iterates are those of the autodiff step to
        rounding.

        Args:
          net: this model as a :class:`~ntk_influence.nets.FunctionalNet`.
          problem: the :class:`~ntk_influence.nets.Problem` being solved.

        Returns:
          :class:`~ntk_influence.nets.GNStep`.
        """
        n = problem.n

        def at(theta: jax.Array) -> tuple[jax.Array, Any]:
            f, h, d = net.model(theta).taps(problem.x_all)
            return f, (h, d)

        def train_rows(aux: Any) -> tuple[list[jax.Array], list[jax.Array]]:
            return [a[:, :n] for a in aux[0]], [a[:, :n] for a in aux[1]]

        def gram(theta: jax.Array, aux: Any) -> jax.Array:
            return net.model(theta).tap_gram(*train_rows(aux))

        def linear(theta: jax.Array, aux: Any) -> tuple[Any, Any]:
            h, d = train_rows(aux)

            def jv(v: jax.Array) -> jax.Array:
                return net.model(v).tap_jvp(h, d)

            transpose = jax.linear_transpose(jv, theta)
            return jv, lambda u: transpose(u)[0]

        return linearized_step(net, problem, Linearization(at, gram, linear))

    @staticmethod
    def entk_gram(net: Any, theta: jax.Array, x1: jax.Array, x2: jax.Array | None = None
                  ) -> jax.Array:
        """The model protocol's structured eNTK hook: :meth:`gram` at flat parameters ``theta``.

        Args:
          net: this model as a :class:`~ntk_influence.nets.FunctionalNet`.
          theta: flat parameters.
          x1: ``(n1, *input_shape)`` inputs.
          x2: ``(n2, *input_shape)`` inputs (default ``x1``).

        Returns:
          ``(n1, n2)`` kernel matrix.
        """
        return net.model(theta).gram(x1, x2)

    @staticmethod
    def retrain_bytes(net: Any, n_points: int) -> int:
        """Memory of one retrain in a vmapped chunk: parameter vectors plus activations.

        Args:
          net: this model as a :class:`~ntk_influence.nets.FunctionalNet`.
          n_points: training plus test points.

        Returns:
          Bytes.
        """
        model = net.model()
        item = net.dtype.itemsize
        per = 12 * net.n_params * item
        for lay, shape in zip(model.layers, model.pre_activation_shapes(), strict=True):
            per += 2 * 6 * n_points * int(np.prod(shape)) * item
            if isinstance(lay, Conv):
                per += 2 * min(n_points * int(np.prod(lay.w_shape)) * item, GRAD_BLOCK_BYTES)
        return int(per)

    def describe(self) -> dict[str, Any]:
        """The model's settings, for results."""
        lay = self.layers[0]
        out = {"model": "DeepReLU", "arch": self.arch, "width": self.width,
               "depth": self.depth, "input_shape": list(self.input_shape),
               "W_std": lay.W_std, "W_std_out": self.layers[-1].W_std, "b_std": lay.b_std,
               "seed": self.seed, "symmetric": True, "trained": "all layers (pair)"}
        if lay.activation != "relu":  # ReLU nets keep the description of recorded runs
            out["activation"] = lay.activation
        if self.layers[-1].pool == "flatten":
            out["readout"] = "flatten"
        return out

    def limit_kernel(self) -> Kernel:
        """The infinite-width NTK of this architecture, from Neural Tangents' ``kernel_fn``."""
        return limit_kernel(self.layers, len(self.input_shape), self.arch)


def limit_kernel(layers: tuple[Dense | Conv, ...], input_ndim: int, name: str) -> Kernel:
    """The infinite-width NTK of a layer stack, from Neural Tangents' ``kernel_fn``.

    Args:
      layers: the layers (their widths do not matter).
      input_ndim: per-example input dimensions (1 for vectors, 3 for images).
      name: the architecture's name, for results.

    Returns:
      A :class:`~ntk_influence.kernels.Kernel`.
    """
    stax = nt_stax()
    kernel_fn = stax.serial(*[s for lay in layers for s in lay.stax()])[2]
    return stax_kernel(kernel_fn, "ntk", flatten=input_ndim == 1,
                       name=f"{name} NTK (Neural Tangents, all layers trained)")
