"""TODO."""

from ._compare import VARIANTS, WidthComparison, compare_width, select_points, table_markdown, width_sweep
from ._density import density_vs_error, finite_mixture, kde_log_density, mixture_experiment, point_error_rate
from ._label_noise import LabelNoiseResult, NoiseShares, check_fraction, label_noise_experiment, noise_shares
from ._lambda_sweep import DEFAULT_LAMS, LambdaSweep, collect_sweep, lambda_sweep, sweep_point

__all__ = [
    "DEFAULT_LAMS",
    "VARIANTS",
    "LabelNoiseResult",
    "LambdaSweep",
    "NoiseShares",
    "WidthComparison",
    "check_fraction",
    "collect_sweep",
    "compare_width",
    "density_vs_error",
    "finite_mixture",
    "kde_log_density",
    "label_noise_experiment",
    "lambda_sweep",
    "mixture_experiment",
    "noise_shares",
    "point_error_rate",
    "select_points",
    "sweep_point",
    "table_markdown",
    "width_sweep",
]
