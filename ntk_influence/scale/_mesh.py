"""Device meshes: several devices and hosts, kernel rows and test points sharded over them.

:func:`make_mesh` builds a one-dimensional mesh, :func:`initialize` starts JAX's multi-host
runtime, :func:`sharded_kernel_rows` computes ``K`` in row blocks on every device of the mesh
and gathers it on the factor device, and :func:`sharded_test_side` streams the test points
through the mesh in rounds: each device builds its ``K_te`` block, solves ``A K_te`` with the
replicated Cholesky factor and forms the influences (eq. 8-9, 13) with
:func:`ntk_influence.linalg.device_test_side`, the same code as a single device.

The sharded programs are jitted once per kernel function and mesh and kept in two
``functools.lru_cache`` s of 8 entries each, keyed on ``(kernel.fn, mesh)``: the kernel
function is hashed by identity (a stax or closed-form ``kernel_fn``, no arrays) and the mesh by
its devices and axis name, so no array, factor or network is ever a key.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._precision import precision
from ..errors import InputError
from ..io import progress
from ..kernels import Kernel, resolve_kernel
from ..linalg import DeviceFactor, device_test_side

AXIS = "data"


_STARTED: list[bool] = []


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
    if wanted and not _STARTED:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id,
                                   local_device_ids=local_device_ids)
        _STARTED.append(True)
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "devices": jax.device_count()}


def _row_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS, None))


@functools.lru_cache(maxsize=8)
def _sharded_kernel_fn(fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """The kernel ``fn`` jitted with its rows sharded over ``mesh`` (cached per ``(fn, mesh)``)."""
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


@functools.lru_cache(maxsize=8)
def _test_round_fn(fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """One sharded round of the test side for the kernel ``fn`` (cached per ``(fn, mesh)``)."""
    rep = NamedSharding(mesh, P())
    rows, cols = NamedSharding(mesh, P(AXIS, None)), NamedSharding(mesh, P(None, AXIS))

    def body(chol: jax.Array, beta: jax.Array, a_diag: jax.Array, lam: jax.Array,
             x_tr: jax.Array, x_te: jax.Array, y_te: jax.Array) -> tuple[jax.Array, ...]:
        # (n, t) kernel block with the test columns sharded, then eq. (6), (8)-(9), (13)
        return device_test_side(chol, beta, a_diag, lam, fn(x_tr, x_te), y_te)

    return jax.jit(body, in_shardings=(rep, rep, rep, rep, rep, rows, rows),
                   out_shardings=(cols, rows, cols, cols))


def sharded_test_side(factor: DeviceFactor, kernel: Kernel | str | Any, x_train: Any, x_test: Any,
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
        chol, beta, a_diag = factor.device_arrays()
        args = [jax.device_put(a, rep) for a in (chol, beta, a_diag,
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
