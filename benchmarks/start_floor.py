"""The solver floor of smooth nets: two compare runs, warm and cold start, against each other.

``python benchmarks/start_floor.py WARM_DIR COLD_DIR [--out benchmarks/out/start_floor.json]``
reads the per-width ``width_M.npz`` / ``.json`` of two ``ntk-influence compare`` output folders
that differ only in ``--warm-start`` / ``--cold-start`` (same data, architecture and removed
points) and reports, for every width both ran, how far their leave-one-out results are apart: the
Pearson R between the two runs' actual influences ``I_nn`` over all (removed point, test point)
pairs (``R(Delta)`` of two solvers: the same full run, so equal ``I_nn`` means equal ``Delta``),
the largest ``|I_warm - I_cold|`` relative to the largest ``|I|``, and both runs' largest
ridge-relative gradient. For smooth nets trained to a stationary point both starts should reach
the same point, so R is 1 to rounding; a gap means two stationary points (a non-unique
minimiser), which the table then shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _runinfo
import numpy as np


def _width(folder: Path, width: int) -> tuple[np.ndarray, dict]:
    arr = np.load(folder / f"width_{width}.npz")
    return np.asarray(arr["actual"], np.float64), json.loads(
        (folder / f"width_{width}.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("warm", type=Path)
    ap.add_argument("cold", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/start_floor.json"))
    a = ap.parse_args(argv)
    info = _runinfo.start(argv)
    cw = json.loads((a.warm / "compare.json").read_text())
    cc = json.loads((a.cold / "compare.json").read_text())
    if cw["arch"] != cc["arch"]:
        raise SystemExit(f"the two runs are of different nets: {cw['arch']} and {cc['arch']}")
    rows = []
    cold_widths = {int(r["width"]) for r in cc["widths"]}
    for rw in cw["widths"]:
        w = int(rw["width"])
        if w not in cold_widths:
            continue
        iw, jw = _width(a.warm, w)
        ic, jc = _width(a.cold, w)
        same = (jw["info"]["warm_start"], jc["info"]["warm_start"]) == (True, False)
        if not same or jw["settings"]["train_index"] != jc["settings"]["train_index"]:
            raise SystemExit(f"width {w}: the runs are not a warm and a cold run of one setting")
        r = float(np.corrcoef(iw.ravel(), ic.ravel())[0, 1])
        rows.append({"width": w, "pairs": int(iw.size), "r_warm_cold": r,
                     "max_rel_diff": float(np.abs(iw - ic).max() / np.abs(ic).max()),
                     "median_abs_influence": float(np.median(np.abs(ic))),
                     "max_rel_grad_norm_warm": jw["info"]["max_rel_grad_norm"],
                     "max_rel_grad_norm_cold": jc["info"]["max_rel_grad_norm"],
                     "seconds_retrain_warm": jw["info"]["seconds_retrain"],
                     "seconds_retrain_cold": jc["info"]["seconds_retrain"],
                     "iterations_warm": jw["info"]["retrain_total_iterations"],
                     "iterations_cold": jc["info"]["retrain_total_iterations"]})
        print(f"{cw['arch']} width {w}: R(warm, cold) = {r:.10f}, max rel. diff "
              f"{rows[-1]['max_rel_diff']:.1e}, retrain time warm/cold "
              f"{rows[-1]['seconds_retrain_warm']:.0f}/{rows[-1]['seconds_retrain_cold']:.0f} s")
    if not rows:
        raise SystemExit("the two runs share no width")
    info.update(arch=cw["arch"], warm=str(a.warm), cold=str(a.cold), rows=rows)
    _runinfo.write(info, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
