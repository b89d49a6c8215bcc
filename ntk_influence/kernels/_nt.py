"""The one module that imports Neural Tangents and touches JAX internals on its behalf.

neural-tangents 0.6.5 (the last release) imports names that newer JAX moved: ``jax.core.Jaxpr``
and friends (now in ``jax.extend.core``), the ``jax.util`` module (``safe_zip``/``safe_map``) and
``jax.interpreters.ad.zeros_like_p``. :func:`neural_tangents` installs aliases for exactly the
missing names and nothing else, so it is a no-op on JAX versions where NT imports as is. It also
registers an empty ``neural_tangents.experimental`` module first, so that importing NT does not
load TensorFlow (NT's ``experimental`` package is the only part that needs it).
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

    return nt


def stax() -> Any:
    """Neural Tangents' ``stax`` module, imported through :func:`neural_tangents`.

    Returns:
      The ``neural_tangents.stax`` module.
    """
    return neural_tangents().stax
