"""Activations of the deep nets, each with its closed-form derivative and its Neural Tangents layer.

- ``relu``: ``max(z, 0)`` (``jax.nn.relu``), NT's ``stax.Relu()``;
- ``erf``: ``erf(z)`` (``jax.scipy.special.erf``), derivative ``2 / sqrt(pi) exp(-z^2)``,
  NT's ``stax.Erf()`` (``a = b = 1``, ``c = 0``);
- ``gelu``: the exact GELU ``z Phi(z) = z (1 + erf(z / sqrt 2)) / 2``, derivative
  ``Phi(z) + z phi(z) = (1 + erf(z / sqrt 2)) / 2 + z exp(-z^2 / 2) / sqrt(2 pi)``, NT's
  ``stax.Gelu()`` (whose default ``approximate=False`` is this exact form, not the tanh
  approximation).

The smooth activations are ``jax.custom_jvp`` functions whose tangent is the closed-form
derivative, so the backward pass of :meth:`~ntk_influence.nets.DeepReLU.taps` (the layer
cotangents ``df/dz``) uses the formula above rather than differentiating through ``erf``.
ReLU stays ``jax.nn.relu`` exactly, so the ReLU nets are unchanged bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from ..errors import InputError
from ..kernels import stax as nt_stax


def _erf_derivative(z: jax.Array) -> jax.Array:
    return (2.0 / math.sqrt(math.pi)) * jnp.exp(-z * z)


def _gelu(z: jax.Array) -> jax.Array:
    return z * (1.0 + erf(z / math.sqrt(2.0))) / 2.0


def _gelu_derivative(z: jax.Array) -> jax.Array:
    return (1.0 + erf(z / math.sqrt(2.0))) / 2.0 + z * jnp.exp(-z * z / 2.0) / math.sqrt(2 * math.pi)


def _relu_derivative(z: jax.Array) -> jax.Array:
    return jnp.where(z > 0, 1.0, 0.0).astype(z.dtype)


def _with_derivative(fn: Callable[[jax.Array], jax.Array],
                     derivative: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """``fn`` as a ``jax.custom_jvp`` whose tangent is ``derivative(z) * dz``."""
    wrapped = jax.custom_jvp(fn)

    @wrapped.defjvp
    def _jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
        (z,), (dz,) = primals, tangents
        return fn(z), derivative(z) * dz

    return wrapped


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise activation of the deep nets.

    Attributes:
      name: ``"relu"``, ``"erf"`` or ``"gelu"``.
      fn: the activation as used in the finite net (differentiable; its tangent is
        ``derivative``).
      formula: the plain formula (no custom derivative), for checks.
      derivative: its closed-form derivative.
      layer: ``() -> `` the Neural Tangents layer whose ``kernel_fn`` is its infinite-width map.
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    formula: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array], jax.Array]
    layer: Callable[[], Any]


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", jax.nn.relu, lambda z: jnp.maximum(z, 0.0), _relu_derivative,
                       lambda: nt_stax().Relu()),
    "erf": Activation("erf", _with_derivative(erf, _erf_derivative), erf, _erf_derivative,
                      lambda: nt_stax().Erf()),
    "gelu": Activation("gelu", _with_derivative(_gelu, _gelu_derivative), _gelu,
                       _gelu_derivative, lambda: nt_stax().Gelu(approximate=False)),
}


def activation(name: Any) -> Activation:
    """The :class:`Activation` called ``name`` (case-insensitive).

    Args:
      name: ``"relu"``, ``"erf"`` or ``"gelu"``.

    Returns:
      :class:`Activation`.

    Raises:
      InputError: an unknown name.
    """
    key = str(name).strip().lower() if isinstance(name, str) else None
    if key not in ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[key]
