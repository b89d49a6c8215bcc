"""The LDS under the field's protocols: kept fraction, seed protocol and the retraining noise floor.

An LDS run retrains the net on ``M`` random subsets of ``ceil(alpha n)`` points and ranks, per
test point, each method's predicted subset losses against the retrained ones
(:func:`linear_datamodeling_score`). Two protocols decide where each retrain starts:

- ``fixed``: every retrain starts from the full run's ``W(0)`` (and keeps it as the ridge's
  centre), so the retrained losses differ only by the removed points;
- ``fresh``: every retrain draws its own ``W(0)`` (:func:`fresh_seeds`), as in the cross-seed
  protocols of TRAK and MAGIC, so the losses also carry the noise of the initialisation.

Under ``fresh`` the same subsets are retrained a second time from other seeds. The LDS of one
set of retrained losses against the other is the ``noise_floor``: how well one retraining
predicts another. A prediction free of initialisation noise (the exact refit, an additive
score) correlates with a single noisy retraining better than two noisy retrainings correlate
with each other; with independent noise in both, the correction for attenuation puts its
ceiling near the square root of the floor, per test point: ``noise_ceiling``, the mean over test
points of ``sqrt(max(rho_j, 0))`` (an estimate for ranks, not a bound).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..influence import InfluenceResult
from ..nets import FunctionalNet
from ..training import SolverSettings, TrainResult, retrain_without
from ._metrics import (
    additive_predictions,
    linear_datamodeling_score,
    ntk_refit_outputs,
    random_subsets,
    subset_mask,
)

SEED_PROTOCOLS = ("fixed", "fresh")


def seed_protocols(protocol: str) -> tuple[str, ...]:
    """The protocols a ``seed_protocol`` option asks for.

    Args:
      protocol: ``"fixed"``, ``"fresh"`` or ``"both"``.

    Returns:
      The protocols, ``fixed`` first.
    """
    if protocol == "both":
        return SEED_PROTOCOLS
    if protocol not in SEED_PROTOCOLS:
        raise InputError(f"seed_protocol must be 'fixed', 'fresh' or 'both', got {protocol!r}.")
    return (protocol,)


def fresh_seeds(count: int, seed: int, stream: int) -> np.ndarray:
    """Initialisation seeds of fresh-seed retrains, reproducible from ``(seed, stream)``.

    Drawn from ``[2**20, 2**31)``, apart from the small seeds a user gives the trained net and
    its TRAK ensemble (``net_seed, net_seed + 1, ...``).

    Args:
      count: number of seeds.
      seed: the benchmark's seed.
      stream: which set (one per alpha and repeat).

    Returns:
      ``(count,)`` int64 seeds.
    """
    rng = np.random.default_rng([int(seed), 7717, int(stream)])
    return rng.integers(2**20, 2**31, size=int(count), dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class LDSRun:
    """One LDS measurement: subsets at one kept fraction, retrained under one seed protocol.

    Attributes:
      alpha: the kept fraction (``1 - alpha`` of the points is dropped).
      protocol: ``"fixed"`` or ``"fresh"``.
      subset_indices: ``(M, k)`` kept indices of each subset.
      subset_outputs: ``(M, t)`` test outputs of the retrained nets.
      subset_losses: ``(M, t)`` their test losses ``1/2 (f_S - y)^2``.
      refit_losses: ``(M, t)`` test losses of the NTK refit on each subset.
      lds: method -> LDS (``ntk_refit`` included).
      noise_floor: under ``fresh``, the LDS of a second retraining of the same subsets from
        other seeds against the first (``None`` under ``fixed``).
      noise_ceiling: under ``fresh``, the mean over test points of ``sqrt(max(rho_j, 0))`` of
        the floor's per-point correlations: about the best LDS of a noise-free prediction.
      floor_losses: ``(M, t)`` that second retraining's losses (``None`` under ``fixed``).
      info: the retrains' summaries and the solver's error on the losses.
    """

    alpha: float
    protocol: str
    subset_indices: np.ndarray
    subset_outputs: np.ndarray
    subset_losses: np.ndarray
    refit_losses: np.ndarray
    lds: dict[str, float]
    noise_floor: float | None
    noise_ceiling: float | None
    floor_losses: np.ndarray | None
    info: dict[str, Any]

    @property
    def key(self) -> str:
        """``"<protocol>_alpha<alpha>"``, the prefix of its arrays in ``attribution.npz``."""
        return f"{self.protocol}_alpha{self.alpha:g}"

    def arrays(self) -> dict[str, np.ndarray]:
        """Its arrays, named ``<key>_<name>``."""
        out = {"subset_indices": self.subset_indices, "subset_outputs": self.subset_outputs,
               "subset_losses": self.subset_losses, "refit_losses": self.refit_losses}
        if self.floor_losses is not None:
            out["floor_losses"] = self.floor_losses
        return {f"{self.key}_{k}": v for k, v in out.items()}

    def record(self) -> dict[str, Any]:
        """The JSON-ready record: alpha, protocol, LDS per method, noise floor and the solver."""
        return {"alpha": self.alpha, "protocol": self.protocol,
                "dropped_fraction": 1.0 - self.alpha, "subsets": int(self.subset_indices.shape[0]),
                "kept_points": int(self.subset_indices.shape[1]), "lds": dict(self.lds),
                "noise_floor": self.noise_floor, "noise_ceiling": self.noise_ceiling, **self.info}


def loss_error_over_spread(ret: Any, losses: np.ndarray, y_test: np.ndarray) -> float:
    """The largest solver error on a subset's test loss over that test point's loss spread.

    A prediction error ``e`` moves a loss by about ``e |f - y|``; against the spread of the
    losses across subsets (per test point, the worst) it says how far the LDS ranks could move.
    The error is the retrain's last change of its predictions: an estimate, not a bound.

    Args:
      ret: the :class:`~ntk_influence.training.RetrainResult` of the subsets.
      losses: ``(M, t)`` its test losses.
      y_test: ``(t,)`` labels.

    Returns:
      The ratio.
    """
    err = ret.solver_error[:, None] * np.abs(ret.f_retrain_test - y_test[None])
    return float(np.max(err.max(0) / np.maximum(losses.std(0), np.finfo(float).tiny)))


def lds_run(net: FunctionalNet, full: TrainResult, x_train: np.ndarray, y_train: np.ndarray,
            x_test: np.ndarray, y_test: np.ndarray, lam: float, *, alpha: float,
            protocol: str, subsets: int, seed: int, stream: int,
            scores: dict[str, np.ndarray], ntk: InfluenceResult, settings: SolverSettings,
            store: Path | None, chunk_size: int | None, show_progress: bool) -> LDSRun:
    """Retrain on random subsets under one protocol and score every method by LDS.

    Args:
      net: the trained net's network (``net.theta0`` is the fixed protocol's ``W(0)``).
      full: its training run on every point.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      lam: the ridge of eq. (2).
      alpha: kept fraction.
      protocol: ``"fixed"`` or ``"fresh"``.
      subsets: number of subsets ``M`` (drawn from ``seed``: the same subsets under both
        protocols).
      seed: seed of the subsets and of the fresh initialisations.
      stream: index of this alpha (fresh seeds differ between alphas).
      scores: method -> ``(n, t)`` additive scores.
      ntk: the NTK influence result (its factorisation gives the exact refit).
      settings: solver settings of the subset retrains.
      store: folder for the resumable retraining chunks (None: nothing kept).
      chunk_size: retrains per vmapped chunk.
      show_progress: progress bars on stderr.

    Returns:
      :class:`LDSRun`.
    """
    n = x_train.shape[0]
    keep_idx = random_subsets(n, subsets, alpha, seed)
    keep = subset_mask(keep_idx, n)

    def retrain(tag: str, seeds: np.ndarray | None) -> Any:
        return retrain_without(net, x_train, y_train, x_test, y_test, lam, keep=keep,
                               settings=settings, full=full, seeds=seeds,
                               store=None if store is None else store / tag,
                               chunk_size=chunk_size, show_progress=show_progress)

    fresh = protocol == "fresh"
    ret = retrain(f"{protocol}_alpha{alpha:g}",
                  fresh_seeds(subsets, seed, 2 * stream) if fresh else None)
    losses = 0.5 * (ret.f_retrain_test - y_test[None]) ** 2
    full_losses = 0.5 * (np.asarray(full.f_test, np.float64) - y_test) ** 2
    lds = {name: linear_datamodeling_score(additive_predictions(sc, keep_idx, full_losses),
                                           losses)[0] for name, sc in scores.items()}
    t0 = time.perf_counter()
    refit = 0.5 * (ntk_refit_outputs(ntk, keep_idx) - y_test[None]) ** 2
    seconds_refit = time.perf_counter() - t0
    lds["ntk_refit"] = linear_datamodeling_score(refit, losses)[0]
    info: dict[str, Any] = {"seconds_refit": seconds_refit, "subset_retrain": ret.summary(),
                            "loss_error_over_spread": loss_error_over_spread(ret, losses, y_test)}
    floor = ceiling = floor_losses = None
    if fresh:
        again = retrain(f"fresh_floor_alpha{alpha:g}", fresh_seeds(subsets, seed, 2 * stream + 1))
        floor_losses = 0.5 * (again.f_retrain_test - y_test[None]) ** 2
        floor, per = linear_datamodeling_score(floor_losses, losses)
        ok = np.isfinite(per)
        ceiling = float(np.sqrt(np.maximum(per[ok], 0.0)).mean()) if ok.any() else float("nan")
        info["floor_retrain"] = again.summary()
    return LDSRun(float(alpha), protocol, keep_idx, ret.f_retrain_test, losses, refit, lds,
                  floor, ceiling, floor_losses, info)
