"""The ``clean`` subcommand: remove the training points most harmful to a validation set, retrain.

Flips ``--noise`` of the training labels (so the right answer is known), trains the net of
eq. (1), ranks the points by harm to a validation set drawn from the training pool (the exact
refit's greedy path, the NTK, the IHVP and TRAK scores, the training loss, a random order),
removes the first ``k`` of each (``k`` chosen by the exact refit's validation loss, never by the
test set), retrains the net without them and measures the test loss and accuracy. Writes
``clean.json`` (per method: the figures at the chosen ``k``; the curves), ``clean.npz`` (every
order and curve, the flipped labels) and ``clean.png`` (test loss, test accuracy and the share
of flipped labels removed against ``k``). The retraining resumes from ``DIR/retrain``.

``--trials R`` repeats the whole procedure ``R - 1`` more times, each with its own label flips
and validation draw (seed ``--seed + r``; same test set), retraining at the chosen ``k`` only;
``clean.json`` then holds every trial's figures and their pooled means, standard errors and
paired comparisons (:func:`~ntk_influence.attribution.summarise_trials`). Each finished trial is
saved in ``DIR/trials/`` (the first whole, as ``trial_0.npz``/``.json``) and reused by
``--resume``, also when ``--trials`` grows.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from ..errors import InputError
from ._common import Command, add_data_arguments, count, log, seed, settings_of
from ._outdir import claim_output


def _clean_args(p: argparse.ArgumentParser) -> None:
    # deferred for start-up speed
    from ..attribution import CLEAN_METHODS

    add_data_arguments(p, n_train=200, n_test=100)
    p.add_argument("--n-val", type=count, default=50,
                   help="validation points, drawn from the training pool apart from the "
                        "training points: they rank the points and choose k (default: "
                        "%(default)s)")
    p.add_argument("--noise", type=float, default=0.2,
                   help="fraction of the training labels flipped before cleaning, so that the "
                        "right answer is known; 0 cleans the labels as given (default: "
                        "%(default)s)")
    p.add_argument("--width", type=count, default=16384, help="hidden width (default: %(default)s)")
    p.add_argument("--lam", type=float, default=0.1, help="ridge lambda > 0 (default: %(default)s)")
    p.add_argument("--max-fraction", type=float, default=0.4,
                   help="the most points removed, as a fraction of --n-train (default: "
                        "%(default)s)")
    p.add_argument("--grid", type=count, default=9,
                   help="numbers of removed points retrained per method, evenly from 0 to the "
                        "most, plus the chosen k (default: %(default)s)")
    p.add_argument("--methods", nargs="+", choices=list(CLEAN_METHODS),
                   default=list(CLEAN_METHODS), help="rankings to compare (default: all)")
    p.add_argument("--net-seed", type=seed, default=0,
                   help="initialisation seed (default: %(default)s)")
    p.add_argument("--trak-ensemble", type=count, default=4,
                   help="nets averaged by TRAK (default: %(default)s)")
    p.add_argument("--f-tol", type=float, default=1e-4,
                   help="stop the full run and every retrain when the predictions move less "
                        "than this (default: %(default)s)")
    p.add_argument("--chunk-size", type=count, default=None,
                   help="retrains per vmapped chunk (default: 1 on a CPU)")
    p.add_argument("--trials", type=count, default=1,
                   help="independent trials (label flips and validation draw from --seed + r, "
                        "the same test set); the first gives the curves and the figure, the "
                        "others retrain at the chosen k only, and clean.json pools them all; "
                        "--resume reuses finished trials, so more can be added later "
                        "(default: %(default)s)")


def _clean_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    import matplotlib.pyplot as plt

    from ..attribution import CleaningResult, ScoreOptions, clean, summarise_trials
    from ..data import load_dataset
    from ..plots import cleaning_figure
    from ..training import SolverSettings

    if not 0 <= args.noise < 1:
        raise InputError(f"--noise {args.noise:g} must be in [0, 1).")
    if not 0 < args.max_fraction < 1:
        raise InputError(f"--max-fraction {args.max_fraction:g} must be in (0, 1).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data, n_train=args.n_train + args.n_val, n_test=args.n_test,
                      seed=args.seed, label_noise=args.label_noise, center=args.center)
    claim_output(args, ds, per_piece=("trials",))  # trial r does not depend on how many
    if not args.resume:
        for old in (out / "retrain", out / "trials"):
            if old.exists():
                shutil.rmtree(old)
    log(args, f"clean on {args.data} (n_train={args.n_train}, n_val={args.n_val}, "
              f"n_test={args.n_test}, {100 * args.noise:g}% labels flipped, width {args.width}"
              f"{f', {args.trials} trials' if args.trials > 1 else ''})")
    t0 = time.perf_counter()

    def trial(r: int, grid: int, store: Path) -> Any:
        s = args.seed + r
        perm = np.random.default_rng([s, 97]).permutation(ds.x_train.shape[0])
        tr, va = perm[:args.n_train], perm[args.n_train:]
        return clean(ds.x_train[tr], ds.y_train[tr], ds.x_train[va], ds.y_train[va], ds.x_test,
                     ds.y_test, noise=args.noise, width=args.width, lam=args.lam,
                     max_fraction=args.max_fraction, grid=grid, methods=tuple(args.methods),
                     seed=s, net_seed=args.net_seed,
                     options=ScoreOptions(trak_ensemble=args.trak_ensemble),
                     settings=SolverSettings(f_tol=args.f_tol), store=store,
                     chunk_size=args.chunk_size, show_progress=not args.quiet)

    first = out / "trials" / "trial_0"
    arr = io.load_saved(first.with_suffix(".npz")) if args.resume else None
    rec0 = None if arr is None else io.load_saved(first.with_suffix(".json"))
    if rec0 is not None:
        res = CleaningResult.from_saved(arr, rec0)
        log(args, f"trial 1/{args.trials}: reused from {first.with_suffix('.json')}")
    else:
        res = trial(0, args.grid, out / "retrain")
        io.save_npz(first.with_suffix(".npz"), **res.arrays())
        io.save_json(first.with_suffix(".json"), res.record())  # last: marks the trial done
    summaries = [res.summary]
    extra = []
    for r in range(1, args.trials):
        path = out / "trials" / f"trial_{r}.json"
        rec = io.load_saved(path)
        if rec is not None:
            log(args, f"trial {r + 1}/{args.trials}: reused from {path}")
        else:
            log(args, f"trial {r + 1}/{args.trials} (seed {args.seed + r})")
            t = trial(r, 1, out / "trials" / f"retrain_{r}")
            rec = {"seed": args.seed + r, "k_star": t.k_star, "methods": t.summary,
                   "n_noisy": t.info["n_noisy"]}
            io.save_json(path, rec)
        summaries.append(rec["methods"])
        extra.append(rec)
    pooled = summarise_trials(summaries) if args.trials > 1 else None
    secs = time.perf_counter() - t0
    io.save_npz(out / "clean.npz", **res.arrays())
    io.save_json(out / "clean.json", {
        "command": "clean", "settings": settings_of(args), "data": ds.describe(),
        "seconds": secs, "k_star": res.k_star, "ks": res.ks.tolist(), "methods": res.summary,
        "curves": {name: {"test_loss": res.test_loss[name].tolist(),
                          "test_acc": res.test_acc[name].tolist(),
                          "val_loss": res.val_loss[name].tolist(),
                          "precision": res.precision[name].tolist()} for name in res.orders},
        "refit_val_losses": res.refit_val_losses.tolist(),
        "cv_val_losses": res.cv_val_losses.tolist(), "info": res.info,
        **({"trials": {**pooled, "extra": extra}} if pooled is not None else {}),
        "note": "k_star minimises the exact refit's two-fold cross-validated validation loss; "
                "every method removes k_star points; test figures are of the net retrained "
                "without them."})
    plt.close(cleaning_figure(res, path=out / "clean.png"))
    for name, m in res.summary.items():
        log(args, f"{name:>9}: test accuracy {m['test_acc_before']:.3f} -> "
                  f"{m['test_acc_after']:.3f}, test loss {m['test_loss_before']:.4f} -> "
                  f"{m['test_loss_after']:.4f}, {m['noisy_removed']} of {res.k_star} removed "
                  "were flipped")
    if pooled is not None:
        for name, m in pooled["methods"].items():
            log(args, f"{name:>9} over {args.trials} trials: test accuracy gain "
                      f"{100 * m['test_acc_gain_mean']:+.1f} +- "
                      f"{100 * m['test_acc_gain_sem']:.1f} points, test loss after "
                      f"{m['test_loss_after_mean']:.4f} +- {m['test_loss_after_sem']:.4f}")
    log(args, f"total {secs:.0f} s")
    return out


CLEAN = Command("clean", "remove the training points most harmful to a validation set (exact "
                "NTK refit, NTK, IHVP, TRAK, loss, random), retrain the wide net and measure the "
                "test loss and accuracy", _clean_args, _clean_run)
