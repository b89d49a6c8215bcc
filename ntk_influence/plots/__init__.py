"""TODO."""

from ._figures import (
    density_plot,
    influence_scatter,
    lambda_sweep_plot,
    save_figure,
    time_agreement_plot,
    width_curves,
)
from ._panels import (
    attribution_figure,
    complexity_plot,
    influential_examples_plot,
    label_noise_plot,
    mixture_plot,
    most_influential_plot,
)
from ._registry import plot_figure

__all__ = [
    "attribution_figure",
    "complexity_plot",
    "density_plot",
    "influence_scatter",
    "influential_examples_plot",
    "label_noise_plot",
    "lambda_sweep_plot",
    "mixture_plot",
    "most_influential_plot",
    "plot_figure",
    "save_figure",
    "time_agreement_plot",
    "width_curves",
]
