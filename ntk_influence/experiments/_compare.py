"""NTK influence against actual leave-one-out retraining across widths: Table 1 and Figure 1.

For each width ``m`` a net of the chosen architecture (``arch``: the paper's two-layer net of
eq. 1 by default, or the deep ``mlp:L`` / ``cnn:L`` of :mod:`~ntk_influence.nets` with Neural
Tangents' NTK as the analytic kernel) is trained on eq. (2), the ``n_points`` training
points with the largest ``|I_ntk|`` on the chosen test point are removed one at a time and the net
retrained (:mod:`~ntk_influence.training`), and the actual influences ``I_nn`` are compared with:

- ``ntk``: the exact NTK influence of eq. (8-9) with the analytic kernel (eq. 4 for the
  two-layer net), ignoring the net's initial output ``f_0`` (the paper's predictor);
- ``ntk_f0``: the same kernel with ``f_0`` included: KRR on the residuals ``y - f_0`` and
  ``f_0(x_te)`` added back, which is the linearisation of this very network (the residuals
  ``f - y`` are unchanged, so ``influence_from_kernels(K, K_te, y - f0, y_te - f0_te, lam)`` is
  exactly its influence);
- ``entk0``: the same with the empirical NTK at ``W(0)``;
- ``ihvp``: the classic IHVP estimate of eq. (12) on the trained finite net (Woodbury, exact
  Hessian); ``ntk_ihvp``: its kernel-regime limit (eq. 13).

Each comparison reports Pearson R, Spearman rho, the least-squares slope of predicted on actual
and the relative error ``||pred - actual|| / ||actual||``: correlation alone hides the IHVP's
underestimate (DESIGN item 6). With ``test_points=K`` the statistics are over all
``n_points x K`` (training point, test point) pairs: each retrain gives its change at every test
point at once, so more test points cost no extra retraining.

"Actual" is eq. (2) retrained without the point (:func:`comparison_solver`): for ReLU nets the
Gauss-Newton point where the predictions settle, retrained from the same ``W(0)``; for smooth
nets (erf, GELU) the stationary point reached by truncated Newton to a ridge-relative gradient
of 1e-8, warm-started from the trained weights. Every row reports ``max_rel_grad_norm``, the
largest ridge-relative gradient over the full run and all retrains.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._precision import precision
from .._validate import check_indices, check_lam
from ..attribution import agreement, ihvp_influence
from ..errors import InputError
from ..influence import influence_from_kernels
from ..io import (
    data_hash,
    jsonable,
    load_json,
    load_npz,
    load_saved,
    save_json,
    save_npz,
    settings_differences,
)
from ..kernels import Kernel, kernel_matrix, paper_kernel
from ..nets import Architecture, architecture, entk, initial_output
from ..training import RetrainResult, SolverSettings, retrain_tolerances, retrain_without, train

VARIANTS = ("ntk", "ntk_f0", "entk0", "ihvp", "ntk_ihvp")


@dataclasses.dataclass(frozen=True)
class WidthComparison:
    """One width of the sweep: predicted and actual influences on ``K`` test points.

    Attributes:
      width: hidden width ``m``.
      test_index: the first test point (index into the test set).
      train_index: ``(k,)`` the removed training points.
      actual: ``(k, K)`` ``I_nn`` from retraining, per removed point and test point.
      predicted: variant name -> ``(k, K)`` predicted influences (see ``VARIANTS``).
      stats: variant name -> :func:`agreement` against ``actual`` over all ``k K`` pairs.
      f0_test: initial output of the net on the first test point.
      info: solver and retraining diagnostics (gradient norms, solver error vs ``|Delta|``...).
      test_indices: ``(K,)`` the test points (``test_index`` and the ``K - 1`` following it).
      settings: what determines the result (see :func:`comparison_settings`), so that a stored
        width is reused only for the same settings and data.
    """

    width: int
    test_index: int
    train_index: np.ndarray
    actual: np.ndarray
    predicted: dict[str, np.ndarray]
    stats: dict[str, dict[str, float]]
    f0_test: float
    info: dict[str, Any]
    test_indices: np.ndarray | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        k = np.shape(self.train_index)[0]
        object.__setattr__(self, "actual", np.asarray(self.actual).reshape(k, -1))
        object.__setattr__(self, "predicted", {v: np.asarray(p).reshape(k, -1)
                                               for v, p in self.predicted.items()})
        ti = [self.test_index] if self.test_indices is None else self.test_indices
        object.__setattr__(self, "test_indices", np.asarray(ti, np.int64).reshape(-1))

    def row(self) -> dict[str, Any]:
        """Flat JSON-ready record (Table 1 columns first)."""
        r: dict[str, Any] = {"width": self.width, "pearson": self.stats["ntk"]["pearson"],
                             "spearman": self.stats["ntk"]["spearman"],
                             "ihvp_pearson": self.stats["ihvp"]["pearson"],
                             "ihvp_spearman": self.stats["ihvp"]["spearman"],
                             "test_points": int(self.test_indices.size),
                             "f0_test": self.f0_test}
        for v, st in self.stats.items():
            for k, val in st.items():
                r[f"{v}_{k}"] = val
        r.update(self.info)
        return r


def _kernel_influence(k: np.ndarray, k_te: np.ndarray, y: np.ndarray, y_te: np.ndarray,
                      lam: float) -> Any:
    return influence_from_kernels(k, k_te, y, y_te, lam, spectrum="none", keep_factor=False)


def select_points(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float,
                  test_index: Any, n_points: int, kernel: Kernel | None = None) -> np.ndarray:
    """The ``n_points`` training points with the largest ``|I_ntk|`` (Figure 1).

    With several test points, the points with the largest ``|I_ntk|`` summed over them.

    Args:
      x_train: ``(n, d)`` unit-norm inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` inputs.
      y_test: ``(t,)`` labels.
      lam: the ridge.
      test_index: the test point, or a list of test points.
      n_points: how many points.
      kernel: the analytic kernel (default eq. 4).

    Returns:
      ``(n_points,)`` training indices, most influential first.
    """
    n = np.shape(x_train)[0]
    if not 1 <= n_points <= n:
        raise InputError(f"n_points must be in [1, {n}], got {n_points}.")
    kern = kernel or paper_kernel("first", implementation="closed_form")
    tj = np.atleast_1d(np.asarray(test_index))
    xt = np.asarray(x_test)[tj]
    res = _kernel_influence(np.asarray(kernel_matrix(kern, x_train)),
                            np.asarray(kernel_matrix(kern, x_train, xt)), y_train,
                            np.asarray(y_test)[tj], lam)
    return np.argsort(-np.abs(res.influence).sum(axis=1), kind="stable")[:n_points]


def comparison_solver(arch: str | Architecture = "two-layer",
                      settings: SolverSettings | None = None, warm_start: bool | None = None
                      ) -> tuple[SolverSettings, bool]:
    """The solver and start that define "actual" in a comparison.

    Smooth nets (``mlp:L:erf``, ``cnn:L:gelu``...) default to
    :meth:`SolverSettings.stationary` (truncated Newton to a ridge-relative gradient of 1e-8)
    with warm starts from the trained weights: the retrained net is then a stationary point of
    its eq. (2) whichever start it came from, and a warm start needs a few Newton steps. ReLU
    nets default to Gauss-Newton stopped when the predictions settle, from the same ``W(0)``
    (on kinks a warm start begins pinned where the full run stopped and moves less).

    Args:
      arch: the architecture.
      settings: explicit solver settings (default: as above).
      warm_start: explicit start (default: as above).

    Returns:
      ``(resolved settings, warm_start)``.
    """
    smooth = architecture(arch).smooth
    s = settings or (SolverSettings.stationary() if smooth else SolverSettings())
    return s.resolved(), bool(smooth if warm_start is None else warm_start)


def comparison_settings(x_train: Any, y_train: Any, x_test: Any, y_test: Any, width: int,
                        lam: float = 0.1, *, test_index: int = 0, test_points: int = 1,
                        n_points: int = 40, train_index: Any | None = None, kappa: float = 1.0,
                        symmetric: bool = True, seed: int = 0,
                        settings: SolverSettings | None = None, warm_start: bool | None = None,
                        dtype: Any = np.float64, rel_tol: float | None = None,
                        arch: str | Architecture = "two-layer", **ignored: Any
                        ) -> dict[str, Any]:
    """What determines one width's comparison: its settings and a SHA-256 of the data arrays.

    :func:`compare_width` stores this with its result and :func:`width_sweep` reuses a stored
    width only when it is equal. How the work is run (``chunk_size``, ``mesh``, ``store``,
    ``show_progress``) is left out.

    Args:
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      width: hidden width.
      lam: ridge.
      test_index: first test point.
      test_points: number of test points.
      n_points: training points removed.
      train_index: explicit training points to remove.
      kappa: initialisation scale.
      symmetric: paired initialisation.
      seed: initialisation seed.
      settings: solver settings (default :func:`comparison_solver`'s).
      warm_start: retrain from the trained W (default :func:`comparison_solver`'s).
      dtype: parameter dtype.
      rel_tol: relative stopping rule.
      arch: the architecture.
      **ignored: options that do not change the result.

    Returns:
      A plain JSON dict.
    """
    s, warm_start = comparison_solver(arch, settings, warm_start)
    return jsonable({
        "width": int(width), "lam": float(lam), "test_index": int(test_index),
        "test_points": int(test_points), "n_points": int(n_points),
        "train_index": None if train_index is None else np.asarray(train_index).tolist(),
        "kappa": float(kappa), "symmetric": bool(symmetric), "seed": int(seed),
        "solver": dataclasses.asdict(s), "warm_start": bool(warm_start),
        "dtype": np.dtype(dtype).name, "rel_tol": None if rel_tol is None else float(rel_tol),
        "arch": architecture(arch).name,
        "data_sha256": data_hash(np.asarray(x_train, np.float64), np.asarray(y_train, np.float64),
                                 np.asarray(x_test, np.float64), np.asarray(y_test, np.float64))})


def compare_width(x_train: Any, y_train: Any, x_test: Any, y_test: Any, width: int,
                  lam: float = 0.1, *, test_index: int = 0, test_points: int = 1,
                  n_points: int = 40, train_index: Any | None = None, kappa: float = 1.0,
                  symmetric: bool = True, seed: int = 0, settings: SolverSettings | None = None,
                  warm_start: bool | None = None, chunk_size: int | None = None,
                  store: str | Path | None = None, show_progress: bool = True,
                  dtype: Any = np.float64, rel_tol: float | None = None,
                  mesh: Any | None = None, arch: str | Architecture = "two-layer"
                  ) -> WidthComparison:
    """Table 1 for one width: predicted influences against leave-one-out retraining.

    Args:
      x_train: ``(n, d)`` unit-norm training inputs (flat rows are reshaped to images for
        ``cnn:L``).
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      width: hidden width (hidden units; channels for ``cnn:L``).
      lam: ridge of eq. (2).
      test_index: the test point compared (the first of them with ``test_points > 1``).
      test_points: compare on ``K`` test points, ``test_index ... test_index + K - 1``: the
        ``n_points`` training points with the largest ``|I_ntk|`` summed over them are removed
        and the statistics are over all ``(training point, test point)`` pairs. The retrains
        are the same whatever ``K`` (each gives every test point at once).
      n_points: training points removed (the largest ``|I_ntk|``), ignored if ``train_index``.
      train_index: explicit training points to remove.
      kappa: initialisation scale (two-layer net).
      symmetric: paired initialisation with ``f_0 = 0`` (two-layer net; deep nets always pair).
      seed: initialisation seed.
      settings: solver settings (default :func:`comparison_solver`'s: Gauss-Newton until the
        predictions settle for ReLU nets, truncated Newton to a stationary point for smooth).
      warm_start: retrain from the trained W instead of ``W(0)`` (default
        :func:`comparison_solver`'s: True for smooth nets, False for ReLU).
      chunk_size: retrains per vmapped chunk (default :func:`ntk_influence.plan_chunk_size`:
        one on a CPU, else from a memory budget).
      store: folder for resumable per-chunk retraining results.
      show_progress: progress bars.
      dtype: float64 (default) or float32 parameters.
      rel_tol: stop each retrain when its predictions move less than ``rel_tol`` times the
        kernel's predicted ``|Delta|`` (NTK with ``f_0``, eq. 9), floored at ``settings.f_tol``;
        the full run uses the smallest of these tolerances. ``None``: ``settings.f_tol`` for all.
        The measured solver error over the actual ``|Delta|`` is reported either way.
      mesh: a ``jax.sharding.Mesh`` to shard the retraining chunks over (``None``: one device).
      arch: ``"two-layer"`` (default), ``"mlp:L"``, ``"cnn:L"`` or an :class:`Architecture`.

    Returns:
      :class:`WidthComparison`.
    """
    lam = check_lam(lam)
    family = architecture(arch, kappa=kappa, symmetric=symmetric)
    if lam <= 0:
        raise InputError("lam must be > 0 for the comparison (the IHVP needs H invertible).")
    xtr = np.asarray(x_train, np.float64)
    ytr = np.asarray(y_train, np.float64)
    xte_all, yte_all = np.asarray(x_test, np.float64), np.asarray(y_test, np.float64)
    if ytr.ndim != 1 or yte_all.ndim != 1:
        raise InputError("the comparison needs scalar labels (binary +1/-1 data such as "
                         "digits:3,8).")
    if not 0 <= test_index < xte_all.shape[0]:
        raise InputError(f"test_index {test_index} is outside [0, {xte_all.shape[0]}); "
                         f"there are {xte_all.shape[0]} test points.")
    if isinstance(test_points, bool) or int(test_points) != test_points or test_points < 1:
        raise InputError(f"test_points must be a whole number >= 1, got {test_points!r}.")
    if test_index + test_points > xte_all.shape[0]:
        raise InputError(f"test_points {test_points} from test_index {test_index} needs test "
                         f"points up to {test_index + test_points - 1}; there are "
                         f"{xte_all.shape[0]}. Lower test_points or test_index.")
    tj = np.arange(test_index, test_index + int(test_points))
    meta = comparison_settings(xtr, ytr, xte_all, yte_all, width, lam, test_index=test_index,
                               test_points=test_points, n_points=n_points,
                               train_index=train_index, kappa=kappa, symmetric=symmetric,
                               seed=seed, settings=settings, warm_start=warm_start, dtype=dtype,
                               rel_tol=rel_tol, arch=family)
    xtr, xte_all = family.prepare(xtr), family.prepare(xte_all)
    xte, yte = xte_all[tj], yte_all[tj]
    kfn = family.kernel()
    if train_index is None:
        idx = select_points(xtr, ytr, xte_all, yte_all, lam, tj, n_points, kfn)
    else:
        idx = check_indices(train_index, xtr.shape[0], "train_index")
    s, warm_start = comparison_solver(family, settings, warm_start)
    t0 = time.perf_counter()
    with precision(dtype):
        net = family.net(xtr, width, seed=seed, dtype=dtype)
        f0_tr, f0_te = initial_output(net, xtr), initial_output(net, xte)
    with precision(np.float64):
        kern = np.asarray(kernel_matrix(kfn, xtr))
        kern_te = np.asarray(kernel_matrix(kfn, xtr, xte))
        r_ntk = _kernel_influence(kern, kern_te, ytr, yte, lam)
        r_f0 = _kernel_influence(kern, kern_te, ytr - f0_tr, yte - f0_te, lam)
    # the smallest predicted abs(Delta) over the test points: retrain_without checks each
    # retrain against the smallest measured one
    delta_scale = np.abs(r_f0.delta[idx]).min(axis=1)
    tols = retrain_tolerances(s, idx.size, rel_tol, delta_scale)
    with precision(dtype):
        full = train(net, xtr, ytr, lam, x_test=xte,
                     settings=dataclasses.replace(s, f_tol=float(tols.min())))
        t_train = time.perf_counter() - t0
        ret: RetrainResult = retrain_without(
            net, xtr, ytr, xte, yte, lam, remove=idx[:, None], settings=s,
            warm_start=warm_start, full=full, chunk_size=chunk_size, store=store, mesh=mesh,
            show_progress=show_progress, rel_tol=rel_tol, delta_scale=delta_scale)
        full = ret.full  # retrained to the tightest tolerance when retrains were refined
        t1 = time.perf_counter()
        ih = ihvp_influence(net, full.theta, xtr, ytr, xte, yte, lam, train_index=idx,
                            method="woodbury")
        t_ihvp = time.perf_counter() - t1
        k0, k0_te = np.asarray(entk(net, xtr)), np.asarray(entk(net, xtr, xte))
    with precision(np.float64):
        r_e0 = _kernel_influence(k0.astype(np.float64), k0_te.astype(np.float64), ytr - f0_tr,
                                 yte - f0_te, lam)
    pred = {"ntk": r_ntk.influence[idx], "ntk_f0": r_f0.influence[idx],
            "entk0": r_e0.influence[idx], "ihvp": ih.influence, "ntk_ihvp": r_ntk.ihvp[idx]}
    actual = ret.influence
    stats = {k: agreement(v, actual) for k, v in pred.items()}
    info = {"arch": family.name, "n_params": net.n_params, "kernel": kfn.name,
            "kappa": kappa, "symmetric": symmetric, "seed": seed, "lam": lam,
            "n_points": int(idx.size), "solver": s.method, "f_tol": s.f_tol,
            "rel_tol": rel_tol, "full_f_tol": float(full.settings.f_tol),
            "full_f_change_test": full.f_change_test,
            "full_grad_norm": full.grad_norm, "full_rel_grad_norm": full.rel_grad_norm,
            "full_iterations": full.iterations, "full_converged": full.converged,
            "full_settled": full.settled, "full_final_step": full.final_step,
            "full_ridge_rel_grad_norm": full.ridge_rel_grad_norm,
            "max_rel_grad_norm": float(max(full.ridge_rel_grad_norm,
                                           np.max(ret.ridge_rel_grad_norm))),
            "stop": s.stop, "g_tol": s.g_tol, "newton_cg": s.newton_cg,
            "warm_start": bool(warm_start),
            "full_f_change": full.f_change, "f_test": float(full.f_test[0]),
            "test_points": int(tj.size), "test_indices": tj.tolist(),
            "f0_max_abs": float(max(np.abs(f0_tr).max(), np.abs(f0_te).max())),
            "entk0_kernel_rel_diff": float(np.linalg.norm(k0 - kern) / np.linalg.norm(kern)),
            "ntk_residual_test": float(np.abs(np.ravel(r_ntk.f_test) - yte).mean()),
            "entk0_residual_test": float(np.abs(np.ravel(r_e0.f_test) + f0_te - yte).mean()),
            "f_ntk_test": float(r_ntk.f_test[0]), "y_test": float(yte[0]),
            "retrain_max_grad_norm": float(ret.grad_norm.max()),
            "ihvp_hessian": ih.solve.hessian, "seconds_train": t_train,
            "seconds_retrain": ret.seconds, "seconds_ihvp": t_ihvp,
            "seconds_total": time.perf_counter() - t0,
            "loo_nets_per_minute": float(idx.size / max(ret.seconds, 1e-9) * 60.0)}
    info.update({f"retrain_{k}": v for k, v in ret.summary().items()
                 if k not in ("seconds", "method", "f_tol")})
    return WidthComparison(int(width), int(test_index), idx, actual, pred, stats,
                           float(f0_te[0]), info, tj, meta)


def save_comparison(path: str | Path, c: WidthComparison) -> None:
    """Save one width's comparison (``.npz`` arrays plus ``.json`` record) atomically.

    Args:
      path: destination stem (suffixes are replaced).
      c: the comparison.

    Returns:
      None.
    """
    p = Path(path)
    save_npz(p.with_suffix(".npz"), train_index=c.train_index, actual=c.actual,
             **{f"pred_{k}": v for k, v in c.predicted.items()})
    save_json(p.with_suffix(".json"), {"width": c.width, "test_index": c.test_index,
                                       "test_indices": c.test_indices, "f0_test": c.f0_test,
                                       "stats": c.stats, "info": c.info,
                                       "settings": c.settings})


def load_comparison(path: str | Path) -> WidthComparison:
    """Load what :func:`save_comparison` wrote.

    Args:
      path: the stem given to :func:`save_comparison`.

    Returns:
      :class:`WidthComparison`.
    """
    p = Path(path)
    return _comparison_from(load_npz(p.with_suffix(".npz")), load_json(p.with_suffix(".json")))


def _comparison_from(arr: dict[str, Any], meta: dict[str, Any]) -> WidthComparison:
    """The :class:`WidthComparison` of a saved pair (the ``.npz`` arrays, the ``.json`` meta)."""
    pred = {k[len("pred_"):]: v for k, v in arr.items() if k.startswith("pred_")}
    return WidthComparison(int(meta["width"]), int(meta["test_index"]), arr["train_index"],
                           arr["actual"], pred, meta["stats"], float(meta["f0_test"]),
                           meta["info"], meta.get("test_indices"), meta.get("settings", {}))


def width_sweep(x_train: Any, y_train: Any, x_test: Any, y_test: Any, widths: Any,
                lam: float = 0.1, *, out: str | Path | None = None, resume: bool = True,
                on_result: Callable[[WidthComparison], None] | None = None,
                **kwargs: Any) -> list[WidthComparison]:
    """Table 1: :func:`compare_width` for every width, resumable per width and per chunk.

    A width stored in ``out`` is reused only when it was computed with the same settings and
    data (:func:`comparison_settings`); a stored width of other settings is refused with an
    InputError naming the settings that differ (``resume=False`` recomputes it).

    Args:
      x_train: ``(n, d)`` unit-norm training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` inputs.
      y_test: ``(t,)`` labels.
      widths: the widths.
      lam: the ridge.
      out: folder for per-width results (``width_M.json/.npz``) and retraining chunks.
      resume: reuse finished widths and chunks in ``out``.
      on_result: called with each width's result as soon as it is done (or loaded), for
        instance to print its row.
      **kwargs: options of :func:`compare_width`.

    Returns:
      One :class:`WidthComparison` per width, in the given order.
    """
    ws = [int(w) for w in widths]
    if not ws or min(ws) < 1:
        raise InputError(f"widths must be integers >= 1, got {list(widths)}.")
    results = []
    for w in ws:
        path = None if out is None else Path(out) / f"width_{w}"
        meta = load_saved(path.with_suffix(".json")) if path is not None and resume else None
        if meta is not None:
            want = comparison_settings(x_train, y_train, x_test, y_test, w, lam, **kwargs)
            old = meta.get("settings") if isinstance(meta, dict) else None
            if old != want:
                raise InputError(
                    f"{path.with_suffix('.json')} holds width {w} computed with other settings "
                    f"({settings_differences(old or {}, want)}); use another folder, or "
                    "resume=False to compute it again.")
            arr = load_saved(path.with_suffix(".npz"))
            if arr is not None:
                results.append(_comparison_from(arr, meta))
                if on_result is not None:
                    on_result(results[-1])
                continue
        store = None if out is None else Path(out) / f"retrain_{w}"
        if store is not None and not resume and store.exists():
            import shutil

            shutil.rmtree(store)
        c = compare_width(x_train, y_train, x_test, y_test, w, lam, store=store, **kwargs)
        if path is not None:
            save_comparison(path, c)
        results.append(c)
        if on_result is not None:
            on_result(c)
    return results
