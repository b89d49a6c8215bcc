"""Exact NTK influence: leave-one-out (eq. 8-9), groups (eq. 19) and influence over time.

Every exact influence is computed from one factorisation of ``K + lam I``
(:func:`ntk_influence.linalg.factorize`).

- ``_exact``: :class:`InfluenceResult` and :func:`ntk_influence` (inputs to influences, eq. 8-9,
  the IHVP of eq. 13, Prop. 2, Theorem 3), :func:`influence_from_kernels`,
  :func:`influence_from_factor` and :func:`prepare_inputs`;
- ``_diagnostics``: :func:`pair_error_rate` (the IHVP's relative error per pair, NaN where
  ``I = 0``) and :func:`influential_examples` (Figure 4);
- ``_groups``: :func:`group_complexity` (eq. 19), :func:`influence_groups` and
  :func:`complexity_of_influence_groups` (Figure 5);
- ``_flow``: the gradient-flow matrix function :func:`g_flow`, :func:`g_flow_prime` and
  :func:`divided_differences` (eq. 20);
- ``_time``: influence over training time (:func:`influence_over_time`,
  :func:`time_influence_from_kernels`, :func:`linearized_predictions`, :func:`time_agreement`,
  :func:`most_influential`);
- ``_user_model``: :func:`model_entk` and :func:`entk_influence` for any JAX/Flax model through
  its empirical NTK.
"""

from ._diagnostics import InfluentialExamples, influential_examples, pair_error_rate
from ._exact import (
    InfluenceResult,
    influence_from_factor,
    influence_from_kernels,
    ntk_influence,
    prepare_inputs,
)
from ._flow import divided_differences, g_flow, g_flow_prime
from ._groups import (
    ComplexityResult,
    InfluenceGroups,
    complexity_of_influence_groups,
    group_complexity,
    influence_groups,
)
from ._time import (
    ByKind,
    LinearizedDynamics,
    TimeAgreement,
    TimeInfluenceResult,
    TimeUnit,
    auto_chunk_size,
    check_times,
    influence_over_time,
    linearized_predictions,
    most_influential,
    time_agreement,
    time_influence_from_kernels,
)
from ._user_model import entk_influence, model_entk

__all__ = [
    "ByKind",
    "ComplexityResult",
    "InfluenceGroups",
    "InfluenceResult",
    "InfluentialExamples",
    "LinearizedDynamics",
    "TimeAgreement",
    "TimeInfluenceResult",
    "TimeUnit",
    "auto_chunk_size",
    "check_times",
    "complexity_of_influence_groups",
    "divided_differences",
    "entk_influence",
    "g_flow",
    "g_flow_prime",
    "group_complexity",
    "influence_from_factor",
    "influence_from_kernels",
    "influence_groups",
    "influence_over_time",
    "influential_examples",
    "linearized_predictions",
    "model_entk",
    "most_influential",
    "ntk_influence",
    "pair_error_rate",
    "prepare_inputs",
    "time_agreement",
    "time_influence_from_kernels",
]
