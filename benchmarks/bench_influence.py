"""Benchmark: exact NTK influence against a NumPy/LAPACK floor and brute-force leave-one-out.

For each size ``n`` (``n_test = n/4``) and input dimension ``d`` it times, in the same run and on
the same synthetic unit-norm inputs:

Floor and ours run ``--repeats`` times each, alternating, and the fastest run of each counts.

* ``ours``: :func:`ntk_influence.ntk_influence` end to end with its defaults (kernel, memory
  plan, one Cholesky, the inverse's diagonal, ``alpha``, influence, IHVP; the spectrum is lazy and
  not read). The first call includes jit compilation (reported as ``cold``); the ratio uses the
  second, warm call.
* ``ours+spectrum``: the same call followed by reading ``res.cond`` and the Theorem 3 bounds,
  which computes the extreme eigenvalues (dense up to n = 1024, ARPACK above).
* ``floor``: NumPy/SciPy on the same inputs: the kernel by one matmul plus the elementwise eq. (4)
  formula, LAPACK ``potrf``, ``trtri`` for the inverse's diagonal, ``potrs`` for ``A K_te``, and the
  influence formula. This is the least work any exact method does; no spectrum is computed.
* ``brute``: leave-one-out by refitting KRR without each point (Cholesky of the ``n-1`` kernel and
  the test predictions; the kernel itself is not recomputed, which favours brute force). A sample
  of refits is timed and the total for all ``n`` is extrapolated.

Each method runs in its own subprocess, so the peak resident memory (``ru_maxrss``, which sees
XLA's host buffers, unlike ``tracemalloc``) belongs to that method alone; ``peak_mb`` is that peak
minus the process's memory after the inputs were created.

Usage: ``python benchmarks/bench_influence.py [--quick] [--sizes 1000 2000] [--dims 64 784]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _runinfo

OUT = Path(__file__).resolve().parent / "out"
LAM = 0.1


def _data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    t = max(1, n // 4)
    x = rng.normal(size=(n, d))
    xt = rng.normal(size=(t, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    xt /= np.linalg.norm(xt, axis=1, keepdims=True)
    return x, np.sign(rng.normal(size=n)), xt, np.sign(rng.normal(size=t))


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def _cur_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _eq4(g: np.ndarray) -> np.ndarray:
    np.clip(g, -1.0, 1.0, out=g)
    return g * (np.pi - np.arccos(g)) / (2 * np.pi)


def floor(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, lam: float) -> np.ndarray:
    """The NumPy/LAPACK floor: kernel, Cholesky, inverse diagonal, ``A K_te``, influence."""
    from scipy.linalg import lapack

    k = _eq4(x @ x.T)
    kt = _eq4(x @ xt.T)
    k[np.diag_indices_from(k)] += lam
    chol, info = lapack.dpotrf(k, lower=1, overwrite_a=1, clean=1)
    assert info == 0
    linv, info = lapack.dtrtri(chol, lower=1, overwrite_c=0)
    a_diag = np.einsum("ij,ij->j", linv, linv)
    del linv
    beta, _ = lapack.dpotrs(chol, y[:, None], lower=1)
    alpha, _ = lapack.dpotrs(chol, kt, lower=1)
    r_te = kt.T @ beta[:, 0] - yt
    c = -beta[:, 0] / a_diag
    return alpha * np.outer(c, r_te) + 0.5 * alpha**2 * (c * c)[:, None]


def brute_refit(k: np.ndarray, kt: np.ndarray, y: np.ndarray, lam: float, i: int) -> np.ndarray:
    """KRR refit without point ``i``: the test predictions of the leave-one-out model."""
    from scipy.linalg import cho_factor, cho_solve

    keep = np.arange(k.shape[0]) != i
    kk = k[np.ix_(keep, keep)]
    kk[np.diag_indices_from(kk)] += lam
    return kt[keep].T @ cho_solve(cho_factor(kk, lower=True, overwrite_a=True), y[keep])


def _worker(method: str, n: int, d: int, sample: int) -> dict:
    if method in ("ours", "ours_spectrum"):
        import ntk_influence.influence  # the library loads on first use; its import is not the method's
    x, y, xt, yt = _data(n, d)
    base = _cur_rss_mb()
    out: dict = {"method": method, "n": n, "d": d, "n_test": len(yt)}
    if method in ("ours", "ours_spectrum"):
        import warnings

        import ntk_influence as ni

        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                res = ni.ntk_influence(x, y, xt, yt, LAM)
                if method == "ours_spectrum":
                    _ = (res.cond, res.theorem3_lower, res.theorem3_upper)
            times.append(time.perf_counter() - t0)
        out.update(cold_s=times[0], time_s=times[1],
                   warnings=sorted({str(m.category.__name__) for m in w}),
                   checksum=float(np.sum(res.influence)))
        if method == "ours_spectrum":
            out.update(spectrum=res.spectrum_method, spectrum_converged=res.spectrum.converged,
                       spectrum_steps=list(res.spectrum.steps))
    elif method == "floor":
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            infl = floor(x, y, xt, yt, LAM)
            times.append(time.perf_counter() - t0)
        out.update(time_s=min(times), checksum=float(np.sum(infl)))
    elif method == "brute":
        k = _eq4(x @ x.T)
        kt = _eq4(x @ xt.T)
        idx = np.random.default_rng(1).choice(n, size=min(sample, n), replace=False)
        brute_refit(k, kt, y, LAM, int(idx[0]))  # warm-up (allocator, BLAS threads)
        t0 = time.perf_counter()
        for i in idx:
            brute_refit(k, kt, y, LAM, int(i))
        per = (time.perf_counter() - t0) / len(idx)
        out.update(per_refit_s=per, refits_timed=len(idx), time_s=per * n)
    else:
        raise ValueError(method)
    out["peak_mb"] = _rss_mb() - base
    out["peak_total_mb"] = _rss_mb()
    return out


def _run(method: str, n: int, d: int, sample: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, str(n), str(d), str(sample)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{method} n={n} d={d} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write ``benchmarks/out/bench_influence.json``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 784])
    ap.add_argument("--brute-sample", type=int, default=5, help="refits timed per size")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of floor and ours")
    ap.add_argument("--out", default=str(OUT / "bench_influence.json"))
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        m, n, d, s = a.worker
        print(json.dumps(_worker(m, int(n), int(d), int(s))))
        return 0
    run = _runinfo.start()
    sizes, dims = ([200, 400], [64]) if a.quick else (a.sizes, a.dims)
    rows = []
    hdr = (f"{'n':>6} {'d':>4} {'ours s':>8} {'cold s':>8} {'floor s':>8} {'ours/floor':>10} "
           f"{'+spec/floor':>11} "
           f"{'brute s':>9} {'brute/ours':>10} {'ours MB':>8} {'floor MB':>8} {'brute MB':>8}")
    print(hdr)
    for n in sizes:
        for d in dims:
            # floor and ours alternate, each in fresh processes, and the fastest run of each
            # counts: this machine is shared, and its load drifts within minutes.
            runs: dict[str, list[dict]] = {"floor": [], "ours": [], "ours_spectrum": []}
            for _ in range(a.repeats):
                for m in ("floor", "ours", "ours_spectrum"):
                    runs[m].append(_run(m, n, d, a.brute_sample))
            r = {m: min(v, key=lambda q: q["time_s"]) for m, v in runs.items()}
            for m, v in runs.items():
                r[m] = dict(r[m], peak_mb=max(q["peak_mb"] for q in v),
                            all_times=[q["time_s"] for q in v])
            r["brute"] = _run("brute", n, d, a.brute_sample)
            agree = abs(r["ours"]["checksum"] - r["floor"]["checksum"]) <= 1e-6 * max(
                1.0, abs(r["floor"]["checksum"]))
            row = {"n": n, "d": d, "n_test": r["ours"]["n_test"], "ours_s": r["ours"]["time_s"],
                   "ours_cold_s": r["ours"]["cold_s"], "floor_s": r["floor"]["time_s"],
                   "brute_s_extrapolated": r["brute"]["time_s"],
                   "brute_per_refit_s": r["brute"]["per_refit_s"],
                   "brute_refits_timed": r["brute"]["refits_timed"],
                   "ours_over_floor": r["ours"]["time_s"] / r["floor"]["time_s"],
                   "ours_spectrum_s": r["ours_spectrum"]["time_s"],
                   "ours_spectrum_over_floor": r["ours_spectrum"]["time_s"] / r["floor"]["time_s"],
                   "brute_over_ours": r["brute"]["time_s"] / r["ours"]["time_s"],
                   "ours_peak_mb": r["ours"]["peak_mb"], "floor_peak_mb": r["floor"]["peak_mb"],
                   "brute_peak_mb": r["brute"]["peak_mb"], "nxn_mb": n * n * 8 / 2**20,
                   "spectrum": r["ours_spectrum"]["spectrum"],
                   "spectrum_converged": r["ours_spectrum"]["spectrum_converged"],
                   "spectrum_products": r["ours_spectrum"]["spectrum_steps"],
                   "ours_warnings": sorted(set(r["ours"]["warnings"])
                                           | set(r["ours_spectrum"]["warnings"])),
                   "results_agree": bool(agree),
                   "ours_all_s": r["ours"]["all_times"], "floor_all_s": r["floor"]["all_times"]}
            rows.append(row)
            print(f"{n:>6} {d:>4} {row['ours_s']:>8.2f} {row['ours_cold_s']:>8.2f} "
                  f"{row['floor_s']:>8.2f} {row['ours_over_floor']:>10.2f} "
                  f"{row['ours_spectrum_over_floor']:>11.2f} "
                  f"{row['brute_s_extrapolated']:>9.1f} {row['brute_over_ours']:>10.0f} "
                  f"{row['ours_peak_mb']:>8.0f} {row['floor_peak_mb']:>8.0f} "
                  f"{row['brute_peak_mb']:>8.0f}", flush=True)
    info = {**run, "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_avg_at_end": os.getloadavg(), "lam": LAM, "repeats": a.repeats, "rows": rows,
            "targets": {"ours_over_floor_at_4000": 1.2, "ours_spectrum_over_floor_at_4000": 1.3,
                        "brute_over_ours_at_2000": 100}}
    _runinfo.write(info, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
