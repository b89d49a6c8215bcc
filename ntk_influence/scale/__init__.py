"""TODO."""

from ._float32 import PrecisionReport, float32_influence, precision_report, resolve_policy
from ._large import LargeInfluence, large_influence
from ._mesh import initialize, make_mesh, sharded_kernel_rows, sharded_test_side

__all__ = [
    "LargeInfluence",
    "PrecisionReport",
    "float32_influence",
    "initialize",
    "large_influence",
    "make_mesh",
    "precision_report",
    "resolve_policy",
    "sharded_kernel_rows",
    "sharded_test_side",
]
