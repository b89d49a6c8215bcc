"""Benchmark: large n on the CPU against the NumPy/LAPACK floor and the memory plan; float32.

Part 1 (``time``): for n in {4000, 8000, 16000} (``n_test = n/4``, ``d = 784``, synthetic
unit-norm inputs) it times :func:`ntk_influence.large_influence` (the memory-planned
path: kernel, in-place Cholesky, inverse diagonal, spectrum, test blocks) against the NumPy/LAPACK
floor of ``bench_influence.py`` on the same inputs, each in its own subprocess, and compares the
peak resident memory of ours with the plan's host figure. The largest size runs once.

Part 2 (``precision``): for n in {1000, 4000, 16000} and a range of lambda, the relative error
of the float32 policies (plain, and with iterative refinement: float64 residuals) against the
float64 reference, on MNIST-like structured inputs (non-negative, low rank plus noise), for
``beta``, ``alpha``, ``diag(A)`` and the influence matrix
(``max |err| / max |ref|``), with the condition number and the policy's own error estimate.
Plain float32 rounds the float64 kernel to float32 (as a kernel computed in float32 would be).

Usage: ``python benchmarks/bench_scale.py [--quick] [--part time|precision|both]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _runinfo  # noqa: E402
from bench_influence import _cur_rss_mb, _data, _rss_mb, floor  # noqa: E402

OUT = HERE / "out"
LAM = 0.1


def _worker(method: str, n: int, d: int) -> dict:
    if method == "ours":
        import ntk_influence  # noqa: F401
    x, y, xt, yt = _data(n, d)
    base = _cur_rss_mb()
    out: dict = {"method": method, "n": n, "d": d}
    t0 = time.perf_counter()
    if method == "ours":
        from ntk_influence import scale as dd

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = dd.large_influence(x, y, xt, yt, LAM)
        out.update(plan_host_mb=res.plan.host_bytes / 2**20, backend=res.plan.backend,
                   test_block=res.plan.test_block, checksum=float(np.sum(res.result.influence)))
    else:
        out["checksum"] = float(np.sum(floor(x, y, xt, yt, LAM)))
    out["time_s"] = time.perf_counter() - t0
    out["peak_mb"] = _rss_mb() - base
    out["peak_total_mb"] = _rss_mb()
    return out


def _run(method: str, n: int, d: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, __file__, "--worker", method, str(n), str(d)],
                       capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{method} n={n} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def part_time(sizes: list[int], d: int, repeats: int) -> list[dict]:
    """Ours against the floor, and peak memory against the plan."""
    print(f"{'n':>6} {'ours s':>8} {'floor s':>8} {'ours/floor':>10} {'ours MB':>8} "
          f"{'plan MB':>8} {'floor MB':>8} {'n^2 MB':>8}")
    rows = []
    for i, n in enumerate(sizes):
        reps = 1 if i == len(sizes) - 1 and n >= 16000 else repeats
        runs: dict[str, list[dict]] = {"floor": [], "ours": []}
        for _ in range(reps):
            for m in ("floor", "ours"):
                runs[m].append(_run(m, n, d))
        o = min(runs["ours"], key=lambda q: q["time_s"])
        f = min(runs["floor"], key=lambda q: q["time_s"])
        row = {"n": n, "d": d, "n_test": n // 4, "ours_s": o["time_s"], "floor_s": f["time_s"],
               "ours_over_floor": o["time_s"] / f["time_s"], "repeats": reps,
               "ours_all_s": [q["time_s"] for q in runs["ours"]],
               "floor_all_s": [q["time_s"] for q in runs["floor"]],
               "ours_peak_mb": max(q["peak_mb"] for q in runs["ours"]),
               "plan_host_mb": o["plan_host_mb"],
               "floor_peak_mb": max(q["peak_mb"] for q in runs["floor"]),
               "nxn_mb": n * n * 8 / 2**20, "backend": o["backend"],
               "results_agree": abs(o["checksum"] - f["checksum"]) <= 1e-6 * max(
                   1.0, abs(f["checksum"]))}
        rows.append(row)
        print(f"{n:>6} {row['ours_s']:>8.2f} {row['floor_s']:>8.2f} "
              f"{row['ours_over_floor']:>10.2f} {row['ours_peak_mb']:>8.0f} "
              f"{row['plan_host_mb']:>8.0f} {row['floor_peak_mb']:>8.0f} {row['nxn_mb']:>8.0f}",
              flush=True)
    return rows


def _structured(n: int, t: int, d: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    """MNIST-like inputs: non-negative, low rank plus noise, unit norm.

    Their kernel has ``lambda_max`` of order ``n/3`` and small ``lambda_min``, as real images do
    (isotropic Gaussian inputs give a kernel close to ``I/2``, far too well conditioned to test
    a precision policy).
    """
    rng = np.random.default_rng(seed)
    w = np.abs(rng.normal(size=(20, d))) * (rng.random(size=(20, d)) < 0.2)
    def draw(m: int) -> np.ndarray:
        x = np.abs(rng.normal(size=(m, 20))) @ w + 0.05 * np.abs(rng.normal(size=(m, d)))
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    x, xt = draw(n), draw(t)
    return x, np.sign(rng.normal(size=n)), xt, np.sign(rng.normal(size=t))


def part_precision(cases: list[tuple[int, list[float]]], d: int, n_test: int) -> list[dict]:
    """Float32 policies against the float64 reference."""
    import ntk_influence as ni
    from ntk_influence import scale as dd

    print(f"{'n':>6} {'lam':>7} {'cond':>9} {'policy':>16} {'beta':>9} {'alpha':>9} "
          f"{'diag(A)':>9} {'influence':>9} {'estimate':>9} {'steps':>7}")
    rows = []
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
    for n, lams in cases:
        x, y, xt, yt = _structured(n, n_test, d)
        k = ni.kernels.kernel_matrix("paper", x)
        kt = ni.kernels.kernel_matrix("paper", x, xt)
        for lam in lams:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = ni.influence.influence_from_kernels(k, kt, y, yt, lam, spectrum="none")
                for refine in (False, True):
                    got, rep = dd.float32_influence(k, kt, y, yt, lam, refine=refine)
                    row = {"n": n, "lam": lam, "cond": rep.cond, "policy": rep.policy,
                           "beta": rel(got.beta, ref.beta), "alpha": rel(got.alpha, ref.alpha),
                           "a_diag": rel(got.a_diag, ref.a_diag),
                           "influence": rel(got.influence, ref.influence),
                           "f_test": rel(got.f_test, ref.f_test),
                           "estimate": rep.diag_error_estimate,
                           "steps": list(rep.refinement_steps),
                           "residual": list(rep.residual)}
                    rows.append(row)
                    print(f"{n:>6} {lam:>7.0e} {rep.cond:>9.3g} {rep.policy:>16} "
                          f"{row['beta']:>9.1e} {row['alpha']:>9.1e} {row['a_diag']:>9.1e} "
                          f"{row['influence']:>9.1e} {row['estimate']:>9.1e} "
                          f"{tuple(row['steps'])!s:>7}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the parts, print the tables and write ``benchmarks/out/bench_scale.json``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--part", choices=("time", "precision", "both"), default="both")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 8000, 16000])
    ap.add_argument("--precision-sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--d", type=int, default=784)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(OUT / "bench_scale.json"))
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.worker[0], int(a.worker[1]), int(a.worker[2]))))
        return 0
    info: dict = {**_runinfo.start(), "machine": platform.platform(), "cpus": os.cpu_count(),
                  "lam": LAM}
    if a.quick:
        sizes, psizes, d = [500, 1000], [300], 64
    else:
        sizes, psizes, d = a.sizes, a.precision_sizes, a.d
    if a.part in ("time", "both"):
        info["time"] = part_time(sizes, d, 1 if a.quick else a.repeats)
    if a.part in ("precision", "both"):
        lams_full = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
        cases = [(n, lams_full if n <= 4000 else [1e-3, 1e-1]) for n in psizes]
        info["precision"] = part_precision(cases, d, 50 if a.quick else 200)
    info["load_avg_at_end"] = os.getloadavg()
    _runinfo.finish(info)
    if a.part != "both":  # the record of each part's own run
        info[f"run_{a.part}"] = info.pop("run")
    out = Path(a.out)
    old = json.loads(out.read_text()) if out.exists() and a.part != "both" else {}
    old.update(info)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(old, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
