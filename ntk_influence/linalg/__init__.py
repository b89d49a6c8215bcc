"""TODO."""

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
