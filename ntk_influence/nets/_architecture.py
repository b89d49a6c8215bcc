"""Architecture builders and families: :func:`mlp`, :func:`cnn` and what ``--arch`` names.

:func:`mlp` and :func:`cnn` build a :class:`~ntk_influence.nets.DeepReLU` (the deep ReLU nets of
:mod:`ntk_influence.nets._deep`, NTK parameterisation, every layer trained).
:func:`architecture` parses ``"two-layer"`` (the net of eq. (1) with the kernel of eq. (4)),
``"mlp:L"`` or ``"cnn:L"`` into an :class:`Architecture`: a family of nets over widths together
with its infinite-width NTK, and the reshaping of flat rows into images for conv nets.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .._validate import check_positive, check_whole
from ..errors import InputError
from ..kernels import paper_kernel
from ._deep import SQRT2, Conv, DeepReLU, Dense, limit_kernel
from ._functional import FunctionalNet, functional
from ._two_layer import two_layer_net


def mlp(d: int, width: int, depth: int = 3, *, W_std: float = SQRT2, W_std_out: float = 1.0,
        b_std: float | None = None, seed: int = 0, param_dtype: Any = np.float64) -> DeepReLU:
    """``mlp:L``: ``depth`` dense ReLU layers of ``width`` units and a dense readout.

    The finite version of ``stax.serial([Dense(width, W_std, b_std), Relu] * depth,
    Dense(1, W_std_out, b_std))``.

    Args:
      d: input dimension.
      width: hidden units.
      depth: hidden ReLU layers ``L >= 1``.
      W_std: hidden-layer weight scale.
      W_std_out: readout weight scale.
      b_std: bias scale (``None``: no biases).
      seed: PRNG seed.
      param_dtype: float64 (default) or float32.

    Returns:
      :class:`DeepReLU` on ``(n, d)`` inputs.
    """
    d, m, depth = check_whole(d, "d"), check_whole(width, "width"), check_whole(depth, "depth")
    ws, wo = check_positive(W_std, "W_std"), check_positive(W_std_out, "W_std_out")
    bs = check_positive(b_std, "b_std", allow_none=True)
    dims = [d] + [m] * depth
    layers = tuple(Dense(dims[i], m, ws, bs, True) for i in range(depth))
    return DeepReLU((d,), (*layers, Dense(m, 1, wo, bs, False)), width=m, arch=f"mlp:{depth}",
                    seed=seed, param_dtype=param_dtype)


def cnn(input_shape: tuple[int, int, int], width: int, depth: int = 2, *,
        W_std: float = SQRT2, W_std_out: float = 1.0, b_std: float | None = None, seed: int = 0,
        param_dtype: Any = np.float64) -> DeepReLU:
    """``cnn:L``: ``depth`` 3x3 SAME conv + ReLU layers of ``width`` channels, GAP, readout.

    The finite version of ``stax.serial([Conv(width, (3, 3), padding="SAME", W_std, b_std),
    Relu] * depth, GlobalAvgPool(), Dense(1, W_std_out, b_std))``.

    Args:
      input_shape: ``(H, W, C)`` of one image (digits: ``(8, 8, 1)``).
      width: channels.
      depth: conv layers ``L >= 1``.
      W_std: conv weight scale.
      W_std_out: readout weight scale.
      b_std: bias scale (``None``: no biases).
      seed: PRNG seed.
      param_dtype: float64 (default) or float32.

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
    chans = [shape[-1]] + [c] * depth
    layers = tuple(Conv(chans[i], c, ws, bs) for i in range(depth))
    return DeepReLU(shape, (*layers, Dense(c, 1, wo, bs, False, pool=True)), width=c,
                    arch=f"cnn:{depth}", seed=seed, param_dtype=param_dtype)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A family of nets over widths, with its infinite-width NTK: what ``--arch`` names.

    Attributes:
      name: ``"two-layer"``, ``"mlp:L"`` or ``"cnn:L"``.
      build: ``(input_shape, width, seed, dtype) -> FunctionalNet``.
      kernel: ``() -> Kernel``, the analytic NTK of the family (width-independent).
      image: whether inputs are images ``(n, H, W, C)`` (flat rows are reshaped).
      image_shape: the image shape for flat inputs (``None``: square, one channel).
    """

    name: str
    build: Any
    kernel: Any
    image: bool = False
    image_shape: tuple[int, int, int] | None = None

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
          width: hidden units (MLP, two-layer) or channels (CNN).
          seed: initialisation seed.
          dtype: parameter dtype.

        Returns:
          :class:`~ntk_influence.nets.FunctionalNet`.
        """
        return self.build(tuple(np.shape(x)[1:]), int(width), int(seed), dtype)


def architecture(spec: str | Architecture = "two-layer", *, kappa: float = 1.0,
                 symmetric: bool = True, image_shape: tuple[int, int, int] | None = None
                 ) -> Architecture:
    """Parse ``"two-layer"``, ``"mlp:L"`` or ``"cnn:L"`` into an :class:`Architecture`.

    ``two-layer`` is the paper's net of eq. (1) (first layer trained) with the kernel of eq. (4);
    ``mlp:L`` and ``cnn:L`` are :func:`mlp` and :func:`cnn` with NT's NTK.

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
    family, _, depth_text = text.partition(":")
    if family not in ("mlp", "cnn") or not depth_text.isdigit() or int(depth_text) < 1:
        raise InputError(f"unknown architecture {spec!r}; use 'two-layer', 'mlp:L' or 'cnn:L' "
                         "with L >= 1 hidden layers (e.g. mlp:3, cnn:2).")
    depth = int(depth_text)
    if family == "mlp":
        return Architecture(
            f"mlp:{depth}",
            lambda shape, w, seed, dt: functional(mlp(shape[0], w, depth, seed=seed,
                                                      param_dtype=dt)),
            lambda: limit_kernel(mlp(1, 1, depth).layers, 1, f"mlp:{depth}"))
    return Architecture(
        f"cnn:{depth}",
        lambda shape, w, seed, dt: functional(cnn(shape, w, depth, seed=seed, param_dtype=dt)),
        lambda: limit_kernel(cnn((1, 1, 1), 1, depth).layers, 3, f"cnn:{depth}"),
        image=True, image_shape=image_shape)
