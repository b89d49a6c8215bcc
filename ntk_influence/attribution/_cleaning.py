"""Data cleaning verified by retraining: remove the most harmful points, retrain, measure the test.

:func:`clean` injects label noise (so the right answer is known), trains the net of eq. (1) on
the noisy labels, ranks the training points by their harm to a *validation* set and removes the
first ``k`` of each ranking, retraining the net without them
(:func:`~ntk_influence.training.retrain_without`, from the same ``W(0)``) and measuring the
validation and test loss and accuracy:

- ``ntk_refit``: the exact greedy path on the kernel refit (:func:`greedy_removal_path`: each
  step removes the point whose removal, with those before it, lowers the refit's validation
  loss most). It also chooses ``k``, by two-fold cross-validation on the validation set: a
  path fitted to one half is scored by the refit's loss on the other, both ways, and ``k`` is
  the step where the mean held-out loss is smallest (the path's own loss falls at every step,
  so it cannot choose ``k``);
- ``ntk``, ``ihvp``, ``trak``: points ordered by their summed score over the validation points,
  most harmful first (removing them lowers the validation loss most, by the method's estimate);
- ``loss``: the largest training loss first; ``random``: a seeded permutation.

The test set is used for nothing but the final measurement. One trial's test accuracy moves
by one test point per ``1/t``, so :func:`summarise_trials` pools repeated trials (other label
flips, other validation draws): each method's mean gain with its standard error, and the exact
refit's paired wins and loss differences against every other ranking.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._precision import precision
from .._validate import check_lam, check_whole
from ..data import flip_labels
from ..errors import InputError
from ..nets import two_layer_net
from ..training import SolverSettings, retrain_without, train
from ._benchmark import ScoreOptions, method_scores
from ._counterfactual import greedy_removal_path

CLEAN_METHODS = ("ntk_refit", "ntk", "ihvp", "trak", "loss", "random")


MEASURES = ("order", "val_loss", "val_acc", "test_loss", "test_acc", "precision")
"""The per-method tables of a :class:`CleaningResult`, as named in ``clean.npz``."""


@dataclasses.dataclass(frozen=True)
class CleaningResult:
    """Each method's removal order and the retrained net's losses and accuracies along it.

    Attributes:
      ks: ``(G,)`` the numbers of points removed (0 first), with ``k_star`` among them.
      k_star: the number removed, chosen by the exact refit's cross-validated loss.
      refit_val_losses: ``(max_k + 1,)`` the refit's mean validation loss along its path.
      cv_val_losses: ``(max_k + 1,)`` the mean held-out loss of the two half-fitted paths.
      orders: method -> ``(max_k,)`` removal order.
      val_loss: method -> ``(G,)`` mean validation loss of the retrained net at each ``k``.
      val_acc: method -> ``(G,)`` validation accuracy.
      test_loss: method -> ``(G,)`` mean test loss.
      test_acc: method -> ``(G,)`` test accuracy.
      precision: method -> ``(G,)`` fraction of the removed points whose label was flipped.
      noisy_mask: ``(n,)`` the flipped training labels.
      summary: method -> the figures at ``k_star`` (test accuracy and loss before and after,
        removed noisy points).
      info: settings, timings and the retrains' summary.
    """

    ks: np.ndarray
    k_star: int
    refit_val_losses: np.ndarray
    cv_val_losses: np.ndarray
    orders: dict[str, np.ndarray]
    val_loss: dict[str, np.ndarray]
    val_acc: dict[str, np.ndarray]
    test_loss: dict[str, np.ndarray]
    test_acc: dict[str, np.ndarray]
    precision: dict[str, np.ndarray]
    noisy_mask: np.ndarray
    summary: dict[str, dict[str, float]]
    info: dict[str, Any]

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``clean.npz``: ``ks``, ``refit_val_losses``, ``noisy_mask`` and
        ``<measure>_<method>`` (``order``, ``val_loss``, ``val_acc``, ``test_loss``,
        ``test_acc``, ``precision``)."""
        out = {"ks": self.ks, "refit_val_losses": self.refit_val_losses,
               "cv_val_losses": self.cv_val_losses, "noisy_mask": self.noisy_mask}
        for name, table in zip(MEASURES, self._tables(), strict=True):
            out.update({f"{name}_{k}": v for k, v in table.items()})
        return out

    def _tables(self) -> tuple[dict[str, np.ndarray], ...]:
        """The per-method tables, in the order of :data:`MEASURES`."""
        return (self.orders, self.val_loss, self.val_acc, self.test_loss, self.test_acc,
                self.precision)

    def record(self) -> dict[str, Any]:
        """What :meth:`arrays` leaves out, as JSON: ``k_star``, ``summary`` and ``info``."""
        return {"k_star": self.k_star, "summary": self.summary, "info": self.info}

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], record: dict[str, Any]
                   ) -> CleaningResult:
        """The result that :meth:`arrays` and :meth:`record` saved (a resumed run's trial).

        Args:
          arrays: :meth:`arrays`, read back.
          record: :meth:`record`, read back.

        Returns:
          :class:`CleaningResult`.
        """
        tables: dict[str, dict[str, np.ndarray]] = {m: {} for m in MEASURES}
        for key, v in arrays.items():
            m = next((m for m in MEASURES if key.startswith(m + "_")), None)
            if m is not None:
                tables[m][key[len(m) + 1:]] = v
        return cls(arrays["ks"], int(record["k_star"]), arrays["refit_val_losses"],
                   arrays["cv_val_losses"], tables["order"], tables["val_loss"],
                   tables["val_acc"], tables["test_loss"], tables["test_acc"],
                   tables["precision"], arrays["noisy_mask"], record["summary"], record["info"])


def _measure(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean loss ``1/2 (f - y)^2`` and sign accuracy."""
    return float(0.5 * np.mean((f - y) ** 2)), float(np.mean(np.sign(f) == y))


def clean(x_train: Any, y_train: Any, x_val: Any, y_val: Any, x_test: Any, y_test: Any, *,
          noise: float = 0.2, width: int = 16384, lam: float = 0.1, max_fraction: float = 0.3,
          grid: int = 7, methods: tuple[str, ...] = CLEAN_METHODS, seed: int = 0,
          net_seed: int = 0, options: ScoreOptions | None = None,
          settings: SolverSettings | None = None, dtype: Any = np.float64,
          store: str | os.PathLike[str] | None = None, chunk_size: int | None = None,
          show_progress: bool = True) -> CleaningResult:
    """Remove the points each method finds most harmful to a validation set; retrain; measure.

    Args:
      x_train: ``(n, d)`` unit-norm training inputs.
      y_train: ``(n,)`` +1/-1 labels (clean: ``noise`` of them are flipped here).
      x_val: ``(V, d)`` validation inputs (rank the points and choose ``k``).
      y_val: ``(V,)`` labels.
      x_test: ``(t, d)`` test inputs (measured only).
      y_test: ``(t,)`` labels.
      noise: fraction of training labels flipped before anything (0: the labels as given).
      width: hidden width of the net of eq. (1).
      lam: the ridge of eq. (2), ``> 0``.
      max_fraction: the most points removed, as a fraction of ``n``.
      grid: numbers of removed points retrained per method, evenly from 0 to the most (plus
        ``k_star``); 1 retrains at ``k_star`` only (repeated trials).
      methods: a subset of :data:`CLEAN_METHODS` (``ntk_refit`` always runs: it chooses ``k``).
      seed: seed of the flipped labels and the random order.
      net_seed: initialisation seed.
      options: :class:`ScoreOptions` (TRAK).
      settings: solver settings of the full run and every retrain (default Gauss-Newton,
        ``f_tol=1e-4``: a removal of many points moves the predictions by far more).
      dtype: parameter dtype.
      store: folder for the resumable retraining chunks (None: nothing kept).
      chunk_size: retrains per vmapped chunk.
      show_progress: progress bar on stderr.

    Returns:
      :class:`CleaningResult`.
    """
    lam = check_lam(lam)
    if lam <= 0:
        raise InputError("lam must be > 0 for the first-order methods.")
    bad = [m for m in methods if m not in CLEAN_METHODS]
    if bad:
        raise InputError(f"unknown methods {bad}; choose from {CLEAN_METHODS}.")
    methods = ("ntk_refit", *[m for m in methods if m != "ntk_refit"])
    grid = check_whole(grid, "grid", low=1)
    if np.shape(y_val)[0] < 4:
        raise InputError(f"cleaning needs at least 4 validation points (two halves choose k), "
                         f"got {np.shape(y_val)[0]}.")
    if not 0 < max_fraction < 1:
        raise InputError(f"max_fraction must be in (0, 1), got {max_fraction!r}.")
    xtr, ytr = np.asarray(x_train, np.float64), np.asarray(y_train, np.float64)
    xva, yva = np.asarray(x_val, np.float64), np.asarray(y_val, np.float64)
    xte, yte = np.asarray(x_test, np.float64), np.asarray(y_test, np.float64)
    if ytr.ndim != 1 or yva.ndim != 1 or yte.ndim != 1:
        raise InputError("cleaning needs scalar +1/-1 labels (binary data such as digits:3,8).")
    n = xtr.shape[0]
    max_k = max(1, int(max_fraction * n))
    s = (settings or SolverSettings(f_tol=1e-4)).resolved()
    t_all = time.perf_counter()
    y_noisy, flipped = flip_labels(ytr, noise, seed=seed) if noise else (ytr, np.zeros(0, int))
    noisy = np.zeros(n, bool)
    noisy[flipped] = True
    x_eval = np.concatenate([xva, xte])
    nv = xva.shape[0]
    with precision(dtype):
        net = two_layer_net(xtr.shape[1], width, symmetric=True, seed=net_seed,
                            param_dtype=dtype)
        full = train(net, xtr, y_noisy, lam, x_test=x_eval, settings=s)
    scores, secs, res = method_scores(
        net, full, xtr, y_noisy, xva, yva, lam, options=options, settings=s,
        methods=tuple(m for m in methods if m in ("ntk", "ihvp", "trak")))
    t0 = time.perf_counter()
    order_refit, refit_losses, _ = greedy_removal_path(res, yva, max_k)
    halves = np.array_split(np.random.default_rng([seed, 53]).permutation(nv), 2)
    held = [greedy_removal_path(res, yva, max_k, fit=h)[2] * (nv - h.size) for h in halves]
    cv_losses = np.sum(held, axis=0) / nv
    secs["ntk_refit"] = secs["ntk"] + time.perf_counter() - t0
    k_star = int(np.argmin(cv_losses))
    orders = {"ntk_refit": order_refit}
    for name in methods:
        if name in scores:
            orders[name] = np.argsort(scores[name].sum(axis=1), kind="stable")[:max_k]
        elif name == "loss":
            orders[name] = np.argsort(-(np.asarray(full.f_train) - y_noisy) ** 2,
                                      kind="stable")[:max_k]
        elif name == "random":
            orders[name] = np.random.default_rng([seed, 31]).permutation(n)[:max_k]
    ks = np.unique(np.concatenate([np.round(np.linspace(0, max_k, grid)).astype(int),
                                   [0, k_star]]))
    jobs = [(name, k) for name in orders for k in ks if k > 0]
    ret = retrain_without(net, xtr, y_noisy, x_eval, np.concatenate([yva, yte]), lam,
                          remove=[orders[name][:k] for name, k in jobs], settings=s, full=full,
                          store=None if store is None else Path(store),
                          chunk_size=chunk_size, show_progress=show_progress)
    f_full = np.asarray(full.f_test, np.float64)
    before = {"val": _measure(f_full[:nv], yva), "test": _measure(f_full[nv:], yte)}
    tables: dict[str, dict[str, np.ndarray]] = {
        key: {name: np.zeros(ks.size) for name in orders}
        for key in ("val_loss", "val_acc", "test_loss", "test_acc", "precision")}
    for name in orders:
        tables["val_loss"][name][0], tables["val_acc"][name][0] = before["val"]
        tables["test_loss"][name][0], tables["test_acc"][name][0] = before["test"]
    for row, (name, k) in enumerate(jobs):
        i = int(np.searchsorted(ks, k))
        f = ret.f_retrain_test[row]
        tables["val_loss"][name][i], tables["val_acc"][name][i] = _measure(f[:nv], yva)
        tables["test_loss"][name][i], tables["test_acc"][name][i] = _measure(f[nv:], yte)
        tables["precision"][name][i] = float(noisy[orders[name][:k]].mean())
    i_star = int(np.searchsorted(ks, k_star))
    summary = {name: {"test_acc_before": before["test"][1],
                      "test_acc_after": float(tables["test_acc"][name][i_star]),
                      "test_loss_before": before["test"][0],
                      "test_loss_after": float(tables["test_loss"][name][i_star]),
                      "val_loss_after": float(tables["val_loss"][name][i_star]),
                      "noisy_removed": int(noisy[orders[name][:k_star]].sum()),
                      "seconds_ranking": secs.get(name, 0.0)} for name in orders}
    info = {"n_train": n, "n_val": nv, "n_test": int(yte.size), "noise": noise,
            "n_noisy": int(noisy.sum()), "width": width, "lam": lam, "max_k": max_k,
            "k_star": k_star, "refit_val_loss_at_k_star": float(refit_losses[k_star]),
            "cv_val_loss_at_k_star": float(cv_losses[k_star]),
            "settings": dataclasses.asdict(s), "retrain": ret.summary(),
            "seconds_total": time.perf_counter() - t_all}
    return CleaningResult(ks, k_star, refit_losses, cv_losses, orders, tables["val_loss"],
                          tables["val_acc"], tables["test_loss"], tables["test_acc"],
                          tables["precision"], noisy, summary, info)


def summarise_trials(summaries: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Pool repeated cleaning trials: mean gains with standard errors, and paired comparisons.

    Args:
      summaries: one :attr:`CleaningResult.summary` per trial (each trial its own label flips
        and validation draw), every one with the same methods, ``ntk_refit`` among them.

    Returns:
      ``{"trials": R, "methods": {name: {"test_acc_gain_mean", "test_acc_gain_sem",
      "test_loss_after_mean", "test_loss_after_sem", "noisy_removed_mean"}}, "exact_vs":
      {name: {"acc_wins", "acc_ties", "acc_losses", "loss_diff_mean", "loss_diff_sem"}}}``,
      where a gain is accuracy after minus before, ``sem`` is ``std / sqrt(R)`` (``ddof=1``;
      NaN for one trial), wins count the trials where ``ntk_refit``'s test accuracy after
      removal is higher than the other ranking's, and ``loss_diff`` is ``ntk_refit``'s test
      loss after removal minus the other's (negative: the exact refit's choice is better).
    """
    if not summaries:
        raise InputError("no cleaning trials to summarise.")
    names = list(summaries[0])
    if "ntk_refit" not in names or any(list(t) != names for t in summaries):
        raise InputError("every trial needs the same methods, ntk_refit among them.")
    r = len(summaries)

    def col(name: str, key: str) -> np.ndarray:
        return np.array([t[name][key] for t in summaries], np.float64)

    def sem(v: np.ndarray) -> float:
        return float(np.std(v, ddof=1) / np.sqrt(r)) if r > 1 else float("nan")

    methods = {}
    for name in names:
        gain = col(name, "test_acc_after") - col(name, "test_acc_before")
        loss = col(name, "test_loss_after")
        methods[name] = {"test_acc_gain_mean": float(gain.mean()), "test_acc_gain_sem": sem(gain),
                         "test_loss_after_mean": float(loss.mean()),
                         "test_loss_after_sem": sem(loss),
                         "noisy_removed_mean": float(col(name, "noisy_removed").mean())}
    exact_acc, exact_loss = col("ntk_refit", "test_acc_after"), col("ntk_refit", "test_loss_after")
    versus = {}
    for name in names:
        if name == "ntk_refit":
            continue
        acc, diff = col(name, "test_acc_after"), exact_loss - col(name, "test_loss_after")
        versus[name] = {"acc_wins": int(np.sum(exact_acc > acc)),
                        "acc_ties": int(np.sum(exact_acc == acc)),
                        "acc_losses": int(np.sum(exact_acc < acc)),
                        "loss_diff_mean": float(diff.mean()), "loss_diff_sem": sem(diff)}
    return {"trials": r, "methods": methods, "exact_vs": versus}
