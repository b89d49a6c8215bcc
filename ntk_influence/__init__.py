"""ntk_influence: exact influence functions of wide neural networks through the NTK.

Implements Zhang & Zhang, *Rethinking Influence Functions of Neural Networks in the
Over-Parameterized Regime* (AAAI 2022), and checks the kernel influences against leave-one-out
retraining of finite Flax networks and against the classic Hessian-based IHVP.
"""

from ._errors import (
    InputError,
    MemoryPlanError,
    NotConvergedError,
    NotConvergedWarning,
    SingularKernelError,
    TheoryAssumptionWarning,
)
from ._precision import precision
from .data import Dataset, flip_labels, load_dataset, unit_normalize
from .influence import (
    InfluenceResult,
    influence_from_factor,
    influence_from_kernels,
    ntk_influence,
)
from .kernels import (
    Kernel,
    closed_form_paper_kernel,
    kernel_matrix,
    paper_kernel,
    paper_stax,
    relu_mlp_kernel,
    resolve_kernel,
    stax_kernel,
)
from .krr import KRRFactor, Spectrum, factorize, spectrum

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "InfluenceResult",
    "InputError",
    "KRRFactor",
    "Kernel",
    "MemoryPlanError",
    "NotConvergedError",
    "NotConvergedWarning",
    "SingularKernelError",
    "Spectrum",
    "TheoryAssumptionWarning",
    "closed_form_paper_kernel",
    "factorize",
    "flip_labels",
    "influence_from_factor",
    "influence_from_kernels",
    "kernel_matrix",
    "load_dataset",
    "ntk_influence",
    "paper_kernel",
    "paper_stax",
    "precision",
    "relu_mlp_kernel",
    "resolve_kernel",
    "spectrum",
    "stax_kernel",
    "unit_normalize",
]
