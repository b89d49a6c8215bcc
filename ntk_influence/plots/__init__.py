"""The paper's figures (1-7) and the library's own, drawn with matplotlib and saved as PNG.

- ``_figures.py``: single-axes figures (Figures 1-3, time agreement, width curves) and
  :func:`save_figure`;
- ``_panels.py``: multi-panel figures (Figures 4-7, the Theorem 4 mixture, attribution, cleaning);
- ``_registry.py``: :func:`plot_figure`, one dispatch from a figure name to its function.
"""

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
    cleaning_figure,
    complexity_plot,
    influential_examples_plot,
    label_noise_plot,
    mixture_plot,
    most_influential_plot,
)
from ._registry import plot_figure

__all__ = [
    "attribution_figure",
    "cleaning_figure",
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
