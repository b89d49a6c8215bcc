"""The ``attribution`` subcommand: LDS, LOO correlation and mislabel AUC of every method.

Writes ``attribution.npz`` (subset indices, outputs and losses, every method's scores and
self-influence, the NTK refit's losses, the flipped labels; per LDS run ``<protocol>_alpha<a>_*``
arrays), ``attribution.json`` (per method: ``lds`` of the first run, ``loo_pearson``,
``loo_spearman``, ``mislabel_auc``, ``seconds``; ``lds``: per run key and method, with the fresh
protocol's ``noise_floor`` and ``noise_ceiling``; ``info.lds_runs``: each run's record) and
``attribution.png``. The subset and leave-one-out retraining resume from ``DIR/retrain``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path
from typing import Any

from .. import io
from ..errors import InputError
from ._common import (
    Command,
    add_data_arguments,
    check_sample_size,
    count,
    count_or_zero,
    log,
    seed,
    settings_of,
)
from ._outdir import load_data_from_args


def _attribution_args(p: argparse.ArgumentParser) -> None:
    # deferred for start-up speed
    from ..attribution import METHODS

    add_data_arguments(p, n_train=200, n_test=50)
    p.add_argument("--width", type=count, default=16384,
                   help="hidden width, or channels of a cnn (default: %(default)s)")
    p.add_argument("--arch", default="two-layer",
                   help="two-layer (eq. 1), mlp:L[:ACT] or cnn:L[:ACT][:READOUT] with ACT relu, "
                        "erf or gelu and READOUT gap or flatten; a deeper family's NT kernel "
                        "gives ntk and ntk_refit, and a smooth "
                        "one (erf, gelu) is retrained to a stationary point (truncated Newton, "
                        "ridge-relative gradient <= 1e-8; --f-tol and --coarse-f-tol then do "
                        "not apply) (default: %(default)s)")
    p.add_argument("--subsets", type=count, default=100,
                   help="random subsets M retrained (default: %(default)s)")
    p.add_argument("--alpha", type=float, nargs="+", default=[0.5],
                   help="kept fraction of each subset, ceil(alpha n) points; several values "
                        "measure the LDS at each (0.5 0.99: half and 1%% of the points dropped; "
                        "default: 0.5)")
    p.add_argument("--seed-protocol", choices=["fixed", "fresh", "both"], default="fixed",
                   help="fixed: every subset retrain starts from the trained net's W(0); fresh: "
                        "each draws its own W(0), and the same subsets are retrained again from "
                        "other seeds for the noise floor; both: each LDS under both protocols "
                        "(default: %(default)s)")
    p.add_argument("--lam", type=float, default=0.1, help="ridge lambda > 0 (default: %(default)s)")
    p.add_argument("--kappa", type=float, default=1.0,
                   help="first-layer init scale (default: %(default)s)")
    p.add_argument("--init", choices=["symmetric", "standard"], default="symmetric",
                   help="symmetric: f_0 = 0 (ntk_f0 does not apply); standard: eq. (1) as is "
                        "(default: %(default)s)")
    p.add_argument("--net-seed", type=seed, default=0,
                   help="initialisation seed (default: %(default)s)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="additive methods to score (default: all)")
    p.add_argument("--loo-points", type=count_or_zero, default=20,
                   help="training points retrained one at a time for the LOO correlation, "
                        "every test point at once, at most --n-train; 0 skips (default: "
                        "%(default)s)")
    p.add_argument("--brittleness", type=count_or_zero, default=50,
                   help="correctly classified test points (the first ones) searched for the "
                        "smallest set of training points whose removal flips the prediction, by "
                        "every method, each set verified by retraining; 0 skips (default: "
                        "%(default)s)")
    p.add_argument("--max-flip-fraction", type=float, default=0.2,
                   help="the largest flip set searched, as a fraction of the training points "
                        "(default: %(default)s)")
    p.add_argument("--flip-margin", type=float, default=0.05,
                   help="how far past zero a method's predicted flip must land, in output "
                        "units: the net differs from its kernel model by O(1/sqrt(width)) "
                        "(default: %(default)s)")
    p.add_argument("--noise", type=float, default=0.1,
                   help="fraction of labels flipped for mislabel detection; 0 skips "
                        "(default: %(default)s)")
    p.add_argument("--trak-dim", type=count_or_zero, default=1024,
                   help="TRAK projection dimension; 0 for no projection (default: %(default)s)")
    p.add_argument("--trak-ensemble", type=count, default=4,
                   help="nets averaged by TRAK, from seeds net-seed, net-seed+1, ... "
                        "(default: %(default)s)")
    p.add_argument("--trak-projection", choices=["gaussian", "rademacher"], default="gaussian",
                   help="TRAK projection entries (default: %(default)s)")
    p.add_argument("--tracin-checkpoints", type=count, default=5,
                   help="TracIn-CP checkpoints (default: %(default)s)")
    p.add_argument("--tracin-steps", type=count, default=500,
                   help="first-order steps of the TracIn training path (default: %(default)s)")
    p.add_argument("--tracin-method", choices=["gd", "sgd"], default="gd",
                   help="optimiser of the TracIn path (default: %(default)s)")
    p.add_argument("--f-tol", type=float, default=1e-6,
                   help="stop the full run and the leave-one-out retrains, whose test "
                        "predictions are differenced, when they move less than this (default: "
                        "%(default)s)")
    p.add_argument("--coarse-f-tol", type=float, default=1e-4,
                   help="the same for the nets that are ranked or scored: the subset retrains "
                        "(whose test predictions move by ~0.1), TRAK's other nets and the "
                        "noisy-label nets (default: %(default)s)")
    p.add_argument("--max-steps", type=count, default=None,
                   help="solver iteration cap (default: the solver's own, 200 for GN)")
    p.add_argument("--chunk-size", type=count, default=None,
                   help="retrains per vmapped chunk (default: 1 on a CPU, else from a 4 GiB "
                        "budget)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="parameter dtype (default: %(default)s)")


def _check_sizes(args: argparse.Namespace, ds: Any) -> None:
    """Refuse counts and fractions the data cannot give, before any training.

    The subsets and the flipped labels are drawn here as the benchmark will draw them (both are
    cheap and seeded), so that their own checks run now rather than after the training.
    """
    # deferred for start-up speed
    from ..attribution import random_subsets
    from ..data import flip_labels
    from ..nets import architecture

    architecture(args.arch)  # an unknown family is refused before the data are used

    n, t = ds.x_train.shape[0], ds.x_test.shape[0]
    if args.loo_points > n:
        raise InputError(f"--loo-points {args.loo_points} is more than the {n} training points; "
                         f"lower it to at most {n} (or 0 to skip the LOO correlation), or raise "
                         "--n-train.")
    if args.loo_points:
        pairs = args.loo_points * t
        check_sample_size(pairs, f"--loo-points {args.loo_points} with {t} test point(s) gives "
                          f"{pairs} (training point, test point) pair(s), too few for the LOO "
                          "correlation; raise --loo-points (or 0 to skip it)")
    check_sample_size(args.subsets, f"--subsets {args.subsets} is too few for the LDS, a rank "
                      "correlation across subsets; raise --subsets")
    if not 0 < args.max_flip_fraction < 1:
        raise InputError(f"--max-flip-fraction {args.max_flip_fraction:g} must be in (0, 1).")
    if not (math.isfinite(args.flip_margin) and args.flip_margin >= 0):
        raise InputError(f"--flip-margin {args.flip_margin:g} must be a finite number >= 0.")
    if len(set(args.alpha)) != len(args.alpha):
        raise InputError(f"--alpha {' '.join(f'{a:g}' for a in args.alpha)} repeats a value; "
                         "give each kept fraction once.")
    for a in args.alpha:
        try:
            random_subsets(n, args.subsets, a, args.seed)
        except InputError as e:
            raise InputError(f"--alpha {a:g} with {n} training points: {e}") from e
    if args.noise:
        try:
            _, flipped = flip_labels(ds.y_train, args.noise, seed=args.seed)
        except InputError as e:
            raise InputError(f"--noise {args.noise:g}: {e}") from e
        if not 0 < flipped.size < n:
            raise InputError(f"--noise {args.noise:g} flips {flipped.size} of the {n} training "
                             "labels; mislabel detection needs flipped and clean labels: raise "
                             "--noise (below 1), or 0 to skip it.")


def _attribution_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    import matplotlib.pyplot as plt

    from ..attribution import ScoreOptions, attribution_benchmark
    from ..nets import architecture
    from ..plots import attribution_figure
    from ..training import SolverSettings

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_data_from_args(args)
    _check_sizes(args, ds)
    store = out / "retrain"
    if not args.resume and store.exists():
        shutil.rmtree(store)
    options = ScoreOptions(trak_dim=args.trak_dim or None, trak_ensemble=args.trak_ensemble,
                           trak_projection=args.trak_projection,
                           tracin_checkpoints=args.tracin_checkpoints,
                           tracin_steps=args.tracin_steps, tracin_method=args.tracin_method)
    if architecture(args.arch).smooth:
        settings = SolverSettings.stationary(
            **({} if args.max_steps is None else {"max_steps": args.max_steps}))
    else:
        settings = SolverSettings(f_tol=args.f_tol, max_steps=args.max_steps)
    t0 = time.perf_counter()
    log(args, f"attribution on {args.data} (n_train={ds.x_train.shape[0]}, width {args.width}, "
              f"{args.subsets} subsets of alpha={' '.join(f'{a:g}' for a in args.alpha)}, "
              f"{args.seed_protocol} seed protocol, lam={args.lam:g})")
    res = attribution_benchmark(
        ds.x_train, ds.y_train, ds.x_test, ds.y_test, width=args.width, lam=args.lam,
        subsets=args.subsets, alpha=tuple(args.alpha), seed_protocol=args.seed_protocol,
        seed=args.seed, net_seed=args.net_seed,
        kappa=args.kappa, symmetric=args.init == "symmetric", arch=args.arch,
        loo_points=args.loo_points,
        brittleness_points=args.brittleness, max_flip_fraction=args.max_flip_fraction,
        flip_margin=args.flip_margin,
        noise=args.noise, options=options, settings=settings, coarse_f_tol=args.coarse_f_tol,
        methods=tuple(args.methods), dtype=args.dtype, store=store, chunk_size=args.chunk_size,
        show_progress=not args.quiet)
    secs = time.perf_counter() - t0
    io.save_npz(out / "attribution.npz", **res.arrays())
    io.save_json(out / "attribution.json", {
        "command": "attribution", "settings": settings_of(args), "data": ds.describe(),
        "seconds": secs, "methods": res.metrics, "lds": res.lds_table(), "info": res.info,
        "note": "scores are in this library's sign (positive: removing the point raises the "
                "test loss); additive methods predict a subset's loss as the full loss plus the "
                "scores of the removed points; ntk_refit refits kernel ridge regression on the "
                "subset alone. lds: Spearman across subsets per test point, averaged."})
    plt.close(attribution_figure(res, path=out / "attribution.png"))
    for name, m in res.metrics.items():
        if "lds" in m or "mislabel_auc" in m:
            log(args, f"{name:>9}: " + "  ".join(f"{k}={v:.3f}" for k, v in m.items()
                                                  if isinstance(v, float)))
    for key, row in res.lds_table().items():
        floor, ceiling = row.pop("noise_floor"), row.pop("noise_ceiling")
        log(args, f"LDS {key}: " + "  ".join(f"{k}={v:.3f}" for k, v in row.items())
            + ("" if floor is None else f"  (noise floor {floor:.3f}, ceiling ~{ceiling:.3f})"))
    for name, b in res.info.get("brittleness", {}).get("summary", {}).items():
        log(args, f"flip sets {name:>9}: found {b['found']}/{b['of']}, median size "
                  f"{b['median_size']}, verified by retraining {b['verified']}")
    log(args, f"total {secs:.0f} s")
    return out


ATTRIBUTION = Command("attribution", "LDS, leave-one-out correlation and mislabel AUC of NTK "
                      "influence, the exact NTK refit, TRAK, TracIn and the IHVP on subset "
                      "retraining of the wide net", _attribution_args, _attribution_run)
