"""Exact influence at scale: device meshes, several hosts, float32 devices and large ``n``.

- ``_large``: :func:`large_influence` (memory plan first, kernel rows and test points sharded
  over a mesh, one factorisation) and its result :class:`LargeInfluence`;
- ``_mesh``: :func:`make_mesh`, :func:`initialize` (JAX's multi-host runtime),
  :func:`sharded_kernel_rows` and :func:`sharded_test_side`;
- ``_float32``: the precision policy for devices without float64: :func:`resolve_policy`,
  :func:`float32_influence` (float32 factor, solves refined to float64) and
  :func:`precision_report` with its :class:`PrecisionReport`.
"""

from .._precision import device_has_float64
from ._float32 import PrecisionReport, float32_influence, precision_report, resolve_policy
from ._large import LargeInfluence, large_influence
from ._mesh import initialize, make_mesh, sharded_kernel_rows, sharded_test_side

__all__ = [
    "LargeInfluence",
    "PrecisionReport",
    "device_has_float64",
    "float32_influence",
    "initialize",
    "large_influence",
    "make_mesh",
    "precision_report",
    "resolve_policy",
    "sharded_kernel_rows",
    "sharded_test_side",
]
