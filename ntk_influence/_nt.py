"""The one module that imports Neural Tangents and touches JAX internals on its behalf.

neural-tangents 0.6.5 (the last release) imports names that newer JAX moved: ``jax.core.Jaxpr``
and friends (now in ``jax.extend.core``), the ``jax.util`` module (``safe_zip``/``safe_map``) and
``jax.interpreters.ad.zeros_like_p``. :func:`neural_tangents` installs aliases for exactly the
missing names and nothing else, so it is a no-op on JAX versions where NT imports as is. It also
registers an empty ``neural_tangents.experimental`` module first, so that importing NT does not
load TensorFlow (NT's ``experimental`` package is the only part that needs it).

NT's NTK-vector-product eNTK counts output sizes with ``jnp.size`` on ``jax.ShapeDtypeStruct``,
which current JAX deprecates (a ``DeprecationWarning``, "in a future JAX release this will be an
error"); where it does, the two helpers that do so are replaced by the same code reading
``.shape`` (:func:`_patch_shape_sizes`).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from typing import Any

_CORE_NAMES = ("Jaxpr", "Var", "Literal", "JaxprEqn", "Primitive")


def _install_aliases() -> list[str]:
    """Add the aliases NT 0.6.5 needs on current JAX; return the names that were added."""
    import jax
    import jax.core
    import jax.interpreters.ad as ad

    added: list[str] = []
    missing = [n for n in _CORE_NAMES if not hasattr(jax.core, n)]
    if missing:
        import jax.extend.core as jex_core

        for name in missing:
            setattr(jax.core, name, getattr(jex_core, name))
            added.append(f"jax.core.{name}")
    if "jax.util" not in sys.modules and importlib.util.find_spec("jax.util") is None:
        util = types.ModuleType("jax.util")

        def safe_zip(*args: Any) -> list[tuple[Any, ...]]:
            n = len(args[0])
            for arg in args[1:]:
                if len(arg) != n:
                    raise ValueError(f"length mismatch: {[len(a) for a in args]}")
            return list(zip(*args))

        def safe_map(f: Any, *args: Any) -> list[Any]:
            return [f(*a) for a in safe_zip(*args)]

        util.safe_zip = safe_zip  # type: ignore[attr-defined]
        util.safe_map = safe_map  # type: ignore[attr-defined]
        sys.modules["jax.util"] = util
        jax.util = util  # type: ignore[attr-defined]
        added.append("jax.util")
    if not hasattr(ad, "zeros_like_p"):
        # Current JAX never emits this primitive; NT only registers rules under it.
        import jax.extend.core as jex_core

        ad.zeros_like_p = jex_core.Primitive("zeros_like")  # type: ignore[attr-defined]
        added.append("jax.interpreters.ad.zeros_like_p")
    return added


def _shape_size_deprecated() -> bool:
    """Whether ``jnp.size`` refuses (warns on or rejects) a ``jax.ShapeDtypeStruct``."""
    import warnings

    import jax
    import jax.numpy as jnp
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            jnp.size(jax.ShapeDtypeStruct((2,), np.float32))
        except (DeprecationWarning, TypeError):
            return True
    return False


def _patch_shape_sizes(empirical: Any) -> list[str]:
    """Replace NT's ``_std_basis``/``_unravel_array_into_pytree`` where ``jnp.size`` needs arrays.

    The replacements are NT 0.6.5's code with ``jnp.size(leaf)`` read as the product of
    ``leaf.shape``, which works on arrays and ``ShapeDtypeStruct`` alike.

    Args:
      empirical: the ``neural_tangents._src.empirical`` module.

    Returns:
      The names replaced (empty when nothing needed it).
    """
    import math

    import jax
    import jax.numpy as jnp
    import numpy as np

    names = ("_std_basis", "_unravel_array_into_pytree")
    if not _shape_size_deprecated() or not all(hasattr(empirical, n) for n in names):
        return []

    def size(leaf: Any) -> int:
        return math.prod(np.shape(leaf))  # np.shape reads .shape, so no array is made

    def unravel(pytree: Any, axis: int, arr: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(pytree)
        if arr.ndim > 0:
            axis %= arr.ndim
        shapes = [arr.shape[:axis] + np.shape(leaf) + arr.shape[axis + 1:] for leaf in leaves]
        parts = jnp.split(arr, np.cumsum([size(leaf) for leaf in leaves[:-1]]), axis)
        return jax.tree_util.tree_unflatten(
            treedef, [jnp.reshape(x, shape) for x, shape in zip(parts, shapes, strict=True)])

    def std_basis(pytree: Any) -> Any:
        leaves, _ = jax.tree_util.tree_flatten(pytree)
        ndim = sum(size(leaf) for leaf in leaves)
        basis = jnp.eye(ndim, dtype=jax.dtypes.result_type(*leaves))
        return unravel(pytree, 1, basis)

    empirical._std_basis = std_basis
    empirical._unravel_array_into_pytree = unravel
    return [f"neural_tangents._src.empirical.{n}" for n in names]


@functools.lru_cache(maxsize=1)
def neural_tangents() -> Any:
    """Import Neural Tangents on the installed JAX, without loading TensorFlow.

    Returns:
      The ``neural_tangents`` module.
    """
    if "neural_tangents" not in sys.modules:
        if "neural_tangents.experimental" not in sys.modules:
            sys.modules["neural_tangents.experimental"] = types.ModuleType(
                "neural_tangents.experimental"
            )
        _install_aliases()
    import neural_tangents as nt
    from neural_tangents._src import empirical

    _patch_shape_sizes(empirical)
    return nt


def stax() -> Any:
    """Return ``neural_tangents.stax`` (imported through :func:`neural_tangents`)."""
    return neural_tangents().stax
