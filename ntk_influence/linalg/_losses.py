"""The influence formulas, written once: the loss change (eq. 7-8) and its eq. (8)-(9) block.

This module holds :func:`loss_change` (the change of the squared loss when a prediction moves)
and :func:`influence_block` (the exact leave-one-out influence of eq. 8-9 and the IHVP of eq. 13
for a block of test points, from ``A K_te``, ``beta`` and ``diag(A)``). Every influence in the
library (exact NTK leave-one-out, group removal, actual retraining, influence over training
time) is the change of ``1/2 ||f - y||^2`` when a prediction moves by ``Delta``. It is computed
as ``Delta . (f - y) + |Delta|^2 / 2``, never as the difference of two squared losses, which
would lose the influence (1e-3 to 1e-6 of the loss) to cancellation.

Both functions use only array operators and methods, so they run on NumPy arrays and, traced,
inside JAX programs (host, device and sharded test sides all call the same code).
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


def influence_block(alpha: Any, beta: Any, a_diag: Any, lam: Any, test_residual: Any
                    ) -> tuple[Any, Any]:
    """Exact leave-one-out influence (eq. 8-9) and the kernel IHVP (eq. 13) for a test block.

    With ``c_i = -beta_i / A_ii`` (the leave-one-out residual ``f^(i)(x_i) - y_i``), removing
    point ``i`` moves the test prediction by ``Delta_i(te) = alpha_i(te) c_i`` (eq. 9), and the
    influence is :func:`loss_change` of that move summed over the outputs (eq. 8). The IHVP
    estimate is ``alpha_i(te) (f(te) - y_te) . e_i`` with ``e_i = -lam beta_i`` (eq. 13).

    Args:
      alpha: ``(n, t)`` ``A K_te``.
      beta: ``(n, k)`` ``A y``.
      a_diag: ``(n,)`` ``diag(A)``.
      lam: the ridge.
      test_residual: ``(t, k)`` ``f(te) - y_te``.

    Returns:
      ``(influence, ihvp)``, each ``(n, t)``.
    """
    c = -beta / a_diag[:, None]
    influence = 0.0
    for j in range(beta.shape[1]):  # k outputs, unrolled: no (n, t, k) temporary
        influence = influence + loss_change(alpha * c[:, j:j + 1], test_residual[None, :, j])
    ihvp = alpha * ((-lam * beta) @ test_residual.T)
    return influence, ihvp
