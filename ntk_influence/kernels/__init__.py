"""Infinite-width kernels: the paper's NTK of eq. (4) and any Neural Tangents ``stax`` net.

- :mod:`._kernels`: :class:`Kernel` (a jit-able kernel function with its name), the paper's
  kernel (:func:`paper_kernel`, :func:`closed_form_paper_kernel`, :func:`paper_stax`), NT
  kernels (:func:`stax_kernel`), :func:`resolve_kernel` and the blocked
  :func:`kernel_matrix`.
- :mod:`._nt`: the one import of Neural Tangents on current JAX (:func:`neural_tangents`,
  :func:`stax`).
"""

from ._kernels import (
    Kernel,
    closed_form_paper_kernel,
    kernel_matrix,
    paper_kernel,
    paper_stax,
    resolve_kernel,
    stax_kernel,
)
from ._nt import neural_tangents, stax

__all__ = [
    "Kernel",
    "closed_form_paper_kernel",
    "kernel_matrix",
    "neural_tangents",
    "paper_kernel",
    "paper_stax",
    "resolve_kernel",
    "stax",
    "stax_kernel",
]
