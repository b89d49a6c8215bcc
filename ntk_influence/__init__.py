"""ntk_influence: exact influence functions of wide neural networks through the NTK.

Implements Zhang & Zhang, *Rethinking Influence Functions of Neural Networks in the
Over-Parameterized Regime* (AAAI 2022), and checks the kernel influences against leave-one-out
retraining of finite Flax networks and against the classic Hessian-based IHVP.

The top level holds the entry points a user starts from. Everything else lives in the
subpackage of its step in the data flow, lower layers first (a subpackage imports only those
above it in this list):

- :mod:`~ntk_influence.errors`: exceptions and warnings;
- :mod:`~ntk_influence.io`: atomic files, result stores, progress;
- :mod:`~ntk_influence.data`: datasets, unit normalisation, label noise;
- :mod:`~ntk_influence.kernels`: infinite-width kernels (Neural Tangents, closed forms);
- :mod:`~ntk_influence.linalg`: the one factorisation of ``K + lam I``, its backends, spectrum
  and memory plan;
- :mod:`~ntk_influence.influence`: exact NTK influence (eqs. 8-9), groups, influence over time;
- :mod:`~ntk_influence.scale`: meshes, several hosts, float32 devices, large ``n``;
- :mod:`~ntk_influence.nets`: finite Flax nets, their model protocol and empirical NTKs;
- :mod:`~ntk_influence.training`: eq. (2) solvers, retraining, resumable chunks;
- :mod:`~ntk_influence.attribution`: IHVP, TRAK, TracIn, metrics and the LDS benchmark;
- :mod:`~ntk_influence.experiments`: width comparison, lambda sweep, density, label noise;
- :mod:`~ntk_influence.plots`: the paper's figures;
- :mod:`~ntk_influence.cli`: the ``ntk-influence`` command.
"""

from . import (
    _compat,
)
from . import (
    attribution as attribution,
)
from . import (
    data as data,
)
from . import (
    errors as errors,
)
from . import (
    experiments as experiments,
)
from . import (
    influence as influence,
)
from . import (
    io as io,
)
from . import (
    kernels as kernels,
)
from . import (
    linalg as linalg,
)
from . import (
    nets as nets,
)
from . import (
    plots as plots,
)
from . import (
    scale as scale,
)
from . import (
    training as training,
)
from ._precision import precision
from .attribution import attribution_benchmark, ihvp_influence
from .data import Dataset, dataset_from_arrays, load_dataset
from .errors import InputError, NotConvergedError, NumericalError, SingularKernelError
from .experiments import compare_width, width_sweep
from .influence import InfluenceResult, entk_influence, ntk_influence
from .linalg import KRRFactor, factorize
from .nets import architecture, two_layer_net
from .training import SolverSettings, TrainResult, loo_retrain, retrain_without, train

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "InfluenceResult",
    "InputError",
    "KRRFactor",
    "NotConvergedError",
    "NumericalError",
    "SingularKernelError",
    "SolverSettings",
    "TrainResult",
    "architecture",
    "attribution_benchmark",
    "compare_width",
    "dataset_from_arrays",
    "entk_influence",
    "factorize",
    "ihvp_influence",
    "load_dataset",
    "loo_retrain",
    "ntk_influence",
    "precision",
    "retrain_without",
    "train",
    "two_layer_net",
    "width_sweep",
]

_compat.install()


def __getattr__(name: str) -> object:
    """Old top-level names of the flat layout: resolved with a ``DeprecationWarning``."""
    return _compat.moved_name(name)
