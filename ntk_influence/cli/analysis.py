"""Subcommands for the paper's analyses: ``lambda-sweep`` (Figure 2), ``density`` (Figure 3,
Theorem 4), ``examples`` (Figure 4), ``complexity`` (Figure 5), ``dynamics`` (Figure 6) and
``label-noise`` (Figure 7).

Each writes ``.npz`` arrays, a ``summary.json`` and PNG figures to ``--out DIR`` atomically. The
long ones (the lambda sweep and the exact time-resolved influence) save every finished piece in
``DIR/work`` and, with ``--resume``, skip what is finished; a command whose ``summary.json`` exists
with the same settings is skipped entirely under ``--resume``. The work itself is done by the
library's drivers (:mod:`ntk_influence.experiments`, :mod:`ntk_influence.influence`), which take the
result store; library modules are imported inside the runners, for start-up speed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from ..errors import InputError
from ._common import Command, add_data_arguments, count, count_or_zero, log, settings_of
from ._outdir import NOT_CONTENT, load_data_from_args
from ._report import close_figure

DEFAULT_TIMES = (*np.geomspace(0.01, 1000.0, 11).tolist(), float("inf"))


# ------------------------------------------------------------------ shared helpers

def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in settings_of(args).items() if k not in NOT_CONTENT}


def _finished(args: argparse.Namespace, out: Path) -> bool:
    """Under ``--resume``, whether ``out/summary.json`` exists with the same settings."""
    path = out / "summary.json"
    if not (args.resume and path.exists()):
        return False
    try:
        summary = io.load_json(path)
    except (OSError, ValueError):
        summary = None
    old = summary.get("settings") if isinstance(summary, dict) else None
    if not isinstance(old, dict):
        log(args, f"{path} is damaged; computing again")
        return False
    same = {k: v for k, v in old.items() if k not in NOT_CONTENT} == \
        io.jsonable(_settings(args))
    if same:
        log(args, f"{args.command} already finished in {out}; skipping (--resume)")
    return same


class FirstTestPoints(list):  # type: ignore[type-arg]
    """The default test indices of an option (``0 1 2 ...``), cut to the test points there are.

    A value given on the command line or in a config file is a plain list and is checked
    instead: an index outside the test set is refused.
    """


def _test_points(values: list[int] | None, ds: Any, option: str) -> list[int] | None:
    """``values`` checked against the loaded test set (before any work); a default is cut."""
    t = ds.x_test.shape[0]
    if isinstance(values, FirstTestPoints):
        return [j for j in values if j < t]
    bad = [j for j in values or [] if not 0 <= j < t]
    if bad:
        raise InputError(f"{option} {' '.join(map(str, bad))}: outside the {t} test points "
                         f"(0 to {t - 1}); pick indices in that range or raise --n-test.")
    return values


def _kernel_args(p: argparse.ArgumentParser, lam: float = 0.1) -> None:
    add_data_arguments(p)
    p.add_argument("--lam", type=float, default=lam, help="ridge lambda (default: %(default)s)")
    p.add_argument("--kernel", default="paper", choices=["paper", "paper-nt", "paper-both"],
                   help="paper: eq. (4), first layer trained; paper-both: both layers "
                        "(default: %(default)s)")


def _kernels(args: argparse.Namespace, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    # deferred for start-up speed
    from ..kernels import kernel_matrix

    return kernel_matrix(args.kernel, ds.x_train), kernel_matrix(args.kernel, ds.x_train,
                                                                 ds.x_test)


def _times_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--times", type=float, nargs="+", default=list(DEFAULT_TIMES), metavar="T",
                   help="training times (inf = end of training; default: 11 points from 0.01 to "
                        "1000 and inf)")
    p.add_argument("--time-unit", default="flow", choices=["flow", "paper"],
                   help="flow: gradient flow on eq. (2) with the sum loss (t = learning rate x "
                        "steps); paper: eq. (20)'s mean-loss time, t_flow = 2t/n "
                        "(default: %(default)s)")
    p.add_argument("--chunk-size", type=count, default=None,
                   help="left-out points per batched eigh (default: as many as fit about 250 "
                        "MB, at most 64)")


def _exact_store(args: argparse.Namespace, out: Path, kt: np.ndarray, y: np.ndarray,
                 times: np.ndarray) -> tuple[int, Any]:
    """Chunk size and ``out/work`` store of the exact time-``t`` influence's chunks."""
    # deferred for start-up speed
    from ..influence import auto_chunk_size

    n, m = kt.shape
    nk = 1 if y.ndim == 1 else y.shape[1]
    bs = args.chunk_size or max(1, min(auto_chunk_size(n, len(times), m, nk), 64))
    return bs, io.ResultStore(out / "work", meta={"settings": _settings(args), "chunk": bs},
                              resume=args.resume)


# ------------------------------------------------------------------ lambda-sweep (Figure 2)

def _sweep_args(p: argparse.ArgumentParser) -> None:
    _kernel_args(p)
    p.add_argument("--lams", type=float, nargs="+", default=None, metavar="LAM",
                   help="ridges to sweep (default: 2^-4 ... 2^4)")


def _sweep_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..experiments import DEFAULT_LAMS, lambda_sweep
    from ..plots import lambda_sweep_plot

    out = Path(args.out)
    lams = list(DEFAULT_LAMS if args.lams is None else args.lams)
    if not lams or not all(np.isfinite(lam) and lam > 0 for lam in lams):
        raise InputError(f"--lams must be positive finite ridges, got {lams}; e.g. --lams 0.0625 "
                         "1 16.")
    ds = load_data_from_args(args)
    if _finished(args, out):
        return out
    t0 = time.perf_counter()
    k, kt = _kernels(args, ds)
    store = io.ResultStore(out / "work", meta={"settings": _settings(args)}, resume=args.resume)
    sw = lambda_sweep(k, kt, ds.y_train, ds.y_test, lams, show_progress=not args.quiet,
                      store=store)
    io.save_npz(out / "lambda_sweep.npz", lams=sw.lams, mean_error_rate=sw.mean_error_rate,
                median_error_rate=sw.median_error_rate, lower=sw.lower, upper=sw.upper,
                leverage=sw.leverage, mean_leverage=sw.mean_leverage,
                bound_violations=sw.bound_violations, bound_min_slack=sw.bound_min_slack)
    fig = lambda_sweep_plot(sw, title=f"{ds.name}, n={ds.x_train.shape[0]}",
                            path=out / "fig2_lambda_sweep.png")
    close_figure(fig)
    io.save_json(out / "summary.json", {
        "command": "lambda-sweep", "settings": _settings(args), "data": ds.describe(),
        "lambda_min": sw.lambda_min, "lambda_max": sw.lambda_max,
        "error_rate": "|I - Ihat| / |I| over all (train, test) pairs with I != 0",
        "per_lambda": [{"lam": float(lam), "mean_error_rate": float(sw.mean_error_rate[i]),
                        "median_error_rate": float(sw.median_error_rate[i]),
                        "theorem3_lower": float(sw.lower[i]), "upper": float(sw.upper[i]),
                        "mean_leverage": float(sw.mean_leverage[i]),
                        "eq16_violations": int(sw.bound_violations[i]),
                        "leverage_in_bounds": bool(sw.leverage_in_bounds[i])}
                       for i, lam in enumerate(sw.lams)],
        "finite_net": "not computed (the lambda_sweep(net_error=...) hook takes a finite-net "
                      "IHVP error per lambda)",
        "seconds": time.perf_counter() - t0})
    log(args, f"lambda sweep over {len(lams)} ridges; eq. (16) violations: "
              f"{int(sw.bound_violations.sum())}")
    return out


# ------------------------------------------------------------------ density (Figure 3)

def _density_args(p: argparse.ArgumentParser) -> None:
    _kernel_args(p)
    p.add_argument("--dim", type=count, default=10,
                   help="PCA dimension before the KDE when d is larger (default: %(default)s)")
    p.add_argument("--bandwidth", default="scott",
                   help="scott | silverman | a positive factor (default: %(default)s)")
    p.add_argument("--loo-density", action="store_true",
                   help="leave each point's own kernel out of its density")
    p.add_argument("--statistic", default="median", choices=["median", "mean"],
                   help="per-point error rate over test points (default: %(default)s)")
    g = p.add_argument_group("Theorem 4 mixture experiment")
    g.add_argument("--no-mixture", action="store_true", help="skip the mixture experiment")
    g.add_argument("--mixture-p", type=float, nargs="+",
                   default=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04],
                   help="component proportions (default: %(default)s)")
    g.add_argument("--mixture-n", type=count, default=300,
                   help="mixture training points (default: %(default)s)")
    g.add_argument("--mixture-d", type=count, default=20,
                   help="mixture dimension (default: %(default)s)")
    g.add_argument("--mixture-r", type=float, default=0.6,
                   help="mixture radius bound r (default: %(default)s)")
    g.add_argument("--mixture-repeats", type=count, default=3,
                   help="independent mixture draws averaged (default: %(default)s)")


def _density_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..experiments import density_vs_error, mixture_experiment
    from ..influence import ntk_influence
    from ..plots import density_plot, mixture_plot

    out = Path(args.out)
    bw: Any = args.bandwidth
    if bw not in ("scott", "silverman"):
        try:
            bw = float(bw)
        except ValueError as e:
            raise InputError(f"--bandwidth must be scott, silverman or a number, got {bw!r}.") from e
        if not (np.isfinite(bw) and bw > 0):
            raise InputError(f"--bandwidth must be scott, silverman or a positive factor, got "
                             f"{args.bandwidth!r}.")
    ds = load_data_from_args(args)
    if _finished(args, out):
        return out
    t0 = time.perf_counter()
    res = ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, args.lam,
                        kernel=args.kernel)
    da = density_vs_error(ds.x_train, res, dim=args.dim, bandwidth=bw,
                          leave_one_out=args.loo_density, statistic=args.statistic)
    io.save_npz(out / "density.npz", log_density=da.log_density, error_rate=da.error_rate,
                leverage=da.leverage, train_index=ds.train_index)
    close_figure(density_plot(da, title=f"{ds.name}, lam={args.lam:g}", path=out / "fig3_density.png"))
    summary: dict[str, Any] = {
        "command": "density", "settings": _settings(args), "data": ds.describe(),
        "kde": {"dim": da.kde.dim, "pca": da.kde.pca,
                "explained_variance": da.kde.explained_variance,
                "bandwidth_rule": da.kde.bandwidth_rule,
                "bandwidth_factor": da.kde.bandwidth_factor,
                "leave_one_out": da.kde.leave_one_out},
        "error_rate": f"{da.statistic} over test points of |I - Ihat| / |I|",
        "spearman_density_error": da.spearman_density_error,
        "pvalue_density_error": da.pvalue_density_error,
        "spearman_leverage_error": da.spearman_leverage_error,
        "spearman_density_leverage": da.spearman_density_leverage}
    if not args.no_mixture:
        mx = mixture_experiment(args.mixture_p, n=args.mixture_n, d=args.mixture_d,
                                r=args.mixture_r, lam=args.lam, seed=args.seed,
                                repeats=args.mixture_repeats, kernel=args.kernel)
        io.save_npz(out / "mixture.npz", p=mx.p, component_error=mx.component_error,
                    component_leverage=mx.component_leverage, error_rate=mx.error_rate,
                    leverage=mx.leverage, component=mx.component)
        close_figure(mixture_plot(mx, title=f"Definition 1 mixture, lam={args.lam:g}",
                            path=out / "theorem4_mixture.png"))
        summary["mixture"] = {"p": mx.p, "component_error": mx.component_error,
                              "component_leverage": mx.component_leverage,
                              "spearman_p_error": mx.spearman_p_error, "r": mx.r,
                              "component_error_per_repeat": mx.component_error_per_repeat,
                              "centres": "random orthonormal", "labels": "+1/-1 by component"}
    summary["seconds"] = time.perf_counter() - t0
    io.save_json(out / "summary.json", summary)
    log(args, f"Spearman(density, IHVP error rate) = {da.spearman_density_error:.3f}")
    return out


# ------------------------------------------------------------------ examples (Figure 4)

def _examples_args(p: argparse.ArgumentParser) -> None:
    _kernel_args(p)
    p.add_argument("--test-index", type=count_or_zero, nargs="+",
                   default=FirstTestPoints([0, 1, 2, 3]),
                   help="test points to explain, each below --n-test (default: %(default)s, or "
                        "those below --n-test)")
    p.add_argument("--k", type=count, default=5, help="images per kind (default: %(default)s)")


def _examples_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..influence import influential_examples, ntk_influence
    from ..plots import influential_examples_plot

    out = Path(args.out)
    ds = load_data_from_args(args)
    test_index = _test_points(args.test_index, ds, "--test-index")
    if args.k > ds.x_train.shape[0]:
        raise InputError(f"--k {args.k} is more than the {ds.x_train.shape[0]} training points; "
                         "lower --k or raise --n-train.")
    if _finished(args, out):
        return out
    res = ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, args.lam,
                        kernel=args.kernel)
    ex = influential_examples(res, test_index, args.k)
    io.save_npz(out / "examples.npz", test_index=ex.test_index, helpful=ex.helpful,
                harmful=ex.harmful, uninfluential=ex.uninfluential,
                helpful_value=ex.helpful_value, harmful_value=ex.harmful_value,
                uninfluential_value=ex.uninfluential_value)
    figure = None
    d = ds.x_train.shape[1]
    if ds.image_shape is not None or int(round(np.sqrt(d))) ** 2 == d:
        close_figure(influential_examples_plot(ex, ds.x_train, ds.x_test, ds.image_shape,
                                         title=f"{ds.name}: helpful | harmful | uninfluential "
                                               "(#index (class), influence I)",
                                         path=out / "fig4_examples.png",
                                         class_train=ds.class_train, class_test=ds.class_test))
        figure = "fig4_examples.png"
    io.save_json(out / "summary.json", {
        "command": "examples", "settings": _settings(args), "data": ds.describe(),
        "figure": figure,
        "sign_convention": "influence > 0: removing the point raises the test loss (helpful)",
        "per_test": [{"test_index": int(j), "helpful": ex.helpful[r], "harmful": ex.harmful[r],
                      "uninfluential": ex.uninfluential[r]}
                     for r, j in enumerate(ex.test_index)]})
    return out


# ------------------------------------------------------------------ complexity (Figure 5)

def _complexity_args(p: argparse.ArgumentParser) -> None:
    _kernel_args(p)
    p.add_argument("--groups", type=count, default=10, help="number of groups (default: 10)")
    p.add_argument("--reduce", default="sum", choices=["sum", "mean"],
                   help="influence over test points, summed or averaged (default: %(default)s)")
    p.add_argument("--complexity-lam", type=float, default=0.0,
                   help="ridge in B of eq. (19); 0 is the paper's K^-1 (a small ridge is added "
                        "and reported if K is ill-conditioned) (default: %(default)s)")
    p.add_argument("--test-index", type=count_or_zero, nargs="+", default=None,
                   help="test points the influence is reduced over (default: all)")


def _complexity_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..influence import complexity_of_influence_groups, influence_from_kernels
    from ..plots import complexity_plot

    out = Path(args.out)
    ds = load_data_from_args(args)
    _test_points(args.test_index, ds, "--test-index")
    if args.groups > ds.x_train.shape[0]:
        raise InputError(f"--groups {args.groups} is more than the {ds.x_train.shape[0]} "
                         "training points; lower --groups or raise --n-train.")
    if _finished(args, out):
        return out
    k, kt = _kernels(args, ds)
    res = influence_from_kernels(k, kt, ds.y_train, ds.y_test, args.lam)
    g, c = complexity_of_influence_groups(k, ds.y_train, res, args.groups, args.complexity_lam,
                                          test_index=args.test_index, reduce=args.reduce)
    io.save_npz(out / "complexity.npz", complexity=c.values, norm_rest=c.norm_rest,
                group_score=g.group_score, score=g.score,
                group_of_point=np.concatenate([np.full(x.size, i) for i, x in
                                               enumerate(g.groups)])[np.argsort(
                                                   np.concatenate(g.groups))])
    close_figure(complexity_plot(g, c, title=f"{ds.name}, lam={args.lam:g}",
                           path=out / "fig5_complexity.png"))
    io.save_json(out / "summary.json", {
        "command": "complexity", "settings": _settings(args), "data": ds.describe(),
        "grouping": f"training points sorted by their influence ({g.reduce} over "
                    f"{g.test_index.size} test points); group 0 most harmful, "
                    f"group {len(g.groups) - 1} most helpful",
        "B": c.matrix, "lam_used": c.lam_used, "cond": c.cond, "lambda_min": c.lambda_min,
        "lambda_max": c.lambda_max, "norm_full": c.norm_full,
        "groups": [{"group": i, "size": int(c.group_sizes[i]), "complexity": float(c.values[i]),
                    "mean_influence": float(g.group_score[i])} for i in range(len(c))]})
    log(args, f"complexity per group: {np.round(c.values, 4).tolist()} (B = {c.matrix})")
    return out


# ------------------------------------------------------------------ dynamics (Figure 6)

def _dynamics_args(p: argparse.ArgumentParser) -> None:
    _kernel_args(p)
    _times_arg(p)
    p.add_argument("--method", default="both", choices=["exact", "first-order", "both"],
                   help="exact (batched eigh per left-out point), first-order (one eigh), or "
                        "both with their agreement (default: %(default)s)")
    p.add_argument("--by", default="abs", choices=["abs", "helpful", "harmful"],
                   help="what 'most influential' means (default: largest |I|)")
    p.add_argument("--show", type=count_or_zero, nargs="+",
                   default=FirstTestPoints([0, 1, 2, 3, 4]),
                   help="test points drawn in Figure 6, each below --n-test (default: "
                        "%(default)s, or those below --n-test)")


def _dynamics_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..influence import check_times, most_influential, time_influence_from_kernels
    from ..plots import most_influential_plot, time_agreement_plot

    out = Path(args.out)
    times = check_times(args.times)
    ds = load_data_from_args(args)
    show = _test_points(args.show, ds, "--show")
    if _finished(args, out):
        return out
    t0 = time.perf_counter()
    k, kt = _kernels(args, ds)
    bs, store = _exact_store(args, out, kt, ds.y_train, times) if args.method != "first-order" \
        else (None, None)
    fo = time_influence_from_kernels(k, kt, ds.y_train, ds.y_test, args.lam, times,
                                     time_unit=args.time_unit, method=args.method, chunk_size=bs,
                                     show_progress=not args.quiet, store=store)
    exact = fo.influence
    main = exact if exact is not None else fo.first_order
    top = most_influential(main, by=args.by)
    arrays: dict[str, Any] = {"times": times, "flow_times": fo.flow_times, "f_test": fo.f_test,
                              "most_influential": top}
    if exact is not None:
        arrays["influence"] = exact
    if args.method in ("first-order", "both"):
        arrays["first_order"] = fo.first_order
    io.save_npz(out / "dynamics.npz", **arrays)
    close_figure(most_influential_plot(top, times, ds.x_train, ds.x_test, ds.image_shape,
                                 test_index=show,
                                 title=f"{ds.name}: most influential over time (#index (class))",
                                 path=out / "fig6_most_influential.png",
                                 class_train=ds.class_train, class_test=ds.class_test))
    summary: dict[str, Any] = {
        "command": "dynamics", "settings": _settings(args), "data": ds.describe(),
        "time_unit": args.time_unit, "times": times, "flow_times": fo.flow_times,
        "influence": "exact" if exact is not None else "first-order",
        "most_influential_rule": args.by,
        "changes_of_most_influential": [int(np.sum(top[i] != top[i - 1]))
                                        for i in range(1, len(times))]}
    if args.method == "both":
        ag = fo.agreement
        summary["agreement_first_order_vs_exact"] = {
            "rel_error": ag.rel_error, "pearson": ag.pearson, "spearman": ag.spearman,
            "slope": ag.slope, "top1_match": ag.top1_match}
        close_figure(time_agreement_plot(fo, title="first order vs exact",
                                   path=out / "time_agreement.png"))
    summary["seconds"] = time.perf_counter() - t0
    io.save_json(out / "summary.json", summary)
    return out


# ------------------------------------------------------------------ label-noise (Figure 7)

def _noise_args(p: argparse.ArgumentParser) -> None:
    _kernel_args(p)
    _times_arg(p)
    p.add_argument("--noise", type=float, default=0.4,
                   help="fraction of training labels to flip, in [0, 1) (default: %(default)s)")
    p.add_argument("--method", default="exact", choices=["exact", "first-order"],
                   help="influence used to rank (default: %(default)s)")
    p.add_argument("--by", default="abs", choices=["abs", "helpful", "harmful"],
                   help="what 'most influential' means (default: largest |I|)")
    p.add_argument("--top-k", type=count, default=1,
                   help="most influential points counted per test point (default: 1)")


def _noise_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..data import check_fraction
    from ..experiments import label_noise_experiment
    from ..influence import check_times
    from ..plots import label_noise_plot

    out = Path(args.out)
    frac = check_fraction(args.noise, "--noise")
    times = check_times(args.times)
    if args.label_noise:
        raise InputError("label-noise flips labels itself; use --noise, not --label-noise.")
    ds = load_data_from_args(args)
    if _finished(args, out):
        return out
    t0 = time.perf_counter()
    k, kt = _kernels(args, ds)
    bs, store = _exact_store(args, out, kt, ds.y_train, times) if args.method == "exact" \
        else (None, None)
    res = label_noise_experiment(ds.x_train, ds.y_train, ds.x_test, ds.y_test, args.lam, times,
                                 fraction=frac, seed=args.seed, k_train=k, k_test=kt,
                                 time_unit=args.time_unit, method=args.method, by=args.by,
                                 k=args.top_k, chunk_size=bs, show_progress=not args.quiet,
                                 store=store)
    sh, noisy = res.shares, res.noisy_index
    io.save_npz(out / "label_noise.npz", times=res.times, share_clean=sh.share_clean,
                share_noisy=sh.share_noisy, most_influential=res.most_influential,
                noisy_index=noisy, y_train_noisy=res.y_train_noisy, influence=res.influence)
    close_figure(label_noise_plot(res, title=f"{ds.name}: {frac:.0%} labels flipped",
                            path=out / "fig7_label_noise.png"))
    io.save_json(out / "summary.json", {
        "command": "label-noise", "settings": _settings(args), "data": ds.describe(),
        "noise_fraction": frac, "n_noisy": int(noisy.size), "time_unit": args.time_unit,
        "times": times, "share_clean": sh.share_clean, "share_noisy": sh.share_noisy,
        "slots_per_time": sh.slots, "rule": f"top {args.top_k} by {args.by} per test point",
        "seconds": time.perf_counter() - t0})
    log(args, f"share of noisy points among the most influential: "
              f"{np.round(sh.share_noisy, 3).tolist()}")
    return out


LAMBDA_SWEEP = Command(
    "lambda-sweep", "Figure 2: IHVP relative error per lambda against Theorem 3's bounds and the "
    "ridge leverage", _sweep_args, _sweep_run)
DENSITY = Command(
    "density", "Figure 3 / Theorem 4: KDE density of training points against their IHVP error "
    "rate, and the Definition 1 mixture experiment", _density_args, _density_run)
EXAMPLES = Command(
    "examples", "Figure 4: most helpful, most harmful and least influential training images for "
    "chosen test points", _examples_args, _examples_run)
COMPLEXITY = Command(
    "complexity", "Figure 5: complexity (eq. 19) of ten groups sorted by influence",
    _complexity_args, _complexity_run)
DYNAMICS = Command(
    "dynamics", "Figure 6: exact and first-order influence along training (eq. 20) and the most "
    "influential point over time", _dynamics_args, _dynamics_run)
LABEL_NOISE = Command(
    "label-noise", "Figure 7: share of clean and noisy points among the most influential points "
    "over training time, with flipped labels", _noise_args, _noise_run)
