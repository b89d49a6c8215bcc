"""Empirical NTK of a finite Flax net: ``K_ij = <df(x_i)/dtheta, df(x_j)/dtheta>``.

Two routes, tested against each other and against ``jax.jacobian``:

- :func:`entk_jacobian`: any model, pure JAX Jacobian contraction in blocks of points (the
  Jacobian of a block is materialised, the blocks are contracted pairwise);
- :func:`entk_structured`: the model's own structured eNTK (its ``entk_gram`` hook, see
  :class:`~ntk_influence.nets.EntkGramHook`): for eq. (1) ``K_ij = x_i.x_j (S S^T)_ij / m``
  with the activation pattern ``S`` (:func:`entk_two_layer`), for the deep nets of
  :class:`~ntk_influence.nets.DeepReLU` layer-wise Grams of inputs and cotangents; no Jacobian
  in memory.

:func:`entk` picks between them. The compiled block programs are kept on the net
(:meth:`~ntk_influence.nets.FunctionalNet.program`), so repeated calls do not recompile.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import precision
from ..errors import InputError
from ._functional import FunctionalNet
from ._two_layer import TwoLayerReLU


def _as_x(net: FunctionalNet, x: Any, name: str) -> jax.Array:
    arr = jnp.asarray(x, net.dtype)
    shape = net.input_shape
    if shape is None and arr.ndim != 2:
        raise InputError(f"{name} must be (n, d), got shape {arr.shape}.")
    if shape is not None and tuple(arr.shape[1:]) != shape:
        raise InputError(f"{name} must be (n, {', '.join(map(str, shape))}) for this net, got "
                         f"shape {arr.shape}.")
    return arr


def entk_structured(net: FunctionalNet, x1: Any, x2: Any | None = None,
                    theta: jax.Array | None = None, *, block_size: int = 1024) -> jax.Array:
    """Empirical NTK from the model's structured hook (``net.gram_fn``), in row blocks.

    Args:
      net: a :class:`FunctionalNet` whose model defines ``entk_gram``.
      x1: ``(n1, ...)`` inputs.
      x2: ``(n2, ...)`` inputs (default ``x1``).
      theta: flat parameters (default ``W(0)``).
      block_size: rows of ``x1`` per block.

    Returns:
      ``(n1, n2)`` kernel matrix.
    """
    if net.gram_fn is None:
        raise InputError(f"the model {net.description.get('model')} has no structured eNTK "
                         "(entk_gram); use entk(..., method='jacobian').")
    with precision(net.dtype):
        t = net.theta0 if theta is None else jnp.asarray(theta, net.dtype)
        a1 = _as_x(net, x1, "x1")
        a2 = a1 if x2 is None else _as_x(net, x2, "x2")
        bs = max(1, int(block_size))
        if x2 is None and a1.shape[0] <= bs:
            return _gram_jit(net)(t, a1, None)
        return jnp.concatenate([_gram_jit(net)(t, a1[s:s + bs], a2)
                                for s in range(0, a1.shape[0], bs)], axis=0)


def _gram_jit(net: FunctionalNet) -> Any:
    """The model's structured eNTK under ``jit``, kept on the net (compiled once per shape)."""
    return net.program("entk_gram", lambda: jax.jit(lambda t, a, b: net.gram_fn(net, t, a, b)))


def _jacobian_jit(net: FunctionalNet) -> Any:
    """``(theta, x) -> J(x)``, the ``(b, P)`` Jacobian of a block, under ``jit``, kept on the net."""
    return net.program("jacobian", lambda: jax.jit(
        lambda tt, xb: net.jacobian_columns(tt, xb, 0, net.n_params)))


def entk_two_layer(net: FunctionalNet, x1: Any, x2: Any | None = None,
                   theta: jax.Array | None = None, *, block_size: int = 1024) -> jax.Array:
    """Empirical NTK of the two-layer net in closed form: ``x_i.x_j (S S^T)_ij / m``.

    Since ``a_r^2 = 1``, ``J_i . J_j = m^-1 sum_r 1{w_r.x_i > 0} 1{w_r.x_j > 0} x_i.x_j``.

    Args:
      net: the two-layer :class:`FunctionalNet` of eq. (1).
      x1: ``(n1, d)`` inputs.
      x2: ``(n2, d)`` inputs (default ``x1``).
      theta: flat parameters (default ``W(0)``).
      block_size: rows of ``x1`` per block.

    Returns:
      ``(n1, n2)`` kernel matrix.
    """
    if net.gram_fn is not TwoLayerReLU.entk_gram:
        raise InputError("entk_two_layer needs the two-layer net of eq. (1); use entk().")
    return entk_structured(net, x1, x2, theta, block_size=block_size)


def entk_jacobian(net: FunctionalNet, x1: Any, x2: Any | None = None,
                  theta: jax.Array | None = None, *, block_size: int | None = None,
                  memory_bytes: int = 2**28) -> jax.Array:
    """Empirical NTK of any :class:`FunctionalNet` by batched Jacobian contraction.

    ``K = J(x1) J(x2)^T`` with ``J`` the ``(n, P)`` Jacobian of the outputs with respect to the
    trainable parameters, built ``block_size`` points at a time (reverse mode).

    Args:
      net: the network.
      x1: ``(n1, d)`` inputs.
      x2: ``(n2, d)`` inputs (default ``x1``).
      theta: flat parameters (default ``W(0)``).
      block_size: points per Jacobian block (default: what fits in ``memory_bytes``).
      memory_bytes: memory budget of one Jacobian block.

    Returns:
      ``(n1, n2)`` kernel matrix.
    """
    with precision(net.dtype):
        t = net.theta0 if theta is None else jnp.asarray(theta, net.dtype)
        a1 = _as_x(net, x1, "x1")
        a2 = None if x2 is None else _as_x(net, x2, "x2")
        if block_size is None:
            block_size = max(1, int(memory_bytes // (net.n_params * net.dtype.itemsize)))
        bs = max(1, int(block_size))
        jac = _jacobian_jit(net)  # (b, P)

        def blocks(a: jax.Array) -> list[jax.Array]:
            return [jac(t, a[s:s + bs]) for s in range(0, a.shape[0], bs)]

        if a2 is None:
            jb = blocks(a1)
            rows = [jnp.concatenate([ja @ jc.T for jc in jb], axis=1) for ja in jb]
            return jnp.concatenate(rows, axis=0)
        rows = []
        for s in range(0, a1.shape[0], bs):
            ja = jac(t, a1[s:s + bs])
            rows.append(jnp.concatenate([ja @ jac(t, a2[u:u + bs]).T
                                         for u in range(0, a2.shape[0], bs)], axis=1))
        return jnp.concatenate(rows, axis=0)


def entk(net: FunctionalNet, x1: Any, x2: Any | None = None, theta: jax.Array | None = None,
         *, method: str = "auto") -> jax.Array:
    """Empirical NTK of a finite net at parameters ``theta`` (default: at initialisation).

    Args:
      net: the network.
      x1: ``(n1, d)`` inputs.
      x2: ``(n2, d)`` inputs (default ``x1``).
      theta: flat parameters (default ``W(0)``).
      method: ``"auto"`` (the model's structured eNTK when it has one, else Jacobian
        contraction), ``"structured"`` or ``"jacobian"``.

    Returns:
      ``(n1, n2)`` kernel matrix (a JAX array in the net's dtype).
    """
    if method not in ("auto", "structured", "jacobian"):
        raise InputError(f"method must be 'auto', 'structured' or 'jacobian', got {method!r}.")
    if method == "structured" or (method == "auto" and net.gram_fn is not None):
        return entk_structured(net, x1, x2, theta)
    return entk_jacobian(net, x1, x2, theta)


def relative_frobenius_error(k: Any, k_ref: Any) -> float:
    """``||K - K_ref||_F / ||K_ref||_F``, the distance of an empirical NTK to the analytic one.

    Args:
      k: a kernel matrix.
      k_ref: the reference.

    Returns:
      The relative error.
    """
    a, b = np.asarray(k, np.float64), np.asarray(k_ref, np.float64)
    if a.shape != b.shape:
        raise InputError(f"kernel shapes differ: {a.shape} vs {b.shape}.")
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
