"""The change of a squared loss, written once (eq. 7-8).

Every influence in the library (exact NTK leave-one-out, group removal, actual retraining,
influence over training time) is the change of ``1/2 ||f - y||^2`` when a prediction moves by
``Delta``. It is computed as ``Delta . (f - y) + |Delta|^2 / 2``, never as the difference of two
squared losses, which would lose the influence (1e-3 to 1e-6 of the loss) to cancellation.
"""

from __future__ import annotations

from typing import Any


def loss_change(delta: Any, residual: Any, axis: int | None = None) -> Any:
    """Change of ``1/2 (f - y)^2`` when ``f`` moves by ``delta`` (eq. 7-8).

    ``I = Delta (f - y) + Delta^2 / 2``. Works on NumPy and JAX arrays alike (traceable).

    Args:
      delta: prediction change ``f_new - f``, any shape broadcastable with ``residual``.
      residual: ``f - y`` before the change.
      axis: output axis to sum over for multi-output labels (``None``: elementwise).

    Returns:
      The loss change, shaped like the broadcast of the inputs (without ``axis`` when given).
    """
    out = delta * residual + 0.5 * delta * delta
    return out if axis is None else out.sum(axis=axis)
