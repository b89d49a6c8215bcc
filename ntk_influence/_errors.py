"""Exceptions and warnings raised by ntk_influence."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message says what is wrong and how to fix it."""


class SingularKernelError(InputError):
    """``K + lam I`` is not numerically positive definite."""


class NotConvergedError(RuntimeError):
    """An iterative solver or a training run stopped before meeting its tolerance."""


class MemoryPlanError(InputError):
    """A problem does not fit the available memory; the message gives the sizes and the fix."""


class TheoryAssumptionWarning(UserWarning):
    """The input violates an assumption of the paper (for example ``|y| > 1``)."""


class NotConvergedWarning(UserWarning):
    """A solver stopped early; its result carries the residual so the caller can judge it."""
