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

``import ntk_influence`` itself is light: a subpackage (and JAX with it) is imported when one of
its names is first used, so the command line can install its signal handlers first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _compat

#: Each top-level entry point and the module that defines it (imported on first use).
_ENTRY_POINTS: dict[str, str] = {
    "Dataset": "data",
    "InfluenceResult": "influence",
    "InputError": "errors",
    "KRRFactor": "linalg",
    "NotConvergedError": "errors",
    "NumericalError": "errors",
    "SingularKernelError": "errors",
    "SolverSettings": "training",
    "TrainResult": "training",
    "architecture": "nets",
    "attribution_benchmark": "attribution",
    "compare_width": "experiments",
    "dataset_from_arrays": "data",
    "entk_influence": "influence",
    "factorize": "linalg",
    "ihvp_influence": "attribution",
    "load_dataset": "data",
    "loo_retrain": "training",
    "ntk_influence": "influence",
    "precision": "_precision",
    "retrain_without": "training",
    "train": "training",
    "two_layer_net": "nets",
    "width_sweep": "experiments",
}

#: The subpackages, lowest layer first (each imported on first use).
SUBPACKAGES = (
    "errors",
    "io",
    "data",
    "kernels",
    "linalg",
    "influence",
    "scale",
    "nets",
    "training",
    "attribution",
    "experiments",
    "plots",
    "cli",
)

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
    from . import (  # noqa: F401
        attribution,
        cli,
        data,
        errors,
        experiments,
        influence,
        io,
        kernels,
        linalg,
        nets,
        plots,
        scale,
        training,
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


def __getattr__(name: str) -> Any:
    """Import a subpackage or an entry point on first use; old flat names warn (deprecated)."""
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(f"{__name__}.{_ENTRY_POINTS[name]}"), name)
        globals()[name] = value
        return value
    return _compat.moved_name(name)


def __dir__() -> list[str]:
    """The module's names, the subpackages and the entry points."""
    return sorted({*globals(), *SUBPACKAGES, *__all__})
