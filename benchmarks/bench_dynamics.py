"""Time-resolved influence: exact (one eigh per left-out point) against first order (one eigh).

For each n, the exact influence is timed on a subset of left-out points (the full O(n^4) run is
extrapolated as per-point time x n, and marked so), the first-order influence is computed for all
points, and their agreement is measured on the subset at every time. The per-point cost of the
exact route is compared with a NumPy/LAPACK floor measured in the same run: one
``numpy.linalg.eigh`` of an n x n matrix. Data: Definition 1's mixture on the unit sphere (d=64,
10 components, labels +1/-1 by component), eq. (4)'s kernel, lam=0.1, 100 test points, flow times
0.01, 0.1, 1, 10, 100 and inf.

Usage: python benchmarks/bench_dynamics.py [--sizes 500 1000 2000] [--subset 24]
Writes benchmarks/out/bench_dynamics.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from ntk_influence.experiments import finite_mixture
from ntk_influence.influence import time_agreement, time_influence_from_kernels
from ntk_influence.kernels import kernel_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _runinfo

TIMES = [0.01, 0.1, 1.0, 10.0, 100.0, np.inf]
P = np.full(10, 0.1)


def _best(fn, repeats=2):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(n: int, subset: int, n_test: int = 100, lam: float = 0.1) -> dict:
    tr = finite_mixture(n, P, d=64, r=0.8, seed=0)
    te = finite_mixture(n_test, P, d=64, r=0.8, seed=1, means=tr.means, labels=tr.labels)
    k, kt = kernel_matrix("paper", tr.x), kernel_matrix("paper", tr.x, te.x)
    idx = np.linspace(0, n - 1, subset).round().astype(int)
    chunk = 8
    # warm up the compilation on the same shapes
    time_influence_from_kernels(k, kt, tr.y, te.y, lam, TIMES, train_index=idx[:chunk],
                                chunk_size=chunk)
    t_ex, ex = _best(lambda: time_influence_from_kernels(
        k, kt, tr.y, te.y, lam, TIMES, train_index=idx, chunk_size=chunk), repeats=1)
    t_fo, fo = _best(lambda: time_influence_from_kernels(
        k, kt, tr.y, te.y, lam, TIMES, method="first-order"))
    m = k + lam * np.eye(n)
    t_eigh, _ = _best(lambda: np.linalg.eigh(m), repeats=3)
    ag = time_agreement(ex.influence, fo.first_order[:, idx])
    per_point = t_ex / subset
    return {"n": n, "n_test": n_test, "times": [str(t) for t in TIMES], "subset": subset,
            "exact_seconds_subset": t_ex, "exact_seconds_per_point": per_point,
            "exact_seconds_full_extrapolated": per_point * n,
            "first_order_seconds_all_points": t_fo,
            "numpy_eigh_seconds": t_eigh,
            "exact_per_point_over_numpy_eigh": per_point / t_eigh,
            "speedup_first_order_vs_exact_full": per_point * n / t_fo,
            "rel_error": ag.rel_error.tolist(), "pearson": ag.pearson.tolist(),
            "spearman": ag.spearman.tolist(), "slope": ag.slope.tolist(),
            "top1_match": ag.top1_match.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--subset", type=int, default=24,
                    help="left-out points the exact route is timed on (default: %(default)s)")
    args = ap.parse_args()
    started = _runinfo.start()
    rows = []
    with jax.enable_x64(True):
        for n in args.sizes:
            rows.append(run(n, min(args.subset, n)))
            r = rows[-1]
            print(f"n={n}: exact {r['exact_seconds_per_point']:.3f} s/point "
                  f"({r['exact_per_point_over_numpy_eigh']:.2f}x numpy eigh), full "
                  f"~{r['exact_seconds_full_extrapolated']:.0f} s; first order "
                  f"{r['first_order_seconds_all_points']:.2f} s", flush=True)
    print()
    print(f"{'n':>5} {'exact s/pt':>10} {'/eigh':>6} {'exact full*':>11} {'1st order':>9} "
          f"{'speedup':>8} | rel.err by t = " + " ".join(f"{t:>7}" for t in
                                                       ["0.01", "0.1", "1", "10", "100", "inf"]))
    for r in rows:
        print(f"{r['n']:>5} {r['exact_seconds_per_point']:>10.3f} "
              f"{r['exact_per_point_over_numpy_eigh']:>6.2f} "
              f"{r['exact_seconds_full_extrapolated']:>10.0f}s "
              f"{r['first_order_seconds_all_points']:>8.2f}s "
              f"{r['speedup_first_order_vs_exact_full']:>8.0f} | " + " " * 16 +
              " ".join(f"{v:>7.4f}" for v in r["rel_error"]))
    print("* exact full = measured per-point time x n (timed on --subset points)")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    _runinfo.write({**started, "machine": platform.platform(), "processor": platform.processor(),
                    "jax": jax.__version__, "backend": jax.default_backend(), "lam": 0.1,
                    "rows": rows}, out / "bench_dynamics.json")


if __name__ == "__main__":
    main()
