"""TODO."""

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
