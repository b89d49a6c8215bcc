"""Memory plan for the exact influence: refuse a problem that cannot fit before allocating it.

This module holds :func:`memory_plan` and its :class:`MemoryPlan`, and the probes of what is
available (:func:`device_memory_bytes`, :func:`host_memory_bytes`).

For ``n`` training points, ``t`` test points and itemsize ``s`` (8 for float64; ``n = 60000``
gives ``n^2 s = 28.8 GB``):

* **Kernel.** Row blocks of ``K`` are computed on all devices of the mesh and copied into one
  ``n x n`` buffer on the factor device: ``n^2 s`` there, one row block per device elsewhere.
* **Factorisation, on one device.** ``K + lam I`` is factorised by Cholesky with the kernel's
  buffer donated (the plan still counts two ``n x n`` arrays, ``K`` and ``L``). ``diag(A)``
  comes from ``L^-1`` built by the blocked recursive inverse (a third ``n x n`` array, fastest)
  or, when memory is tight, one block of columns at a time (``n x b`` workspace).
* **Test side.** ``L`` is replicated to every device of the mesh and the test points are
  streamed in rounds of ``devices x test_block`` points (about six ``n x test_block`` arrays per
  device). ``alpha``, ``influence`` and ``ihvp`` take ``3 n t s`` of host memory.
* On the CPU (``backend="lapack"``) the same plan runs on the host with LAPACK: ``potrf`` in
  place on ``K``, ``trtri`` for the diagonal, ``potrs`` per test block: two ``n x n`` arrays.

:func:`memory_plan` computes these figures and raises :class:`MemoryPlanError` (saying what is
needed and what to change: test block, device count, float32) before anything large is
allocated; :func:`ntk_influence.influence.ntk_influence` and
:func:`ntk_influence.scale.large_influence` call it first.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

import jax
import numpy as np

from .._validate import check_dtype, check_whole
from ..errors import InputError, MemoryPlanError

GB = 1e9


def device_memory_bytes(device: Any | None = None) -> int | None:
    """Bytes an accelerator can still allocate (``bytes_limit - bytes_in_use``); None on the CPU.

    Args:
      device: the device (default: the first of ``jax.devices()``).

    Returns:
      free bytes, or None on a CPU or where the device reports no memory statistics.
    """
    dev = device or jax.devices()[0]
    if dev.platform == "cpu":
        return None
    try:
        stats = dev.memory_stats() or {}
    except Exception:
        return None
    lim = stats.get("bytes_limit")
    return int(lim) - int(stats.get("bytes_in_use", 0)) if lim else None


def host_memory_bytes() -> int:
    """Available host memory in bytes (``MemAvailable`` from ``/proc/meminfo`` on Linux).

    Returns:
      bytes available (free pages times the page size where ``/proc/meminfo`` is missing).
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """How the exact influence computation fits in memory (bytes).

    Attributes:
      n: training points.
      n_test: test points.
      d: input dimension.
      dtype: working dtype name.
      n_devices: devices of the mesh.
      test_block: test points per device per round.
      inverse_diagonal: ``"recursive"`` (one more ``n x n``) or ``"blocked"`` (``n x b``).
      inv_block: columns per block of the blocked inverse diagonal.
      backend: ``"lapack"`` (host) or ``"jax"`` (devices): where the factorisation runs.
      factor_device_bytes: peak on the device that factorises.
      test_device_bytes: peak on every other device.
      host_bytes: peak on the host (results, inputs; everything for the LAPACK backend).
      device_memory: bytes available per device (None: not known / host backend).
      host_memory: bytes available on the host.
      fits: whether every peak is below what is available.
      stages: the named allocations behind the peaks.
    """

    n: int
    n_test: int
    d: int
    dtype: str
    n_devices: int
    test_block: int
    inverse_diagonal: str
    inv_block: int
    backend: str
    factor_device_bytes: int
    test_device_bytes: int
    host_bytes: int
    device_memory: int | None
    host_memory: int
    fits: bool
    stages: dict[str, int]

    def describe(self) -> str:
        """A readable summary: every stage in GB and the verdict."""
        lines = [f"memory plan: n={self.n}, n_test={self.n_test}, d={self.d}, {self.dtype}, "
                 f"{self.n_devices} device(s), backend={self.backend}, test_block={self.test_block},"
                 f" inverse diagonal {self.inverse_diagonal}"]
        lines += [f"  {k}: {v / GB:.3f} GB" for k, v in self.stages.items()]
        dev = "unknown" if self.device_memory is None else f"{self.device_memory / GB:.2f} GB"
        lines.append(f"  peaks: factor device {self.factor_device_bytes / GB:.3f} GB, other "
                     f"devices {self.test_device_bytes / GB:.3f} GB (available {dev}); host "
                     f"{self.host_bytes / GB:.3f} GB (available {self.host_memory / GB:.2f} GB)")
        lines.append("  fits" if self.fits else "  DOES NOT FIT")
        return "\n".join(lines)


def _bytes(v: Any, name: str) -> int | None:
    """A memory size in bytes: None (probe it), or a finite number > 0 such as ``80e9``."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number of bytes (e.g. 80e9) or None, got {v!r}.")
    if not (np.isfinite(v) and v >= 1):
        raise InputError(f"{name} must be a finite number of bytes >= 1 (e.g. 80e9), got {v!r}.")
    return int(v)


def memory_plan(n: int, n_test: int | None = None, d: int | None = None, *, outputs: int = 1,
                dtype: Any = np.float64,
                n_devices: int = 1, test_block: int | None = None,
                backend: Literal["auto", "lapack", "jax"] = "auto",
                device_memory: int | None = None, host_memory: int | None = None,
                keep_alpha: bool = True, kernel_block: int = 512, check: bool = True
                ) -> MemoryPlan:
    """Plan the memory of :func:`ntk_influence.scale.large_influence` and refuse what cannot fit.

    Nothing is allocated. With ``check=True`` a problem that does not fit raises
    :class:`MemoryPlanError` stating the memory needed and what to change.

    Args:
      n: training points.
      n_test: test points (required; None raises with an example).
      d: input dimension (flattened; required).
      outputs: label columns.
      dtype: float64 or float32.
      n_devices: devices of the mesh.
      test_block: test points per device per round (default: the largest that fits, <= 4096).
      backend: ``"lapack"`` (host), ``"jax"`` (devices) or ``"auto"`` (by JAX's backend).
      device_memory: bytes per device (default: from the device; required to check devices).
      host_memory: bytes on the host (default: ``MemAvailable``).
      keep_alpha: whether ``alpha`` is returned (it is formed either way).
      kernel_block: kernel rows per device per round (JAX backend).
      check: raise when it does not fit.

    Returns:
      :class:`MemoryPlan`.
    """
    n = check_whole(n, "n")
    if n_test is None or d is None:
        raise InputError("memory_plan needs n (training points), n_test (test points) and d "
                         "(input dimension), e.g. memory_plan(60000, 10000, 784).")
    n_test, d = check_whole(n_test, "n_test"), check_whole(d, "d")
    outputs, n_devices = check_whole(outputs, "outputs"), check_whole(n_devices, "n_devices")
    test_block = check_whole(test_block, "test_block", allow_none=True)
    kernel_block = check_whole(kernel_block, "kernel_block")
    device_memory, host_memory = _bytes(device_memory, "device_memory"), _bytes(host_memory,
                                                                                "host_memory")
    dtype = check_dtype(dtype)
    for name, flag in (("keep_alpha", keep_alpha), ("check", check)):
        if not isinstance(flag, (bool, np.bool_)):
            raise InputError(f"{name} must be True or False, got {flag!r}.")
    s = dtype.itemsize
    if not isinstance(backend, str) or backend not in ("auto", "lapack", "jax"):
        raise InputError(f"backend must be 'auto', 'lapack' or 'jax', got {backend!r}.")
    eng = backend if backend != "auto" else ("lapack" if jax.default_backend() == "cpu" else "jax")
    host = int(host_memory if host_memory is not None else host_memory_bytes())
    dev = None if eng == "lapack" else (
        device_memory if device_memory is not None else device_memory_bytes())
    nn = n * n * s
    inputs = (n + n_test) * (d + outputs) * s
    # alpha, influence and ihvp are all formed on the host (keep_alpha only drops alpha after)
    results = 3 * n * n_test * s + n_test * outputs * s
    per_test = 6 * n * s  # K_te block, A K_te, influence, ihvp, two temporaries per column
    kte_host = n * n_test * s if eng == "lapack" else 0  # the host backend keeps K_te whole
    if eng == "lapack":
        room = host - inputs - results - kte_host - nn
    else:
        room = dev - inputs - nn if dev is not None else 4096 * per_test
    if test_block is None:
        test_block = int(max(1, min(4096, -(-n_test // n_devices), room // per_test)))
    stages: dict[str, int] = {"K (n x n)": nn, "inputs": inputs,
                              "test block (per device)": per_test * test_block,
                              "results on host": results}
    if eng == "lapack":
        inv_mode, inv_block = "recursive", n
        stages["L^-1 (trtri, freed before the test side)"] = nn
        stages["K_te on host"] = kte_host
        host_peak = inputs + max(2 * nn, nn + results + kte_host + per_test * test_block)
        fdev = tdev = 0
        fits = host_peak <= host
    else:
        inv_block = int(min(n, 1024))
        recursive = dev is None or 3.5 * nn + inputs <= dev
        inv_mode = "recursive" if recursive else "blocked"
        stages["L (Cholesky)"] = nn
        # the recursive inverse holds L^-1 and, briefly, half of it again while assembling
        stages["inverse diagonal workspace"] = int(1.5 * nn) if recursive else \
            3 * n * inv_block * s
        rows = 4 * int(kernel_block) * n * s  # a round of kernel rows and its temporaries
        stages["kernel rows (per device)"] = rows
        fdev = max(inputs + nn + 2 * rows, inputs + 2 * nn + stages["inverse diagonal workspace"],
                   inputs + nn + per_test * test_block)
        tdev = inputs + max(rows, nn + per_test * test_block)
        host_peak = inputs + results + 2 * per_test * test_block * n_devices
        fits = (dev is None or max(fdev, tdev) <= dev) and host_peak <= host
    plan = MemoryPlan(n, n_test, d, np.dtype(dtype).name, n_devices, test_block, inv_mode,
                      inv_block, eng, int(fdev), int(tdev), int(host_peak),
                      None if dev is None else int(dev), host, bool(fits), stages)
    if check and not fits:
        raise MemoryPlanError(_advice(plan, nn, results, inputs, per_test, s))
    return plan


def _advice(plan: MemoryPlan, nn: int, results: int, inputs: int, per_test: int,
            s: int) -> str:
    need = []
    if plan.backend == "lapack":
        need.append(f"the host needs {plan.host_bytes / GB:.2f} GB but {plan.host_memory / GB:.2f}"
                    " GB is available")
    else:
        if plan.device_memory is not None and max(plan.factor_device_bytes,
                                                  plan.test_device_bytes) > plan.device_memory:
            need.append(f"the factor device needs {plan.factor_device_bytes / GB:.2f} GB and the "
                        f"others {plan.test_device_bytes / GB:.2f} GB, but a device has "
                        f"{plan.device_memory / GB:.2f} GB")
        if plan.host_bytes > plan.host_memory:
            need.append(f"the host needs {plan.host_bytes / GB:.2f} GB for the results but has "
                        f"{plan.host_memory / GB:.2f} GB")
    fix = []
    two_nn = 2 * nn + inputs
    avail = plan.host_memory if plan.backend == "lapack" else (plan.device_memory or 0)
    if plan.backend == "lapack" and two_nn <= avail:
        room = avail - inputs - nn - results - plan.stages.get("K_te on host", 0)
        if room < per_test:
            fix.append(f"the results and the test kernel take "
                       f"{(results + plan.stages.get('K_te on host', 0)) / GB:.2f} GB on the "
                       "host: pass fewer test points per call (the factor is reused)")
    if two_nn > avail:
        fix.append(f"the n x n factorisation alone needs {two_nn / GB:.2f} GB on one device: use a"
                   f" device with at least {1.1 * two_nn / GB:.0f} GB, or float32 "
                   f"({two_nn / 2 / GB:.2f} GB, precision_policy='float32-refined'), or fewer "
                   "training points")
    else:
        room = avail - (two_nn if plan.backend == "lapack" else nn + inputs)
        tb = max(1, int(room // per_test))
        fix.append(f"use test_block={tb} or less (now {plan.test_block})")
    if results > plan.host_memory // 2:
        fix.append(f"the results take {results / GB:.2f} GB on the host: call it on slices of the "
                   "test points and save each slice")
    if plan.backend == "jax" and plan.n_devices > 1:
        fix.append("more devices shorten the test side but do not shrink the factorisation")
    return "; ".join(need) + ". " + "; ".join(fix) + ".\n" + plan.describe()
