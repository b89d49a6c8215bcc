"""Actual influence (eq. 7) by leave-one-out retraining of a finite net.

For each chosen training point ``i`` the net is retrained on eq. (2) with ``w_i = 0`` (the point
removed), from the same ``W(0)`` by default or warm-started from the trained ``W`` (a different
experiment; the result records which). The retrains run as one jit-compiled program vmapped over
the left-out masks, in chunks sized to the memory budget, each chunk saved atomically so an
interrupted sweep resumes where it stopped.

The influence is computed from ``Delta = f^(i)(x_te) - f(x_te)`` as
``I_nn = Delta (f(x_te) - y_te) + Delta^2 / 2``, which equals eq. (7) without subtracting two
squared losses (whose difference would be lost to cancellation). Every retrain records its solver
error (the largest change of its test predictions over the last steps), to be compared with
``|Delta|``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError, NotConvergedWarning
from ._validate import check_indices, check_lam
from .io import ResultStore, progress
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


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """Leave-one-out retraining results: the actual influence of eq. (7).

    Attributes:
      train_index: ``(k,)`` the removed training points.
      f_test: ``(t,)`` predictions of the net trained on all points.
      y_test: ``(t,)`` test labels.
      f_loo_test: ``(k, t)`` predictions of each leave-one-out net.
      delta: ``(k, t)`` ``f^(i)(x_te) - f(x_te)``.
      influence: ``(k, t)`` ``I_nn = Delta (f - y_te) + Delta^2 / 2`` (eq. 7).
      solver_error: ``(k,)`` each retrain's largest test-prediction change over its last steps.
      full_solver_error: the same for the full training run.
      grad_norm: ``(k,)`` final gradient norms of the retrains.
      iterations: ``(k,)`` steps of each retrain.
      converged: ``(k,)`` whether each retrain met its tolerance.
      warm_start: True if retrains started from the trained W, False if from ``W(0)``.
      full: the :class:`TrainResult` of the full run.
      settings: the :class:`SolverSettings`.
      chunk_size: retrains per vmapped chunk.
      seconds: wall time of the retraining (this call; resumed chunks not counted).
      f_tol: ``(k,)`` the tolerance each retrain was stopped at (``settings.f_tol``, or
        ``rel_tol`` times the predicted ``|Delta|`` when a relative rule was used).
      rel_tol: the relative stopping rule (``None`` when every retrain used ``settings.f_tol``).
      refined: ``(k,)`` retrains rerun with a tolerance from the measured ``|Delta|`` because the
        predicted one was too large (relative rule only); their ``f_tol`` is the rerun's.
    """

    train_index: np.ndarray
    f_test: np.ndarray
    y_test: np.ndarray
    f_loo_test: np.ndarray
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
        k = np.shape(self.train_index)[0]
        if self.f_tol is None:  # absolute rule: every retrain used settings.f_tol
            object.__setattr__(self, "f_tol", np.full(k, self.settings.f_tol))
        if self.refined is None:
            object.__setattr__(self, "refined", np.zeros(k, bool))

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
          Boolean mask over ``train_index``.
        """
        return (self.error_ratio > max_ratio).any(axis=1)

    def summary(self) -> dict[str, Any]:
        """Scalars describing the run, JSON-ready."""
        r = self.error_ratio
        return {
            "n_retrains": int(self.train_index.size), "warm_start": self.warm_start,
            "start": "trained W (warm start)" if self.warm_start else "same W(0)",
            "method": self.settings.method, "f_tol": self.settings.f_tol,
            "chunk_size": self.chunk_size, "seconds": self.seconds,
            "all_converged": bool(self.converged.all()),
            "max_solver_error": float(self.solver_error.max()),
            "full_solver_error": self.full_solver_error,
            "min_abs_delta": float(np.abs(self.delta).min()),
            "median_abs_delta": float(np.median(np.abs(self.delta))),
            "max_error_ratio": float(r.max()), "median_error_ratio": float(np.median(r)),
            "rel_tol": self.rel_tol, "min_f_tol": float(self.f_tol.min()),
            "n_refined": int(self.refined.sum()),
            "max_f_tol": float(self.f_tol.max()),
            "n_flagged_5pct": int(self.flagged(0.05).sum()),
            "flagged_5pct": [int(i) for i in self.train_index[self.flagged(0.05)]],
            "total_iterations": int(self.iterations.sum()),
            "max_iterations": int(self.iterations.max()),
            "max_grad_norm": float(self.grad_norm.max()),
        }


def actual_influence(delta: Any, f_test: Any, y_test: Any) -> np.ndarray:
    """Eq. (7) from the prediction change: ``Delta (f - y) + Delta^2 / 2``.

    Args:
      delta: ``(..., t)`` ``f^(i)(x_te) - f(x_te)``.
      f_test: ``(t,)`` predictions of the full net.
      y_test: ``(t,)`` labels.

    Returns:
      The influences, same shape as ``delta``.
    """
    d = np.asarray(delta, np.float64)
    return d * (np.asarray(f_test, np.float64) - np.asarray(y_test, np.float64)) + 0.5 * d * d


def plan_chunk_size(net: FunctionalNet, n_points: int, memory_bytes: int = 2**32) -> int:
    """Retrains per vmapped chunk that fit ``memory_bytes``.

    Per retrain the solver holds about ten parameter vectors and, for the two-layer net, about
    six ``(n_points, width)`` activation arrays (or the ``(n, P)`` Jacobian for other nets).

    Args:
      net: the network.
      n_points: training plus test points.
      memory_bytes: budget.

    Returns:
      Chunk size ``>= 1``.
    """
    item = net.dtype.itemsize
    per = 10 * net.n_params * item
    per += 6 * n_points * max(net.width, 1) * item if net.kind == "two_layer" else (
        2 * n_points * net.n_params * item)
    return max(1, int(memory_bytes // per))


def loo_retrain(net: FunctionalNet, x_train: Any, y_train: Any, x_test: Any, y_test: Any,
                lam: float = 0.1, *, train_index: Any, settings: SolverSettings | None = None,
                warm_start: bool = False, full: TrainResult | None = None,
                chunk_size: int | None = None, memory_bytes: int = 2**32,
                store: str | os.PathLike[str] | ResultStore | None = None,
                show_progress: bool = True, rel_tol: float | None = None,
                delta_scale: Any | None = None) -> RetrainResult:
    """Retrain without each point of ``train_index``: the actual influence of eq. (7).

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
      chunk_size: retrains per vmapped chunk (default from ``memory_bytes``).
      memory_bytes: memory budget for one chunk.
      store: a folder (or :class:`ResultStore`) where each finished chunk is saved; a second
        call with the same folder and settings skips finished chunks.
      show_progress: progress bar on stderr.
      rel_tol: relative stopping rule: retrain ``i`` stops when its prediction change is below
        ``max(settings.f_tol, rel_tol * delta_scale[i])``. The measured error ratio
        (:attr:`RetrainResult.error_ratio`) checks it afterwards against the actual ``|Delta|``;
        a retrain whose error exceeds ``1.5 rel_tol`` of its measured ``|Delta|`` is rerun once
        with ``rel_tol`` times the measured ``|Delta|``, and any still above ``4 rel_tol`` is
        named in a warning.
        The full run (when trained here) uses the smallest of these tolerances.
      delta_scale: ``(k,)`` expected ``|Delta|`` per retrain (for instance the kernel's
        leave-one-out prediction); required with ``rel_tol``.

    Returns:
      :class:`RetrainResult`.
    """
    lam = check_lam(lam)
    s = (settings or SolverSettings()).resolved()
    xtr, ytr = check_xy(net, x_train, y_train, "train")
    xte, yte = check_xy(net, x_test, y_test, "test")
    n = xtr.shape[0]
    idx = check_indices(train_index, n, "train_index")
    tols = retrain_tolerances(s, idx.size, rel_tol, delta_scale)
    if full is None:
        full = train(net, xtr, ytr, lam, x_test=xte,
                     settings=dataclasses.replace(s, f_tol=float(tols.min())))
    elif full.f_test.shape[0] != xte.shape[0]:
        raise InputError("full was trained with other test points; pass full=None.")
    cs = int(chunk_size or plan_chunk_size(net, n + xte.shape[0], memory_bytes))
    cs = max(1, min(cs, idx.size))
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store, meta={
            "train_index": idx.tolist(), "lam": lam, "warm_start": bool(warm_start),
            "settings": dataclasses.asdict(s), "net": net.description, "chunk_size": cs,
            "f_tol": tols.tolist()})
    theta_start = full.theta if warm_start else net.theta0
    eta = gd_step_size(net, theta_start, xtr, lam, s) if s.method == "gd" else 0.0
    batched = jitted_solver(net, s, n, batched=True)
    x_all = jnp.concatenate([xtr, xte])
    lam_a, eta_a = jnp.asarray(lam, net.dtype), jnp.asarray(eta, net.dtype)
    keys = ("f_test", "f_change_test", "grad_norm", "iterations", "converged")

    def run(ids: np.ndarray, tl: np.ndarray, tag: str) -> dict[str, np.ndarray]:
        # Chunks run until their slowest retrain stops, so group retrains of similar tolerance.
        order = np.argsort(-tl, kind="stable")
        idx_o, tols_o = ids[order], tl[order]
        chunks = [idx_o[c:c + cs] for c in range(0, ids.size, cs)]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for ci, chunk in progress(list(enumerate(chunks)), total=len(chunks),
                                  desc=f"LOO {tag} (width {net.width})", enabled=show_progress):
            name = f"{tag}_{ci}"
            if store is not None and store.done(name):
                got = store.load(name)
                if not np.array_equal(got["train_index"], chunk):
                    raise InputError(f"{store.root} {name} holds other indices; use another "
                                     "folder or resume=False.")
            else:
                pad = np.concatenate([chunk, np.repeat(chunk[:1], cs - chunk.size)])
                masks = np.ones((cs, n))
                masks[np.arange(cs), pad] = 0.0
                ctol = tols_o[ci * cs:ci * cs + chunk.size]
                ctol = np.concatenate([ctol, np.repeat(ctol[:1], cs - chunk.size)])
                with blas_single_thread():
                    out = batched(net.theta0, theta_start, x_all, ytr,
                                  jnp.asarray(masks, net.dtype), lam_a, eta_a,
                                  jnp.asarray(ctol, net.dtype))
                    jax.block_until_ready(out.theta)
                if bool(jnp.any(out.diverged)):
                    raise divergence_error(eta, s.method)
                k = chunk.size
                got = {"train_index": chunk, "f_test": np.asarray(out.f_all)[:k, n:],
                       "f_change_test": np.asarray(out.f_change_test)[:k],
                       "grad_norm": np.asarray(out.grad_norm)[:k],
                       "iterations": np.asarray(out.iterations)[:k],
                       "converged": np.asarray(out.converged)[:k]}
                if store is not None:
                    store.save(name, **got)
            for key in keys:
                parts[key].append(np.asarray(got[key]))
        inv = np.argsort(order)
        return {k: np.concatenate(v)[inv] for k, v in parts.items()}

    t0 = time.perf_counter()
    cat = run(idx, tols, "chunk")
    refined = np.zeros(idx.size, bool)
    if rel_tol is not None:
        # Check against the measured Delta: a retrain whose own error exceeds 1.5 rel_tol of
        # the measured abs(Delta) (the prediction overestimated it) is rerun, once, from the
        # same start with the tolerance set from the measured abs(Delta).
        meas = np.abs(cat["f_test"].astype(np.float64) - np.asarray(full.f_test)[None]).min(1)
        refined = cat["f_change_test"] > 1.5 * rel_tol * meas
        if refined.any():
            tols = tols.copy()
            tols[refined] = np.maximum(s.f_tol, rel_tol * meas[refined])
            again = run(idx[refined], tols[refined], "refine")
            for key in keys:
                cat[key] = cat[key].copy()
                cat[key][refined] = again[key]
    secs = time.perf_counter() - t0
    res = assemble_result(idx, full, cat, yte, s, warm_start=warm_start, chunk_size=cs,
                          seconds=secs, f_tol=tols, rel_tol=rel_tol, refined=refined)
    if rel_tol is not None and res.flagged(4 * rel_tol).any():
        import warnings

        bad = res.train_index[res.flagged(4 * rel_tol)]
        warnings.warn(f"retrains {bad.tolist()} have solver error above {4 * rel_tol:g} of "
                      "the measured abs(Delta) (the predicted scale was too large); rerun them "
                      "with a smaller rel_tol.", NotConvergedWarning, stacklevel=2)
    return res


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


def assemble_result(idx: np.ndarray, full: TrainResult, out: dict[str, np.ndarray], y_test: Any,
                    settings: SolverSettings, *, warm_start: bool, chunk_size: int,
                    seconds: float, **extra: Any) -> RetrainResult:
    """Build a :class:`RetrainResult` from the per-retrain solver outputs (eq. 7).

    Warns (:class:`NotConvergedWarning`) when any retrain did not reach its tolerance.

    Args:
      idx: the left-out training indices.
      full: the full-data training run.
      out: per-retrain arrays ``f_test``, ``f_change_test``, ``grad_norm``, ``iterations``,
        ``converged``, in the order of ``idx``.
      y_test: test labels.
      settings: the solver settings shared by every run.
      warm_start: whether the retrains started from the trained weights.
      chunk_size: retrains per vmapped chunk.
      seconds: wall time of the retraining.
      **extra: further :class:`RetrainResult` fields (``f_tol``, ``rel_tol``, ``refined``).

    Returns:
      :class:`RetrainResult`.
    """
    f_full = np.asarray(full.f_test, np.float64)
    f_loo = np.asarray(out["f_test"], np.float64)
    delta = f_loo - f_full[None]
    y_np = np.asarray(y_test, np.float64)
    res = RetrainResult(
        train_index=idx, f_test=f_full, y_test=y_np, f_loo_test=f_loo, delta=delta,
        influence=actual_influence(delta, f_full, y_np), solver_error=out["f_change_test"],
        full_solver_error=full.f_change_test, grad_norm=out["grad_norm"],
        iterations=out["iterations"], converged=np.asarray(out["converged"]).astype(bool),
        warm_start=bool(warm_start), full=full, settings=settings, chunk_size=chunk_size,
        seconds=seconds, **extra)
    if not res.converged.all():
        import warnings

        warnings.warn(f"{int((~res.converged).sum())} of {idx.size} retrains did not reach "
                      f"their f_tol; their solver_error is recorded in the result.",
                      NotConvergedWarning, stacklevel=3)
    return res
