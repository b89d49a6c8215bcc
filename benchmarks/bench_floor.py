"""Solver floor: how far two solvers of eq. (2) disagree on a ReLU net's trained predictions
and on its leave-one-out changes.

Prints a table and writes benchmarks/out/bench_floor.json.

    python benchmarks/bench_floor.py [--mlp-widths 128 256 512] [--cnn-widths 8]
                                     [--two-layer-widths 1024 4096] [--removed 3] [--resume]

The JSON is rewritten (atomically) after every net; ``--resume`` keeps the nets of an earlier run
with the same settings and runs only the rest.

On digits 3-vs-8 (n_train = 200, lam = 0.1, the ``compare`` data), each net is trained from
W(0), and retrained from W(0) without each of the ``--removed`` training points with the
largest ``|I_ntk|`` over the test points (as ``compare`` picks them), by two solvers, to the
``compare`` tolerance (f_tol = 1e-7) with at most ``--max-steps`` steps:

- damped Gauss-Newton (the default solver), and
- a second solver with another path: truncated Newton (``newton_cg = 4``, the exact Hessian)
  for the deep nets; annealed GD for the two-layer net of eq. (1), whose Gauss-Newton step is
  already Newton's (``exact_gauss_newton``), at most ``--gd-steps`` steps.

Each row reports both full runs' steps, convergence, loss, relative gradient norm and final
step (:attr:`~ntk_influence.TrainResult.final_step`); the disagreement of the two solvers'
predictions on the first ``--test-points`` test points; and of their leave-one-out changes
``Delta`` (median ``|Delta_GN - Delta_2nd|`` against median ``|Delta_GN|``, and the Pearson
correlation of the two over all (removed point, test point) pairs). A ReLU net's loss has a kink
wherever a pre-activation crosses zero; a descent solver stops where every direction it proposes
crosses one, so where it stops depends on its path. The correlation of the two solvers' ``Delta``
bounds the R that any influence estimate can reach against either of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import ntk_influence as ni

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _runinfo

OUT = Path(__file__).parent / "out"


def run(net: ni.nets.FunctionalNet, x: np.ndarray, y: np.ndarray, xt: np.ndarray,
        settings: ni.SolverSettings) -> ni.TrainResult:
    """One training from W(0) at lam = 0.1, not-converged warnings silenced (reported)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ni.errors.NotConvergedWarning)
        return ni.training.train(net, x, y, 0.1, x_test=xt, settings=settings)


def summary(r: ni.TrainResult, seconds: float) -> dict:
    """The fields of one training the table shows."""
    return {"iterations": r.iterations, "settled": r.settled, "converged": r.converged,
            "ridge_rel_grad_norm": r.ridge_rel_grad_norm, "stalled": r.stalled,
            "loss": r.loss, "rel_grad_norm": r.rel_grad_norm, "final_step": r.final_step,
            "f_change_test": r.f_change_test, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mlp-widths", type=int, nargs="*", default=[128, 256, 512])
    p.add_argument("--cnn-widths", type=int, nargs="*", default=[8])
    p.add_argument("--two-layer-widths", type=int, nargs="*", default=[1024, 4096])
    p.add_argument("--test-points", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--gd-steps", type=int, default=20000)
    p.add_argument("--removed", type=int, default=3)
    p.add_argument("--resume", action="store_true",
                   help="keep the nets already in the output JSON (same settings required)")
    args = p.parse_args()
    res: dict = _runinfo.start()
    ds = ni.load_dataset("digits:3,8", n_train=200, n_test=50, seed=0)
    setup = dict(data="digits:3,8", n_train=200, lam=0.1, f_tol=1e-7, max_steps=args.max_steps,
                 gd_steps=args.gd_steps, test_points=args.test_points, removed=args.removed)
    res.update(setup, rows=[])
    out_json = OUT / "bench_floor.json"
    done = {}
    if args.resume and out_json.exists():
        old = json.loads(out_json.read_text())
        if {k: old.get(k) for k in setup} != setup:
            p.error(f"--resume: {out_json} was made with other settings; run without --resume")
        done = {(r["arch"], r["width"]): r for r in old["rows"]}
    gn = ni.SolverSettings(f_tol=1e-7, max_steps=args.max_steps)
    plan = ([("two-layer", w) for w in args.two_layer_widths]
            + [("mlp:3", w) for w in args.mlp_widths] + [("cnn:2", w) for w in args.cnn_widths])
    print(f"{'arch':>9} {'width':>6} {'second':>13} {'GN steps':>8} {'GN t':>8} "
          f"{'2nd steps':>9} {'2nd t':>8} {'med |df|':>9} {'med |D|':>9} {'med |dD|':>9} "
          f"{'R(D)':>6}")
    for name, w in plan:
        if (name, w) in done:
            res["rows"].append(done[(name, w)])
            print(f"{name:>9} {w:>6} kept from the earlier run in {out_json}", flush=True)
            continue
        fam = ni.architecture(name)
        x, xt = fam.prepare(ds.x_train), fam.prepare(ds.x_test)[:args.test_points]
        net = fam.net(x, w)
        if net.exact_gauss_newton:
            second, s2 = "annealed GD", ni.SolverSettings("gd", f_tol=1e-7, anneal=True,
                                                         max_steps=args.gd_steps)
        else:
            second, s2 = "newton_cg=4", ni.SolverSettings(f_tol=1e-7, newton_cg=4,
                                                         max_steps=args.max_steps)
        yt = ds.y_test[:args.test_points]
        idx = ni.experiments.select_points(x, ds.y_train, xt, yt, 0.1, np.arange(len(yt)), args.removed,
                               fam.kernel())
        out = {}
        for key, s in (("gn", gn), ("second", s2)):
            t0 = time.perf_counter()
            full = run(net, x, ds.y_train, xt, s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ni.errors.NotConvergedWarning)
                loo = ni.loo_retrain(net, x, ds.y_train, xt, yt, 0.1, train_index=idx,
                                     settings=s, full=full, show_progress=False)
            out[key] = (full, loo, {**summary(full, time.perf_counter() - t0),
                                    "retrain_iterations": loo.iterations.tolist(),
                                    "retrains_settled": int(loo.settled.sum()),
                                    "retrains_converged": int(loo.converged.sum())})
        df = np.abs(np.asarray(out["gn"][0].f_test) - np.asarray(out["second"][0].f_test))
        d1, d2 = np.ravel(out["gn"][1].delta), np.ravel(out["second"][1].delta)
        row = {"arch": name, "width": w, "n_params": net.n_params, "second": second,
               "removed": idx.tolist(), "gn": out["gn"][2], "other": out["second"][2],
               "max_abs_diff": float(df.max()), "median_abs_diff": float(np.median(df)),
               "median_abs_delta": float(np.median(np.abs(d1))),
               "median_abs_delta_other": float(np.median(np.abs(d2))),
               "median_abs_delta_diff": float(np.median(np.abs(d1 - d2))),
               "delta_pearson": float(np.corrcoef(d1, d2)[0, 1])}
        res["rows"].append(row)
        g, o = row["gn"], row["other"]
        print(f"{name:>9} {w:>6} {second:>13} {g['iterations']:>8} {g['final_step']:>8.1e} "
              f"{o['iterations']:>9} {o['final_step']:>8.1e} {row['median_abs_diff']:>9.2e} "
              f"{row['median_abs_delta']:>9.2e} {row['median_abs_delta_diff']:>9.2e} "
              f"{row['delta_pearson']:>6.3f}", flush=True)
        _runinfo.write(res, out_json)


if __name__ == "__main__":
    main()
