"""The attribution benchmark: every method scored on one trained net by LDS, LOO and AUC.

:func:`method_scores` gives each method's ``(n_train, n_test)`` scores in this library's sign
(positive: removing the training point raises the test loss ``1/2 (f - y)^2``), all on the same
trained net of eq. (1):

- ``ntk``: exact NTK leave-one-out influence, eq. (8)-(9), analytic kernel of eq. (4);
- ``ntk_f0``: the same with the net's initial output ``f_0`` (KRR on ``y - f_0``); not
  applicable with the symmetric initialisation (``f_0 = 0``);
- ``ihvp``: the exact first-order influence on the trained net, eq. (12), through the eNTK
  (``H = J^T J + lam I`` exactly for eq. 1): ``r_i r_te [(K + lam I)^-1 K_te]_i``
  (:func:`first_order_scores`);
- ``trak``: TRAK with projected output gradients, averaged over nets
  (:func:`trak_ensemble_scores`; :class:`ScoreOptions` sets it up);
- ``tracin``: TracIn-CP on a first-order training path (:func:`tracin_scores`);
- ``grad_dot``: gradient similarity at the trained weights (:func:`grad_dot_scores`).

:func:`attribution_benchmark` retrains the net on random subsets, one point out at a time and
on flipped labels, and scores every method with these yardsticks (definitions as in TRAK and
dattri; :func:`linear_datamodeling_score`, :func:`pearson`, :func:`spearman`, :func:`auc`),
returned as an :class:`AttributionResult`:

- LDS: a subset's test losses are predicted additively (full loss plus the scores of the removed
  points) for every method, and by ``ntk_refit``, kernel ridge regression on the subset alone
  (the exact block downdate of the factorisation, not additive); per test point, Spearman's rank
  correlation across subsets between predicted and retrained losses, averaged over test points
  (dattri's ``lds`` sums scores over the *kept* points, which is ours with the sign flipped,
  since the sum over all points is a constant);
- leave-one-out correlation: Pearson and Spearman between predicted and retrained LOO loss
  changes, pooled over the removed points and every test point;
- mislabel detection AUC: training points ranked by self-influence after flipping labels.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._precision import precision
from .._validate import check_lam, check_whole
from ..data import flip_labels
from ..errors import InputError
from ..influence import InfluenceResult, influence_from_kernels
from ..kernels import kernel_matrix, paper_kernel
from ..nets import Architecture, FunctionalNet, architecture, entk, initial_output
from ..training import SolverSettings, TrainResult, loo_retrain, train
from ._brittleness import BrittlenessResult, brittleness
from ._metrics import auc, found_at, pearson, random_subsets, spearman
from ._protocols import LDSRun, lds_run, seed_protocols
from ._tracin import grad_dot_scores, tracin_scores, training_path
from ._trak import first_order_scores, trak_ensemble_scores

METHODS = ("ntk", "ntk_f0", "ihvp", "trak", "tracin", "grad_dot")


@dataclasses.dataclass(frozen=True)
class ScoreOptions:
    """How the additive methods are computed.

    Attributes:
      trak_dim: TRAK projection dimension (None: no projection).
      trak_ensemble: nets averaged by TRAK (seeds ``net_seed, net_seed + 1, ...``), all
        projected with one ``R`` (:func:`trak_ensemble_scores`).
      trak_projection: ``"gaussian"`` or ``"rademacher"``.
      tracin_checkpoints: TracIn-CP checkpoints.
      tracin_steps: first-order steps of the TracIn training path.
      tracin_method: ``"gd"`` or ``"sgd"``.
      tracin_step_factor: the path's step as a fraction of ``1 / (lambda_max + lam)``.
    """

    trak_dim: int | None = 1024
    trak_ensemble: int = 4
    trak_projection: str = "gaussian"
    tracin_checkpoints: int = 5
    tracin_steps: int = 500
    tracin_method: str = "gd"
    tracin_step_factor: float = 1.0


def _ntk_result(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float,
                kernel: Any = None) -> InfluenceResult:
    with precision(np.float64):
        kfn = kernel or paper_kernel("first", implementation="closed_form")
        k = np.asarray(kernel_matrix(kfn, x_train), np.float64)
        kt = np.asarray(kernel_matrix(kfn, x_train, x_test), np.float64)
    return influence_from_kernels(k, kt, y_train, y_test, lam, spectrum="none")


def method_scores(net: FunctionalNet, full: TrainResult, x_train: Any, y_train: Any,
                  x_test: Any, y_test: Any, lam: float, *, options: ScoreOptions | None = None,
                  settings: SolverSettings | None = None, methods: tuple[str, ...] = METHODS,
                  self_influence: bool = False, kernel: Any = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, float], InfluenceResult]:
    """Every method's ``(n, t)`` scores for one trained net (see the module docstring).

    Args:
      net: the network (``net.theta0`` is ``W(0)``).
      full: its training run on every point.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs (``x_train`` for self-influence).
      y_test: ``(t,)`` labels.
      lam: the ridge of eq. (2).
      options: :class:`ScoreOptions`.
      settings: solver settings of the TRAK ensemble's other nets.
      methods: which methods.
      self_influence: return each method's ``(n,)`` self-influence (the diagonal; the NTK's is
        the exact leave-one-out self-influence) instead of ``(n, t)`` scores.
      kernel: the net's infinite-width NTK (default: eq. 4's, of the two-layer net of eq. 1;
        :meth:`~ntk_influence.nets.Architecture.kernel` for a deeper family).

    Returns:
      ``(scores, seconds, ntk_result)``; ``ntk_f0`` is absent when ``f_0 = 0``.
    """
    o = options or ScoreOptions()
    seed0 = int(net.description.get("seed", 0))
    others = ([net.reseeded(seed0 + e)
               for e in range(1, check_whole(o.trak_ensemble, "trak_ensemble"))]
              if "trak" in methods else [])  # TRAK's other nets: fail before any work
    xtr, ytr = np.asarray(x_train, np.float64), np.asarray(y_train, np.float64)
    xte, yte = np.asarray(x_test, np.float64), np.asarray(y_test, np.float64)
    out: dict[str, np.ndarray] = {}
    secs: dict[str, float] = {}
    pick = (lambda s: np.diag(s).copy()) if self_influence else (lambda s: s)
    t0 = time.perf_counter()
    res = _ntk_result(xtr, ytr, xte, yte, lam, kernel)
    secs["ntk"] = time.perf_counter() - t0
    out["ntk"] = res.self_influence if self_influence else res.influence
    f0_tr, f0_te = initial_output(net, xtr), initial_output(net, xte)
    if "ntk_f0" in methods and (np.any(f0_tr != 0) or np.any(f0_te != 0)):
        t0 = time.perf_counter()
        r0 = _ntk_result(xtr, ytr - f0_tr, xte, yte - f0_te, lam, kernel)
        out["ntk_f0"] = r0.self_influence if self_influence else r0.influence
        secs["ntk_f0"] = time.perf_counter() - t0
    if "ihvp" in methods:
        t0 = time.perf_counter()
        with precision(net.dtype):
            k = np.asarray(entk(net, xtr, theta=full.theta), np.float64)
            kc = np.asarray(entk(net, xtr, xte, theta=full.theta), np.float64)
        r_tr, r_te = np.asarray(full.f_train) - ytr, _outputs(net, full.theta, xte) - yte
        out["ihvp"] = pick(first_order_scores(k, kc, r_tr, r_te, lam))
        secs["ihvp"] = time.perf_counter() - t0
    if "grad_dot" in methods:
        t0 = time.perf_counter()
        out["grad_dot"] = pick(grad_dot_scores(net, full.theta, xtr, ytr, xte, yte))
        secs["grad_dot"] = time.perf_counter() - t0
    if "trak" in methods:
        t0 = time.perf_counter()
        members = [(net, full.theta)]
        for member in others:
            members.append((member, train(member, xtr, ytr, lam, settings=settings).theta))
        out["trak"] = pick(trak_ensemble_scores(members, xtr, ytr, xte, yte, lam, dim=o.trak_dim,
                                                projection=o.trak_projection))
        secs["trak"] = time.perf_counter() - t0
    if "tracin" in methods:
        t0 = time.perf_counter()
        path = training_path(net, xtr, ytr, lam, steps=o.tracin_steps,
                             checkpoints=o.tracin_checkpoints, method=o.tracin_method,
                             step_factor=o.tracin_step_factor)
        out["tracin"] = pick(tracin_scores(net, path, xtr, ytr, xte, yte))
        secs["tracin"] = time.perf_counter() - t0
    return out, secs, res


def _outputs(net: FunctionalNet, theta: Any, x: np.ndarray) -> np.ndarray:
    with precision(net.dtype):
        return np.asarray(net.apply(jnp.asarray(theta, net.dtype), jnp.asarray(x, net.dtype)),
                          np.float64)


@dataclasses.dataclass(frozen=True)
class AttributionResult:
    """Subset retraining, every method's scores and the yardsticks (see the module docstring).

    Attributes:
      subset_indices: ``(M, k)`` kept indices of each subset.
      subset_outputs: ``(M, t)`` test outputs of the net retrained on each subset.
      subset_losses: ``(M, t)`` their test losses ``1/2 (f_S - y)^2``.
      full_losses: ``(t,)`` test losses of the net trained on every point.
      scores: method -> ``(n, t)`` scores.
      refit_losses: ``(M, t)`` test losses of the NTK refit on each subset.
      loo_index: ``(L,)`` training points removed one at a time.
      loo_actual: ``(L, t)`` retrained leave-one-out loss changes (eq. 7).
      noisy_mask: ``(n,)`` training labels flipped for mislabel detection.
      self_influence: method -> ``(n,)`` self-influence on the noisy labels (plus ``loss``, the
        training loss baseline).
      metrics: method -> ``lds`` (of the first LDS run), ``loo_pearson``, ``loo_spearman``,
        ``mislabel_auc``, ``mislabel_found_10pct`` (share of the flipped labels among the 10%
        of points with the highest self-influence), ``mislabel_found_at_noise`` (the same among
        the top ``noise`` share: 1 for a perfect ranking), ``seconds`` (``ntk_refit`` and the ``loss``
        baseline included).
      info: settings, timings and solver diagnostics (``lds_runs``: every run's record).
      lds_runs: every :class:`LDSRun` (each alpha under each seed protocol); the ``subset_*``
        and ``refit_losses`` fields above are the first one's.
      brittleness: the flip sets and their verification (:func:`brittleness`), or ``None``.
    """

    subset_indices: np.ndarray
    subset_outputs: np.ndarray
    subset_losses: np.ndarray
    full_losses: np.ndarray
    scores: dict[str, np.ndarray]
    refit_losses: np.ndarray
    loo_index: np.ndarray
    loo_actual: np.ndarray
    noisy_mask: np.ndarray
    self_influence: dict[str, np.ndarray]
    metrics: dict[str, dict[str, Any]]
    info: dict[str, Any]
    lds_runs: tuple[LDSRun, ...] = ()
    brittleness: BrittlenessResult | None = None

    def lds_table(self) -> dict[str, dict[str, float | None]]:
        """LDS per run key (``"<protocol>_alpha<alpha>"``) and method, with the noise floor.

        Returns:
          key -> method -> LDS, plus ``noise_floor`` and ``noise_ceiling`` (``None`` under
          the fixed protocol).
        """
        return {r.key: {**r.lds, "noise_floor": r.noise_floor, "noise_ceiling": r.noise_ceiling}
                for r in self.lds_runs}

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``attribution.npz`` (``scores_<method>``, ``self_<method>``...)."""
        out = {"subset_indices": self.subset_indices, "subset_outputs": self.subset_outputs,
               "subset_losses": self.subset_losses, "full_losses": self.full_losses,
               "refit_losses": self.refit_losses, "noisy_mask": self.noisy_mask,
               "loo_index": self.loo_index, "loo_actual": self.loo_actual}
        out.update({f"scores_{k}": v for k, v in self.scores.items()})
        out.update({f"self_{k}": v for k, v in self.self_influence.items()})
        for run in self.lds_runs:
            out.update(run.arrays())
        if self.brittleness is not None:
            out.update(self.brittleness.arrays())
        return out


def attribution_benchmark(x_train: Any, y_train: Any, x_test: Any, y_test: Any, *,
                          width: int = 16384, lam: float = 0.1, subsets: int = 100,
                          alpha: float | Sequence[float] = 0.5, seed_protocol: str = "fixed",
                          seed: int = 0, net_seed: int = 0,
                          kappa: float = 1.0, symmetric: bool = True,
                          arch: str | Architecture = "two-layer", loo_points: int = 20,
                          brittleness_points: int = 0, max_flip_fraction: float = 0.2,
                          flip_margin: float = 0.05,
                          noise: float = 0.1, options: ScoreOptions | None = None,
                          settings: SolverSettings | None = None, coarse_f_tol: float = 1e-4,
                          methods: tuple[str, ...] = METHODS, dtype: Any = np.float64,
                          store: str | os.PathLike[str] | None = None,
                          chunk_size: int | None = None,
                          show_progress: bool = True) -> AttributionResult:
    """Retrain the net of eq. (1) on random subsets and score every method by LDS, LOO, AUC.

    1. Train the net (``W(0)`` from ``net_seed``) on every point and score every method on it.
    2. For each kept fraction in ``alpha`` and each seed protocol (:func:`lds_run`): retrain on
       ``subsets`` random subsets of ``ceil(alpha n)`` points
       (:func:`ntk_influence.training.retrain_without` with ``keep=``, vmapped chunks,
       resumable), from the same ``W(0)`` (``fixed``) or each from its own (``fresh``, then
       twice, for the noise floor), each stopped at ``coarse_f_tol``: the LDS ranks subset
       losses that differ by far more (the ratio of the solver's loss error to their spread is
       recorded). Predict each subset's test losses additively and by the NTK refit; LDS
       against the retrained losses.
    3. Retrain without ``loo_points`` random points one at a time (every test point at once)
       for the LOO correlations.
    4. Flip ``noise`` of the training labels, train again, and rank points by each method's
       self-influence (the NTK's: exact LOO self-influence) against the training loss.

    Args:
      x_train: ``(n, d)`` unit-norm training inputs.
      y_train: ``(n,)`` +1/-1 labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      width: hidden width ``m``.
      lam: the ridge of eq. (2), ``> 0``.
      subsets: number of subsets ``M``.
      alpha: kept fraction, or several (``(0.5, 0.99)``: half and 1% of the points dropped);
        the first gives ``metrics[...]["lds"]``.
      seed_protocol: ``"fixed"`` (every subset retrain from the trained net's ``W(0)``),
        ``"fresh"`` (each from its own, plus the noise floor) or ``"both"``.
      seed: seed of the subsets, the fresh initialisations, the LOO points and the label flips.
      net_seed: initialisation seed.
      kappa: first-layer initialisation scale.
      symmetric: paired neurons, ``f_0 = 0`` (``ntk_f0`` then does not apply).
      arch: the net: ``"two-layer"`` (eq. 1, the default) or a deeper family (``"mlp:3"``,
        ``"mlp:3:erf"``...; :func:`~ntk_influence.nets.architecture`), whose NT kernel then
        gives ``ntk`` and ``ntk_refit``; for a deep net ``ihvp`` uses the Gauss-Newton
        Hessian ``J^T J + lam I`` (exact only for eq. 1).
      loo_points: training points retrained one at a time (0: skip LOO).
      brittleness_points: correctly classified test points searched for flip sets by every
        method, each set verified by retraining (:func:`brittleness`; 0 skips).
      max_flip_fraction: the largest flip set, as a fraction of the training points.
      flip_margin: how far past zero a method's predicted flip must land (:func:`brittleness`).
      noise: fraction of labels flipped for mislabel detection (0: skip).
      options: :class:`ScoreOptions` (TRAK, TracIn).
      settings: solver settings (default Gauss-Newton, ``f_tol=1e-6``; for a smooth family
        :meth:`~ntk_influence.training.SolverSettings.stationary`) of the full run and the
        leave-one-out retrains, whose test predictions are differenced (one point moves them by
        ~1e-3).
      coarse_f_tol: ``f_tol`` of the nets that are ranked or scored rather than differenced:
        the subset retrains (removing half the points moves the test predictions by ~0.1),
        TRAK's other nets and the noisy-label nets (not used by settings that stop at a
        stationary point: those nets are solved to the same gradient tolerance).
      methods: additive methods to score (``ntk`` always runs: it gives the refit).
      dtype: parameter dtype.
      store: folder for the resumable retraining chunks (None: nothing kept).
      chunk_size: retrains per vmapped chunk (default
        :func:`ntk_influence.training.plan_chunk_size`: one on a CPU, else from a memory budget).
      show_progress: progress bars on stderr.

    Returns:
      :class:`AttributionResult`.
    """
    lam = check_lam(lam)
    if lam <= 0:
        raise InputError("lam must be > 0 for the first-order methods.")
    loo_points = check_whole(loo_points, "loo_points", low=0)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise InputError(f"unknown methods {bad}; choose from {METHODS}.")
    family = architecture(arch, kappa=kappa, symmetric=symmetric)
    s = settings or (SolverSettings.stationary() if family.smooth else SolverSettings(f_tol=1e-6))
    coarse = (s if s.stop == "gradient" else dataclasses.replace(s, f_tol=coarse_f_tol)).resolved()
    xtr, ytr = family.prepare(x_train), np.asarray(y_train, np.float64)
    xte, yte = family.prepare(x_test), np.asarray(y_test, np.float64)
    if ytr.ndim != 1 or yte.ndim != 1:
        raise InputError("the benchmark needs scalar labels (binary data such as digits:3,8).")
    n = xtr.shape[0]
    if loo_points > n:
        raise InputError(f"loo_points={loo_points} is more than the {n} training points; pass at "
                         f"most {n} (0 skips leave-one-out).")
    alphas = tuple(float(a) for a in np.atleast_1d(np.asarray(alpha, np.float64)))
    if not alphas or len(set(alphas)) != len(alphas):
        raise InputError(f"alpha must be one kept fraction or distinct ones, got {alpha!r}.")
    protocols = seed_protocols(seed_protocol)
    for a in alphas:  # checks subsets and every alpha before any training
        random_subsets(n, subsets, a, seed)
    root = None if store is None else Path(store)
    sub = lambda name: None if root is None else root / name  # noqa: E731
    t_all = time.perf_counter()
    info: dict[str, Any] = {"width": width, "lam": lam, "subsets": subsets,
                            "alpha": alphas[0], "alphas": list(alphas),
                            "seed_protocols": list(protocols),
                            "seed": seed, "net_seed": net_seed, "kappa": kappa,
                            "symmetric": symmetric, "arch": family.name,
                            "loo_points": loo_points, "noise": noise,
                            "options": dataclasses.asdict(options or ScoreOptions()),
                            "settings": dataclasses.asdict(s.resolved()),
                            "coarse_f_tol": coarse.f_tol, "chunk_size": chunk_size}
    with precision(dtype):
        net = family.net(xtr, width, seed=net_seed, dtype=dtype)
        t0 = time.perf_counter()
        full = train(net, xtr, ytr, lam, x_test=xte, settings=s)
        info["seconds_train"] = time.perf_counter() - t0
    kernel = family.kernel()
    scores, secs, res = method_scores(net, full, xtr, ytr, xte, yte, lam, options=options,
                                      settings=coarse, methods=methods, kernel=kernel)
    runs = []
    t0 = time.perf_counter()
    for i, a in enumerate(alphas):
        for protocol in protocols:
            runs.append(lds_run(net, full, xtr, ytr, xte, yte, lam, alpha=a, protocol=protocol,
                                subsets=subsets, seed=seed, stream=i, scores=scores, ntk=res,
                                settings=coarse, store=sub("subsets"), chunk_size=chunk_size,
                                show_progress=show_progress))
    info["seconds_subsets"] = time.perf_counter() - t0
    first = runs[0]
    info["subset_retrain"] = first.info["subset_retrain"]
    info["subset_loss_error_over_spread"] = first.info["loss_error_over_spread"]
    info["lds_runs"] = [r.record() for r in runs]
    full_losses = 0.5 * (np.asarray(full.f_test, np.float64) - yte) ** 2
    metrics: dict[str, dict[str, Any]] = {}
    for name in [*scores, "ntk_refit"]:
        metrics[name] = {"lds": first.lds[name],
                         "seconds": (secs["ntk"] + first.info["seconds_refit"]
                                     if name == "ntk_refit" else secs[name])}
    if "ntk_f0" in methods and "ntk_f0" not in scores:
        metrics["ntk_f0"] = {"not_applicable": "symmetric initialisation: f_0 = 0, so ntk_f0 "
                                               "equals ntk"}
    rng = np.random.default_rng(seed + 1)
    loo_index = np.sort(rng.choice(n, loo_points, replace=False))
    loo_actual = np.zeros((0, yte.size))
    if loo_index.size:
        t0 = time.perf_counter()
        with precision(dtype):
            loo = loo_retrain(net, xtr, ytr, xte, yte, lam, train_index=loo_index, settings=s,
                              full=full, store=sub("loo"), chunk_size=chunk_size,
                              show_progress=show_progress)
        loo_actual = loo.influence
        info["seconds_loo"] = time.perf_counter() - t0
        info["loo_retrain"] = loo.summary()
        for name, sc in scores.items():
            metrics[name]["loo_pearson"] = pearson(sc[loo_index], loo_actual)
            metrics[name]["loo_spearman"] = spearman(sc[loo_index], loo_actual)
        metrics["ntk_refit"]["loo_pearson"] = metrics["ntk"]["loo_pearson"]  # same exact LOO
        metrics["ntk_refit"]["loo_spearman"] = metrics["ntk"]["loo_spearman"]
    brit = None
    if brittleness_points:
        t0 = time.perf_counter()
        with precision(dtype):
            brit = brittleness(net, full, res, scores, xtr, ytr, xte, yte, lam,
                               test_points=brittleness_points, max_fraction=max_flip_fraction,
                               margin=flip_margin,
                               settings=coarse, store=sub("brittleness"), chunk_size=chunk_size,
                               show_progress=show_progress)
        info["brittleness"] = {"summary": brit.summary, **brit.info}
        info["seconds_brittleness"] = time.perf_counter() - t0
    noisy_mask = np.zeros(n, bool)
    self_infl: dict[str, np.ndarray] = {}
    if noise > 0:
        t0 = time.perf_counter()
        y_noisy, flipped = flip_labels(ytr, noise, seed=seed)
        noisy_mask[flipped] = True
        with precision(dtype):
            full_noisy = train(net, xtr, y_noisy, lam, settings=coarse)
        self_infl, _, _ = method_scores(net, full_noisy, xtr, y_noisy, xtr, y_noisy, lam,
                                        options=options, settings=coarse, methods=methods,
                                        self_influence=True, kernel=kernel)
        self_infl["loss"] = 0.5 * (np.asarray(full_noisy.f_train) - y_noisy) ** 2
        for name, v in self_infl.items():
            metrics.setdefault(name, {})["mislabel_auc"] = auc(v, noisy_mask)
            metrics[name]["mislabel_found_10pct"] = found_at(v, noisy_mask, 0.1)
            metrics[name]["mislabel_found_at_noise"] = found_at(v, noisy_mask, noise)
        for key in ("mislabel_auc", "mislabel_found_10pct", "mislabel_found_at_noise"):
            metrics["ntk_refit"][key] = metrics["ntk"][key]
        info["seconds_mislabel"] = time.perf_counter() - t0
    info["seconds_total"] = time.perf_counter() - t_all
    return AttributionResult(first.subset_indices, first.subset_outputs, first.subset_losses,
                             full_losses, scores, first.refit_losses, loo_index, loo_actual,
                             noisy_mask, self_infl, metrics, info, tuple(runs), brit)
