"""Traceable Gram matrices: the eNTK on one set of points and the activation-pattern Gram.

:func:`ntk_gram` is ``J J^T`` inside ``jit`` (the model's structured eNTK hook, else the
Jacobian), used by the Gauss-Newton steps and step-size estimates; :func:`pattern_gram` is the
exact float32 count ``S1 S2^T`` of two 0/1 activation patterns, used by the closed forms of
eq. (1). The blocked, user-facing eNTK is :mod:`ntk_influence.nets._empirical`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._functional import FunctionalNet


def pattern_gram(s1: jax.Array, s2: jax.Array) -> jax.Array:
    """Gram matrix ``S1 S2^T`` of two 0/1 activation patterns, exact in float32.

    Counts the neurons active on both points; float32 products are exact up to ``2^24``
    neurons, so the product runs in float32 (fast) and is cast back to the patterns' dtype.

    Args:
      s1: ``(n1, m)`` 0/1 pattern.
      s2: ``(n2, m)`` 0/1 pattern.

    Returns:
      ``(n1, n2)`` counts in ``s1``'s dtype.
    """
    # S is 0/1, so S1 S2^T counts agreeing neurons: exact in float32 up to 2^24 neurons.
    exact32 = s1.shape[1] < 2**24
    dt = jnp.float32 if exact32 else s1.dtype
    return (s1.astype(dt) @ s2.astype(dt).T).astype(s1.dtype)


def ntk_gram(net: FunctionalNet, theta: jax.Array, x: jax.Array) -> jax.Array:
    """Empirical NTK ``J J^T`` on one set of points, traceable inside ``jit`` (no blocking).

    The model's structured eNTK when it has one (``net.gram_fn``), ``jax.jacrev`` otherwise.

    Args:
      net: the network.
      theta: flat parameters.
      x: ``(n, d)`` inputs in the net's dtype.

    Returns:
      ``(n, n)`` kernel matrix.
    """
    if net.gram_fn is not None:
        return net.gram_fn(net, theta, x, None)
    jac = net.jacobian_columns(theta, x, 0, net.n_params)
    return jac @ jac.T
