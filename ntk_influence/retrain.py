"""Actual influence (eq. 7) by retraining a finite net without points or groups of points.

Each retrain removes a set ``S`` of training points (``w_i = 0`` for ``i in S`` in eq. 2): one
point for leave-one-out, many for group removal or datamodel-style random subsets. It starts from
the same ``W(0)`` by default, or warm-starts from the trained ``W`` (a different experiment; the
result records which). On ReLU nets the solver stops where every direction it proposes crosses a
kink (:attr:`~ntk_influence.train.TrainResult.final_step`), so where it stops depends on its
path: from ``W(0)`` the full run and each retrain share most of that path, while a warm start
begins pinned on the full run's kinks and moves less. The retrains run as one jit-compiled
program vmapped over the removal masks, in chunks sized to the memory budget, through the one
chunk runner (:func:`ntk_influence.chunks.map_chunks`: one device, or the chunk axis sharded over
a mesh), each chunk saved atomically so an interrupted sweep resumes where it stopped.

The influence is computed from ``Delta = f^(S)(x_te) - f(x_te)`` as
``I_nn = Delta (f(x_te) - y_te) + Delta^2 / 2`` (:func:`ntk_influence.losses.loss_change`), which
equals eq. (7) without subtracting two squared losses (whose difference would be lost to
cancellation). Every retrain records its solver error (the largest change of its test
predictions over the last steps), to be compared with ``|Delta|``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ._errors import InputError, NotConvergedWarning
from ._precision import precision
from ._validate import check_indices, check_lam
from .chunks import items_digest, map_chunks
from .io import ResultStore
from .losses import loss_change
from .nets import FunctionalNet
from .train import (
    SolverSettings,
    TrainResult,
    blas_single_thread,
    check_xy,
    divergence_error,
    gd_step_size,
    jitted_solver,
    train,
)

OUTPUTS = ("f_test", "f_change_test", "grad_norm", "iterations", "converged", "diverged")


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """Retraining without sets of training points: the actual influence of eq. (7).

    Attributes:
      removed: ``(k, n)`` boolean, row ``j`` marks the points retrain ``j`` left out.
      f_test: ``(t,)`` predictions of the net trained on all points.
      y_test: ``(t,)`` test labels.
      f_retrain_test: ``(k, t)`` predictions of each retrained net.
      delta: ``(k, t)`` ``f^(S)(x_te) - f(x_te)``.
      influence: ``(k, t)`` ``I_nn = Delta (f - y_te) + Delta^2 / 2`` (eq. 7): the loss change
        when the set is removed.
      solver_error: ``(k,)`` each retrain's largest test-prediction change over its last steps.
      full_solver_error: the same for the full training run.
      grad_norm: ``(k,)`` final gradient norms of the retrains.
      iterations: ``(k,)`` steps of each retrain.
      converged: ``(k,)`` whether each retrain met its tolerance.
      warm_start: True if retrains started from the trained W, False if from ``W(0)``.
      full: the :class:`TrainResult` of the full run (retrained to the tightest tolerance any
        retrain got when the relative rule refined some).
      settings: the :class:`SolverSettings`.
      chunk_size: retrains per vmapped chunk.
      seconds: wall time of the retraining (this call; resumed chunks not counted).
      f_tol: ``(k,)`` the tolerance each retrain was stopped at (``settings.f_tol``, or
        ``rel_tol`` times the predicted ``|Delta|`` when a relative rule was used).
      rel_tol: the relative stopping rule (``None`` when every retrain used ``settings.f_tol``).
      refined: ``(k,)`` retrains rerun with a tolerance from the measured ``|Delta|`` because the
        predicted one was too large (relative rule only); their ``f_tol`` is the rerun's.
    """

    removed: np.ndarray
    f_test: np.ndarray
    y_test: np.ndarray
    f_retrain_test: np.ndarray
    delta: np.ndarray
    influence: np.ndarray
    solver_error: np.ndarray
    full_solver_error: float
    grad_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    warm_start: bool
    full: TrainResult
    settings: SolverSettings
    chunk_size: int
    seconds: float
    f_tol: np.ndarray | None = None
    rel_tol: float | None = None
    refined: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = np.shape(self.removed)[0]
        if self.f_tol is None:  # absolute rule: every retrain used settings.f_tol
            object.__setattr__(self, "f_tol", np.full(k, self.settings.f_tol))
        if self.refined is None:
            object.__setattr__(self, "refined", np.zeros(k, bool))

    @classmethod
    def from_outputs(cls, removed: np.ndarray, full: TrainResult, out: dict[str, np.ndarray],
                     y_test: Any, settings: SolverSettings, *, warm_start: bool,
                     chunk_size: int, seconds: float, **extra: Any) -> RetrainResult:
        """Build the result from the per-retrain solver outputs (eq. 7).

        Warns (:class:`NotConvergedWarning`) when any retrain did not reach its tolerance.

        Args:
          removed: ``(k, n)`` removal masks.
          full: the full-data training run.
          out: per-retrain arrays ``f_test``, ``f_change_test``, ``grad_norm``, ``iterations``,
            ``converged``, in the order of ``removed``.
          y_test: test labels.
          settings: the solver settings shared by every run.
          warm_start: whether the retrains started from the trained weights.
          chunk_size: retrains per vmapped chunk.
          seconds: wall time of the retraining.
          **extra: further fields (``f_tol``, ``rel_tol``, ``refined``).

        Returns:
          :class:`RetrainResult`.
        """
        f_full = np.asarray(full.f_test, np.float64)
        f_new = np.asarray(out["f_test"], np.float64)
        delta = f_new - f_full[None]
        y_np = np.asarray(y_test, np.float64)
        res = cls(
            removed=np.asarray(removed, bool), f_test=f_full, y_test=y_np, f_retrain_test=f_new,
            delta=delta, influence=actual_influence(delta, f_full, y_np),
            solver_error=np.asarray(out["f_change_test"], np.float64),
            full_solver_error=float(full.f_change_test),
            grad_norm=np.asarray(out["grad_norm"], np.float64),
            iterations=np.asarray(out["iterations"]),
            converged=np.asarray(out["converged"]).astype(bool), warm_start=bool(warm_start),
            full=full, settings=settings, chunk_size=chunk_size, seconds=seconds, **extra)
        if not res.converged.all():
            warnings.warn(f"{int((~res.converged).sum())} of {res.converged.size} retrains did "
                          "not reach their f_tol; their solver_error is recorded in the result.",
                          NotConvergedWarning, stacklevel=3)
        return res

    @property
    def group_size(self) -> np.ndarray:
        """``(k,)`` number of points each retrain removed."""
        return self.removed.sum(axis=1)

    @property
    def is_leave_one_out(self) -> bool:
        """Whether every retrain removed exactly one point."""
        return bool(np.all(self.group_size == 1))

    @property
    def train_index(self) -> np.ndarray:
        """``(k,)`` the point each leave-one-out retrain removed.

        Raises:
          InputError: some retrain removed more or fewer than one point (use ``removed``).
        """
        if not self.is_leave_one_out:
            raise InputError("these retrains removed groups of points; their sets are in "
                             "`removed` ((k, n) boolean), not a train_index.")
        return np.argmax(self.removed, axis=1)

    @property
    def f_loo_test(self) -> np.ndarray:
        """``(k, t)`` predictions of each retrained net (alias of ``f_retrain_test``)."""
        return self.f_retrain_test

    @property
    def error_ratio(self) -> np.ndarray:
        """``(k, t)`` solver error bound ``(err_i + err_full) / |Delta|``: must be far below 1."""
        err = self.solver_error[:, None] + self.full_solver_error
        return err / np.maximum(np.abs(self.delta), np.finfo(float).tiny)

    def flagged(self, max_ratio: float = 0.05) -> np.ndarray:
        """``(k,)`` retrains whose error bound exceeds ``max_ratio`` of ``|Delta|`` on any test.

        Args:
          max_ratio: the largest acceptable ``(err_i + err_full) / |Delta|``.

        Returns:
          Boolean mask over the retrains.
        """
        return (self.error_ratio > max_ratio).any(axis=1)

    def labels(self) -> np.ndarray:
        """``(k,)`` the removed point of each retrain (leave-one-out), else the retrain number."""
        return self.train_index if self.is_leave_one_out else np.arange(self.removed.shape[0])

    def summary(self) -> dict[str, Any]:
        """Scalars describing the run, JSON-ready."""
        r = self.error_ratio
        sizes = self.group_size
        return {
            "n_retrains": int(self.removed.shape[0]), "warm_start": self.warm_start,
            "start": "trained W (warm start)" if self.warm_start else "same W(0)",
            "min_group_size": int(sizes.min()), "max_group_size": int(sizes.max()),
            "method": self.settings.method, "f_tol": self.settings.f_tol,
            "chunk_size": self.chunk_size, "seconds": self.seconds,
            "all_converged": bool(self.converged.all()),
            "max_solver_error": float(self.solver_error.max()),
            "full_solver_error": self.full_solver_error,
            "full_f_tol": float(self.full.settings.f_tol),
            "min_abs_delta": float(np.abs(self.delta).min()),
            "median_abs_delta": float(np.median(np.abs(self.delta))),
            "max_error_ratio": float(r.max()), "median_error_ratio": float(np.median(r)),
            "rel_tol": self.rel_tol, "min_f_tol": float(self.f_tol.min()),
            "n_refined": int(self.refined.sum()),
            "max_f_tol": float(self.f_tol.max()),
            "n_flagged_5pct": int(self.flagged(0.05).sum()),
            "flagged_5pct": [int(i) for i in self.labels()[self.flagged(0.05)]],
            "total_iterations": int(self.iterations.sum()),
            "max_iterations": int(self.iterations.max()),
            "max_grad_norm": float(self.grad_norm.max()),
        }


def actual_influence(delta: Any, f_test: Any, y_test: Any) -> np.ndarray:
    """Eq. (7) from the prediction change: ``Delta (f - y) + Delta^2 / 2``.

    Args:
      delta: ``(..., t)`` ``f^(S)(x_te) - f(x_te)``.
      f_test: ``(t,)`` predictions of the full net.
      y_test: ``(t,)`` labels.

    Returns:
      The influences, same shape as ``delta`` (float64).
    """
    d = np.asarray(delta, np.float64)
    return loss_change(d, np.asarray(f_test, np.float64) - np.asarray(y_test, np.float64))


def plan_chunk_size(net: FunctionalNet, n_points: int, memory_bytes: int = 2**32,
                    backend: str | None = None) -> int:
    """Retrains per vmapped chunk: one on a CPU, else as many as fit ``memory_bytes``.

    On a CPU a vmapped chunk runs as long as its slowest member and batching retrains gains
    nothing, so every retrain is its own chunk (which also makes the progress bar and the
    resumable store count single retrains). On an accelerator, per retrain: the model's own
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


@functools.lru_cache(maxsize=16)
def _chunk_solver(net: FunctionalNet, settings: SolverSettings, n: int) -> Any:
    """The per-chunk retraining function for :func:`map_chunks` (cached: compiled once)."""
    solve = jitted_solver(net, settings, n, batched=True)

    def run(chunk: dict[str, jax.Array], args: tuple[jax.Array, ...]) -> dict[str, jax.Array]:
        theta0, start, x_all, y, lam, eta = args
        w = 1.0 - chunk["removed"].astype(theta0.dtype)
        out = solve(theta0, start, x_all, y, w, lam, eta, chunk["tol"].astype(theta0.dtype))
        return {"f_test": out.f_all[:, n:], "f_change_test": out.f_change_test,
                "grad_norm": out.grad_norm, "iterations": out.iterations,
                "converged": out.converged, "diverged": out.diverged}

    return run


def retrain_without(net: FunctionalNet, x_train: Any, y_train: Any, x_test: Any, y_test: Any,
                    lam: float = 0.1, *, remove: Any = None, keep: Any = None,
                    settings: SolverSettings | None = None, warm_start: bool = False,
                    full: TrainResult | None = None, chunk_size: int | None = None,
                    memory_bytes: int = 2**32, mesh: Mesh | None = None,
                    store: str | os.PathLike[str] | ResultStore | None = None,
                    show_progress: bool = True, rel_tol: float | None = None,
                    delta_scale: Any | None = None) -> RetrainResult:
    """Retrain without each given set of training points: the actual influence of eq. (7).

    Every retrain solves eq. (2) with ``w_i = 0`` on its set, from ``W(0)`` (or the trained W
    with ``warm_start``), with the same solver and settings as the full run. Leave-one-out is
    the case of one point per set; :func:`loo_retrain` wraps it.

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

    Returns:
      :class:`RetrainResult`.
    """
    lam = check_lam(lam)
    s = (settings or SolverSettings()).resolved()
    with precision(net.dtype):  # the net's dtype whatever the global x64 flag
        xtr, ytr = check_xy(net, x_train, y_train, "train")
        xte, yte = check_xy(net, x_test, y_test, "test")
        n = xtr.shape[0]
        removed = removal_masks(n, remove, keep)
        k = removed.shape[0]
        tols = retrain_tolerances(s, k, rel_tol, delta_scale)

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
                "net": net.description, "chunk_size": cs, "f_tol_sha256": items_digest(tols)})
        theta_start = full.theta if warm_start else net.theta0
        eta = gd_step_size(net, theta_start, xtr, lam, s) if s.method != "gn" else 0.0
        args = (net.theta0, jnp.asarray(theta_start, net.dtype), jnp.concatenate([xtr, xte]),
                ytr, jnp.asarray(lam, net.dtype), jnp.asarray(eta, net.dtype))
        fn = _chunk_solver(net, s, n)

        def run(rows: np.ndarray, tl: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
            # Chunks run until their slowest retrain stops: group retrains of similar tolerance.
            order = np.argsort(-tl, kind="stable")
            with blas_single_thread():
                got = map_chunks(fn, {"removed": removed[rows][order], "tol": tl[order]},
                                 chunk_size=cs, args=args, mesh=mesh, store=store,
                                 show_progress=show_progress, prefix=prefix,
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
                                     refined=refined)
    if rel_tol is not None and res.flagged(4 * rel_tol).any():
        bad = res.labels()[res.flagged(4 * rel_tol)]
        warnings.warn(f"retrains {bad.tolist()} have solver error above {4 * rel_tol:g} of "
                      "the measured abs(Delta) (the predicted scale was too large); rerun them "
                      "with a smaller rel_tol.", NotConvergedWarning, stacklevel=2)
    return res


def loo_retrain(net: FunctionalNet, x_train: Any, y_train: Any, x_test: Any, y_test: Any,
                lam: float = 0.1, *, train_index: Any, settings: SolverSettings | None = None,
                warm_start: bool = False, full: TrainResult | None = None,
                chunk_size: int | None = None, memory_bytes: int = 2**32,
                store: str | os.PathLike[str] | ResultStore | None = None,
                show_progress: bool = True, rel_tol: float | None = None,
                delta_scale: Any | None = None, mesh: Mesh | None = None) -> RetrainResult:
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
                           delta_scale=delta_scale)


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
