"""Architecture builders and families: :func:`mlp`, :func:`cnn` and what ``--arch`` names.

:func:`mlp` and :func:`cnn` build a :class:`~ntk_influence.nets.DeepReLU` (the deep nets of
:mod:`ntk_influence.nets._deep`, NTK parameterisation, every layer trained; ReLU, erf or GELU).
:func:`architecture` parses ``"two-layer"`` (the net of eq. (1) with the kernel of eq. (4)),
``"mlp:L"``, ``"cnn:L"``, ``"mlp:L:ACT"`` or ``"cnn:L:ACT"`` into an :class:`Architecture`: a
family of nets over widths together with its infinite-width NTK, and the reshaping of flat rows
into images for conv nets. ``mlp:L`` is ``mlp:L:relu`` (the same nets, weights and names).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .._validate import check_positive, check_whole
from ..errors import InputError
from ..kernels import paper_kernel
from ._activations import activation as check_activation
from ._deep import SQRT2, Conv, DeepReLU, Dense, limit_kernel
from ._functional import FunctionalNet, functional
from ._two_layer import two_layer_net

#: How a conv net's feature map reaches its readout: ``gap`` (global average pooling, the
#: default) or ``flatten`` (every position, NT's ``Flatten``).
READOUTS = ("gap", "flatten")


def _arch_name(family: str, depth: int, act: str, readout: str = "gap") -> str:
    """``"mlp:L"`` for ReLU (the name of recorded runs), ``"mlp:L:ACT"`` otherwise; a conv net
    with the flattened readout ends in ``":flatten"`` (``"cnn:2:erf:flatten"``)."""
    if readout != "gap":
        return f"{family}:{depth}:{act}:{readout}"
    return f"{family}:{depth}" if act == "relu" else f"{family}:{depth}:{act}"


def mlp(d: int, width: int, depth: int = 3, *, W_std: float = SQRT2, W_std_out: float = 1.0,
        b_std: float | None = None, seed: int = 0, param_dtype: Any = np.float64,
        activation: str = "relu") -> DeepReLU:
    """``mlp:L[:ACT]``: ``depth`` dense layers of ``width`` units with activation, then a readout.

    The finite version of ``stax.serial([Dense(width, W_std, b_std), Act] * depth,
    Dense(1, W_std_out, b_std))`` with ``Act`` NT's ``Relu()``, ``Erf()`` or ``Gelu()``.

    Args:
      d: input dimension.
      width: hidden units.
      depth: hidden layers ``L >= 1``.
      W_std: hidden-layer weight scale.
      W_std_out: readout weight scale.
      b_std: bias scale (``None``: no biases).
      seed: PRNG seed.
      param_dtype: float64 (default) or float32.
      activation: ``"relu"`` (default), ``"erf"`` or ``"gelu"`` (exact, ``z Phi(z)``).

    Returns:
      :class:`DeepReLU` on ``(n, d)`` inputs.
    """
    d, m, depth = check_whole(d, "d"), check_whole(width, "width"), check_whole(depth, "depth")
    ws, wo = check_positive(W_std, "W_std"), check_positive(W_std_out, "W_std_out")
    bs = check_positive(b_std, "b_std", allow_none=True)
    act = check_activation(activation).name
    dims = [d] + [m] * depth
    layers = tuple(Dense(dims[i], m, ws, bs, act) for i in range(depth))
    return DeepReLU((d,), (*layers, Dense(m, 1, wo, bs, None)), width=m,
                    arch=_arch_name("mlp", depth, act), seed=seed, param_dtype=param_dtype)


def cnn(input_shape: tuple[int, int, int], width: int, depth: int = 2, *,
        W_std: float = SQRT2, W_std_out: float = 1.0, b_std: float | None = None, seed: int = 0,
        param_dtype: Any = np.float64, activation: str = "relu",
        readout: str = "gap") -> DeepReLU:
    """``cnn:L[:ACT][:flatten]``: ``depth`` 3x3 SAME conv layers of ``width`` channels, readout.

    The finite version of ``stax.serial([Conv(width, (3, 3), padding="SAME", W_std, b_std),
    Act] * depth, GlobalAvgPool(), Dense(1, W_std_out, b_std))`` with ``Act`` NT's ``Relu()``,
    ``Erf()`` or ``Gelu()``; with ``readout="flatten"``, ``Flatten()`` replaces
    ``GlobalAvgPool()``. On small images such as the 8x8 digits, pooling averages away where
    the strokes are: the pooled NTK's off-diagonal entries are within 1% of its diagonal, and
    kernel regression with ``lam = 0.1`` barely fits; the flattened readout keeps position.

    Args:
      input_shape: ``(H, W, C)`` of one image (digits: ``(8, 8, 1)``).
      width: channels.
      depth: conv layers ``L >= 1``.
      W_std: conv weight scale.
      W_std_out: readout weight scale.
      b_std: bias scale (``None``: no biases).
      seed: PRNG seed.
      param_dtype: float64 (default) or float32.
      activation: ``"relu"`` (default), ``"erf"`` or ``"gelu"`` (exact, ``z Phi(z)``).
      readout: ``"gap"`` (default) or ``"flatten"`` (:data:`READOUTS`).

    Returns:
      :class:`DeepReLU` on ``(n, H, W, C)`` inputs.
    """
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise InputError(f"cnn needs an image shape (H, W, C), got {input_shape!r}.")
    shape = tuple(check_whole(s, "input_shape entries") for s in shape)
    c, depth = check_whole(width, "width"), check_whole(depth, "depth")
    ws, wo = check_positive(W_std, "W_std"), check_positive(W_std_out, "W_std_out")
    bs = check_positive(b_std, "b_std", allow_none=True)
    act = check_activation(activation).name
    if readout not in READOUTS:
        raise InputError(f"readout must be one of {READOUTS}, got {readout!r}.")
    chans = [shape[-1]] + [c] * depth
    layers = tuple(Conv(chans[i], c, ws, bs, act) for i in range(depth))
    fan_in = c if readout == "gap" else c * shape[0] * shape[1]
    return DeepReLU(shape, (*layers, Dense(fan_in, 1, wo, bs, None, pool=readout)), width=c,
                    arch=_arch_name("cnn", depth, act, readout), seed=seed,
                    param_dtype=param_dtype)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A family of nets over widths, with its infinite-width NTK: what ``--arch`` names.

    Attributes:
      name: ``"two-layer"``, ``"mlp:L"`` or ``"cnn:L"`` (ReLU), ``"mlp:L:ACT"``, ``"cnn:L:ACT"``.
      build: ``(input_shape, width, seed, dtype) -> FunctionalNet``.
      kernel: ``() -> Kernel``, the analytic NTK of the family (width-independent).
      image: whether inputs are images ``(n, H, W, C)`` (flat rows are reshaped).
      image_shape: the image shape for flat inputs (``None``: square, one channel).
      smooth: whether the activation is smooth (erf, GELU): eq. (2) is then twice
        differentiable, its minimisers are stationary points, and retraining defaults to
        truncated Newton to a gradient tolerance with warm starts (ReLU: ``False``).
    """

    name: str
    build: Any
    kernel: Any
    image: bool = False
    image_shape: tuple[int, int, int] | None = None
    smooth: bool = False

    def prepare(self, x: Any) -> np.ndarray:
        """Inputs in the shape the family takes: images ``(n, H, W, C)`` from flat rows.

        Args:
          x: ``(n, d)`` rows (or images already).

        Returns:
          Host float64 array.
        """
        a = np.asarray(x, np.float64)
        if not self.image or a.ndim == 4:
            return a
        d = a.shape[1]
        shape = self.image_shape
        if shape is None:
            side = math.isqrt(d)
            if side * side != d:
                raise InputError(f"{self.name} takes images but the rows have {d} features, not a "
                                 "square; give image_shape=(H, W, C).")
            shape = (side, side, 1)
        if int(np.prod(shape)) != d:
            raise InputError(f"image_shape {shape} does not hold {d} features.")
        return a.reshape(a.shape[0], *shape)

    def net(self, x: Any, width: int, *, seed: int = 0, dtype: Any = np.float64) -> FunctionalNet:
        """A net of this family for inputs like ``x`` (prepared), as a ``FunctionalNet``.

        Args:
          x: prepared inputs (their per-example shape is the net's input shape).
          width: hidden units (MLP, two-layer) or channels (CNN), a whole number ``>= 1``.
          seed: initialisation seed, a whole number ``>= 0``.
          dtype: parameter dtype.

        Returns:
          :class:`~ntk_influence.nets.FunctionalNet`.

        Raises:
          InputError: a width or seed that is not a whole number (``2.5`` is refused, not
            truncated).
          MemoryPlanError: the net's parameters do not fit the available memory.
        """
        width, seed = check_whole(width, "width"), check_whole(seed, "seed", low=0)
        return self.build(tuple(np.shape(x)[1:]), width, seed, dtype)


def architecture(spec: str | Architecture = "two-layer", *, kappa: float = 1.0,
                 symmetric: bool = True, image_shape: tuple[int, int, int] | None = None
                 ) -> Architecture:
    """Parse ``"two-layer"``, ``"mlp:L[:ACT]"`` or ``"cnn:L[:ACT][:READOUT]"`` into a family.

    ``two-layer`` is the paper's net of eq. (1) (first layer trained) with the kernel of eq. (4);
    ``mlp:L:ACT`` and ``cnn:L:ACT`` are :func:`mlp` and :func:`cnn` with activation ``ACT``
    (``relu``, the default when omitted, ``erf`` or ``gelu``) and NT's NTK of the same stack.
    ``mlp:L:relu`` is ``mlp:L`` (same name, same nets). A conv net's ``READOUT`` is ``gap``
    (global average pooling, the default) or ``flatten`` (:func:`cnn`): ``cnn:2:erf:flatten``.

    Args:
      spec: the architecture.
      kappa: first-layer scale of the two-layer net.
      symmetric: paired initialisation of the two-layer net (the deep nets always pair).
      image_shape: ``(H, W, C)`` for ``cnn:L`` on flat rows (default: square, one channel).

    Returns:
      :class:`Architecture`.
    """
    if isinstance(spec, Architecture):
        return spec
    text = str(spec).strip().lower().replace("_", "-")
    if text in ("two-layer", "twolayer", "2-layer"):
        return Architecture(
            "two-layer",
            lambda shape, w, seed, dt: two_layer_net(shape[0], w, kappa=kappa,
                                                     symmetric=symmetric, seed=seed,
                                                     param_dtype=dt),
            lambda: paper_kernel("first", implementation="closed_form"))
    parts = text.split(":")
    family, depth_text = parts[0], parts[1] if len(parts) > 1 else ""
    readout = "gap"
    if family == "cnn" and len(parts) in (3, 4) and parts[-1] in READOUTS:
        readout, parts = parts[-1], parts[:-1]
    if (len(parts) not in (2, 3) or family not in ("mlp", "cnn") or not depth_text.isdigit()
            or int(depth_text) < 1):
        raise InputError(f"unknown architecture {spec!r}; use 'two-layer', 'mlp:L' or 'cnn:L' "
                         "with L >= 1 hidden layers (e.g. mlp:3, cnn:2), optionally with an "
                         "activation 'mlp:L:ACT', ACT one of relu, erf, gelu (e.g. mlp:2:erf), "
                         "and for a conv net a readout 'cnn:L:ACT:READOUT', READOUT gap (the "
                         "default) or flatten (e.g. cnn:2:erf:flatten).")
    depth, act = int(depth_text), check_activation(parts[2] if len(parts) == 3 else "relu").name
    name = _arch_name(family, depth, act, readout)
    if family == "mlp":
        return Architecture(
            name,
            lambda shape, w, seed, dt: functional(mlp(shape[0], w, depth, seed=seed,
                                                      param_dtype=dt, activation=act)),
            lambda: limit_kernel(mlp(1, 1, depth, activation=act).layers, 1, name),
            smooth=act != "relu")
    return Architecture(
        name,
        lambda shape, w, seed, dt: functional(cnn(shape, w, depth, seed=seed, param_dtype=dt,
                                                  activation=act, readout=readout)),
        lambda: limit_kernel(cnn((1, 1, 1), 1, depth, activation=act, readout=readout).layers,
                             3, name),
        image=True, image_shape=image_shape, smooth=act != "relu")
