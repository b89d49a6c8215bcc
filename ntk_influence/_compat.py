"""Deprecation aliases for the names and module paths of the flat 0.1 layout.

Each old top-level name (``ni.pearson``) and old module path (``ntk_influence.krr``) still works
for this release: it resolves to its new home and warns with a :class:`DeprecationWarning` that
names that home. The tables below are the whole mapping; nothing else is aliased.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from typing import Any

# Old top-level names of the flat layout; each resolves to the one subpackage that exports it.
OLD_NAMES: tuple[str, ...] = (
    "Architecture", "AttributionResult", "ChunkMapResult", "ComplexityResult", "DeepReLU",
    "FunctionalNet", "IHVPInfluence", "IHVPResult", "InfluenceGroups", "Kernel",
    "LabelNoiseResult", "LambdaSweep", "LargeInfluence", "LinearizedDynamics", "MemoryPlan",
    "MemoryPlanError", "NoiseShares", "NotConvergedWarning", "PrecisionReport",
    "PrecisionWarning", "RetrainResult", "ScoreOptions", "Spectrum", "TheoryAssumptionWarning",
    "TimeAgreement", "TimeInfluenceResult", "TrainingPath", "TwoLayerReLU", "UnitNormReport",
    "WidthComparison", "actual_influence", "additive_predictions", "agreement",
    "attribution_figure", "auc", "closed_form_paper_kernel", "cnn",
    "complexity_of_influence_groups", "density_vs_error", "device_has_float64",
    "ensure_unit_norm", "entk", "entk_jacobian", "entk_structured", "entk_two_layer",
    "estimate_lambda_max", "finite_mixture", "first_order_scores", "flip_labels",
    "float32_influence", "functional", "grad_dot_scores", "group_complexity", "hessian_dense",
    "hvp", "influence_from_factor", "influence_from_kernels", "influence_groups",
    "influence_over_time", "influence_scatter", "influential_examples", "initial_output",
    "initialize", "kde_log_density", "kernel_matrix", "label_noise_experiment", "lambda_sweep",
    "large_influence", "linear_datamodeling_score", "linearized_predictions", "loss_change",
    "make_mesh", "map_chunks", "memory_plan", "method_scores", "mixture_experiment", "mlp",
    "model_entk", "most_influential", "noise_shares", "ntk_refit_outputs", "objective",
    "paper_kernel", "paper_stax", "pearson", "plan_chunk_size", "plot_figure", "point_error_rate",
    "projected_gradients", "random_subsets", "refine_solve", "relative_frobenius_error",
    "resolve_kernel", "save_figure", "select_points", "spearman", "stax_kernel", "subset_mask",
    "table_markdown", "time_agreement", "time_influence_from_kernels", "tracin_scores",
    "training_path", "trak_ensemble_scores", "trak_scores", "unit_normalize", "width_curves",
)

# Old top-level names whose object has a new name: old -> "subpackage:new_name".
RENAMED: dict[str, str] = {"ihvp_solve": "attribution:ihvp", "train_net": "training:train"}

#: Subpackages searched for an old name's home, in layer order.
HOMES = ("errors", "io", "data", "kernels", "linalg", "influence", "scale", "nets", "training",
         "attribution", "experiments", "plots")


def home_of(name: str) -> str:
    """``"subpackage:new_name"`` for an old top-level name (the subpackage whose ``__all__`` has it).

    Args:
      name: an old top-level name in :data:`OLD_NAMES` or :data:`RENAMED`.

    Returns:
      ``"subpackage:new_name"``.
    """
    if name in RENAMED:
        return RENAMED[name]
    for sub in HOMES:
        if name in getattr(importlib.import_module(f"ntk_influence.{sub}"), "__all__", ()):
            return f"{sub}:{name}"
    raise AttributeError(f"module 'ntk_influence' has no attribute {name!r}")


# Old module path (below ntk_influence) -> the subpackage that now holds its public names.
MOVED_MODULES: dict[str, str] = {
    "analysis": "experiments", "chunks": "training", "compare": "experiments",
    "complexity": "influence", "deep": "nets", "density": "experiments", "dynamics": "influence",
    "empirical": "nets", "flow": "influence", "gauss_newton": "training", "ihvp": "attribution",
    "krr": "linalg", "losses": "linalg", "retrain": "training", "spectrum": "linalg",
    "tracin": "attribution", "trak": "attribution", "user_model": "influence",
    "scale.large": "scale", "scale.memory": "linalg", "scale.mesh": "scale",
    "scale.precision": "scale",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"ntk_influence.{old} is deprecated and will be removed in the next release; "
                  f"use ntk_influence.{new}", DeprecationWarning, stacklevel=3)


def _relu_mlp(d: int, width: int, depth: int = 2, *, W_std: float = 2.0 ** 0.5, seed: int = 0,
              param_dtype: Any = None) -> Any:
    """The removed ``ReLUMLP(d, width, depth)``: :func:`ntk_influence.nets.mlp`, same weights law."""
    import numpy as np

    from .nets import mlp

    return mlp(d, width, depth, W_std=W_std, seed=seed,
               param_dtype=np.float64 if param_dtype is None else param_dtype)


def _relu_mlp_kernel(depth: int = 2, trained: str = "all", W_std: float = 2.0 ** 0.5,
                     b_std: float | None = None) -> Any:
    """The removed ``relu_mlp_kernel``: the limit kernel of :func:`ntk_influence.nets.mlp`."""
    from .nets import mlp

    return mlp(1, 1, depth, W_std=W_std, b_std=b_std).limit_kernel()


# Old names whose object was replaced by another (same maths, new signature home).
REPLACED: dict[str, tuple[str, Any]] = {
    "ReLUMLP": ("nets.mlp", _relu_mlp),
    "relu_mlp_kernel": ("nets.mlp(...).limit_kernel()", _relu_mlp_kernel),
}


def moved_name(name: str) -> Any:
    """The object an old top-level name now refers to, with a :class:`DeprecationWarning`.

    Args:
      name: an old top-level name, e.g. ``"pearson"``.

    Returns:
      the object at its new home (``ntk_influence.attribution.pearson``).

    Raises:
      AttributeError: ``name`` was never a top-level name.
    """
    if name in REPLACED:
        new, obj = REPLACED[name]
        _warn(name, new)
        return obj
    if name not in OLD_NAMES and name not in RENAMED:
        raise AttributeError(f"module 'ntk_influence' has no attribute {name!r}")
    home, _, new_name = home_of(name).partition(":")
    _warn(name, f"{home}.{new_name}")
    return getattr(importlib.import_module(f"ntk_influence.{home}"), new_name)


class _AliasLoader(importlib.abc.Loader):
    """Loads an old module path as the subpackage that replaced it."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        _warn(self.old, self.new)
        return importlib.import_module(f"ntk_influence.{self.new}")

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the module is the (already imported) new subpackage."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds the old flat module paths listed in :data:`MOVED_MODULES`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        prefix = "ntk_influence."
        if not fullname.startswith(prefix) or fullname[len(prefix):] not in MOVED_MODULES:
            return None
        old = fullname[len(prefix):]
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(old, MOVED_MODULES[old]))


def install() -> None:
    """Register the old module paths (idempotent)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
