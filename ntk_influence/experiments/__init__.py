"""The paper's experiments: drivers that return result records (figures: :mod:`ntk_influence.plots`).

- ``_compare.py``: NTK influence against leave-one-out retraining of finite nets across widths,
  Table 1 and Figure 1 (:func:`compare_width`, :func:`width_sweep`, :class:`WidthComparison`,
  :data:`VARIANTS`, :func:`select_points`, and :func:`comparison_solver`, what defines
  "actual" per architecture); ``_table.py``: its Markdown table (:func:`table_markdown`);
- ``_density.py``: data density against the IHVP's error rate, Figure 3, and the finite mixture
  of Definition 1 for Theorem 4 (:func:`density_vs_error`, :func:`kde_log_density`,
  :func:`point_error_rate`, :func:`finite_mixture`, :func:`mixture_experiment`);
- ``_lambda_sweep.py``: the IHVP's error per ridge against Theorem 3's bounds and the ridge
  leverage, Figure 2 (:func:`lambda_sweep`, :func:`sweep_point`, :func:`collect_sweep`,
  :class:`LambdaSweep`, :data:`DEFAULT_LAMS`);
- ``_label_noise.py``: the share of clean and flipped points among the most influential points
  along training, Figure 7 (:func:`label_noise_experiment`, :func:`noise_shares`,
  :class:`LabelNoiseResult`, :class:`NoiseShares`).

The long drivers (:func:`lambda_sweep`, :func:`label_noise_experiment`) take an optional
:class:`~ntk_influence.io.ResultStore` so that an interrupted run continues where it stopped.
"""

from ._compare import (
    VARIANTS,
    WidthComparison,
    compare_width,
    comparison_solver,
    select_points,
    width_sweep,
)
from ._density import (
    DensityAnalysis,
    KDEResult,
    Mixture,
    MixtureExperiment,
    density_vs_error,
    finite_mixture,
    kde_log_density,
    mixture_experiment,
    point_error_rate,
)
from ._label_noise import LabelNoiseResult, NoiseShares, label_noise_experiment, noise_shares
from ._lambda_sweep import DEFAULT_LAMS, LambdaSweep, collect_sweep, lambda_sweep, sweep_point
from ._table import table_markdown

__all__ = [
    "DEFAULT_LAMS",
    "VARIANTS",
    "DensityAnalysis",
    "KDEResult",
    "LabelNoiseResult",
    "LambdaSweep",
    "Mixture",
    "MixtureExperiment",
    "NoiseShares",
    "WidthComparison",
    "collect_sweep",
    "compare_width",
    "comparison_solver",
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
