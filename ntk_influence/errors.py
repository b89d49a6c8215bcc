"""Exceptions and warnings raised by ntk_influence, all in one place.

Usage errors (bad arguments, files, shapes) are :class:`InputError`. Numerical failures of a
well-formed problem (a singular kernel) are :class:`NumericalError`. Both are ``ValueError``
subclasses, so ``except ValueError`` catches either, but they are distinguishable.
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "MemoryPlanError",
    "NotConvergedError",
    "NotConvergedWarning",
    "NumericalError",
    "PrecisionWarning",
    "ResumeWarning",
    "SingularKernelError",
    "TheoryAssumptionWarning",
]


class InputError(ValueError):
    """Bad input: the message says what is wrong and how to fix it."""


class NumericalError(ValueError):
    """A well-formed problem that cannot be solved accurately in the working precision."""


class SingularKernelError(NumericalError):
    """``K + lam I`` is not numerically positive definite."""


class NotConvergedError(RuntimeError):
    """An iterative solver or a training run stopped before meeting its tolerance."""


class MemoryPlanError(InputError):
    """A problem does not fit the available memory; the message gives the sizes and the fix."""


class TheoryAssumptionWarning(UserWarning):
    """The input violates an assumption of the paper (for example ``|y| > 1``)."""


class NotConvergedWarning(UserWarning):
    """A solver stopped early; its result carries the residual so the caller can judge it."""


class PrecisionWarning(UserWarning):
    """The requested accuracy cannot be met in the working precision."""


class ResumeWarning(UserWarning):
    """Stored work could not be reused (a damaged or unverifiable file) and is computed again."""
