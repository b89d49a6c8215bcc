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

# Old top-level name -> "subpackage" or "subpackage:new_name".
MOVED_NAMES: dict[str, str] = {
    "Architecture": "nets", "AttributionResult": "attribution", "ChunkMapResult": "training",
    "ComplexityResult": "influence", "DeepReLU": "nets", "FunctionalNet": "nets",
    "IHVPInfluence": "attribution", "IHVPResult": "attribution", "InfluenceGroups": "influence",
    "Kernel": "kernels", "LabelNoiseResult": "experiments", "LambdaSweep": "experiments",
    "LargeInfluence": "scale", "LinearizedDynamics": "influence", "MemoryPlan": "linalg",
    "MemoryPlanError": "errors", "NoiseShares": "experiments", "NotConvergedWarning": "errors",
    "PrecisionReport": "scale", "PrecisionWarning": "errors",
    "RetrainResult": "training", "ScoreOptions": "attribution", "Spectrum": "linalg",
    "TheoryAssumptionWarning": "errors", "TimeAgreement": "influence",
    "TimeInfluenceResult": "influence", "TrainingPath": "attribution", "TwoLayerReLU": "nets",
    "UnitNormReport": "data", "WidthComparison": "experiments",
    "actual_influence": "training", "additive_predictions": "attribution",
    "agreement": "attribution", "attribution_figure": "plots", "auc": "attribution",
    "closed_form_paper_kernel": "kernels", "cnn": "nets", "complexity_of_influence_groups": "influence",
    "density_vs_error": "experiments", "device_has_float64": "scale", "ensure_unit_norm": "data",
    "entk": "nets", "entk_jacobian": "nets", "entk_structured": "nets", "entk_two_layer": "nets",
    "estimate_lambda_max": "training", "finite_mixture": "experiments",
    "first_order_scores": "attribution", "flip_labels": "data", "float32_influence": "scale",
    "functional": "nets", "grad_dot_scores": "attribution", "group_complexity": "influence",
    "hessian_dense": "attribution", "hvp": "attribution", "ihvp_solve": "attribution:ihvp",
    "influence_from_factor": "influence", "influence_from_kernels": "influence",
    "influence_groups": "influence", "influence_over_time": "influence",
    "influence_scatter": "plots", "influential_examples": "influence", "initial_output": "nets",
    "initialize": "scale", "kde_log_density": "experiments", "kernel_matrix": "kernels",
    "label_noise_experiment": "experiments", "lambda_sweep": "experiments",
    "large_influence": "scale", "linear_datamodeling_score": "attribution",
    "linearized_predictions": "influence", "loss_change": "linalg", "make_mesh": "scale",
    "map_chunks": "training", "memory_plan": "linalg", "method_scores": "attribution",
    "mixture_experiment": "experiments", "mlp": "nets", "model_entk": "influence",
    "most_influential": "influence", "noise_shares": "experiments",
    "ntk_refit_outputs": "attribution", "objective": "training", "paper_kernel": "kernels",
    "paper_stax": "kernels", "pearson": "attribution", "plan_chunk_size": "training",
    "plot_figure": "plots", "point_error_rate": "experiments", "projected_gradients": "attribution",
    "random_subsets": "attribution", "refine_solve": "linalg",
    "relative_frobenius_error": "nets", "resolve_kernel": "kernels",
    "save_figure": "plots", "select_points": "experiments", "spearman": "attribution",
    "stax_kernel": "kernels", "subset_mask": "attribution", "table_markdown": "experiments",
    "time_agreement": "influence", "time_influence_from_kernels": "influence",
    "tracin_scores": "attribution", "train_net": "training:train", "training_path": "attribution",
    "trak_ensemble_scores": "attribution", "trak_scores": "attribution",
    "unit_normalize": "data", "width_curves": "plots",
}

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
    if name not in MOVED_NAMES:
        raise AttributeError(f"module 'ntk_influence' has no attribute {name!r}")
    home, _, new_name = MOVED_NAMES[name].partition(":")
    new_name = new_name or name
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
