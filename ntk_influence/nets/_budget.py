"""The parameter-memory check every net builder runs before it allocates anything.

A net of ``P`` trainable parameters holds ``P * itemsize`` bytes, and its initialisation needs
about three times as much again while it runs: the random bits of the Gaussian draw, the draw
itself before it is copied into place (the symmetric pair, the paired neurons) and the flat
parameter vector ``theta`` that :func:`~ntk_influence.nets.functional` makes. :func:`check_param_memory`
compares that total with the available host memory and, where an accelerator exists, with its
free memory, and raises :class:`~ntk_influence.errors.MemoryPlanError` before anything is drawn:
JAX's lazy allocation would otherwise map the memory and fail (or swap) much later.
"""

from __future__ import annotations

from ..errors import MemoryPlanError
from ..linalg import device_memory_bytes, host_memory_bytes

#: Bytes that initialisation needs besides the parameters themselves, per parameter byte.
INIT_FACTOR = 3


def param_memory_bytes(n_params: int, itemsize: int) -> int:
    """Peak bytes of building a net: the parameters plus what initialisation needs.

    Args:
      n_params: number of parameters the model stores (trained and fixed).
      itemsize: bytes per parameter (8 for float64, 4 for float32).

    Returns:
      ``(1 + INIT_FACTOR) * n_params * itemsize`` as a Python int (no overflow).
    """
    return (1 + INIT_FACTOR) * int(n_params) * int(itemsize)


def check_param_memory(n_params: int, itemsize: int, width: int, what: str) -> int:
    """Refuse a net whose parameters cannot be allocated, before allocating them.

    Args:
      n_params: number of parameters the model stores.
      itemsize: bytes per parameter.
      width: the net's width (named in the message).
      what: the net's name (e.g. ``"mlp:3"``), named in the message.

    Returns:
      The bytes needed (:func:`param_memory_bytes`).

    Raises:
      MemoryPlanError: the bytes needed exceed the host memory available, or an accelerator's
        free memory where one exists; the message gives both figures and the fix.
    """
    need = param_memory_bytes(n_params, itemsize)
    limits = [("host", host_memory_bytes())]
    dev = device_memory_bytes()
    if dev is not None:
        limits.append(("device", dev))
    for where, have in limits:
        if need > have:
            raise MemoryPlanError(
                f"{what} with width={width} has {n_params:,} parameters and needs about "
                f"{need:,} bytes ({need / 1e9:.3g} GB: the parameters and their initialisation) "
                f"but only {have:,} bytes ({have / 1e9:.3g} GB) of {where} memory are available; "
                "use a smaller width (the parameter count grows linearly in it for the "
                "two-layer net, quadratically for deep nets), or float32 parameters.")
    return need
