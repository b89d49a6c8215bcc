"""The one factorisation of ``K + lam I`` and the linear algebra around it.

Every exact computation of the library (KRR predictions, leave-one-out influences, group
removal, complexity) factorises ``K + lam I`` through :func:`factorize`, never by itself.

- ``_factor``: :func:`factorize` and the :class:`KRRFactor` it returns (``diag(A)``,
  ``beta = A y``, solves, leverage, lazy spectrum), with its backends :class:`DeviceFactor` and
  :class:`Float32Factor`;
- ``_backends``: :func:`resolve_backend` and the :data:`Backend` names, :func:`inverse_diagonal`,
  :func:`refine_solve` (mixed-precision refinement) and :func:`device_test_side` (one test
  block on a device);
- ``_losses``: :func:`loss_change`, the change of the squared loss (eq. 7-8);
- ``_spectrum``: :class:`Spectrum` (extreme eigenvalues, Theorem 3) and :data:`SpectrumMethod`;
- ``_memory``: :func:`memory_plan` and :class:`MemoryPlan` (refuse what cannot fit), with
  :func:`device_memory_bytes` and :func:`host_memory_bytes`.
"""

from ._backends import Backend, device_test_side, inverse_diagonal, refine_solve, resolve_backend
from ._factor import DeviceFactor, Float32Factor, KRRFactor, factorize
from ._losses import loss_change
from ._memory import MemoryPlan, device_memory_bytes, host_memory_bytes, memory_plan
from ._spectrum import Spectrum, SpectrumMethod

__all__ = [
    "Backend",
    "DeviceFactor",
    "Float32Factor",
    "KRRFactor",
    "MemoryPlan",
    "Spectrum",
    "SpectrumMethod",
    "device_memory_bytes",
    "device_test_side",
    "factorize",
    "host_memory_bytes",
    "inverse_diagonal",
    "loss_change",
    "memory_plan",
    "refine_solve",
    "resolve_backend",
]
