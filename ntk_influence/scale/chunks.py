"""Mapping a per-chunk function over the devices of a mesh (leave-one-out retraining sweeps)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._errors import InputError
from .._precision import precision
from .._validate import check_lam
from ..io import ResultStore, progress
from .mesh import AXIS, make_mesh


@dataclasses.dataclass(frozen=True)
class ChunkMapResult:
    """Results of :func:`map_chunks`, in the order of the items.

    Attributes:
      items: the items, ``(m, ...)``.
      outputs: name -> ``(m, ...)`` array gathered from every chunk.
      chunk_size: items per chunk (one chunk per device per round).
      n_devices: devices used.
      computed_chunks: chunks computed by this call (the others were loaded from the store).
      total_chunks: chunks in all.
    """

    items: np.ndarray
    outputs: dict[str, np.ndarray]
    chunk_size: int
    n_devices: int
    computed_chunks: int
    total_chunks: int


def map_chunks(fn: Callable[[jax.Array], dict[str, jax.Array]], items: Any, *,
               chunk_size: int, mesh: Mesh | None = None,
               store: str | os.PathLike[str] | ResultStore | None = None,
               meta: dict[str, Any] | None = None, show_progress: bool = True,
               desc: str = "chunks") -> ChunkMapResult:
    """Run ``fn`` on chunks of ``items`` with the chunk axis sharded over a device mesh.

    Each round stacks one chunk per device, ``(devices, chunk_size, ...)``, shards the leading
    axis over the mesh (``NamedSharding``), and runs ``jax.vmap(fn)`` under ``jit`` so every
    device works on its own chunk. Each chunk's outputs are saved to ``store`` as soon as its
    round finishes; a later call with the same store skips those chunks (an interrupted sweep
    resumes). The last chunk is padded with copies of its first item, which are dropped.

    Args:
      fn: jit-able ``(chunk_size, ...) items -> {name: (chunk_size, ...) array}``, e.g. a vmapped
        leave-one-out retraining over the left-out indices.
      items: ``(m, ...)`` array of items (for LOO: the left-out indices).
      chunk_size: items per chunk.
      mesh: device mesh (default: all devices).
      store: a folder or :class:`~ntk_influence.io.ResultStore` for the finished chunks.
      meta: settings recorded with the store (a store made with other settings is refused).
      show_progress: progress bar.
      desc: progress label.

    Returns:
      :class:`ChunkMapResult`.
    """
    arr = np.asarray(items)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise InputError("items must be a non-empty array with the items along axis 0.")
    cs = int(chunk_size)
    if cs < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}.")
    mesh = mesh or make_mesh()
    nd = mesh.devices.size
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store, meta={"chunk_size": cs, "items": arr.tolist(),
                                         **(meta or {})})
    chunks = [arr[s:s + cs] for s in range(0, arr.shape[0], cs)]
    todo = [i for i in range(len(chunks)) if store is None or not store.done(f"chunk_{i}")]
    sh = NamedSharding(mesh, P(AXIS))
    run = jax.jit(jax.vmap(fn), in_shardings=sh, out_shardings=sh)
    results: dict[int, dict[str, np.ndarray]] = {}
    rounds = [todo[r:r + nd] for r in range(0, len(todo), nd)]
    for rnd in progress(rounds, total=len(rounds), desc=desc, enabled=show_progress):
        stack = []
        for ci in rnd:
            c = chunks[ci]
            if c.shape[0] < cs:
                c = np.concatenate([c, np.repeat(c[:1], cs - c.shape[0], axis=0)])
            stack.append(c)
        while len(stack) < nd:  # idle devices get a copy of the first chunk, dropped below
            stack.append(stack[0])
        out = run(jax.device_put(np.stack(stack), sh))
        host = {k: np.asarray(v) for k, v in out.items()}
        for j, ci in enumerate(rnd):
            m = chunks[ci].shape[0]
            got = {k: v[j, :m] for k, v in host.items()}
            results[ci] = got
            if store is not None:
                store.save(f"chunk_{ci}", items=chunks[ci], **got)
    for ci in range(len(chunks)):
        if ci not in results:
            got = store.load(f"chunk_{ci}")  # type: ignore[union-attr]
            if not np.array_equal(got.pop("items"), chunks[ci]):
                raise InputError(f"{store.root} chunk {ci} holds other items; use another "  # type: ignore[union-attr]
                                 "folder or resume=False.")
            results[ci] = got
    names = list(results[0])
    outputs = {k: np.concatenate([results[ci][k] for ci in range(len(chunks))]) for k in names}
    return ChunkMapResult(arr, outputs, cs, nd, sum(len(r) for r in rounds), len(chunks))


def sharded_loo_retrain(net: Any, x_train: Any, y_train: Any, x_test: Any, y_test: Any,
                        lam: float = 0.1, *, train_index: Any, settings: Any = None,
                        warm_start: bool = False, full: Any = None,
                        chunk_size: int | None = None, memory_bytes: int = 2**32,
                        mesh: Mesh | None = None,
                        store: str | os.PathLike[str] | ResultStore | None = None,
                        show_progress: bool = True) -> Any:
    """Leave-one-out retraining (eq. 7) with the left-out indices sharded over a device mesh.

    The same solver as :func:`ntk_influence.retrain.loo_retrain` (one jit program vmapped over
    the left-out masks), run through :func:`map_chunks`: each round gives every device its own
    chunk of left-out indices, and each finished chunk is saved to ``store`` at once, so an
    interrupted sweep resumes without redoing finished chunks.

    Args:
      net: the :class:`~ntk_influence.nets.FunctionalNet` (``net.theta0`` is ``W(0)``).
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      lam: ridge ``>= 0``.
      train_index: the training points to remove, one at a time.
      settings: :class:`~ntk_influence.train.SolverSettings`, shared by every run.
      warm_start: start each retrain from the trained W instead of ``W(0)``.
      full: an existing full training result (same settings) to reuse.
      chunk_size: retrains per chunk (default from ``memory_bytes``, per device).
      memory_bytes: memory budget of one chunk on one device.
      mesh: device mesh (default: all devices).
      store: folder or :class:`~ntk_influence.io.ResultStore` for finished chunks.
      show_progress: progress bar.

    Returns:
      :class:`~ntk_influence.retrain.RetrainResult`.
    """
    from .. import retrain as rt
    from .. import train as tr
    from .._validate import check_indices

    lam = check_lam(lam)
    s = (settings or tr.SolverSettings()).resolved()
    xtr, ytr = tr.check_xy(net, x_train, y_train, "train")
    xte, yte = tr.check_xy(net, x_test, y_test, "test")
    n = xtr.shape[0]
    idx = check_indices(train_index, n, "train_index")
    if full is None:
        full = tr.train(net, xtr, ytr, lam, x_test=xte, settings=s)
    elif full.f_test.shape[0] != xte.shape[0]:
        raise InputError("full was trained with other test points; pass full=None.")
    cs = int(chunk_size or rt.plan_chunk_size(net, n + xte.shape[0], memory_bytes))
    cs = max(1, min(cs, idx.size))
    theta_start = full.theta if warm_start else net.theta0
    eta = tr.gd_step_size(net, theta_start, xtr, lam, s) if s.method == "gd" else 0.0
    solve = jax.vmap(tr.make_solver(net, s, n), in_axes=(None, None, None, None, 0, None, None))
    with precision(net.dtype):
        x_all = jnp.concatenate([jnp.asarray(xtr), jnp.asarray(xte)])
        lam_a, eta_a = jnp.asarray(lam, net.dtype), jnp.asarray(eta, net.dtype)

        def chunk_fn(ids: jax.Array) -> dict[str, jax.Array]:
            masks = 1.0 - jax.nn.one_hot(ids, n, dtype=net.dtype)
            out = solve(net.theta0, theta_start, x_all, ytr, masks, lam_a, eta_a)
            return {"f_test": out.f_all[:, n:], "f_change_test": out.f_change_test,
                    "grad_norm": out.grad_norm, "iterations": out.iterations,
                    "converged": out.converged, "diverged": out.diverged}

        meta = {"lam": lam, "warm_start": bool(warm_start),
                "settings": dataclasses.asdict(s), "net": net.description}
        t0 = time.perf_counter()
        got = map_chunks(chunk_fn, idx, chunk_size=cs, mesh=mesh, store=store, meta=meta,
                         show_progress=show_progress, desc=f"sharded LOO retrain ({net.width})")
        secs = time.perf_counter() - t0
    o = got.outputs
    if bool(np.any(o["diverged"])):
        raise tr._divergence_error(eta, s.method)
    return rt.assemble_result(idx, full, o, yte, s, warm_start=warm_start, chunk_size=cs,
                              seconds=secs)
