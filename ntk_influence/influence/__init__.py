"""TODO."""

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
