"""The figure registry: each of the paper's figures by name (``fig1`` ... ``fig7``).

:func:`plot_figure` is the one dispatch from a figure name to its drawing function, used by the
CLI's ``plot`` and ``reproduce`` commands.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ._figures import density_plot, influence_scatter, lambda_sweep_plot, time_agreement_plot
from ._panels import (
    complexity_plot,
    influential_examples_plot,
    label_noise_plot,
    mixture_plot,
    most_influential_plot,
)

FIGURES: dict[str, Any] = {
    "fig1": influence_scatter,
    "fig2": lambda_sweep_plot,
    "fig3": density_plot,
    "fig4": influential_examples_plot,
    "fig5": complexity_plot,
    "fig6": most_influential_plot,
    "fig7": label_noise_plot,
    "time-agreement": time_agreement_plot,
    "theorem4": mixture_plot,
}


def plot_figure(name: str, *args: Any, **kwargs: Any) -> Any:
    """Draw one of the paper's figures by name (``"fig1"`` ... ``"fig7"``, ``"time-agreement"``).

    Args:
      name: figure name; ``"figure2"`` and ``"2"`` are accepted for ``"fig2"``.
      *args: positional arguments of the figure function.
      **kwargs: keyword arguments of the figure function (e.g. ``path``).

    Returns:
      The matplotlib Figure.
    """

    key = str(name).lower().replace("figure", "fig").replace(" ", "")
    if key.isdigit():
        key = f"fig{key}"
    if key not in FIGURES:
        raise InputError(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}.")
    return FIGURES[key](*args, **kwargs)
