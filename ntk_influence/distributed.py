"""Scale: a memory plan, sharding over the devices of a mesh, several hosts, float32 devices.

Memory plan for the exact influence (``n`` training points, ``t`` test points, itemsize ``s``:
8 for float64; ``n = 60000`` gives ``n^2 s = 28.8 GB``):

* **Kernel.** Row blocks of ``K`` are computed on all devices of the mesh (rows sharded over
  the mesh axis) and copied into one ``n x n`` buffer on the factor device: ``n^2 s`` there, one
  row block per device elsewhere.
* **Factorisation, on one device.** ``K + lam I`` is factorised by Cholesky with the kernel's
  buffer donated (XLA may then overwrite it; the plan still counts two ``n x n`` arrays, ``K`` and
  ``L``). The diagonal of ``A = (K + lam I)^-1`` comes either from ``L^-1`` built by the blocked
  recursive inverse (a third ``n x n`` array, fastest) or, when the plan says memory is tight,
  from ``L^-1`` one block of columns at a time (``n x b`` workspace, ``n^3`` instead of ``n^3/3``
  flops). ``K`` is freed before the test side, so at most about two ``n x n`` arrays are live.
* **Test side, sharded.** ``L`` is replicated to every device of the mesh (``n^2 s`` each) and
  the test points are streamed in rounds of ``devices x test_block`` points; each device builds
  its ``K_te`` block, solves ``A K_te`` and forms the influences (about six ``n x test_block``
  arrays). The rounds' results are copied to the host as they finish: ``alpha``, ``influence``
  and ``ihvp`` take ``3 n t s`` of host memory.
* On the CPU backend the same plan runs on the host with LAPACK (``potrf`` in place on ``K``,
  ``trtri`` for the diagonal, ``potrs`` per test block): two ``n x n`` arrays at most.

:func:`memory_plan` computes these figures and raises :class:`MemoryPlanError` (saying what is
needed and what to change: test block, device count, float32) before anything large is
allocated; :func:`large_influence` calls it first.

Precision on devices without float64 (TPU): ``precision_policy="float32-refined"`` factorises
in float32 on the device and refines every solve (``beta`` and ``A K_te``) by iterative
refinement whose residuals are computed in float64 on the host, so the solves reach float64
accuracy when ``cond(K + lam I) * eps32 < 1``. ``diag(A)`` cannot be refined without ``O(n^3)``
float64 work; its relative error stays about ``cond * eps32``, which is reported, and a warning
fires when the estimate exceeds the caller's ``rtol``. ``benchmarks/bench_scale.py`` measures
both against a float64 reference.

LOO retraining over many devices: :func:`map_chunks` runs a per-chunk function with the chunk
axis sharded over the mesh (one chunk per device per round) and saves each chunk to a
:class:`~ntk_influence.io.ResultStore` as soon as its round finishes, so an interrupted sweep
resumes where it stopped. :func:`initialize` wraps ``jax.distributed.initialize`` for several
hosts.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._errors import InputError, MemoryPlanError, PrecisionWarning, SingularKernelError
from ._precision import precision
from ._validate import check_features, check_labels, check_lam
from .influence import InfluenceResult, assemble_result
from .io import progress
from .kernels import Kernel, resolve_kernel
from .krr import KRRFactor, _lapack, cho_apply, lapack_cho_apply, resolve_engine, spectrum, tri_inv

AXIS = "data"
PrecisionPolicy = Literal["auto", "float64", "float32", "float32-refined"]
GB = 1e9


# --------------------------------------------------------------------------------------------
# Devices and hosts


def make_mesh(devices: Sequence[Any] | None = None, axis: str = AXIS) -> Mesh:
    """A one-dimensional device mesh over ``devices`` (default: every device of every host).

    Args:
      devices: the devices; ``None`` means ``jax.devices()``.
      axis: the mesh axis name.

    Returns:
      ``jax.sharding.Mesh``.
    """
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise InputError("no devices given; pass devices=None for all devices.")
    return Mesh(np.array(devs), (axis,))


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: Sequence[int] | None = None
               ) -> dict[str, int]:
    """Start JAX's multi-host runtime (``jax.distributed.initialize``) once, then describe it.

    Call it at the start of every process of a multi-host job, before any other JAX call. With
    no arguments on one host it does nothing; on TPU pods and SLURM/Open MPI clusters JAX finds
    the coordinator itself when ``NTK_INFLUENCE_DISTRIBUTED=1`` is set.

    Args:
      coordinator_address: ``host:port`` of process 0.
      num_processes: number of processes.
      process_id: this process's index.
      local_device_ids: devices this process uses.

    Returns:
      ``{"process_index", "process_count", "local_devices", "devices"}``.
    """
    wanted = coordinator_address is not None or (num_processes or 1) > 1 or \
        os.environ.get("NTK_INFLUENCE_DISTRIBUTED") == "1"
    if wanted and not _distributed_started():
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id,
                                   local_device_ids=local_device_ids)
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "devices": jax.device_count()}


def _distributed_started() -> bool:
    try:
        from jax._src import distributed as _d

        return _d.global_state.client is not None
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        return False


def device_has_float64(device: Any | None = None) -> bool:
    """Whether ``device`` computes in float64 (CPU and GPU do; TPU does not).

    Args:
      device: a JAX device (default: the first device).

    Returns:
      True when float64 arithmetic is native there.
    """
    dev = device or jax.devices()[0]
    return dev.platform in ("cpu", "gpu", "cuda", "rocm")


def device_memory_bytes(device: Any | None = None) -> int | None:
    """Bytes an accelerator can allocate (``memory_stats()['bytes_limit']``); None on the CPU."""
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
    """Available host memory in bytes (``MemAvailable`` from ``/proc/meminfo`` on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


# --------------------------------------------------------------------------------------------
# Memory plan


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
      engine: ``"lapack"`` (host) or ``"jax"`` (devices).
      factor_device_bytes: peak on the device that factorises.
      test_device_bytes: peak on every other device.
      host_bytes: peak on the host (results, inputs; everything for the LAPACK engine).
      device_memory: bytes available per device (None: not known / host engine).
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
    engine: str
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
                 f"{self.n_devices} device(s), engine={self.engine}, test_block={self.test_block},"
                 f" inverse diagonal {self.inverse_diagonal}"]
        lines += [f"  {k}: {v / GB:.3f} GB" for k, v in self.stages.items()]
        dev = "unknown" if self.device_memory is None else f"{self.device_memory / GB:.2f} GB"
        lines.append(f"  peaks: factor device {self.factor_device_bytes / GB:.3f} GB, other "
                     f"devices {self.test_device_bytes / GB:.3f} GB (available {dev}); host "
                     f"{self.host_bytes / GB:.3f} GB (available {self.host_memory / GB:.2f} GB)")
        lines.append("  fits" if self.fits else "  DOES NOT FIT")
        return "\n".join(lines)


def memory_plan(n: int, n_test: int, d: int, *, outputs: int = 1, dtype: Any = np.float64,
                n_devices: int = 1, test_block: int | None = None,
                engine: Literal["auto", "lapack", "jax"] = "auto",
                device_memory: int | None = None, host_memory: int | None = None,
                keep_alpha: bool = True, kernel_block: int = 512, check: bool = True
                ) -> MemoryPlan:
    """Plan the memory of :func:`large_influence` and refuse problems that cannot fit.

    Nothing is allocated. With ``check=True`` a problem that does not fit raises
    :class:`MemoryPlanError` stating the memory needed and what to change.

    Args:
      n: training points.
      n_test: test points.
      d: input dimension (flattened).
      outputs: label columns.
      dtype: float64 or float32.
      n_devices: devices of the mesh.
      test_block: test points per device per round (default: the largest that fits, <= 4096).
      engine: ``"lapack"`` (host), ``"jax"`` (devices) or ``"auto"`` (by backend).
      device_memory: bytes per device (default: from the device; required to check devices).
      host_memory: bytes on the host (default: ``MemAvailable``).
      keep_alpha: whether ``alpha`` is returned (it is formed either way).
      kernel_block: kernel rows per device per round (JAX engine).
      check: raise when it does not fit.

    Returns:
      :class:`MemoryPlan`.
    """
    for name, v in (("n", n), ("n_test", n_test), ("d", d), ("n_devices", n_devices)):
        if int(v) < 1:
            raise InputError(f"{name} must be >= 1, got {v}.")
    n, n_test, d, n_devices = int(n), int(n_test), int(d), int(n_devices)
    s = np.dtype(dtype).itemsize
    eng = resolve_engine(engine)
    host = int(host_memory if host_memory is not None else host_memory_bytes())
    dev = None if eng == "lapack" else (
        device_memory if device_memory is not None else device_memory_bytes())
    nn = n * n * s
    inputs = (n + n_test) * (d + outputs) * s
    # alpha, influence and ihvp are all formed on the host (keep_alpha only drops alpha after)
    results = 3 * n * n_test * s + n_test * outputs * s
    per_test = 6 * n * s  # K_te block, A K_te, influence, ihvp, two temporaries per column
    kte_host = n * n_test * s if eng == "lapack" else 0  # the host engine keeps K_te whole
    if eng == "lapack":
        room = host - inputs - results - kte_host - nn
    else:
        room = dev - inputs - nn if dev is not None else 4096 * per_test
    if test_block is None:
        test_block = int(max(1, min(4096, -(-n_test // n_devices), room // per_test)))
    test_block = int(max(1, test_block))
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
    if plan.engine == "lapack":
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
    avail = plan.host_memory if plan.engine == "lapack" else (plan.device_memory or 0)
    if plan.engine == "lapack" and two_nn <= avail:
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
        room = avail - (two_nn if plan.engine == "lapack" else nn + inputs)
        tb = max(1, int(room // per_test))
        fix.append(f"use test_block={tb} or less (now {plan.test_block})")
    if results > plan.host_memory // 2:
        fix.append(f"the results take {results / GB:.2f} GB on the host: call it on slices of the "
                   "test points and save each slice")
    if plan.engine == "jax" and plan.n_devices > 1:
        fix.append("more devices shorten the test side but do not shrink the factorisation")
    return "; ".join(need) + ". " + "; ".join(fix) + ".\n" + plan.describe()


# --------------------------------------------------------------------------------------------
# Sharded kernel blocks


def _row_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS, None))


@functools.lru_cache(maxsize=32)
def _sharded_kernel_fn(fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    rep = NamedSharding(mesh, P())
    return jax.jit(fn, in_shardings=(_row_sharding(mesh), rep), out_shardings=_row_sharding(mesh))


def _prep(kernel: Kernel, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1) if kernel.flatten else x


def sharded_kernel_rows(kernel: Kernel | str | Any, x1: Any, x2: Any, mesh: Mesh, *,
                        block_rows: int = 512, dtype: Any = np.float64,
                        device: Any | None = None) -> jax.Array:
    """``K(x1, x2)`` computed in row blocks sharded over ``mesh`` and gathered on one device.

    Every round computes ``devices x block_rows`` rows (each device its own slice) and copies
    them into an ``(n1, n2)`` buffer on ``device`` (default: the mesh's first device).

    Args:
      kernel: a :class:`Kernel`, a name or a stax ``kernel_fn``.
      x1: ``(n1, ...)`` inputs.
      x2: ``(n2, ...)`` inputs.
      mesh: the device mesh.
      block_rows: rows per device per round.
      dtype: float64 or float32.
      device: where the matrix is gathered.

    Returns:
      ``(n1, n2)`` array on ``device``.
    """
    k = resolve_kernel(kernel)
    a, b = _prep(k, np.asarray(x1, np.float64)), _prep(k, np.asarray(x2, np.float64))
    nd = mesh.devices.size
    dev = device or mesh.devices.flat[0]
    fn = _sharded_kernel_fn(k.fn, mesh)
    rows = nd * int(block_rows)
    n1 = a.shape[0]
    with precision(dtype) as dt:
        b_rep = jax.device_put(jnp.asarray(b, dt), NamedSharding(mesh, P()))
        out = jax.device_put(jnp.zeros((n1, b.shape[0]), dt), dev)
        for s in range(0, n1, rows):
            blk = a[s:s + rows]
            m = blk.shape[0]
            if m < rows:
                blk = np.concatenate([blk, np.repeat(blk[-1:], rows - m, axis=0)])
            kb = fn(jax.device_put(jnp.asarray(blk, dt), _row_sharding(mesh)), b_rep)
            kb = jax.device_put(kb, dev)
            out = _set_rows(out, kb if m == rows else kb[:m], s)
    return out


@functools.partial(jax.jit, donate_argnums=(0,))
def _set_rows(out: jax.Array, blk: jax.Array, start: int) -> jax.Array:
    return jax.lax.dynamic_update_slice_in_dim(out, blk, start, axis=0)


# --------------------------------------------------------------------------------------------
# Factorisation on one device


@functools.partial(jax.jit, donate_argnums=(0,))
def _chol_donated(k: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    idx = jnp.arange(k.shape[0])
    chol = jnp.linalg.cholesky(k.at[idx, idx].add(lam))
    dg = jnp.diagonal(chol)
    return chol, jnp.all(jnp.isfinite(dg)) & jnp.all(dg > 0)


@functools.partial(jax.jit, static_argnums=(2,))
def _inv_diag_block(chol: jax.Array, j0: jax.Array, b: int) -> jax.Array:
    """``diag(A)[j0:j0+b]`` from the columns ``j0..j0+b`` of ``L^-1`` (``n x b`` workspace)."""
    n = chol.shape[0]
    cols = j0 + jnp.arange(b)
    e = (jnp.arange(n)[:, None] == cols[None, :]).astype(chol.dtype)
    x = jax.scipy.linalg.solve_triangular(chol, e, lower=True)
    return jnp.sum(x * x, axis=0)


def inverse_diagonal(chol: jax.Array, *, mode: str = "recursive", block: int = 1024) -> jax.Array:
    """``diag((L L^T)^-1)`` from a lower Cholesky factor on a device.

    Args:
      chol: ``(n, n)`` lower factor.
      mode: ``"recursive"`` (build ``L^-1``: one more ``n x n`` array, ``n^3/3`` flops) or
        ``"blocked"`` (``block`` columns of ``L^-1`` at a time: ``n x block`` workspace, ``n^3``
        flops).
      block: columns per block for ``"blocked"``.

    Returns:
      ``(n,)`` diagonal of the inverse.
    """
    if mode == "recursive":
        inv = tri_inv(chol)
        out = jnp.sum(inv * inv, axis=0)
        del inv
        return out
    if mode != "blocked":
        raise InputError(f"mode must be 'recursive' or 'blocked', got {mode!r}.")
    n = chol.shape[0]
    b = int(min(block, n))
    parts = [_inv_diag_block(chol, jnp.asarray(j, jnp.int32), b) for j in range(0, n, b)]
    return jnp.concatenate(parts)[:n]


def factor_on_device(k: jax.Array, y: Any, lam: float, *, inverse: str = "recursive",
                     inv_block: int = 1024, spectrum_method: str = "lanczos") -> KRRFactor:
    """Factorise ``K + lam I`` on the device that holds ``k``, consuming ``k`` (donated).

    Args:
      k: ``(n, n)`` kernel on one device; its buffer is donated to the Cholesky.
      y: ``(n, k)`` labels.
      lam: ridge.
      inverse: ``"recursive"`` or ``"blocked"`` (see :func:`inverse_diagonal`).
      inv_block: block columns for ``"blocked"``.
      spectrum_method: ``"lanczos"`` or ``"none"``.

    Returns:
      :class:`~ntk_influence.krr.KRRFactor` with device arrays.
    """
    dt = np.dtype(k.dtype)
    dev = next(iter(k.devices()))
    n = k.shape[0]
    with precision(dt):
        chol, ok = _chol_donated(k, jnp.asarray(lam, dt))
        if not bool(ok):
            raise SingularKernelError(
                f"K + lam*I is not numerically positive definite (lam={lam:g}, n={n}, "
                f"{dt.name}); use a larger lam (e.g. lam=1e-3 or more).")
        a_diag = inverse_diagonal(chol, mode=inverse, block=inv_block)
        y2 = jax.device_put(jnp.asarray(np.asarray(y).reshape(n, -1), dt), dev)
        beta = cho_apply(chol, y2)
        spec = spectrum(None, chol, lam, spectrum_method)
        cond = (spec.lambda_max + lam) / (spec.lambda_min + lam) if spec.method != "none" \
            else float("nan")
    return KRRFactor(chol, a_diag, beta, y2, float(lam), spec, float(cond), dt)


# --------------------------------------------------------------------------------------------
# Sharded test side


@functools.lru_cache(maxsize=32)
def _test_round_fn(fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    rep = NamedSharding(mesh, P())
    rows, cols = NamedSharding(mesh, P(AXIS, None)), NamedSharding(mesh, P(None, AXIS))

    def body(chol: jax.Array, beta: jax.Array, a_diag: jax.Array, lam: jax.Array,
             x_tr: jax.Array, x_te: jax.Array, y_te: jax.Array) -> tuple[jax.Array, ...]:
        k_te = fn(x_tr, x_te)  # (n, t) with the test columns sharded
        alpha = cho_apply(chol, k_te)
        f_te = k_te.T @ beta
        r_te = f_te - y_te
        c = -beta / a_diag[:, None]
        e = -lam * beta
        infl = alpha * (c @ r_te.T) + 0.5 * alpha**2 * jnp.sum(c * c, axis=1)[:, None]
        return alpha, f_te, infl, alpha * (e @ r_te.T)

    return jax.jit(body, in_shardings=(rep, rep, rep, rep, rep, rows, rows),
                   out_shardings=(cols, rows, cols, cols))


def sharded_test_side(factor: KRRFactor, kernel: Kernel | str | Any, x_train: Any, x_test: Any,
                      y_test: Any, mesh: Mesh, *, test_block: int = 1024,
                      show_progress: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``alpha``, ``f_test``, influence and IHVP with the test points sharded over ``mesh``.

    ``L`` is replicated to every device; each round gives every device ``test_block`` test
    points, whose kernel block, solve and influences stay on that device until the round's
    results are copied to the host.

    Args:
      factor: a device factorisation.
      kernel: the kernel.
      x_train: ``(n, ...)`` training inputs.
      x_test: ``(t, ...)`` test inputs.
      y_test: ``(t, k)`` test labels.
      mesh: device mesh.
      test_block: test points per device per round.
      show_progress: progress bar.

    Returns:
      ``(alpha, f_test, influence, ihvp)`` host arrays of shapes ``(n, t)``, ``(t, k)``,
      ``(n, t)``, ``(n, t)``.
    """
    k = resolve_kernel(kernel)
    dt = factor.dtype
    xtr = _prep(k, np.asarray(x_train, np.float64))
    xte = _prep(k, np.asarray(x_test, np.float64))
    yte = np.asarray(y_test, np.float64).reshape(xte.shape[0], -1)
    n, t, kk = xtr.shape[0], xte.shape[0], yte.shape[1]
    nd = mesh.devices.size
    rnd = nd * int(test_block)
    fn = _test_round_fn(k.fn, mesh)
    rep = NamedSharding(mesh, P())
    alpha, infl, ihvp = (np.empty((n, t), dt) for _ in range(3))
    f_te = np.empty((t, kk), dt)
    with precision(dt):
        args = [jax.device_put(a, rep) for a in (factor.chol, factor.beta, factor.a_diag,
                                                 jnp.asarray(factor.lam, dt),
                                                 jnp.asarray(xtr, dt))]
        starts = list(range(0, t, rnd))
        for s in progress(starts, total=len(starts), desc="test rounds", enabled=show_progress):
            xb, yb = xte[s:s + rnd], yte[s:s + rnd]
            m = xb.shape[0]
            if m < rnd:
                xb = np.concatenate([xb, np.repeat(xb[-1:], rnd - m, axis=0)])
                yb = np.concatenate([yb, np.repeat(yb[-1:], rnd - m, axis=0)])
            out = fn(*args, jnp.asarray(xb, dt), jnp.asarray(yb, dt))
            a_b, f_b, i_b, h_b = (np.asarray(o) for o in out)
            alpha[:, s:s + m], f_te[s:s + m] = a_b[:, :m], f_b[:m]
            infl[:, s:s + m], ihvp[:, s:s + m] = i_b[:, :m], h_b[:, :m]
    return alpha, f_te, infl, ihvp


# --------------------------------------------------------------------------------------------
# Precision policy


@dataclasses.dataclass(frozen=True)
class PrecisionReport:
    """How the float32 policy ended.

    Attributes:
      policy: the policy used.
      refinement_steps: refinement steps taken (``beta``, worst test block).
      residual: final relative residual ``||b - M x|| / ||b||`` (``beta``, worst test block).
      cond: condition number of ``K + lam I`` (Lanczos estimate).
      diag_error_estimate: ``cond * eps32``, the expected relative error of ``diag(A)``.
      rtol: the requested relative accuracy.
      met: whether every estimate is within ``rtol``.
    """

    policy: str
    refinement_steps: tuple[int, int]
    residual: tuple[float, float]
    cond: float
    diag_error_estimate: float
    rtol: float
    met: bool


def resolve_policy(policy: PrecisionPolicy, device: Any | None = None) -> str:
    """``"auto"`` becomes ``"float64"`` where the device has float64, else ``"float32-refined"``.

    Args:
      policy: ``"auto"``, ``"float64"``, ``"float32"`` or ``"float32-refined"``.
      device: the factor device.

    Returns:
      The policy to use.
    """
    if policy not in ("auto", "float64", "float32", "float32-refined"):
        raise InputError(f"precision_policy must be 'auto', 'float64', 'float32' or "
                         f"'float32-refined', got {policy!r}.")
    if policy == "auto":
        return "float64" if device_has_float64(device) else "float32-refined"
    return policy


def refine_solve(solve32: Callable[[np.ndarray], np.ndarray], matvec64: Callable[..., Any],
                 b: np.ndarray, *, rtol: float = 1e-12, max_steps: int = 5
                 ) -> tuple[np.ndarray, int, float]:
    """Mixed-precision iterative refinement: float32 solves, float64 residuals.

    ``x <- x + M32^-1 (b - M x)``, with ``M x`` in float64; converges to float64 accuracy when
    ``cond(M) * eps32 < 1``, at a rate of about ``cond(M) * eps32`` per step.

    Args:
      solve32: ``r -> M^-1 r`` in float32 (returns float64 arrays).
      matvec64: ``x -> M x`` in float64.
      b: ``(n,)`` or ``(n, m)`` right-hand side.
      rtol: stop when ``||b - M x|| <= rtol ||b||`` (Frobenius, per call).
      max_steps: at most this many refinement steps.

    Returns:
      ``(x, steps, relative_residual)``.
    """
    b = np.asarray(b, np.float64)
    nb = float(np.linalg.norm(b)) or 1.0
    x = solve32(b)
    r = b - matvec64(x)
    res = float(np.linalg.norm(r)) / nb
    steps = 0
    while res > rtol and steps < max_steps:
        x = x + solve32(r)
        r_new = b - matvec64(x)
        res_new = float(np.linalg.norm(r_new)) / nb
        steps += 1
        if res_new >= res:  # stagnated: cond * eps32 >= 1 for this system
            break
        r, res = r_new, res_new
    return x, steps, res


def _float32_influence(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray,
                       lam: float, k: Kernel, refine: bool, rtol: float, test_block: int,
                       max_steps: int) -> tuple[InfluenceResult, PrecisionReport]:
    """Kernels for the float32 policies: float64 on the host when refining, else float32."""
    from .kernels import kernel_matrix

    kdt = np.float64 if refine else np.float32
    k_train = kernel_matrix(k, xtr, dtype=kdt)
    k_test = kernel_matrix(k, xtr, xte, dtype=kdt)
    return float32_influence(k_train, k_test, ytr, yte, lam, refine=refine, rtol=rtol,
                             test_block=test_block, max_steps=max_steps, kernel_name=k.name)


def float32_influence(k_train: Any, k_test: Any, y_train: Any, y_test: Any, lam: float, *,
                      refine: bool = True, rtol: float = 1e-6, test_block: int = 1024,
                      max_steps: int = 5, kernel_name: str = "precomputed"
                      ) -> tuple[InfluenceResult, PrecisionReport]:
    """Exact influence (eq. 8-9) with a float32 factorisation on the default device.

    With ``refine`` every solve (``beta`` and ``A K_te``, block by block) is refined by
    :func:`refine_solve` with float64 residuals from ``k_train`` on the host; ``diag(A)`` keeps
    float32's relative error of about ``cond * eps32``. Warns (:class:`PrecisionWarning`) when
    that estimate, or a solve's final residual, exceeds ``rtol``.

    Args:
      k_train: ``(n, n)`` kernel (float64 when refining: it gives the residuals).
      k_test: ``(n, t)`` kernel between training and test points.
      y_train: ``(n,)`` or ``(n, k)`` labels.
      y_test: ``(t,)`` or ``(t, k)`` labels.
      lam: ridge.
      refine: iterative refinement of the solves.
      rtol: requested relative accuracy.
      test_block: test columns per refined block.
      max_steps: refinement steps at most.
      kernel_name: description stored in the result.

    Returns:
      ``(InfluenceResult, PrecisionReport)``; the result's arrays are float64.
    """
    lam = check_lam(lam)
    k64 = np.asarray(k_train, np.float64)
    kt_all = np.asarray(k_test, np.float64)
    n, t = k64.shape[0], kt_all.shape[1]
    ytr = check_labels(y_train, n, "y_train")
    yte = check_labels(y_test, t, "y_test")
    y2, yt2 = ytr.reshape(n, -1).astype(np.float64), yte.reshape(t, -1).astype(np.float64)
    with precision(np.float32):
        kj = jnp.asarray(k64, jnp.float32)
        chol, ok = _chol_donated(kj, jnp.asarray(lam, jnp.float32))
        if not bool(ok):
            raise SingularKernelError(
                f"K + lam*I is not positive definite in float32 (lam={lam:g}, n={n}); use a "
                "larger lam or float64.")
        a_diag = np.asarray(inverse_diagonal(chol), np.float64)
        spec = spectrum(None, chol, lam, "lanczos")
    cond = (spec.lambda_max + lam) / (spec.lambda_min + lam)

    def solve32(r: np.ndarray) -> np.ndarray:
        with precision(np.float32):
            return np.asarray(cho_apply(chol, jnp.asarray(r, jnp.float32)), np.float64)

    def matvec64(x: np.ndarray) -> np.ndarray:
        return k64 @ x + lam * x

    steps, resid = [0, 0], [0.0, 0.0]
    if refine:
        beta, steps[0], resid[0] = refine_solve(solve32, matvec64, y2, rtol=1e-13,
                                                max_steps=max_steps)
    else:
        beta = solve32(y2)
    alpha = np.empty((n, t))
    tb = max(1, int(test_block))
    for s in range(0, t, tb):
        kb = kt_all[:, s:s + tb]
        if refine:
            a_b, st, rs = refine_solve(solve32, matvec64, kb, rtol=1e-13, max_steps=max_steps)
            steps[1], resid[1] = max(steps[1], st), max(resid[1], rs)
        else:
            a_b = solve32(kb)
        alpha[:, s:s + tb] = a_b
    f_te = kt_all.T @ beta
    c = -beta / a_diag[:, None]
    r_te = f_te - yt2
    infl = alpha * (c @ r_te.T) + 0.5 * alpha**2 * np.sum(c * c, axis=1)[:, None]
    ihvp = alpha * ((-lam * beta) @ r_te.T)
    factor = KRRFactor(np.asarray(chol, np.float64), a_diag, beta, y2, float(lam), spec,
                       float(cond), np.dtype(np.float64))
    diag_err = cond * float(np.finfo(np.float32).eps)
    met = diag_err <= rtol and (not refine or max(resid) <= rtol)
    policy = "float32-refined" if refine else "float32"
    rep = PrecisionReport(policy, (steps[0], steps[1]), (resid[0], resid[1]), float(cond),
                          diag_err, float(rtol), bool(met))
    if not met:
        warnings.warn(
            f"{policy}: the requested accuracy rtol={rtol:g} cannot be met: cond(K + lam I) = "
            f"{cond:.3g}, so diag((K + lam I)^-1) and the influences carry a relative error of "
            f"about {diag_err:.2g} (solve residuals {resid[0]:.2g}, {resid[1]:.2g}). Use "
            "float64 (CPU/GPU), a larger lam, or a looser rtol.", PrecisionWarning, stacklevel=3)
    res = assemble_result(factor, yte, alpha, infl, ihvp, f_te, f"{kernel_name} ({policy})")
    return res, rep


# --------------------------------------------------------------------------------------------
# The large-problem entry point


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
                    engine: Literal["auto", "lapack", "jax"] = "auto",
                    precision_policy: PrecisionPolicy = "auto", rtol: float = 1e-6,
                    keep_alpha: bool = True, device_memory: int | None = None,
                    host_memory: int | None = None, show_progress: bool = False
                    ) -> LargeInfluence:
    """Exact NTK influence (eq. 8-9) for large ``n``: memory plan first, then sharded work.

    Checks the plan (raising :class:`MemoryPlanError` before any large allocation), computes
    the kernel rows sharded over the mesh, factorises on one device, and streams the test points
    through the mesh in rounds. On the CPU backend (``engine="lapack"``) it runs the same plan
    with LAPACK on the host, in place.

    Args:
      x_train: ``(n, d)`` training inputs (unit norm for eq. 4).
      y_train: ``(n,)`` or ``(n, k)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` or ``(t, k)`` labels.
      lam: ridge.
      kernel: the kernel (default eq. 4).
      mesh: device mesh (default: all devices) for the JAX engine.
      test_block: test points per device per round (default: from the plan).
      kernel_block: kernel rows per device per round.
      engine: ``"lapack"``, ``"jax"`` or ``"auto"``.
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
    xtr, xte = check_features(x_train, x_test)
    ytr = check_labels(y_train, xtr.shape[0], "y_train")
    yte = check_labels(y_test, xte.shape[0], "y_test")
    k = resolve_kernel(kernel)
    if k.unit_norm:
        from ._validate import check_unit_norm

        check_unit_norm(xtr.reshape(xtr.shape[0], -1), "x_train")
        check_unit_norm(xte.reshape(xte.shape[0], -1), "x_test")
    mesh = mesh or make_mesh()
    eng = resolve_engine(engine)
    pol = resolve_policy(precision_policy, mesh.devices.flat[0])
    dtype = np.float64 if pol == "float64" else np.float32
    n, t = xtr.shape[0], xte.shape[0]
    d = int(np.prod(xtr.shape[1:]))
    kk = ytr.reshape(n, -1).shape[1]
    plan = memory_plan(n, t, d, outputs=kk, dtype=dtype, n_devices=mesh.devices.size,
                       test_block=test_block, engine=eng if pol == "float64" else "jax",
                       device_memory=device_memory, host_memory=host_memory,
                       keep_alpha=keep_alpha, kernel_block=kernel_block)
    if pol != "float64":
        res, rep = _float32_influence(xtr, ytr, xte, yte, lam, k, pol == "float32-refined", rtol,
                                      plan.test_block, 5)
        return LargeInfluence(res, plan, rep)
    if eng == "lapack":
        res = _lapack_influence(xtr, ytr, xte, yte, lam, k, plan.test_block)
    else:
        kt = sharded_kernel_rows(k, xtr, xtr, mesh, block_rows=kernel_block, dtype=dtype)
        factor = factor_on_device(kt, ytr, lam, inverse=plan.inverse_diagonal,
                                  inv_block=plan.inv_block)
        del kt
        alpha, f_te, infl, ihvp = sharded_test_side(factor, k, xtr, xte, yte, mesh,
                                                    test_block=plan.test_block,
                                                    show_progress=show_progress)
        res = assemble_result(factor, yte, alpha, infl, ihvp, f_te, k.name)
    if not keep_alpha:
        res = dataclasses.replace(res, alpha=np.empty((n, 0), res.alpha.dtype))
    return LargeInfluence(res, plan, None)


def _lapack_influence(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray,
                      lam: float, k: Kernel, test_block: int) -> InfluenceResult:
    """Host plan: kernel into one buffer, ``potrf`` in place, ``trtri`` freed, ``potrs`` blocks."""
    from .kernels import kernel_matrix

    n = xtr.shape[0]
    y2 = ytr.reshape(n, -1)
    kmat = kernel_matrix(k, xtr)  # C order and symmetric: its transpose is Fortran order
    kmat[np.diag_indices(n)] += lam
    chol_t, info = _lapack(np.float64, "potrf")(kmat.T, lower=1, overwrite_a=1, clean=1)
    del kmat
    if info != 0:
        raise SingularKernelError(f"K + lam*I is not numerically positive definite (lam={lam:g},"
                                  f" n={n}); use a larger lam (e.g. lam=1e-3 or more).")
    chol = chol_t
    inv, _ = _lapack(np.float64, "trtri")(chol, lower=1)
    a_diag = np.einsum("ij,ij->j", inv, inv)
    spec = spectrum(None, chol, lam, "lanczos", chol_inv=inv)
    del inv
    beta = lapack_cho_apply(chol, y2)
    cond = (spec.lambda_max + lam) / (spec.lambda_min + lam)
    factor = KRRFactor(chol, a_diag, beta, y2, float(lam), spec, float(cond), np.dtype(np.float64))
    kt = kernel_matrix(k, xtr, xte, block_size=min(2048, max(test_block, 1)))
    from .influence import influence_from_factor

    res = influence_from_factor(factor, kt, yte, block_size=test_block, kernel_name=k.name)
    return res
