"""Actual influence (eq. 7) by retraining a finite net without points or groups of points.

Each retrain removes a set ``S`` of training points (``w_i = 0`` for ``i in S`` in eq. 2): one
point for leave-one-out, many for group removal or datamodel-style random subsets. It starts from
the same ``W(0)`` by default, or warm-starts from the trained ``W`` (a different experiment; the
result records which). On ReLU nets the solver stops where every direction it proposes crosses a
kink (:attr:`~ntk_influence.training.TrainResult.final_step`), so where it stops depends on its
path: from ``W(0)`` the full run and each retrain share most of that path, while a warm start
begins pinned on the full run's kinks and moves less. The retrains run as one jit-compiled
program vmapped over the removal masks (sets of one size fitted on their kept rows only,
:func:`gathered_size`), in chunks sized to the memory budget, through the one
chunk runner (:func:`~ntk_influence.training.map_chunks`: one device, or the chunk axis sharded
over a mesh), each chunk saved atomically so an interrupted sweep resumes where it stopped.

The influence is computed from ``Delta = f^(S)(x_te) - f(x_te)`` as
``I_nn = Delta (f(x_te) - y_te) + Delta^2 / 2`` (:func:`~ntk_influence.linalg.loss_change`), which
equals eq. (7) without subtracting two squared losses (whose difference would be lost to
cancellation). Every retrain records its solver error (the largest change of its test
predictions over the last steps), to be compared with ``|Delta|``.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .._precision import precision
from .._validate import check_indices, check_lam
from ..errors import InputError, NotConvergedWarning
from ..io import ResultStore
from ..nets import FunctionalNet
from ._chunks import items_digest, map_chunks
from ._first_order import divergence_error, gd_step_size
from ._results import RetrainResult, TrainResult
from ._settings import SolverSettings, blas_single_thread
from ._train import check_net, check_xy, make_solver, train

OUTPUTS = ("f_test", "f_change_test", "grad_norm", "ridge_norm", "iterations", "settled",
           "diverged")


def plan_chunk_size(net: FunctionalNet, n_points: int, memory_bytes: int = 2**32,
                    backend: str | None = None) -> int:
    """Retrains per vmapped chunk: one on a CPU, else as many as fit ``memory_bytes``.

    On a CPU a vmapped chunk runs as long as its slowest member and batching retrains gains
    little (pairs can be somewhat faster on a few cores: pass ``chunk_size=2``), so every
    retrain is its own chunk (which also makes the progress bar and the resumable store count
    single retrains). On an accelerator, per retrain: the model's own
    estimate (its ``retrain_bytes`` hook), else about ten parameter vectors and the ``(n, P)``
    Jacobian.

    Args:
      net: the network.
      n_points: training plus test points.
      memory_bytes: budget.
      backend: ``"cpu"``, ``"gpu"``, ``"tpu"`` (default: JAX's default backend).

    Returns:
      Chunk size ``>= 1``.
    """
    if (backend or jax.default_backend()) == "cpu":
        return 1
    if net.bytes_fn is not None:
        per = int(net.bytes_fn(net, n_points))
    else:  # parameter vectors and the (n, P) Jacobian
        per = (10 + 2 * n_points) * net.n_params * net.dtype.itemsize
    return max(1, int(memory_bytes // per))


def removal_masks(n: int, remove: Any = None, keep: Any = None) -> np.ndarray:
    """``(k, n)`` boolean removal masks from index sets or from a keep/remove mask.

    Args:
      n: number of training points.
      remove: a list of index arrays (the points each retrain leaves out), or a ``(k, n)``
        boolean mask (True = removed).
      keep: a ``(k, n)`` boolean mask of the points each retrain keeps (True = kept); give
        exactly one of ``remove`` and ``keep``.

    Returns:
      ``(k, n)`` boolean, True where a point is removed.
    """
    if (remove is None) == (keep is None):
        raise InputError("give exactly one of remove= (index sets or a (k, n) removal mask) and "
                         "keep= (a (k, n) mask of kept points).")
    src = remove if keep is None else keep
    arr = None if isinstance(src, (list, tuple)) else np.asarray(src)
    if arr is not None and arr.dtype == bool:
        if arr.ndim != 2 or arr.shape[1] != n or arr.shape[0] == 0:
            raise InputError(f"a mask must be (k, {n}) with k >= 1, got shape {arr.shape}.")
        masks = arr if keep is None else ~arr
    elif keep is not None:
        raise InputError("keep= must be a (k, n) boolean mask.")
    else:
        sets = list(arr) if arr is not None and arr.ndim == 2 else list(src)
        if not sets:
            raise InputError("remove= is empty; pass at least one index set.")
        masks = np.zeros((len(sets), n), bool)
        for j, s in enumerate(sets):
            masks[j, check_indices(s, n, f"remove[{j}]")] = True
    if masks.sum(axis=1).max() >= n:
        raise InputError("a retrain would remove every training point; keep at least one.")
    return np.ascontiguousarray(masks)


def gathered_size(removed: np.ndarray, settings: SolverSettings) -> int | None:
    """Rows a retrain fits when its kept points are gathered, or ``None`` (weighted rows).

    Retrains that all remove the same number of points (random subsets, leave-one-out) solve
    on their ``k`` kept rows instead of weighting all ``n`` with zeros: the same problem, at a
    cost in ``k`` (the eNTK Gram in ``k^2``). Minibatch SGD keeps the weighted rows (its
    batches are drawn from all ``n``), as do sets of different sizes.

    Args:
      removed: ``(k, n)`` removal masks.
      settings: resolved solver settings.

    Returns:
      The number of kept points, or ``None``.
    """
    counts = removed.sum(axis=1)
    if settings.method == "sgd" or np.any(counts != counts[0]):
        return None
    return int(removed.shape[1] - counts[0])


def _solve_one(net: FunctionalNet, settings: SolverSettings, n: int, kept: int | None,
               theta0: jax.Array, start: jax.Array, x_all: jax.Array, y: jax.Array,
               removed: jax.Array, tol: jax.Array, lam: jax.Array, eta: jax.Array
               ) -> dict[str, jax.Array]:
    """One retrain without the points of ``removed``: the :data:`OUTPUTS` of its solve.

    With ``kept`` (:func:`gathered_size`) the kept rows come first, in their order, and are the
    only ones fitted; the removed rows follow and, like the test rows, are tracked by the
    stopping rule, so every step and the stopping point are those of the weighted problem. Else
    every row is fitted with weight 0 on the removed points.
    """
    dt = theta0.dtype
    if kept is None:
        fit, xs, ys, w = n, x_all, y, 1.0 - removed.astype(dt)
    else:
        order = jnp.argsort(removed.astype(jnp.int8), stable=True)
        fit, xs, ys = kept, jnp.concatenate([x_all[:n][order], x_all[n:]]), y[order[:kept]]
        w = jnp.ones((kept,), dt)
    out = make_solver(net, settings, fit, test_from=n)(theta0, start, xs, ys, w, lam, eta,
                                                      tol.astype(dt))
    return {"f_test": out.f_all[n:], "f_change_test": out.f_change_test,
            "grad_norm": out.grad_norm, "ridge_norm": out.ridge_norm,
            "iterations": out.iterations, "settled": out.settled, "diverged": out.diverged}


def _chunk_solver(net: FunctionalNet, settings: SolverSettings, n: int, kept: int | None
                  ) -> Any:
    """The per-chunk retraining function for :func:`map_chunks`, kept on the net (built once).

    :func:`map_chunks` keeps its compiled form on this function, so both live as long as the net.
    """
    def build() -> Any:
        def run(chunk: dict[str, jax.Array], args: tuple[jax.Array, ...]
                ) -> dict[str, jax.Array]:
            theta0, start, x_all, y, lam, eta = args
            return jax.vmap(lambda r, t: _solve_one(net, settings, n, kept, theta0, start, x_all,
                                                    y, r, t, lam, eta))(chunk["removed"],
                                                                        chunk["tol"])

        return run

    return net.program(("retrain_chunk", settings, int(n), kept), build)


def _fresh_chunk_solver(net: FunctionalNet, settings: SolverSettings, n: int,
                        kept: int | None) -> Any:
    """The per-chunk retraining function when every retrain draws its own ``W(0)``.

    Each retrain's initial parameters (its start and regularisation centre), its fixed state
    (the readout ``a`` of eq. 1) and its first-order step arrive with the chunk
    (:func:`_fresh_inputs`), so one compiled program serves every seed.
    """
    treedef = jax.tree.structure(net.state)

    def build() -> Any:
        def run(chunk: dict[str, Any], args: tuple[jax.Array, ...]) -> dict[str, jax.Array]:
            _, _, x_all, y, lam, _ = args

            def one(theta0: jax.Array, state: list[jax.Array], removed: jax.Array,
                    tol: jax.Array, eta: jax.Array) -> dict[str, jax.Array]:
                drawn = dataclasses.replace(net, theta0=theta0,
                                            state=jax.tree.unflatten(treedef, state))
                return _solve_one(drawn, settings, n, kept, theta0, theta0, x_all, y, removed,
                                  tol, lam, eta)

            return jax.vmap(one)(chunk["theta0"], chunk["state"], chunk["removed"],
                                 chunk["tol"], chunk["eta"])

        return run

    return net.program(("retrain_chunk_fresh", settings, int(n), kept), build)


def _fresh_inputs(net: FunctionalNet, x_train: jax.Array, lam: float,
                  settings: SolverSettings) -> Any:
    """The ``prepare`` hook of :func:`map_chunks`: each seed's ``W(0)``, fixed state and step.

    Args:
      net: the network; each retrain uses ``net.reseeded(seed)``.
      x_train: training inputs (for the first-order step of each draw).
      lam: the ridge.
      settings: resolved solver settings.

    Returns:
      ``prepare(chunk) -> {"theta0", "state", "eta"}``, stacked over the chunk's seeds.
    """
    treedef = jax.tree.structure(net.state)

    def prepare(chunk: dict[str, np.ndarray]) -> dict[str, Any]:
        thetas, states, etas = [], [], []
        for seed in chunk["seed"]:
            drawn = net.reseeded(int(seed))
            leaves, tdef = jax.tree.flatten(drawn.state)
            if tdef != treedef or drawn.theta0.shape != net.theta0.shape:
                raise InputError(f"the net drawn from seed {int(seed)} has another structure "
                                 "than the net given; its reseeded(seed) must keep the model's "
                                 "shapes.")
            thetas.append(np.asarray(drawn.theta0))
            states.append([np.asarray(v) for v in leaves])
            etas.append(0.0 if settings.method == "gn"
                        else gd_step_size(drawn, drawn.theta0, x_train, lam, settings))
        return {"theta0": np.stack(thetas),
                "state": [np.stack(v) for v in zip(*states, strict=True)],
                "eta": np.asarray(etas, net.dtype)}

    return prepare


def retrain_without(net: FunctionalNet, x_train: Any, y_train: Any, x_test: Any, y_test: Any,
                    lam: float = 0.1, *, remove: Any = None, keep: Any = None,
                    settings: SolverSettings | None = None, warm_start: bool = False,
                    full: TrainResult | None = None, chunk_size: int | None = None,
                    memory_bytes: int = 2**32, mesh: Mesh | None = None,
                    store: str | os.PathLike[str] | ResultStore | None = None,
                    show_progress: bool = True, rel_tol: float | None = None,
                    delta_scale: Any | None = None, seeds: Any | None = None) -> RetrainResult:
    """Retrain without each given set of training points: the actual influence of eq. (7).

    Every retrain solves eq. (2) with ``w_i = 0`` on its set, from ``W(0)`` (or the trained W
    with ``warm_start``), with the same solver and settings as the full run. Leave-one-out is
    the case of one point per set; :func:`loo_retrain` wraps it. With ``seeds`` every retrain
    draws its own initialisation instead (the fresh-seed protocol of the attribution
    literature): ``net.reseeded(seeds[j])`` gives retrain ``j``'s ``W(0)``, which is both its
    start and the centre of its ridge, and its fixed state (the readout ``a`` of eq. 1), so its
    ``Delta`` includes the change of initialisation.

    Args:
      net: the network (``net.theta0`` is ``W(0)``).
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      lam: ridge ``>= 0``.
      remove: the sets to remove, one per retrain: a list of index arrays, or a ``(k, n)``
        boolean mask (True = removed).
      keep: instead of ``remove``, a ``(k, n)`` boolean mask of the points kept.
      settings: solver settings, the same for the full run and every retrain.
      warm_start: start each retrain from the trained W instead of ``W(0)``.
      full: an existing full training result (trained with the same settings) to reuse.
      chunk_size: retrains per vmapped chunk (per device on a mesh; default
        :func:`plan_chunk_size`: one on a CPU, else from ``memory_bytes``), lowered to even
        the chunks out (a last chunk that is not full runs padded with copies).
      memory_bytes: memory budget for one chunk.
      mesh: a device mesh to shard the chunks over (one chunk per device per round); ``None``
        runs on one device.
      store: a folder (or :class:`ResultStore`) where each finished chunk is saved; a second
        call with the same folder and settings skips finished chunks, and a folder made with
        other settings or sets is refused.
      show_progress: progress bar on stderr.
      rel_tol: relative stopping rule: retrain ``j`` stops when its prediction change is below
        ``max(settings.f_tol, rel_tol * delta_scale[j])``. The measured error ratio
        (:attr:`RetrainResult.error_ratio`) checks it afterwards against the actual ``|Delta|``;
        a retrain whose error exceeds ``1.5 rel_tol`` of its measured ``|Delta|`` is rerun once
        with ``rel_tol`` times the measured ``|Delta|``, and any still above ``4 rel_tol`` is
        named in a warning. The full run's own error enters every ``Delta``, so it is
        (re)trained from ``W(0)`` to the smallest tolerance any retrain got.
      delta_scale: ``(k,)`` expected ``|Delta|`` per retrain (for instance the kernel's
        prediction of the removal); required with ``rel_tol``.
      seeds: ``(k,)`` initialisation seeds, one per retrain (the fresh-seed protocol); ``None``
        retrains every set from ``net.theta0`` (the fixed-seed protocol). The model must
        define ``reseeded(seed)``; not with ``warm_start`` or ``rel_tol``.

    Returns:
      :class:`RetrainResult`.
    """
    check_net(net)
    lam = check_lam(lam)
    s = (settings or SolverSettings()).resolved()
    with precision(net.dtype):  # the net's dtype whatever the global x64 flag
        xtr, ytr = check_xy(net, x_train, y_train, "train")
        xte, yte = check_xy(net, x_test, y_test, "test")
        n = xtr.shape[0]
        removed = removal_masks(n, remove, keep)
        k = removed.shape[0]
        if rel_tol is not None and s.stop == "gradient":
            raise InputError("rel_tol sets the prediction-change rule; these settings stop at "
                             "a stationary point (stop='gradient'): pass rel_tol=None.")
        tols = retrain_tolerances(s, k, rel_tol, delta_scale)
        seed_arr = _check_seeds(seeds, k, warm_start, rel_tol)

        def train_full(f_tol: float) -> TrainResult:
            return train(net, xtr, ytr, lam, x_test=xte,
                         settings=dataclasses.replace(s, f_tol=f_tol))

        if full is None:
            full = train_full(float(tols.min()))
        elif full.f_test.shape[0] != xte.shape[0]:
            raise InputError("full was trained with other test points; pass full=None.")
        cs = int(chunk_size or plan_chunk_size(net, n + xte.shape[0], memory_bytes))
        cs = -(-k // -(-k // max(1, min(cs, k))))  # equal chunks: no padded retrains at the end
        if isinstance(store, (str, os.PathLike)):
            store = ResultStore(store, meta={
                "removed_sha256": items_digest(removed), "n_retrains": k, "lam": lam,
                "warm_start": bool(warm_start), "settings": dataclasses.asdict(s),
                "net": net.description, "chunk_size": cs, "f_tol_sha256": items_digest(tols),
                "seeds_sha256": None if seed_arr is None else items_digest(seed_arr)})
        theta_start = full.theta if warm_start else net.theta0
        eta = gd_step_size(net, theta_start, xtr, lam, s) if s.method != "gn" else 0.0
        args = (net.theta0, jnp.asarray(theta_start, net.dtype), jnp.concatenate([xtr, xte]),
                ytr, jnp.asarray(lam, net.dtype), jnp.asarray(eta, net.dtype))
        kept = gathered_size(removed, s)
        if seed_arr is None:
            fn, prepare, extra = _chunk_solver(net, s, n, kept), None, {}
        else:
            fn, prepare = _fresh_chunk_solver(net, s, n, kept), _fresh_inputs(net, xtr, lam, s)
            extra = {"seed": seed_arr}

        def run(rows: np.ndarray, tl: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
            # Chunks run until their slowest retrain stops: group retrains of similar tolerance.
            order = np.argsort(-tl, kind="stable")
            items = {"removed": removed[rows][order], "tol": tl[order],
                     **{key: v[rows][order] for key, v in extra.items()}}
            with blas_single_thread():
                got = map_chunks(fn, items, chunk_size=cs, args=args, mesh=mesh, store=store,
                                 show_progress=show_progress, prefix=prefix, prepare=prepare,
                                 desc=f"retrain {prefix} (width {net.width})")
            if bool(np.any(got.outputs["diverged"])):
                raise divergence_error(eta, s.method)
            inv = np.argsort(order)
            return {key: v[inv] for key, v in got.outputs.items()}

        t0 = time.perf_counter()
        cat = run(np.arange(k), tols, "chunk")
        refined = np.zeros(k, bool)
        if rel_tol is not None:
            # Check against the measured Delta: a retrain whose own error exceeds 1.5 rel_tol
            # of the measured abs(Delta) (the prediction overestimated it) is rerun, once, from
            # the same start with the tolerance set from the measured abs(Delta).
            meas = np.abs(cat["f_test"].astype(np.float64) - np.asarray(full.f_test)[None]).min(1)
            refined = cat["f_change_test"] > 1.5 * rel_tol * meas
            if refined.any():
                tols = tols.copy()
                tols[refined] = np.maximum(s.f_tol, rel_tol * meas[refined])
                again = run(np.flatnonzero(refined), tols[refined], "refine")
                for key in cat:
                    cat[key] = cat[key].copy()
                    cat[key][refined] = again[key]
            if full.settings.f_tol > tols.min():  # its error enters every Delta
                full = train_full(float(tols.min()))
        secs = time.perf_counter() - t0
    res = RetrainResult.from_outputs(removed, full, cat, yte, s, warm_start=warm_start,
                                     chunk_size=cs, seconds=secs, f_tol=tols, rel_tol=rel_tol,
                                     refined=refined, seeds=seed_arr, rows_fitted=kept)
    if rel_tol is not None and res.flagged(4 * rel_tol).any():
        bad = res.labels()[res.flagged(4 * rel_tol)]
        warnings.warn(f"retrains {bad.tolist()} have solver error above {4 * rel_tol:g} of "
                      "the measured abs(Delta) (the predicted scale was too large); rerun them "
                      "with a smaller rel_tol.", NotConvergedWarning, stacklevel=2)
    return res


def _check_seeds(seeds: Any, k: int, warm_start: bool, rel_tol: float | None
                 ) -> np.ndarray | None:
    """``(k,)`` int64 seeds of the fresh-seed protocol, or ``None`` (fixed seed)."""
    if seeds is None:
        return None
    if warm_start:
        raise InputError("seeds= draws a fresh W(0) for every retrain, which is its start; "
                         "warm_start=True starts from the trained W instead: choose one.")
    if rel_tol is not None:
        raise InputError("rel_tol predicts each retrain's abs(Delta) from the same W(0); with "
                         "seeds= pass rel_tol=None.")
    arr = np.asarray(seeds)
    if arr.shape != (k,) or arr.dtype.kind not in "iu" or np.any(arr < 0):
        raise InputError(f"seeds must be {k} non-negative integers, one per retrain, got "
                         f"{arr.dtype} of shape {arr.shape}.")
    return arr.astype(np.int64)


def loo_retrain(net: FunctionalNet, x_train: Any, y_train: Any, x_test: Any, y_test: Any,
                lam: float = 0.1, *, train_index: Any, settings: SolverSettings | None = None,
                warm_start: bool = False, full: TrainResult | None = None,
                chunk_size: int | None = None, memory_bytes: int = 2**32,
                store: str | os.PathLike[str] | ResultStore | None = None,
                show_progress: bool = True, rel_tol: float | None = None,
                delta_scale: Any | None = None, mesh: Mesh | None = None,
                seeds: Any | None = None) -> RetrainResult:
    """Retrain without each point of ``train_index``, one at a time (eq. 7).

    :func:`retrain_without` with one point per set; see it for the arguments.

    Args:
      net: the network (``net.theta0`` is ``W(0)``).
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      lam: ridge ``>= 0``.
      train_index: the training points to remove, one at a time.
      settings: solver settings, the same for the full run and every retrain.
      warm_start: start each retrain from the trained W instead of ``W(0)``.
      full: an existing full training result (trained with the same settings) to reuse.
      chunk_size: retrains per vmapped chunk.
      memory_bytes: memory budget for one chunk.
      store: folder (or :class:`ResultStore`) of finished chunks, for resuming.
      show_progress: progress bar on stderr.
      rel_tol: relative stopping rule (see :func:`retrain_without`).
      delta_scale: ``(k,)`` expected ``|Delta|`` per retrain; required with ``rel_tol``.
      mesh: a device mesh to shard the chunks over (``None``: one device).
      seeds: ``(k,)`` initialisation seeds, one per retrain (fresh-seed protocol; see
        :func:`retrain_without`).

    Returns:
      :class:`RetrainResult` (``train_index`` gives the removed points).
    """
    n = np.shape(x_train)[0] if np.ndim(x_train) >= 1 else 0
    idx = check_indices(train_index, n, "train_index")
    masks = np.zeros((idx.size, n), bool)
    masks[np.arange(idx.size), idx] = True
    return retrain_without(net, x_train, y_train, x_test, y_test, lam, remove=masks,
                           settings=settings, warm_start=warm_start, full=full,
                           chunk_size=chunk_size, memory_bytes=memory_bytes, mesh=mesh,
                           store=store, show_progress=show_progress, rel_tol=rel_tol,
                           delta_scale=delta_scale, seeds=seeds)


def retrain_tolerances(settings: SolverSettings, k: int, rel_tol: float | None,
                       delta_scale: Any | None) -> np.ndarray:
    """Per-retrain stopping tolerances: ``settings.f_tol`` or the relative rule.

    Args:
      settings: resolved solver settings (``f_tol`` is the floor).
      k: number of retrains.
      rel_tol: fraction of the expected ``|Delta|`` (``None``: absolute ``f_tol`` only).
      delta_scale: ``(k,)`` expected ``|Delta|`` per retrain.

    Returns:
      ``(k,)`` tolerances.
    """
    if rel_tol is None:
        return np.full(k, settings.f_tol)
    if not (0 < rel_tol < 1):
        raise InputError(f"rel_tol must be in (0, 1), got {rel_tol!r}.")
    if delta_scale is None:
        raise InputError("rel_tol needs delta_scale, the expected abs(Delta) per retrain (for "
                         "example the kernel leave-one-out prediction).")
    sc = np.abs(np.asarray(delta_scale, np.float64)).reshape(-1)
    if sc.shape != (k,) or not np.all(np.isfinite(sc)):
        raise InputError(f"delta_scale must hold {k} finite values, got shape {sc.shape}.")
    return np.maximum(settings.f_tol, rel_tol * sc)
