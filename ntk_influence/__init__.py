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
    NumericalError,
    PrecisionWarning,
    SingularKernelError,
    TheoryAssumptionWarning,
)
from ._precision import device_has_float64, precision
from ._validate import UnitNormReport, ensure_unit_norm
from .analysis import LambdaSweep, influential_examples, lambda_sweep
from .attribution import (
    AttributionResult,
    ScoreOptions,
    additive_predictions,
    attribution_benchmark,
    attribution_figure,
    auc,
    linear_datamodeling_score,
    method_scores,
    ntk_refit_outputs,
    pearson,
    random_subsets,
    spearman,
    subset_mask,
)
from .chunks import ChunkMapResult, map_chunks
from .compare import (
    WidthComparison,
    agreement,
    compare_width,
    select_points,
    table_markdown,
    width_sweep,
)
from .complexity import (
    ComplexityResult,
    InfluenceGroups,
    complexity_of_influence_groups,
    group_complexity,
    influence_groups,
)
from .data import Dataset, dataset_from_arrays, flip_labels, load_dataset, unit_normalize
from .deep import Architecture, DeepReLU, architecture, cnn, mlp
from .density import (
    density_vs_error,
    finite_mixture,
    kde_log_density,
    mixture_experiment,
    point_error_rate,
)
from .dynamics import (
    LabelNoiseResult,
    LinearizedDynamics,
    NoiseShares,
    TimeAgreement,
    TimeInfluenceResult,
    influence_over_time,
    label_noise_experiment,
    linearized_predictions,
    most_influential,
    noise_shares,
    time_agreement,
    time_influence_from_kernels,
)
from .empirical import (
    entk,
    entk_jacobian,
    entk_structured,
    entk_two_layer,
    relative_frobenius_error,
)
from .ihvp import IHVPInfluence, IHVPResult, hessian_dense, hvp, ihvp_influence
from .ihvp import ihvp as ihvp_solve
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
from .krr import KRRFactor, factorize, refine_solve
from .losses import loss_change
from .nets import FunctionalNet, ReLUMLP, TwoLayerReLU, functional, initial_output, two_layer_net
from .plots import influence_scatter, plot_figure, save_figure, width_curves
from .retrain import RetrainResult, actual_influence, loo_retrain, plan_chunk_size, retrain_without
from .scale import (
    LargeInfluence,
    MemoryPlan,
    PrecisionReport,
    float32_influence,
    initialize,
    large_influence,
    make_mesh,
    memory_plan,
)
from .spectrum import Spectrum
from .tracin import TrainingPath, grad_dot_scores, tracin_scores, training_path
from .train import SolverSettings, TrainResult, estimate_lambda_max, objective
from .train import train as train_net
from .trak import first_order_scores, projected_gradients, trak_ensemble_scores, trak_scores
from .user_model import entk_influence, model_entk

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "AttributionResult",
    "ChunkMapResult",
    "ComplexityResult",
    "Dataset",
    "DeepReLU",
    "FunctionalNet",
    "IHVPInfluence",
    "IHVPResult",
    "InfluenceGroups",
    "InfluenceResult",
    "InputError",
    "KRRFactor",
    "Kernel",
    "LabelNoiseResult",
    "LambdaSweep",
    "LargeInfluence",
    "LinearizedDynamics",
    "MemoryPlan",
    "MemoryPlanError",
    "NoiseShares",
    "NotConvergedError",
    "NotConvergedWarning",
    "NumericalError",
    "PrecisionReport",
    "PrecisionWarning",
    "ReLUMLP",
    "RetrainResult",
    "ScoreOptions",
    "SingularKernelError",
    "SolverSettings",
    "Spectrum",
    "TheoryAssumptionWarning",
    "TimeAgreement",
    "TimeInfluenceResult",
    "TrainResult",
    "TrainingPath",
    "TwoLayerReLU",
    "UnitNormReport",
    "WidthComparison",
    "actual_influence",
    "additive_predictions",
    "agreement",
    "architecture",
    "attribution_benchmark",
    "attribution_figure",
    "auc",
    "closed_form_paper_kernel",
    "cnn",
    "compare_width",
    "complexity_of_influence_groups",
    "dataset_from_arrays",
    "density_vs_error",
    "device_has_float64",
    "ensure_unit_norm",
    "entk",
    "entk_influence",
    "entk_jacobian",
    "entk_structured",
    "entk_two_layer",
    "estimate_lambda_max",
    "factorize",
    "finite_mixture",
    "first_order_scores",
    "flip_labels",
    "float32_influence",
    "functional",
    "grad_dot_scores",
    "group_complexity",
    "hessian_dense",
    "hvp",
    "ihvp_influence",
    "ihvp_solve",
    "influence_from_factor",
    "influence_from_kernels",
    "influence_groups",
    "influence_over_time",
    "influence_scatter",
    "influential_examples",
    "initial_output",
    "initialize",
    "kde_log_density",
    "kernel_matrix",
    "label_noise_experiment",
    "lambda_sweep",
    "large_influence",
    "linear_datamodeling_score",
    "linearized_predictions",
    "load_dataset",
    "loo_retrain",
    "loss_change",
    "make_mesh",
    "map_chunks",
    "memory_plan",
    "method_scores",
    "mixture_experiment",
    "mlp",
    "model_entk",
    "most_influential",
    "noise_shares",
    "ntk_influence",
    "ntk_refit_outputs",
    "objective",
    "paper_kernel",
    "paper_stax",
    "pearson",
    "plan_chunk_size",
    "plot_figure",
    "point_error_rate",
    "precision",
    "projected_gradients",
    "random_subsets",
    "refine_solve",
    "relative_frobenius_error",
    "relu_mlp_kernel",
    "resolve_kernel",
    "retrain_without",
    "save_figure",
    "select_points",
    "spearman",
    "stax_kernel",
    "subset_mask",
    "table_markdown",
    "time_agreement",
    "time_influence_from_kernels",
    "tracin_scores",
    "train_net",
    "training_path",
    "trak_ensemble_scores",
    "trak_scores",
    "two_layer_net",
    "unit_normalize",
    "width_curves",
    "width_sweep",
]
