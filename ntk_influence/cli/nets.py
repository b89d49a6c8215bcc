"""The ``compare`` subcommand: Table 1 and Figure 1 (NTK influence vs leave-one-out retraining)."""

from __future__ import annotations

import argparse
import csv
import io as _io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..experiments import WidthComparison

from .. import io
from .._precision import precision
from ..errors import InputError, MemoryPlanError
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
from ._report import close_figure


def _compare_args(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, n_train=200, n_test=50)
    p.add_argument("--arch", default="two-layer", metavar="ARCH",
                   help="two-layer (the paper's net, eq. 1; default), mlp:L[:ACT] (L dense layers, "
                        "all trained) or cnn:L[:ACT][:READOUT] (L 3x3 conv layers, then global "
                        "average pooling, or the flattened feature map with READOUT flatten, and "
                        "a dense readout; flat square inputs such as digits become images); ACT "
                        "is relu (default), erf or gelu")
    p.add_argument("--widths", type=count, nargs="+", default=[1024, 4096, 16384, 65536],
                   metavar="W", help="hidden widths: hidden units, or channels for cnn:L "
                                     "(default: %(default)s)")
    p.add_argument("--overlay", nargs="+", default=[], metavar="DIR",
                   help="other compare output folders whose R-against-width curves are drawn "
                        "with this one in width_curves.png (one curve per architecture; "
                        "default: none)")
    p.add_argument("--n-points", type=count, default=40,
                   help="training points removed: the largest |I_ntk| (default: %(default)s)")
    p.add_argument("--test-index", type=count_or_zero, default=0,
                   help="test point compared, the first of them with --test-points "
                        "(default: %(default)s)")
    p.add_argument("--test-points", type=count, default=1, metavar="K",
                   help="average Table 1 over K test points (--test-index and the K-1 after "
                        "it): the --n-points training points with the largest abs(I_ntk) summed "
                        "over them are removed, and R, rho and slope are over all (training "
                        "point, test point) pairs. No extra retraining: each retrain gives its "
                        "change at every test point at once. 'actual' is the net retrained "
                        "without the point (see --stop); with K = 1 "
                        "the numbers rest on one test point and --n-points pairs "
                        "(default: %(default)s)")
    p.add_argument("--lam", type=float, default=0.1, help="ridge lambda > 0 (default: %(default)s)")
    p.add_argument("--kappa", type=float, default=1.0,
                   help="first-layer init scale (default: %(default)s)")
    p.add_argument("--init", choices=["symmetric", "standard"], default="symmetric",
                   help="symmetric: paired neurons, f_0 = 0 exactly; standard: eq. (1) as is "
                        "(default: %(default)s)")
    p.add_argument("--net-seed", type=seed, default=0,
                   help="initialisation seed (default: %(default)s)")
    p.add_argument("--solver", choices=["gn", "gd"], default="gn",
                   help="gn: damped Gauss-Newton with line search; gd: gradient descent "
                        "(default: %(default)s)")
    p.add_argument("--stop", choices=["auto", "predictions", "gradient"], default="auto",
                   help="what ends each training: predictions (they move less than --f-tol; "
                        "ReLU nets, whose minimiser sits on kinks), gradient (truncated Newton "
                        "until ||grad|| / ||lam (theta - theta0)|| <= --g-tol: a stationary "
                        "point; --newton-cg defaults to 50 and --max-steps to 100) or auto: "
                        "gradient for smooth nets (erf, gelu), predictions for ReLU (default: "
                        "%(default)s)")
    p.add_argument("--g-tol", type=float, default=1e-8,
                   help="stationarity tolerance on the ridge-relative gradient; a run is "
                        "reported converged only below it, whatever --stop (default: "
                        "%(default)s)")
    p.add_argument("--f-tol", type=float, default=1e-7,
                   help="stop when predictions move less than this over the last steps "
                        "(--stop predictions; default: %(default)s)")
    p.add_argument("--rel-tol", type=float, default=0.005,
                   help="stop each retrain when its predictions move less than this fraction "
                        "of the kernel-predicted abs(Delta) (the smallest over the test points; "
                        "floored at --f-tol); the measured ratio is reported. Then the LOO "
                        "refine phase (progress 'retrain refine'): retrains whose measured "
                        "solver error exceeds 1.5 rel-tol of the measured abs(Delta) are rerun "
                        "with rel-tol times the measured abs(Delta), and the full run is "
                        "refined (retrained) to the tightest tolerance any retrain got, since "
                        "its error enters every Delta. 0 turns the rule off and uses --f-tol "
                        "alone; unused with --stop gradient (default: %(default)s)")
    p.add_argument("--max-steps", type=count, default=None,
                   help="solver iteration cap (default: 200 for gn, 200000 for gd)")
    p.add_argument("--newton-cg", type=count_or_zero, default=0,
                   help="gn only: conjugate-gradient iterations per step on the exact Hessian, "
                        "preconditioned by the Gauss-Newton matrix (a truncated Newton step, "
                        "for deep nets whose Hessian is not J^T J + lam I; each iteration costs "
                        "about one Gauss-Newton step); 0: plain Gauss-Newton (default: "
                        "%(default)s)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--warm-start", dest="warm_start", action="store_const", const=True,
                       default=None,
                       help="retrain from the trained W (the default for smooth nets, whose "
                            "retrains reach the same stationary point from either start; on "
                            "ReLU nets a warm start begins pinned on the full run's kinks and "
                            "moves less: leave-one-out changes shrink)")
    start.add_argument("--cold-start", dest="warm_start", action="store_const", const=False,
                       help="retrain from the same W(0) (the default for ReLU nets)")
    p.add_argument("--chunk-size", type=count, default=None,
                   help="retrains per vmapped chunk (default: 1 on a CPU, else from a 4 GiB "
                        "budget)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="parameter dtype (default: %(default)s)")


def _fmt(v: object) -> object:
    return f"{v:.6g}" if isinstance(v, float) else v


def _row_text(c: WidthComparison) -> str:
    """One width's line: NTK and IHVP agreement and the solver check."""
    st, info = c.stats, c.info
    # a Newton run stops on its gradient: its last steps' change bounds the error before them
    what = ("last steps' change/|Delta|" if info.get("stop") == "gradient"
            else "solver error/|Delta| <=")
    return (f"width {c.width}: R={st['ntk']['pearson']:.3f} "
            f"rho={st['ntk']['spearman']:.3f} slope={st['ntk']['slope']:.2f} | "
            f"IHVP R={st['ihvp']['pearson']:.3f} slope={st['ihvp']['slope']:.2f}"
            f" | {what} {info['retrain_max_error_ratio']:.1e}"
            f" | max rel. gradient {info.get('max_rel_grad_norm', float('nan')):.1e}")


def _overlays(folders: list[str]) -> list[dict[str, Any]]:
    """Read and check every ``--overlay`` folder's ``compare.json`` (before any work)."""
    others = []
    for d in folders:
        f = Path(d) / "compare.json"
        if not f.is_file():
            raise InputError(f"--overlay {d}: no compare.json there; give folders written by "
                             "'ntk-influence compare'.")
        try:
            o = io.load_json(f)
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError included
            raise InputError(f"--overlay {d}: {f} is not readable JSON ({e}); give folders "
                             "written by 'ntk-influence compare'.") from e
        rows = o.get("widths") if isinstance(o, dict) else None
        good = isinstance(rows, list) and rows and all(
            isinstance(r, dict) and isinstance(r.get("width"), int)
            and isinstance(r.get("pearson"), (int, float)) for r in rows)
        if not good or not isinstance(o.get("arch", ""), str):
            raise InputError(f"--overlay {d}: {f} holds no width rows of 'ntk-influence compare' "
                             "(a 'widths' list of rows with 'width' and 'pearson'); give folders "
                             "written by 'ntk-influence compare'.")
        others.append(o)
    return others


def _check_sizes(args: argparse.Namespace, ds: Any) -> None:
    """Refuse point counts and indices the data cannot give, before any work."""
    n, t, tp = ds.x_train.shape[0], ds.x_test.shape[0], args.test_points
    if args.n_points > n:
        raise InputError(f"--n-points {args.n_points} is more than the {n} training points; "
                         f"lower --n-points to at most {n} or raise --n-train.")
    if args.test_index >= t:
        raise InputError(f"--test-index {args.test_index} is outside the {t} test points "
                         f"(0 to {t - 1}); lower it or raise --n-test.")
    if args.test_index + tp > t:
        raise InputError(f"--test-points {tp} from --test-index {args.test_index} needs test "
                         f"points up to {args.test_index + tp - 1}, but there are {t}; lower "
                         "--test-points or --test-index, or raise --n-test.")
    pairs = args.n_points * tp
    check_sample_size(pairs, f"--n-points {args.n_points} with --test-points {tp} gives {pairs} "
                      "(training point, test point) pair(s), too few for the correlations of "
                      "Table 1; raise --n-points or --test-points")


def _check_widths(args: argparse.Namespace, family: Any, ds: Any) -> None:
    """Refuse a width the nets cannot have or the memory cannot hold, before any retraining.

    Each width's net is built once (the builders refuse odd widths of paired nets, and
    parameters that do not fit, before allocating them) and dropped; one retrain's memory, the
    model's ``retrain_bytes`` estimate plus the parameters, is checked against the accelerator's
    free memory, or the host's available memory on a CPU.
    """
    # deferred for start-up speed
    from ..linalg import device_memory_bytes, host_memory_bytes

    x = family.prepare(ds.x_train)
    n_pts = ds.x_train.shape[0] + args.test_points
    device = device_memory_bytes()
    where, have = ("device", device) if device is not None else ("host", host_memory_bytes())
    for w in sorted(set(args.widths)):
        with precision(args.dtype):
            net = family.net(x, w, seed=args.net_seed, dtype=args.dtype)
        if net.bytes_fn is None:
            continue
        item = net.dtype.itemsize
        need = int(net.bytes_fn(net, n_pts)) + net.n_params * item
        del net
        if need > have:
            smaller = " or --dtype float32" if item == 8 else ""
            raise MemoryPlanError(
                f"--widths {w}: one retrain of the {family.name} net of width {w} on {n_pts} "
                f"points needs about {need:,} bytes ({need / 1e9:.3g} GB: the model's "
                f"retrain_bytes estimate plus the parameters) but only {have:,} bytes "
                f"({have / 1e9:.3g} GB) of {where} memory are available; use a smaller "
                f"width{smaller}.")


def _compare_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..experiments import table_markdown, width_sweep
    from ..nets import architecture
    from ..plots import influence_scatter
    from ..training import SolverSettings

    out = Path(args.out)
    family = architecture(args.arch, kappa=args.kappa, symmetric=args.init == "symmetric")
    others = _overlays(args.overlay)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_data_from_args(args, per_piece=("widths",))  # each width_W.json checks itself
    _check_sizes(args, ds)
    _check_widths(args, family, ds)
    stop = args.stop if args.stop != "auto" else ("gradient" if family.smooth else "predictions")
    if stop == "gradient":
        settings = SolverSettings.stationary(method=args.solver, f_tol=args.f_tol,
                                             g_tol=args.g_tol, max_steps=args.max_steps or 100,
                                             newton_cg=(args.newton_cg or 50)
                                             if args.solver == "gn" else 0)
    else:
        settings = SolverSettings(args.solver, f_tol=args.f_tol, max_steps=args.max_steps,
                                  newton_cg=args.newton_cg, g_tol=args.g_tol)
    rel_tol = (args.rel_tol or None) if stop == "predictions" else None
    t0 = time.perf_counter()
    tp = args.test_points
    where = (f"test index {args.test_index}" if tp == 1 else
             f"test indices {args.test_index}..{args.test_index + tp - 1}")
    log(args, f"comparing {family.name} widths {args.widths} on {args.data} (n_train={ds.x_train.shape[0]}, "
              f"lam={args.lam:g}, {args.n_points} points, {where})")
    results = width_sweep(
        ds.x_train, ds.y_train, ds.x_test, ds.y_test, args.widths, args.lam, out=out,
        resume=args.resume, test_index=args.test_index, test_points=tp,
        n_points=args.n_points, kappa=args.kappa, symmetric=args.init == "symmetric",
        seed=args.net_seed, settings=settings, warm_start=args.warm_start,
        chunk_size=args.chunk_size, show_progress=not args.quiet, dtype=args.dtype,
        rel_tol=rel_tol, arch=family,
        on_result=lambda c: log(args, _row_text(c)))
    secs = time.perf_counter() - t0
    rows = [c.row() for c in results]
    io.save_json(out / "compare.json", {
        "command": "compare", "arch": family.name, "settings": settings_of(args),
        "data": ds.describe(),
        "seconds": secs, "test_points": tp, "test_indices": results[0].test_indices,
        "widths": rows,
        "note": "pearson/spearman compare I_ntk (eq. 8-9, analytic kernel, f_0 ignored) with "
                "I_nn from leave-one-out retraining (eq. 7; stop and warm_start in each row "
                "say how: gradient = the stationary point by truncated Newton, predictions = "
                "Gauss-Newton until the predictions settle) over all (removed point, test "
                "point) pairs; max_rel_grad_norm is the largest ||grad L|| / ||lam (theta - "
                "theta0)|| over the full run and every retrain; ihvp_* compare the "
                "finite-net IHVP (eq. 12). slope and rel_error show what correlation "
                "hides."})
    keys = list(rows[0])
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in keys})
    io.atomic_write_bytes(out / "compare.csv", buf.getvalue().encode())
    io.atomic_write_bytes(out / "compare.md", table_markdown(results).encode())
    big = max(results, key=lambda c: c.width)
    pts = f"test point {big.test_index}" if tp == 1 else f"{tp} test points"
    close_figure(influence_scatter(big.predicted["ntk"], big.actual,
                                   title=f"{args.data}, width {big.width}, {pts}",
                                   path=out / "figure1.png"))
    close_figure(influence_scatter(big.predicted["ihvp"], big.actual,
                                   ylabel="classic IHVP on the trained net (eq. 12)",
                                   title=f"width {big.width}: IHVP against retraining",
                                   path=out / "figure1_ihvp.png"))
    # deferred for start-up speed
    from ..plots import width_curves

    curves = {family.name: rows}
    for o in others:
        curves.setdefault(o.get("arch", "two-layer"), o["widths"])
    close_figure(width_curves(curves, title=f"{args.data}: NTK influence against retraining",
                              path=out / "width_curves.png"))
    log(args, f"total {secs:.0f} s")
    return out


COMPARE = Command("compare", "NTK influence against leave-one-out retraining of finite nets over "
                  "widths (Table 1, Figure 1)", _compare_args, _compare_run)
