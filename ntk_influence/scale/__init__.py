"""Scale: memory plan, device meshes and hosts, the float32 policy, and the large-``n`` driver.

* :mod:`~ntk_influence.scale.memory`: how much memory each stage needs; refuse before
  allocating (:func:`memory_plan`).
* :mod:`~ntk_influence.scale.mesh`: meshes, several hosts, kernel rows and test points sharded
  over the devices.
* :mod:`~ntk_influence.scale.precision`: the float32-refined policy for devices without float64.
* :mod:`~ntk_influence.scale.large`: :func:`large_influence`, the driver that ties them together.
"""

from .large import LargeInfluence, large_influence
from .memory import MemoryPlan, device_memory_bytes, host_memory_bytes, memory_plan
from .mesh import initialize, make_mesh, sharded_kernel_rows, sharded_test_side
from .precision import PrecisionReport, float32_influence, precision_report, resolve_policy

__all__ = [
    "LargeInfluence",
    "MemoryPlan",
    "PrecisionReport",
    "device_memory_bytes",
    "float32_influence",
    "host_memory_bytes",
    "initialize",
    "large_influence",
    "make_mesh",
    "memory_plan",
    "precision_report",
    "resolve_policy",
    "sharded_kernel_rows",
    "sharded_test_side",
]
