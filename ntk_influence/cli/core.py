"""The ``influence`` subcommand: exact NTK influence of every training point on every test loss."""

from __future__ import annotations

import argparse
import time
import zipfile
from pathlib import Path
from typing import Any

from .. import io
from ..io import jsonable
from ._common import Command, add_data_arguments, count, log, settings_of
from ._outdir import load_data_from_args


def _influence_args(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--lam", type=float, default=0.1, help="ridge lambda >= 0 (default: %(default)s)")
    p.add_argument("--kernel", default="paper",
                   choices=["paper", "paper-nt", "paper-both", "paper-closed-form"],
                   help="paper: eq. (4), first layer trained, in closed form; paper-nt: the same "
                        "through Neural Tangents (ntk - nngp, ~1e-9); paper-both: both layers "
                        "(default: %(default)s)")
    p.add_argument("--top", type=count, default=5,
                   help="helpful/harmful points listed per test point in summary.json "
                        "(default: %(default)s)")
    p.add_argument("--spectrum", default="auto",
                   choices=["auto", "exact", "iterative", "lanczos", "none"],
                   help="how lambda_min/lambda_max are computed: auto (dense up to n=1024, else "
                        "ARPACK), exact, iterative (ARPACK; 'lanczos' is the same), none "
                        "(default: %(default)s)")
    p.add_argument("--block-size", type=count, default=2048,
                   help="kernel/test block size (default: %(default)s)")


def _influence_run(args: argparse.Namespace) -> Path:
    # deferred for start-up speed
    from ..influence import ntk_influence

    out = Path(args.out)
    ds = load_data_from_args(args)
    if args.resume and _finished(args, out):
        log(args, f"influence already computed in {out}; skipping (--resume)")
        return out
    t0 = time.perf_counter()
    res = ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=args.lam,
                        kernel=args.kernel, spectrum=args.spectrum, block_size=args.block_size)
    secs = time.perf_counter() - t0
    io.save_npz(out / "influence.npz", influence=res.influence, ihvp=res.ihvp,
                leverage=res.leverage, f_test=res.f_test, alpha=res.alpha, y_test=res.y_test,
                self_influence=res.self_influence, loo_f_train=res.loo_f_train,
                f_train=res.f_train, train_index=ds.train_index, test_index=ds.test_index)
    k = min(args.top, res.n_train)
    per_test = [{"test_index": j,
                 "helpful": [{"train_index": int(i), "influence": float(res.influence[i, j])}
                             for i in res.ranking(j, k, "helpful")],
                 "harmful": [{"train_index": int(i), "influence": float(res.influence[i, j])}
                             for i in res.ranking(j, k, "harmful")]}
                for j in range(res.n_test)]
    io.save_json(out / "summary.json", {
        "command": "influence", "settings": settings_of(args), "data": ds.describe(),
        "kernel": res.kernel, "lam": res.lam,
        "conditioning": {"lambda_min": res.lambda_min, "lambda_max": res.lambda_max,
                         "cond_K_plus_lam_I": res.cond, "spectrum_method": res.spectrum_method},
        "theorem3": {"lower": res.theorem3_lower, "upper": res.theorem3_upper,
                     "leverage_min": float(res.leverage.min()),
                     "leverage_max": float(res.leverage.max())},
        "seconds": secs, "sign_convention": "influence > 0: removing the point raises the test "
                                            "loss (helpful); < 0: harmful",
        "per_test": per_test})
    log(args, f"n_train={res.n_train} n_test={res.n_test} lam={res.lam:g} "
              f"cond(K+lam I)={res.cond:.3g} in {secs:.2f} s")
    return out


def _finished(args: argparse.Namespace, out: Path) -> bool:
    """Whether ``out`` holds readable results of these settings (a damaged file is said, on stderr)."""
    summary, arrays = out / "summary.json", out / "influence.npz"
    if not (summary.exists() and arrays.exists()):
        return False
    try:
        old = io.load_json(summary)
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        log(args, f"{summary} is damaged ({type(e).__name__}); computing the influence again")
        return False
    try:
        io.load_npz(arrays)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        log(args, f"{arrays} is damaged ({type(e).__name__}); computing the influence again")
        return False
    settings = old.get("settings")
    return isinstance(settings, dict) and _same_settings(settings, settings_of(args))


def _same_settings(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two runs' settings agree, ignoring how they were run (out, resume, quiet)."""
    skip = ("out", "resume", "quiet", "force")
    strip = lambda d: {k: v for k, v in jsonable(d).items() if k not in skip}  # noqa: E731
    return strip(old) == strip(new)



INFLUENCE = Command("influence", "exact NTK influence of every training point on every test loss "
                    "(eq. 8-9), the IHVP estimate (eq. 13) and leverage", _influence_args,
                    _influence_run)
