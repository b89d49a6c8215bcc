"""The large-``n`` driver: memory plan, sharded kernel rows, one factorisation, sharded test side.

This module holds :func:`large_influence` and its result :class:`LargeInfluence`. It runs the
same pipeline as :func:`ntk_influence.influence.ntk_influence` (one
:class:`~ntk_influence.linalg.KRRFactor`, one eq. (8)-(9) block function) with the memory plan
(:func:`ntk_influence.linalg.memory_plan`) enforced first and the work spread over a device mesh
(:mod:`._mesh`). On the CPU backend it runs on the host with LAPACK (the kernel factorised in
place); a float32 precision policy goes through the float32 backends (:mod:`._float32`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import numpy as np
from jax.sharding import Mesh

from .._validate import check_lam
from ..influence import InfluenceResult, influence_from_kernels, prepare_inputs
from ..kernels import Kernel, kernel_matrix
from ..linalg import DeviceFactor, MemoryPlan, factorize, memory_plan
from ._float32 import PrecisionPolicy, PrecisionReport, precision_report, resolve_policy
from ._mesh import make_mesh, sharded_kernel_rows, sharded_test_side


class LargeInfluence(NamedTuple):
    """What :func:`large_influence` returns.

    Attributes:
      result: the :class:`~ntk_influence.influence.InfluenceResult`.
      plan: the :class:`MemoryPlan` it ran under.
      precision: the :class:`PrecisionReport` of a float32 policy (None for float64).
    """

    result: InfluenceResult
    plan: MemoryPlan
    precision: PrecisionReport | None


def large_influence(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float = 0.1, *,
                    kernel: Kernel | str | Any = "paper", mesh: Mesh | None = None,
                    test_block: int | None = None, kernel_block: int = 512,
                    backend: Literal["auto", "lapack", "jax"] = "auto",
                    precision_policy: PrecisionPolicy = "auto", rtol: float = 1e-6,
                    keep_alpha: bool = True, device_memory: int | None = None,
                    host_memory: int | None = None, show_progress: bool = False
                    ) -> LargeInfluence:
    """Exact NTK influence (eq. 8-9) for large ``n``: memory plan first, then sharded work.

    Checks the plan (raising :class:`MemoryPlanError` before any large allocation), computes
    the kernel rows sharded over the mesh, factorises on one device, and streams the test points
    through the mesh in rounds. With ``backend="lapack"`` (the default on a CPU backend) it runs
    the same plan on the host with LAPACK, in place.

    Args:
      x_train: ``(n, d)`` training inputs (unit norm for eq. 4).
      y_train: ``(n,)`` or ``(n, k)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` or ``(t, k)`` labels.
      lam: ridge.
      kernel: the kernel (default eq. 4).
      mesh: device mesh (default: all devices) for the device backend.
      test_block: test points per device per round (default: from the plan).
      kernel_block: kernel rows per device per round.
      backend: ``"lapack"`` (host), ``"jax"`` (device mesh) or ``"auto"``.
      precision_policy: ``"auto"`` (float64 where the device has it, else float32-refined),
        ``"float64"``, ``"float32"`` or ``"float32-refined"``.
      rtol: accuracy requested of the float32 policies (a :class:`PrecisionWarning` otherwise).
      keep_alpha: return ``alpha`` (else it is dropped after the computation and the result
        holds a zero-size placeholder).
      device_memory: bytes per device for the plan (default: from the device).
      host_memory: bytes on the host for the plan (default: available memory).
      show_progress: progress bars.

    Returns:
      :class:`LargeInfluence` ``(result, plan, precision)``.
    """
    lam = check_lam(lam)
    k, xtr, ytr, xte, yte, norms = prepare_inputs(kernel, x_train, y_train, x_test, y_test)
    mesh = mesh or make_mesh()
    pol = resolve_policy(precision_policy, mesh.devices.flat[0])
    n, t = xtr.shape[0], xte.shape[0]
    plan = memory_plan(n, t, int(np.prod(xtr.shape[1:])), outputs=ytr.reshape(n, -1).shape[1],
                       dtype=np.float64 if pol == "float64" else np.float32,
                       n_devices=mesh.devices.size, test_block=test_block,
                       backend=backend if pol == "float64" else "jax",
                       device_memory=device_memory, host_memory=host_memory,
                       keep_alpha=keep_alpha, kernel_block=kernel_block)
    rep = None
    xnames = ("x_train", "x_test")

    def k_train() -> np.ndarray:
        return kernel_matrix(k, xtr, names=xnames)

    if pol != "float64":
        res = influence_from_kernels(k_train(), kernel_matrix(k, xtr, xte, names=xnames), ytr, yte,
                                     lam, backend=pol, block_size=plan.test_block,
                                     kernel_name=k.name, spectrum="iterative")
        rep = precision_report(res.factor, rtol)  # type: ignore[arg-type]
    elif plan.backend == "lapack":
        res = influence_from_kernels(k_train(), kernel_matrix(k, xtr, xte, names=xnames), ytr, yte,
                                     lam, backend="lapack", block_size=plan.test_block,
                                     kernel_name=k.name, spectrum="iterative", overwrite_k=True,
                                     check_symmetry=False)
    else:
        kt = sharded_kernel_rows(k, xtr, xtr, mesh, block_rows=kernel_block)
        factor = factorize(kt, ytr, lam, backend="jax", inverse=plan.inverse_diagonal,
                           inv_block=plan.inv_block, spectrum_method="iterative")
        del kt
        assert isinstance(factor, DeviceFactor)
        alpha, f_te, infl, ihvp = sharded_test_side(factor, k, xtr, xte, yte, mesh,
                                                    test_block=plan.test_block,
                                                    show_progress=show_progress)
        res = InfluenceResult.from_test_side(factor, yte, alpha, infl, ihvp, f_te, k.name)
    res = dataclasses.replace(res, input_norms=norms)
    if not keep_alpha:
        res = dataclasses.replace(res, alpha=np.empty((n, 0), res.alpha.dtype))
    return LargeInfluence(res, plan, rep)
