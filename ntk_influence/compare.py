"""NTK influence against actual leave-one-out retraining across widths: Table 1 and Figure 1.

For each width ``m`` a two-layer net (eq. 1) is trained on eq. (2), the ``n_points`` training
points with the largest ``|I_ntk|`` on the chosen test point are removed one at a time and the net
retrained (:mod:`ntk_influence.retrain`), and the actual influences ``I_nn`` are compared with:

- ``ntk``: the exact NTK influence of eq. (8-9) with the analytic kernel of eq. (4), ignoring the
  net's initial output ``f_0`` (the paper's predictor);
- ``ntk_f0``: the same kernel with ``f_0`` included: KRR on the residuals ``y - f_0`` and
  ``f_0(x_te)`` added back, which is the linearisation of this very network (the residuals
  ``f - y`` are unchanged, so ``influence_from_kernels(K, K_te, y - f0, y_te - f0_te, lam)`` is
  exactly its influence);
- ``entk0``: the same with the empirical NTK at ``W(0)``;
- ``ihvp``: the classic IHVP estimate of eq. (12) on the trained finite net (Woodbury, exact
  Hessian); ``ntk_ihvp``: its kernel-regime limit (eq. 13).

Each comparison reports Pearson R, Spearman rho, the least-squares slope of predicted on actual
and the relative error ``||pred - actual|| / ||actual||``: correlation alone hides the IHVP's
underestimate (DESIGN item 6).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError
from ._precision import precision
from ._validate import check_lam
from .empirical import entk
from .influence import influence_from_kernels
from .io import load_json, load_npz, save_json, save_npz
from .kernels import kernel_matrix, paper_kernel
from .nets import initial_output, two_layer_net
from .retrain import RetrainResult, retrain_tolerances, retrain_without
from .train import SolverSettings, train

VARIANTS = ("ntk", "ntk_f0", "entk0", "ihvp", "ntk_ihvp")


def agreement(predicted: Any, actual: Any) -> dict[str, float]:
    """Pearson R, Spearman rho, least-squares slope and relative error of predicted vs actual.

    Args:
      predicted: predicted influences.
      actual: actual influences (same shape).

    Returns:
      ``{"pearson", "spearman", "slope", "rel_error"}``; the slope regresses predicted on actual
      (1 is perfect; the IHVP's is about 0.5 on digits, DESIGN item 6).
    """
    from scipy import stats

    p = np.asarray(predicted, np.float64).ravel()
    a = np.asarray(actual, np.float64).ravel()
    if p.shape != a.shape or p.size < 3:
        raise InputError(f"need matching arrays of >= 3 values, got {p.shape} and {a.shape}.")
    ac = a - a.mean()
    return {"pearson": float(stats.pearsonr(a, p)[0]), "spearman": float(stats.spearmanr(a, p)[0]),
            "slope": float(np.dot(ac, p - p.mean()) / np.dot(ac, ac)),
            "rel_error": float(np.linalg.norm(p - a) / np.linalg.norm(a))}


@dataclasses.dataclass(frozen=True)
class WidthComparison:
    """One width of the sweep: predicted and actual influences on one test point.

    Attributes:
      width: hidden width ``m``.
      test_index: the test point (index into the test set).
      train_index: ``(k,)`` the removed training points.
      actual: ``(k,)`` ``I_nn`` from retraining.
      predicted: variant name -> ``(k,)`` predicted influences (see ``VARIANTS``).
      stats: variant name -> :func:`agreement` against ``actual``.
      f0_test: initial output of the net on the test point.
      info: solver and retraining diagnostics (gradient norms, solver error vs ``|Delta|``...).
    """

    width: int
    test_index: int
    train_index: np.ndarray
    actual: np.ndarray
    predicted: dict[str, np.ndarray]
    stats: dict[str, dict[str, float]]
    f0_test: float
    info: dict[str, Any]

    def row(self) -> dict[str, Any]:
        """Flat JSON-ready record (Table 1 columns first)."""
        r: dict[str, Any] = {"width": self.width, "pearson": self.stats["ntk"]["pearson"],
                             "spearman": self.stats["ntk"]["spearman"],
                             "ihvp_pearson": self.stats["ihvp"]["pearson"],
                             "ihvp_spearman": self.stats["ihvp"]["spearman"],
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
                  test_index: int, n_points: int) -> np.ndarray:
    """The ``n_points`` training points with the largest ``|I_ntk|`` on one test point (Figure 1).

    Args:
      x_train: ``(n, d)`` unit-norm inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` inputs.
      y_test: ``(t,)`` labels.
      lam: the ridge.
      test_index: the test point.
      n_points: how many points.

    Returns:
      ``(n_points,)`` training indices, most influential first.
    """
    n = np.shape(x_train)[0]
    if not 1 <= n_points <= n:
        raise InputError(f"n_points must be in [1, {n}], got {n_points}.")
    kern = paper_kernel("first", implementation="closed_form")
    xt = np.asarray(x_test)[[test_index]]
    res = _kernel_influence(np.asarray(kernel_matrix(kern, x_train)),
                            np.asarray(kernel_matrix(kern, x_train, xt)), y_train,
                            np.asarray(y_test)[[test_index]], lam)
    return np.argsort(-np.abs(res.influence[:, 0]), kind="stable")[:n_points]


def compare_width(x_train: Any, y_train: Any, x_test: Any, y_test: Any, width: int,
                  lam: float = 0.1, *, test_index: int = 0, n_points: int = 40,
                  train_index: Any | None = None, kappa: float = 1.0, symmetric: bool = True,
                  seed: int = 0, settings: SolverSettings | None = None,
                  warm_start: bool = False, chunk_size: int | None = None,
                  store: str | Path | None = None, show_progress: bool = True,
                  dtype: Any = np.float64, rel_tol: float | None = None,
                  mesh: Any | None = None) -> WidthComparison:
    """Table 1 for one width: predicted influences against leave-one-out retraining.

    Args:
      x_train: ``(n, d)`` unit-norm training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      width: hidden width.
      lam: ridge of eq. (2).
      test_index: the test point compared.
      n_points: training points removed (the largest ``|I_ntk|``), ignored if ``train_index``.
      train_index: explicit training points to remove.
      kappa: initialisation scale.
      symmetric: paired initialisation with ``f_0 = 0``.
      seed: initialisation seed.
      settings: solver settings (default Gauss-Newton).
      warm_start: retrain from the trained W instead of ``W(0)``.
      chunk_size: retrains per vmapped chunk.
      store: folder for resumable per-chunk retraining results.
      show_progress: progress bars.
      dtype: float64 (default) or float32 parameters.
      rel_tol: stop each retrain when its predictions move less than ``rel_tol`` times the
        kernel's predicted ``|Delta|`` (NTK with ``f_0``, eq. 9), floored at ``settings.f_tol``;
        the full run uses the smallest of these tolerances. ``None``: ``settings.f_tol`` for all.
        The measured solver error over the actual ``|Delta|`` is reported either way.
      mesh: a ``jax.sharding.Mesh`` to shard the retraining chunks over (``None``: one device).

    Returns:
      :class:`WidthComparison`.
    """
    lam = check_lam(lam)
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
    xte, yte = xte_all[[test_index]], yte_all[[test_index]]
    if train_index is None:
        idx = select_points(xtr, ytr, xte_all, yte_all, lam, test_index, n_points)
    else:
        from ._validate import check_indices

        idx = check_indices(train_index, xtr.shape[0], "train_index")
    s = (settings or SolverSettings()).resolved()
    t0 = time.perf_counter()
    with precision(dtype):
        net = two_layer_net(xtr.shape[1], width, kappa=kappa, symmetric=symmetric, seed=seed,
                            param_dtype=dtype)
        f0_tr, f0_te = initial_output(net, xtr), initial_output(net, xte)
    with precision(np.float64):
        kfn = paper_kernel("first", implementation="closed_form")
        kern = np.asarray(kernel_matrix(kfn, xtr))
        kern_te = np.asarray(kernel_matrix(kfn, xtr, xte))
        r_ntk = _kernel_influence(kern, kern_te, ytr, yte, lam)
        r_f0 = _kernel_influence(kern, kern_te, ytr - f0_tr, yte - f0_te, lam)
    delta_scale = np.abs(r_f0.delta[idx, 0])
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
        from .ihvp import ihvp_influence

        t1 = time.perf_counter()
        ih = ihvp_influence(net, full.theta, xtr, ytr, xte, yte, lam, train_index=idx,
                            method="woodbury")
        t_ihvp = time.perf_counter() - t1
        k0, k0_te = np.asarray(entk(net, xtr)), np.asarray(entk(net, xtr, xte))
    with precision(np.float64):
        r_e0 = _kernel_influence(k0.astype(np.float64), k0_te.astype(np.float64), ytr - f0_tr,
                                 yte - f0_te, lam)
    pred = {"ntk": r_ntk.influence[idx, 0], "ntk_f0": r_f0.influence[idx, 0],
            "entk0": r_e0.influence[idx, 0], "ihvp": ih.influence[:, 0],
            "ntk_ihvp": r_ntk.ihvp[idx, 0]}
    actual = ret.influence[:, 0]
    stats = {k: agreement(v, actual) for k, v in pred.items()}
    info = {"kappa": kappa, "symmetric": symmetric, "seed": seed, "lam": lam,
            "n_points": int(idx.size), "solver": s.method, "f_tol": s.f_tol,
            "rel_tol": rel_tol, "full_f_tol": float(full.settings.f_tol),
            "full_f_change_test": full.f_change_test,
            "full_grad_norm": full.grad_norm, "full_rel_grad_norm": full.rel_grad_norm,
            "full_iterations": full.iterations, "full_converged": full.converged,
            "full_f_change": full.f_change, "f_test": float(full.f_test[0]),
            "f_ntk_test": float(r_ntk.f_test[0]), "y_test": float(yte[0]),
            "retrain_max_grad_norm": float(ret.grad_norm.max()),
            "ihvp_hessian": ih.solve.hessian, "seconds_train": t_train,
            "seconds_retrain": ret.seconds, "seconds_ihvp": t_ihvp,
            "seconds_total": time.perf_counter() - t0,
            "loo_nets_per_minute": float(idx.size / max(ret.seconds, 1e-9) * 60.0)}
    info.update({f"retrain_{k}": v for k, v in ret.summary().items()
                 if k not in ("seconds", "method", "f_tol")})
    return WidthComparison(int(width), int(test_index), idx, actual, pred, stats,
                           float(f0_te[0]), info)


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
                                       "f0_test": c.f0_test, "stats": c.stats, "info": c.info})


def load_comparison(path: str | Path) -> WidthComparison:
    """Load what :func:`save_comparison` wrote.

    Args:
      path: the stem given to :func:`save_comparison`.

    Returns:
      :class:`WidthComparison`.
    """
    p = Path(path)
    arr, meta = load_npz(p.with_suffix(".npz")), load_json(p.with_suffix(".json"))
    pred = {k[len("pred_"):]: v for k, v in arr.items() if k.startswith("pred_")}
    return WidthComparison(int(meta["width"]), int(meta["test_index"]), arr["train_index"],
                           arr["actual"], pred, meta["stats"], float(meta["f0_test"]),
                           meta["info"])


def width_sweep(x_train: Any, y_train: Any, x_test: Any, y_test: Any, widths: Any,
                lam: float = 0.1, *, out: str | Path | None = None, resume: bool = True,
                **kwargs: Any) -> list[WidthComparison]:
    """Table 1: :func:`compare_width` for every width, resumable per width and per chunk.

    Args:
      x_train: ``(n, d)`` unit-norm training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` inputs.
      y_test: ``(t,)`` labels.
      widths: the widths.
      lam: the ridge.
      out: folder for per-width results (``width_M.json/.npz``) and retraining chunks.
      resume: reuse finished widths and chunks in ``out``.
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
        if path is not None and resume and path.with_suffix(".json").exists():
            results.append(load_comparison(path))
            continue
        store = None if out is None else Path(out) / f"retrain_{w}"
        if store is not None and not resume and store.exists():
            import shutil

            shutil.rmtree(store)
        c = compare_width(x_train, y_train, x_test, y_test, w, lam, store=store, **kwargs)
        if path is not None:
            save_comparison(path, c)
        results.append(c)
    return results


def table_markdown(results: list[WidthComparison]) -> str:
    """A Markdown table like Table 1 (widths as columns) with the extra diagnostics as rows.

    Args:
      results: the sweep.

    Returns:
      The table text.
    """
    cols = sorted(results, key=lambda c: -c.width)
    head = "| | " + " | ".join(f"m = {c.width}" for c in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    rows = [head, sep]
    for v, label in [("ntk", "NTK"), ("ntk_f0", "NTK + f0"), ("entk0", "eNTK(W0) + f0"),
                     ("ihvp", "IHVP (finite net)"), ("ntk_ihvp", "IHVP (NTK limit)")]:
        for k, name in [("pearson", "R"), ("spearman", "rho"), ("slope", "slope"),
                        ("rel_error", "rel. error")]:
            rows.append(f"| {label} {name} | " + " | ".join(
                f"{c.stats[v][k]:.3f}" for c in cols) + " |")
    rows.append("| f0(x_te) | " + " | ".join(f"{c.f0_test:.2e}" for c in cols) + " |")
    rows.append("| full-run grad norm | " + " | ".join(
        f"{c.info['full_grad_norm']:.2e}" for c in cols) + " |")
    rows.append("| max solver error / abs(Delta) | " + " | ".join(
        f"{c.info['retrain_max_error_ratio']:.1e}" for c in cols) + " |")
    rows.append("| seconds | " + " | ".join(
        f"{c.info['seconds_total']:.0f}" for c in cols) + " |")
    return "\n".join(rows) + "\n"
