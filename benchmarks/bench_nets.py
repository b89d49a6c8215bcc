"""Finite-net benchmark: LOO retraining throughput, Gauss-Newton vs GD, the four IHVP methods.

Prints a table and writes benchmarks/out/bench_nets.json. Ratios are measured in one run.

    python benchmarks/bench_nets.py [--widths 4096 16384 65536] [--retrains 4] [--steps 20]

Retraining throughput: a chunk of ``--retrains`` leave-one-out nets (digits 3-vs-8, n_train=200,
lam=0.1) runs a fixed ``--steps`` Gauss-Newton iterations (f_tol=0, so every net does the same
work); nets per minute = retrains / time x (steps / iterations a converged retrain needs), with
the iteration count taken from the full training run to f_tol=1e-6 at the same width.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import ntk_influence as ni  # noqa: E402
from ntk_influence import attribution as H  # noqa: E402
from ntk_influence import nets as N  # noqa: E402
from ntk_influence import training as R  # noqa: E402
from ntk_influence import training as T  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _runinfo  # noqa: E402

OUT = Path(__file__).parent / "out"


def throughput(ds: ni.Dataset, width: int, retrains: int, steps: int) -> dict:
    net = N.two_layer_net(ds.x_train.shape[1], width, symmetric=True, seed=0)
    xte, yte = ds.x_test[:1], ds.y_test[:1]
    t0 = time.perf_counter()
    full = T.train(net, ds.x_train, ds.y_train, 0.1, x_test=xte,
                   settings=T.SolverSettings("gn", f_tol=1e-6, max_steps=150), warn=False)
    t_full = time.perf_counter() - t0
    fixed = T.SolverSettings("gn", f_tol=1e-300, max_steps=steps)
    idx = np.arange(retrains)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ni.errors.NotConvergedWarning)
        R.loo_retrain(net, ds.x_train, ds.y_train, xte, yte, 0.1, train_index=idx,
                      settings=fixed, full=full, chunk_size=retrains,
                      show_progress=False)  # compile (same settings and shapes as timed)
        r = R.loo_retrain(net, ds.x_train, ds.y_train, xte, yte, 0.1, train_index=idx,
                          settings=fixed, full=full, chunk_size=retrains, show_progress=False)
    per_step = r.seconds / (retrains * steps)
    need = max(full.iterations, 1)
    return {"width": width, "seconds_per_gn_step_per_net": per_step,
            "gn_iterations_to_1e-6": full.iterations, "full_train_seconds": t_full,
            "loo_nets_per_minute": 60.0 / (per_step * need)}


def gn_vs_gd(ds: ni.Dataset, width: int, f_tol: float, lam: float = 0.1) -> dict:
    net = N.two_layer_net(ds.x_train.shape[1], width, symmetric=True, seed=0)
    out = {}
    for method, extra in (("gn", {}), ("gd", {"window": 50, "max_steps": 20000})):
        s = T.SolverSettings(method, f_tol=f_tol, **extra)
        T.train(net, ds.x_train, ds.y_train, lam, x_test=ds.x_test, settings=s.resolved(),
                warn=False)  # compile (cached by settings)
        t0 = time.perf_counter()
        r = T.train(net, ds.x_train, ds.y_train, lam, x_test=ds.x_test, settings=s, warn=False)
        out[method] = {"seconds": time.perf_counter() - t0, "iterations": r.iterations,
                       "settled": r.settled, "converged": r.converged, "stalled": r.stalled,
                       "grad_norm": r.grad_norm, "loss": r.loss,
                       "f_change": r.f_change, "f_test": r.f_test, "f_train": r.f_train}
    gap = max(np.abs(out["gn"]["f_test"] - out["gd"]["f_test"]).max(),
              np.abs(out["gn"]["f_train"] - out["gd"]["f_train"]).max())
    for m in out.values():
        m.pop("f_test"), m.pop("f_train")
    return {"width": width, "n_train": int(ds.x_train.shape[0]), "f_tol": f_tol, "lam": lam,
            **out,
            "speedup_gn_over_gd": out["gd"]["seconds"] / out["gn"]["seconds"],
            "max_prediction_gap": float(gap)}


def ihvp_methods(ds: ni.Dataset, width: int) -> dict:
    net = N.two_layer_net(ds.x_train.shape[1], width, seed=0)
    th = T.train(net, ds.x_train, ds.y_train, 0.1, settings=T.SolverSettings("gn", f_tol=1e-10),
                 warn=False).theta
    xt, yt = ds.x_test[:4], ds.y_test[:4]
    rows = {}
    ref = None
    for method, kw in (("dense", {}), ("woodbury", {}), ("cg", {"tol": 1e-10}),
                       ("lissa", {"depth": 20000})):
        H.ihvp_influence(net, th, ds.x_train, ds.y_train, xt, yt, 0.1, method=method,
                         **({"depth": 10} if method == "lissa" else kw))  # compile
        t0 = time.perf_counter()
        r = H.ihvp_influence(net, th, ds.x_train, ds.y_train, xt, yt, 0.1, method=method, **kw)
        secs = time.perf_counter() - t0
        ref = r.influence if ref is None else ref
        rows[method] = {"seconds": secs, "iterations": r.solve.iterations,
                        "residual": r.solve.residual,
                        "max_rel_diff_vs_dense": float(np.abs(r.influence - ref).max()
                                                       / np.abs(ref).max())}
    return {"width": width, "n_params": net.n_params, "n_train": int(ds.x_train.shape[0]),
            **rows}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--widths", type=int, nargs="+", default=[4096, 16384, 65536])
    p.add_argument("--retrains", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--solvers-only", action="store_true")
    args = p.parse_args()
    res: dict = _runinfo.start()
    ds = ni.load_dataset("digits:3,8", n_train=200, n_test=50, seed=0)
    small = ni.load_dataset("digits:3,8", n_train=40, n_test=10, seed=0)
    if not args.solvers_only:
        res["ihvp"] = ihvp_methods(small, 64)
        print(f"IHVP methods (n=40, width 64, P={res['ihvp']['n_params']}):")
        for m in ("dense", "woodbury", "cg", "lissa"):
            r = res["ihvp"][m]
            print(f"  {m:9s} {r['seconds']:8.3f} s  iters {r['iterations']:6d}  residual "
                  f"{r['residual']:.1e}  max rel diff vs dense {r['max_rel_diff_vs_dense']:.1e}")
    tiny = ni.load_dataset("digits:3,8", n_train=8, n_test=4, seed=0)
    res["gn_vs_gd"] = [gn_vs_gd(tiny, 1024, 1e-9, lam=5.0), gn_vs_gd(small, 1024, 1e-7)]
    for g in res["gn_vs_gd"]:
        print(f"GN vs GD (n={g['n_train']}, width 1024, lam {g['lam']}, f_tol {g['f_tol']}): "
              f"GN {g['gn']['seconds']:.2f} s ({g['gn']['iterations']} it, settled="
              f"{g['gn']['settled']}), GD {g['gd']['seconds']:.2f} s ({g['gd']['iterations']} "
              f"it, settled={g['gd']['settled']}, stalled={g['gd']['stalled']}) -> speed-up "
              f"{g['speedup_gn_over_gd']:.1f}x, prediction gap {g['max_prediction_gap']:.1e}")
    if args.solvers_only:
        args.widths = []
    res["throughput"] = []
    for w in args.widths:
        t = throughput(ds, w, args.retrains, args.steps)
        res["throughput"].append(t)
        print(f"width {w:6d}: {t['seconds_per_gn_step_per_net']*1e3:8.1f} ms per GN step per "
              f"net, {t['gn_iterations_to_1e-6']} steps to 1e-6 -> "
              f"{t['loo_nets_per_minute']:.2f} LOO nets/min")
    OUT.mkdir(parents=True, exist_ok=True)
    name = "bench_nets_solvers.json" if args.solvers_only else "bench_nets.json"
    _runinfo.write(res, OUT / name)


if __name__ == "__main__":
    main()
