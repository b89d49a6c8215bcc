"""Render the measured sections of the documentation from the JSON of named runs.

README.md and benchmarks/README.md hold sections between ``<!-- render:NAME -->`` and
``<!-- /render:NAME -->``. Each section is produced by one function of this module from the JSON
that one run wrote, committed under ``benchmarks/runs/RUN/`` with the run's record
(``run.json``: command, date, machine, load average at start and end, wall time). So every number
in the documentation names the run it comes from, and re-rendering is reproducible.

Usage (from the repository root)::

    python benchmarks/render_docs.py            # rewrite the sections in place
    python benchmarks/render_docs.py --check    # exit 1 when a section differs from its JSON
    python benchmarks/render_docs.py record RUN --collect DIR_OR_FILE ... -- COMMAND ...

``record`` runs COMMAND, measures its wall time and the load average before and after, and copies
the JSON files it wrote (a file, or every ``*.json`` under a folder) to ``benchmarks/runs/RUN/``
together with ``run.json``. The formatting helpers are in ``_render_common.py``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _render_common import (
    MissingRunError,
    fx,
    g,
    load,
    seconds,
    source,
    table,
    times,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "runs"
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]


# ------------------------------------------------------------------ record a run

def record(name: str, command: list[str], collect: list[str], results: Path = RESULTS,
           run: bool = True) -> dict[str, Any]:
    """Run ``command`` and store its JSON outputs with the run's record under ``results/name``.

    Args:
      name: the run's folder name under ``results``.
      command: the command line to run (from the repository root).
      collect: JSON files, or folders whose ``*.json`` files (recursively) are copied.
      results: the results folder.
      run: False to only collect (the record then has no timing).

    Returns:
      The run record written to ``results/name/run.json``.
    """
    rec: dict[str, Any] = {
        "command": shlex.join(command),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": platform.platform(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "load_avg_start": [round(v, 2) for v in os.getloadavg()]}
    if run:
        t0 = time.perf_counter()
        rc = subprocess.call(command, cwd=ROOT)
        rec.update(wall_s=round(time.perf_counter() - t0, 2), exit_code=rc)
    rec["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    missing = [c for c in collect if not Path(c).exists()]
    if rec.get("exit_code", 0) != 0 or missing:  # keep the previous results of this run
        rec["error"] = (f"exit code {rec.get('exit_code')}; missing outputs {missing}; "
                        f"{results / name} left as it was")
        return rec
    dest = results / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    files = []
    for c in collect:
        src = Path(c)
        if src.is_dir():
            for p in sorted(src.rglob("*.json")):
                rel = p.relative_to(src)
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, dest / rel)
                files.append(str(rel))
        else:
            shutil.copyfile(src, dest / src.name)
            files.append(src.name)
    rec["files"] = files
    (dest / "run.json").write_text(json.dumps(rec, indent=2) + "\n")
    return rec


# ------------------------------------------------------------------ README: reproduction

def _table1_rows(rows: list[dict[str, Any]], detail: bool = False) -> list[list[str]]:
    out = []
    for r in rows:
        line = [str(r["width"]), fx(r["pearson"], 3), fx(r["spearman"], 3),
                fx(r["ntk_slope"]), fx(r["ihvp_pearson"], 3), fx(r["ihvp_spearman"], 3),
                fx(r["ihvp_slope"]), g(r["retrain_max_error_ratio"], 2)]
        if detail:
            mean_steps = r["retrain_total_iterations"] / max(r["retrain_n_retrains"], 1)
            line += [f"{mean_steps:.0f} ({r['retrain_max_iterations']})",
                     str(r["retrain_n_refined"]), f"{r['loo_nets_per_minute']:.0f}",
                     seconds(r["seconds_total"])]
        out.append(line)
    return out


TABLE1_HEAD = ["width", "R (NTK)", "rho (NTK)", "slope (NTK)", "R (IHVP)", "rho (IHVP)",
               "slope (IHVP)", "max solver error / abs(Delta)"]


def _table1_setup(c: dict[str, Any]) -> str:
    s, d, r0 = c["settings"], c["data"], c["widths"][0]
    return (f"{r0['n_points']} training points with the largest `|I_ntk|` on test point "
            f"{s['test_index']}, out of {d['n_train']} training points of `{d['name']}` "
            f"(lambda = {g(s['lam'])}, seed {s['seed']}). The *actual* influence of each is "
            f"measured by retraining the finite net (eq. 1, kappa = {g(s['kappa'])}, "
            f"{s['init']} initialisation so `f_0 = 0`, {s['dtype']}) without it: the minimiser "
            f"of eq. (2) found by damped Gauss-Newton, started from the same `W(0)` as the full "
            f"run, each retrain stopped when its predictions move less than "
            f"{g(s['rel_tol'])} of the `|Delta|` it measures (floor `--f-tol {g(s['f_tol'], 1)}`"
            + (f", at most {s['max_steps']} steps" if s.get("max_steps") else "")
            + "). The last column is the solver's own error estimate (last change of the "
            "retrain plus that of the full run) over the measured `|Delta|`, the worst over the "
            "points: a proxy, not a bound.")


def render_reproduce(results: Path) -> str:
    """README: the quick reproduction on digits, from ``reproduce_quick``."""
    run = "reproduce_quick"
    rep = load(results, run, "reproduce.json")
    c = load(results, run, "table1/compare.json")
    f2 = load(results, run, "figure2/summary.json")
    f3 = load(results, run, "figure3/summary.json")
    f5 = load(results, run, "figure5/summary.json")
    f6 = load(results, run, "figure6/summary.json")
    f7 = load(results, run, "figure7/summary.json")
    kern = load(results, run, "kernel/summary.json")
    parts = rep["parts"]
    secs = ", ".join(f"{k} {seconds(v['seconds'])}" for k, v in parts.items()
                     if v.get("status") == "done")
    env = rep["environment"]
    kd = kern["data"]
    lines = [source(results, run), "",
             f"Mode `{rep['mode']}`: `{kd['name']}`, seed {kd.get('seed', rep['settings']['seed'])}, "
             f"lambda = {g(kern['lam'])}; {kd['n_train']} training and {kd['n_test']} test "
             f"points for the kernel parts (cond(K + lam I) = "
             f"{g(kern['conditioning']['cond_K_plus_lam_I'])}). ntk_influence "
             f"{env['ntk_influence']}, JAX {env['jax']} on {env['backend']}. Time per part: "
             f"{secs}.", ""]
    lines += ["**Table 1 / Figure 1.** " + _table1_setup(c), ""]
    lines += table(TABLE1_HEAD, _table1_rows(c["widths"]))
    # Figure 2
    per = {float(r["lam"]): r for r in f2["per_lambda"]}
    picks = [lam for lam in (0.0625, 1.0, 16.0) if lam in per]
    viol = sum(int(r["eq16_violations"]) for r in f2["per_lambda"])
    inb = all(r["leverage_in_bounds"] for r in f2["per_lambda"])
    pairs = f2["data"]["n_train"] * f2["data"]["n_test"]
    lines += ["", f"**Figure 2 / Theorem 3.** Mean relative error `|I - Ihat| / |I|` of the "
              f"kernel-regime IHVP over all {pairs} (train, test) pairs: "
              + ", ".join(f"{g(per[lam]['mean_error_rate'], 2)} at lambda = {g(lam)}"
                          for lam in picks)
              + "; Theorem 3's lower bound `lambda_min/(lambda_min+lambda)` at the same lambdas: "
              + ", ".join(g(per[lam]["theorem3_lower"], 2) for lam in picks)
              + "; the mean ridge leverage `h_i`: "
              + ", ".join(g(per[lam]["mean_leverage"], 2) for lam in picks)
              + f". Violations of eq. (16) over the {len(per)} lambdas: {viol}; "
              f"`h_i` inside Theorem 3's bounds at every lambda: {'yes' if inb else 'no'}."]
    mix = f3["mixture"]
    lines += ["", f"**Figure 3 / Theorem 4.** Spearman correlation of a training point's KDE "
              f"density with its IHVP error rate: {g(f3['spearman_density_error'], 2)}; of its "
              f"leverage `h_i` with the error rate: {g(f3['spearman_leverage_error'], 4)}. On "
              f"Definition 1's mixture (proportions "
              f"{', '.join(g(p, 2) for p in mix['p'])}; {f3['settings']['mixture_n']} points, "
              f"{f3['settings']['mixture_repeats']} draws) the median error rate per component "
              f"is {', '.join(g(v, 2) for v in mix['component_error'])} (Spearman with `p_k`: "
              f"{g(mix['spearman_p_error'], 2)})."]
    gr = f5["groups"]
    mid = [x["complexity"] for x in gr[1:-1]]
    lines += ["", f"**Figure 5 / eq. (19).** Complexity of {len(gr)} groups of "
              f"{gr[0]['size']} training points sorted by influence summed over the test "
              f"points: {g(gr[0]['complexity'])} for the most harmful group, "
              f"{g(gr[-1]['complexity'])} for the most helpful one, "
              f"{g(min(mid), 2)}-{g(max(mid), 2)} for the groups between."]
    ag = f6["agreement_first_order_vs_exact"]
    ts = times(f6["times"])
    noisy = f7["share_noisy"]
    k_max = max(range(len(noisy)), key=lambda i: noisy[i])
    t7 = times(f7["times"])
    lines += ["", f"**Figures 6-7 / eq. (20).** First-order against exact time-`t` influence "
              f"(time unit `{f6['time_unit']}`): R = {fx(ag['pearson'][0], 4)}, slope "
              f"{fx(ag['slope'][0], 3)} at t = {ts[0]}; R = {fx(ag['pearson'][-1], 3)}, slope "
              f"{fx(ag['slope'][-1], 3)} at t = {ts[-1]} (the kernel IHVP's slope). With "
              f"{f7['n_noisy']} of {f7['data']['n_train']} labels flipped "
              f"({g(f7['noise_fraction'])}), the share of flipped points among the most "
              f"influential point of each of {f7['slots_per_time']} test points is "
              f"{g(noisy[0], 2)} at t = {t7[0]}, highest at t = {t7[k_max]} "
              f"({g(noisy[k_max], 2)}), and {g(noisy[-1], 2)} at t = {t7[-1]}."]
    return "\n".join(lines)


def render_table1(results: Path) -> str:
    """README: Table 1 at larger widths, from ``table1`` (one ``ntk-influence compare`` run)."""
    c = load(results, "table1", "compare.json")
    lines = [source(results, "table1"), "", _table1_setup(c), ""]
    lines += table(TABLE1_HEAD, _table1_rows(c["widths"]))
    return "\n".join(lines)


def render_table1_detail(results: Path) -> str:
    """benchmarks/README: the same Table 1 run with the solver's work and time per width."""
    c = load(results, "table1", "compare.json")
    lines = [source(results, "table1", "runs"), "",
             _table1_setup(c), ""]
    lines += table([*TABLE1_HEAD, "steps per retrain: mean (max)", "refined", "LOO nets/min",
                    "time"], _table1_rows(c["widths"], detail=True))
    lines += ["", f"Total {seconds(c['seconds'])} for {len(c['widths'])} widths (train, "
              f"retrains, IHVP)."]
    return "\n".join(lines)


ATTRIBUTION_ROWS = {
    "ntk_refit": "NTK: kernel ridge regression refit on the kept points (not additive)",
    "ntk": "NTK leave-one-out influence (eq. 8-9)",
    "ihvp": "first-order influence on the trained net (eq. 12)",
    "trak": "TRAK",
    "tracin": "TracIn-CP",
    "grad_dot": "gradient similarity",
    "loss": "training loss (mislabel baseline)",
}


def _attribution_setup(a: dict[str, Any]) -> str:
    s, d, info = a["settings"], a["data"], a["info"]
    sub, loo, o = info["subset_retrain"], info.get("loo_retrain"), info["options"]
    alpha = info.get("alpha", s["alpha"][0] if isinstance(s["alpha"], list) else s["alpha"])
    kept = math.ceil(alpha * d["n_train"])
    arch = info.get("arch", "two-layer")
    stationary = info.get("settings", {}).get("stop") == "gradient"
    net = (f"the net of eq. (1) at width {s['width']} (kappa = {g(s['kappa'])}, {s['init']} "
           f"initialisation, {s['dtype']})" if arch == "two-layer" else
           f"the `{arch}` net at width {s['width']} ({s['dtype']}; `ntk` and `ntk_refit` use "
           "Neural Tangents' kernel of the same stack, `ihvp` the Gauss-Newton Hessian)")
    if stationary:
        solver = (f"trained by truncated Newton to a stationary point (ridge-relative gradient "
                  f"<= {g(info['settings']['g_tol'], 1)}), every retrain too (largest over the "
                  f"subset retrains: {g(sub['max_ridge_rel_grad_norm'], 2)})")
        stop = "retrained to the same tolerance"
    else:
        solver = (f"trained by damped Gauss-Newton until its predictions move less than "
                  f"`--f-tol {g(s['f_tol'], 1)}`")
        stop = f"stopped at `--coarse-f-tol {g(info['coarse_f_tol'], 1)}`"
    text = (f"`{d['name']}`: {d['n_train']} training and {d['n_test']} test points; {net}, "
            f"lambda = {g(s['lam'])}, {solver}. "
            f"**LDS**: {s['subsets']} random subsets of {kept} points (alpha = "
            f"{g(alpha)}), each retrained from the same `W(0)` and {stop} "
            f"({sub['total_iterations'] / sub['n_retrains']:.0f} "
            f"steps on average, at most {sub['max_iterations']}; median `|Delta|` "
            f"{g(sub['median_abs_delta'], 2)}; the solver's error on a subset's "
            f"test loss is at most {g(info['subset_loss_error_over_spread'], 2)} of the spread of "
            f"that test point's losses across subsets); Spearman per test point, averaged.")
    if loo:
        text += (f" **LOO**: {loo['n_retrains']} random training points retrained one at a time "
                 f"(median `|Delta|` {g(loo['median_abs_delta'], 2)}; at most "
                 f"{loo['max_iterations']} steps, solver error at most "
                 f"{g(loo['max_solver_error'], 2)}), correlations pooled over the points and "
                 f"every test point.")
    if s["noise"] > 0:
        text += (f" **Mislabel**: {g(100 * s['noise'])}% of the training labels flipped, the net "
                 f"retrained on them (to the coarse tolerance), points ranked by "
                 f"self-influence.")
    text += (f" TRAK: {o['trak_ensemble']} nets (the trained one and others trained to the "
             f"coarse tolerance), one {o['trak_projection']} projection to {o['trak_dim']} "
             f"dimensions; TracIn-CP: {o['tracin_checkpoints']} checkpoints of a "
             f"{o['tracin_steps']}-step {o['tracin_method'].upper()} path. Seconds: the scores "
             f"on the trained net (TRAK's include training its other nets).")
    return text


def _secs(s: float) -> str:
    return f"{s:.2g} s" if s < 1 else seconds(s)


def render_attribution(results: Path, run: str = "attribution") -> str:
    """README: LDS, LOO correlation, mislabel AUC, brittleness per method, from ``run``."""
    a = load(results, run, "attribution.json")
    rec = load(results, run, "run.json")
    m, info = a["methods"], a["info"]
    col = lambda name, key: fx(m[name][key], 3) if key in m.get(name, {}) else "-"  # noqa: E731
    rows = [[f"`{k}`", v, col(k, "lds"), col(k, "loo_pearson"), col(k, "loo_spearman"),
             col(k, "mislabel_auc"), col(k, "mislabel_found_10pct"),
             _secs(m[k]["seconds"]) if "seconds" in m[k] else "-"]
            for k, v in ATTRIBUTION_ROWS.items() if k in m]
    lines = [source(results, run), "", _attribution_setup(a), ""]
    lines += table(["method", "what", "LDS", "LOO Pearson", "LOO Spearman", "mislabel AUC",
                    "flipped found in the top 10%", "seconds"], rows)
    notes = ["`ntk_refit` removes a single point exactly as `ntk` does, so its LOO and "
             "mislabel columns are `ntk`'s."]
    if "not_applicable" in m.get("ntk_f0", {}):
        notes.append("`ntk_f0` (the NTK fitted to `y - f_0`) does not apply: `f_0 = 0` with the "
                     "symmetric initialisation.")
    lines += ["", " ".join(notes)]
    lds = {k: m[k]["lds"] for k in m if "lds" in m[k]}
    add = [k for k in ("trak", "tracin") if k in lds]
    below = [k for k in add if lds["ntk"] < lds[k]]
    wall = rec.get("wall_s", a["seconds"])
    per: dict[float, list[float]] = {}
    fit: dict[float, int] = {}
    for r in info.get("lds_runs", []):
        for part in ("subset_retrain", "floor_retrain"):
            if r.get(part):
                f = r["dropped_fraction"]
                per.setdefault(f, []).append(r[part]["seconds"] / r[part]["n_retrains"])
                if "rows_fitted" in r[part]:
                    fit[f] = r[part]["rows_fitted"]
    each = ("" if not per else " (per retrain, " + ", ".join(
        f"{fx(sum(v) / len(v), 2)} s with {g(100 * f)}% dropped"
        + (f", fitting its {fit[f]} kept points" if f in fit else "")
        for f, v in per.items()) + ")")
    lines += ["", f"Time: training {seconds(info['seconds_train'])}, subset retrains "
              f"{seconds(info['seconds_subsets'])}{each}, leave-one-out retrains "
              f"{seconds(info.get('seconds_loo', 0))}, "
              + (f"brittleness {seconds(info['seconds_brittleness'])}, "
                 if "seconds_brittleness" in info else "")
              + "mislabel part "
              f"{seconds(info.get('seconds_mislabel', 0))}; the whole command "
              f"{seconds(wall)}.", "",
              f"- `ntk_refit` LDS >= 0.9: {'met' if lds['ntk_refit'] >= 0.9 else '**missed**'} "
              f"({fx(lds['ntk_refit'], 3)}).",
              "- `ntk` (additive) LDS against " + " and ".join(
                  f"`{k}` ({fx(lds[k], 3)})" for k in add) + f": {fx(lds['ntk'], 3)}, "
              + (f"**below** {', '.join(f'`{k}`' for k in below)}." if below else
                 "at least both." if len(add) == 2 else "at least it.")]
    ranked = sorted((k for k in lds if k != "ntk_refit"), key=lambda k: -lds[k])
    lines.append("- Additive methods by LDS: " + ", ".join(f"`{k}` {fx(lds[k], 3)}" for k in ranked)
                 + ".")
    if "mislabel_auc" in m.get("loss", {}):
        aucs = [v["mislabel_auc"] for v in m.values() if "mislabel_auc" in v]
        ok = m["ntk"]["mislabel_auc"] >= m["loss"]["mislabel_auc"]
        lines.append(f"- Mislabel AUC of the NTK self-influence >= the loss baseline: "
                     f"{'met' if ok else '**missed**'} ({fx(m['ntk']['mislabel_auc'], 3)} "
                     f"against {fx(m['loss']['mislabel_auc'], 3)}); every method and the "
                     f"baseline lie between {fx(min(aucs), 3)} and {fx(max(aucs), 3)}.")
    runs = info.get("lds_runs", [])
    budget = 1200 if len(runs) > 1 else 900
    lines.append(f"- The whole run <= {budget // 60} min: "
                 + (f"met ({seconds(wall)})." if wall <= budget else
                    f"**missed** ({seconds(wall)}, {100 * (wall / budget - 1):.0f}% above)."))
    if len(runs) > 1:
        lines += ["", *_lds_protocol_lines(runs)]
    if "brittleness" in info:
        lines += ["", *_brittleness_lines(info["brittleness"])]
    return "\n".join(lines)


def _size(v: float | None, cap: int) -> str:
    return f"> {cap}" if v is None else g(v)


def _brittleness_lines(b: dict[str, Any]) -> list[str]:
    """Flip-set sizes and their verification by retraining, per method."""
    cap, summ = b["max_size"], b["summary"]
    rows = [[f"`{k}`", f"{v['found']} of {v['of']}", _size(v["median_size_all"], cap),
             g(v["median_size"]) if v["median_size"] is not None else "-",
             fx(v["verified"], 2) if v["verified"] is not None else "-",
             fx(v["refit_verified"], 2) if v["refit_verified"] is not None else "-",
             fx(v["larger_than_refit"], 2) if v.get("larger_than_refit") is not None
             and k != "ntk_refit" else "-"]
            for k, v in summ.items()]
    ret = b.get("retrain", {})
    lines = [f"**Brittleness.** For each of the first {b['test_points']} correctly classified "
             "test points, each method proposes the smallest set of training points whose "
             f"removal flips the sign of the prediction (at most {cap} points): `ntk_refit` "
             "searches greedily on the exact kernel refit (each step removes the point that "
             "moves the refit furthest towards the other sign given the points already "
             "removed, then puts back any point the flip does not need); an additive method "
             "takes the shortest prefix of its ranking whose summed predicted output changes "
             "(`score / (f - y)`) cross zero. Each method's own prediction must land at least "
             f"{g(b.get('margin', 0.0))} past zero (`--flip-margin`: the net differs from its "
             "kernel refit by O(1/sqrt(width)), so a set that only just flips the refit may not "
             "flip the net). Every set is then verified by retraining the net "
             "without it from the same `W(0)`"
             + (f" ({ret['n_retrains']} retrains to the coarse tolerance; the retrained "
                f"predictions lie at least {g(b['min_abs_retrained_over_error'], 2)} solver "
                "errors from zero)" if ret else "") + ".", ""]
    lines += table(["method", "sets found", "median verified size (all points)",
                    "median size (sets found)", "verified by retraining",
                    "verified by the exact refit", "larger than `ntk_refit`'s"], rows)
    r = summ["ntk_refit"]
    lines.append("")
    if r["verified"] is not None:
        lines.append(f"- `ntk_refit` flip sets verified by retraining >= 90%: "
                     f"{'met' if r['verified'] >= 0.9 else '**missed**'} "
                     f"({fx(100 * r['verified'], 0)}% of {r['found']}).")
    found = {k: round(v["verified"] * v["found"]) if v["verified"] is not None else 0
             for k, v in summ.items()}
    others = [k for k in summ if k != "ntk_refit"]
    lines.append("- `ntk_refit`'s sets smaller than the additive methods' on median: "
                 + (f"met (median {g(r['median_size_all'])} over every point searched, a "
                    "point without a verified set counting as larger than any; "
                    + ", ".join(f"`{k}` {_size(summ[k]['median_size_all'], cap)}"
                                for k in others) + ")."
                    if r["median_size_all"] is not None and all(
                        summ[k]["median_size_all"] is None
                        or summ[k]["median_size_all"] > r["median_size_all"] for k in others)
                    else "not decided by the median (fewer than half the points have a "
                    "verified set within the cap for some method); verified sets found: "
                    + ", ".join(f"`{k}` {found[k]}" for k in summ)
                    + "; where a method and `ntk_refit` both found a set, the method's was "
                    "larger at " + ", ".join(
                        f"`{k}` {fx(100 * summ[k]['larger_than_refit'], 0)}%"
                        for k in others if summ[k]["larger_than_refit"] is not None)
                    + " of those points."))
    return lines


LDS_FIELD = [
    ("MAGIC (exact metagradients)", "1% dropped", "0.93 same seed, 0.83 fresh seeds"),
    ("TRAK on CIFAR-10", "50% dropped", "about 0.54"),
    ("dattri's MNIST MLP benchmark, TRAK", "50% dropped", "about 0.45"),
]


def _lds_protocol_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The LDS of every method at each kept fraction under each seed protocol, with the floor."""
    methods = [k for k in ATTRIBUTION_ROWS if k in runs[0]["lds"]]
    head = ["dropped", "protocol", *[f"`{k}`" for k in methods], "noise floor",
            "ceiling (about)"]
    rows = [[f"{g(100 * r['dropped_fraction'])}% ({r['subsets']} subsets of "
             f"{r['kept_points']})", r["protocol"], *[fx(r["lds"][k], 3) for k in methods],
             fx(r["noise_floor"], 3) if r["noise_floor"] is not None else "-",
             fx(r["noise_ceiling"], 3) if r.get("noise_ceiling") is not None else "-"]
            for r in runs]
    err = max(r["loss_error_over_spread"] for r in runs)
    lines = ["**LDS under both seed protocols.** *fixed*: every subset retrain starts from the "
             "trained net's `W(0)`; *fresh*: each draws its own `W(0)` (start and ridge centre), "
             "and the same subsets are retrained a second time from other seeds. The noise floor "
             "is the LDS of that second retraining against the first: how well one retraining "
             "predicts another. A noise-free prediction can exceed it; with independent noise "
             "in both retrainings its ceiling is about the square root of the floor's "
             "per-test-point correlation (correction for attenuation, averaged), the last "
             f"column. The solver's error on a subset's test loss is at most {g(err, 2)} of "
             "that test point's spread across subsets in every run.", ""]
    lines += [*table(head, rows), ""]
    by = {(r["protocol"], r["alpha"]): r for r in runs}
    for alpha, want in ((0.5, 0.95), (0.99, 0.9)):
        r = by.get(("fresh", alpha))
        if r is not None:
            v = r["lds"]["ntk_refit"]
            lines.append(f"- `ntk_refit` LDS >= {g(want)} under fresh seeds at alpha = "
                         f"{g(alpha)}: {'met' if v >= want else '**missed**'} ({fx(v, 3)}; noise "
                         f"floor {fx(r['noise_floor'], 3)}, ceiling about "
                         f"{fx(r['noise_ceiling'], 3)}).")
    lines += ["", "Others' published LDS, quoted for scale only (their data, models and "
              "protocols; not re-run here):", ""]
    lines += table(["work", "drops", "reported LDS"], [list(f) for f in LDS_FIELD])
    return lines


def render_mislabel(results: Path) -> str:
    """README: mislabel detection on a harder setting, from ``attribution_mislabel``."""
    run = "attribution_mislabel"
    a = load(results, run, "attribution.json")
    s, d, m = a["settings"], a["data"], a["methods"]
    n_flip = round(s["noise"] * d["n_train"])
    rows = [[f"`{k}`", ATTRIBUTION_ROWS[k], fx(v["mislabel_auc"], 3),
             fx(v["mislabel_found_10pct"], 3), fx(v["mislabel_found_at_noise"], 3)]
            for k, v in m.items() if "mislabel_auc" in v and k != "ntk_refit"]
    rows.sort(key=lambda r: -float(r[2]))
    lines = [source(results, run), "",
             f"`{d['name']}`, {d['n_train']} training points, {g(100 * s['noise'])}% of their "
             f"labels flipped ({n_flip} points); the net of eq. (1) at width {s['width']} "
             "retrained on the flipped labels; points ranked by self-influence (the training "
             "loss for the baseline). AUC: the chance a flipped point outranks a clean one; "
             f"found in the top 10%: the share of the flipped points among the "
             f"{math.ceil(0.1 * d['n_train'])} highest-ranked (at most "
             f"{fx(min(1.0, math.ceil(0.1 * d['n_train']) / n_flip), 3)} here); found in the top "
             f"{g(100 * s['noise'])}%: the same among the {n_flip} highest-ranked (1 for a "
             "perfect ranking).", ""]
    lines += table(["method", "what", "mislabel AUC", "flipped found in the top 10%",
                    f"flipped found in the top {g(100 * s['noise'])}%"], rows)
    best = max(m[k]["mislabel_auc"] for k in m if "mislabel_auc" in m[k] and k != "loss")
    lines += ["", f"- Best method against the loss baseline: AUC {fx(best, 3)} against "
              f"{fx(m['loss']['mislabel_auc'], 3)}; the methods span "
              f"{fx(min(float(r[2]) for r in rows), 3)} to {fx(max(float(r[2]) for r in rows), 3)}."]
    return "\n".join(lines)


CLEAN_ROWS = {
    "ntk_refit": "exact greedy path on the NTK refit (not additive)",
    "ntk": "NTK leave-one-out influence, summed over validation",
    "ihvp": "first-order influence on the trained net, summed",
    "trak": "TRAK, summed",
    "loss": "largest training loss first",
    "random": "random order",
}


def render_clean(results: Path) -> str:
    """README: data cleaning verified by retraining, from the ``clean`` run."""
    run = "clean"
    c = load(results, run, "clean.json")
    rec = load(results, run, "run.json")
    s, d, info, m = c["settings"], c["data"], c["info"], c["methods"]
    k = c["k_star"]
    rows = [[f"`{name}`", CLEAN_ROWS[name],
             f"{fx(v['test_acc_before'], 3)} -> {fx(v['test_acc_after'], 3)}",
             f"{fx(v['test_loss_before'], 4)} -> {fx(v['test_loss_after'], 4)}",
             f"{v['noisy_removed']} of {k}"]
            for name, v in m.items()]
    ret = info["retrain"]
    text = (f"`{d['name']}`: {info['n_train']} training points with {g(100 * info['noise'])}% "
            f"of their labels flipped ({info['n_noisy']} points), {info['n_val']} validation "
            f"points drawn from the training pool, {info['n_test']} test points, all with their "
            f"true labels; the net of eq. (1) at width {info['width']}, lambda = "
            f"{g(info['lam'])}, trained by damped Gauss-Newton to `--f-tol {g(s['f_tol'], 1)}`. "
            f"Each ranking removes its first k points and the net is retrained without them "
            f"from the same `W(0)` ({ret['n_retrains']} retrains, at k = "
            f"{', '.join(str(v) for v in c['ks'])}). k = {k} is chosen by the exact refit alone: "
            "its greedy path fitted to one half of the validation set and scored on the other, "
            "both ways (the path's own validation loss falls at every step, so it cannot choose "
            "k); the test set is used for nothing but the figures below.")
    if c.get("trials"):
        text = f"First trial (seed {s['seed']}). " + text
    lines = [source(results, run), "", text, ""]
    lines += table(["ranking", "what", "test accuracy (before -> after)",
                    "test loss (before -> after)", "flipped among the removed"], rows)
    wall = rec.get("wall_s", c["seconds"])
    tr = c.get("trials")
    if tr:
        lines += ["", f"**Over {tr['trials']} trials.** The same command repeats the whole "
                  "procedure with other label flips and another validation draw (seeds "
                  f"{c['settings']['seed']} to {c['settings']['seed'] + tr['trials'] - 1}; the "
                  "same test set), each trial choosing its own k by the exact refit and "
                  "retraining every ranking's first k points (k = "
                  + ", ".join(str(k) for k in [c["k_star"], *[e["k_star"] for e in tr["extra"]]])
                  + "). Mean over trials, +- one standard error; the last two columns pair "
                  "each trial's exact-refit result with the ranking's.", ""]
        body = [[f"`{name}`", f"{100 * v['test_acc_gain_mean']:+.1f} +- "
                 f"{100 * v['test_acc_gain_sem']:.1f}",
                 f"{fx(v['test_loss_after_mean'], 4)} +- {fx(v['test_loss_after_sem'], 4)}",
                 fx(v["noisy_removed_mean"], 1),
                 "" if name == "ntk_refit" else
                 "{acc_wins} / {acc_ties} / {acc_losses}".format(**tr["exact_vs"][name]),
                 "" if name == "ntk_refit" else
                 f"{tr['exact_vs'][name]['loss_diff_mean']:+.4f} +- "
                 f"{tr['exact_vs'][name]['loss_diff_sem']:.4f}"]
                for name, v in tr["methods"].items()]
        lines += table(["ranking", "test accuracy gain (points)", "test loss after",
                        "flipped among the removed", "exact refit wins / ties / losses "
                        "(accuracy)", "exact refit's test loss minus this one's"], body)
        gains = {n: v["test_acc_gain_mean"] for n, v in tr["methods"].items()}
        ref = gains["ntk_refit"]
        others = {n: gains[n] for n in ("trak", "ihvp", "loss") if n in gains}
        beaten = [n for n, v in others.items() if v >= ref]
        lines += ["", f"- Removing the exact refit's choice improves test accuracy more than "
                  f"TRAK's, the IHVP's and the loss baseline's choice of the same size, on the "
                  f"mean over {tr['trials']} trials: "
                  + ("met" if not beaten else "**missed**")
                  + f" ({100 * ref:+.1f} points against "
                  + ", ".join(f"`{n}` {100 * v:+.1f}" for n, v in others.items())
                  + ("" if not beaten else
                     f"; not more than {', '.join(f'`{n}`' for n in beaten)}") + ")."]
        sig = [n for n in others if abs(tr["exact_vs"][n]["loss_diff_mean"])
               > 2 * tr["exact_vs"][n]["loss_diff_sem"]]
        lines += ["- Paired test-loss differences more than two standard errors from zero: "
                  + (", ".join(f"`{n}` ({tr['exact_vs'][n]['loss_diff_mean']:+.4f})"
                               for n in sig) if sig else "none") + "."]
    else:
        r = m["ntk_refit"]
        gain = r["test_acc_after"] - r["test_acc_before"]
        others = {n: v["test_acc_after"] - v["test_acc_before"] for n, v in m.items()
                  if n in ("trak", "ihvp", "loss")}
        beaten = [n for n, v in others.items() if v >= gain]
        lines += ["", "- Removing the exact refit's choice improves test accuracy more than "
                  "TRAK's, the IHVP's and the loss baseline's choice of the same size: "
                  + (f"met (+{fx(100 * gain, 1)} points against "
                     + ", ".join(f"`{n}` {100 * v:+.1f}" for n, v in others.items()) + ")."
                     if not beaten else
                     f"**missed** (+{fx(100 * gain, 1)} points; "
                     + ", ".join(f"`{n}` {100 * v:+.1f}" for n, v in others.items())
                     + f": not more than {', '.join(f'`{n}`' for n in beaten)})."),
                  "- Test loss after removal, smallest first: " + ", ".join(
                      f"`{n}` {fx(v['test_loss_after'], 4)}" for n, v in
                      sorted(m.items(), key=lambda kv: kv[1]["test_loss_after"])) + "."]
    lines += ["- Lowest test loss anywhere on the first trial's grid (read off the test set, so "
              "not a choice a user could make; the figure shows the curves): " + ", ".join(
                  f"`{n}` {fx(min(cv['test_loss']), 4)} at k = "
                  f"{c['ks'][cv['test_loss'].index(min(cv['test_loss']))]}"
                  for n, cv in sorted(c["curves"].items(), key=lambda kv: min(kv[1]["test_loss"])))
              + ".",
              f"- Time: the whole command {seconds(wall)}."]
    return "\n".join(lines)


# ------------------------------------------------------------------ benchmarks/README

def render_bench_influence(results: Path) -> str:
    """benchmarks/README: ``bench_influence.py``, ours against the floor and brute force."""
    b = load(results, "bench_influence", "bench_influence.json")
    rows = b["rows"]
    body = [[str(r["n"]), str(r["d"]), str(r["n_test"]), fx(r["ours_s"]), fx(r["ours_cold_s"]),
             fx(r["ours_spectrum_s"]), fx(r["floor_s"]), fx(r["ours_over_floor"]),
             fx(r["ours_spectrum_over_floor"]), f"{r['brute_s_extrapolated']:.0f}",
             f"{r['brute_over_ours']:.0f}", f"{r['ours_peak_mb']:.0f}",
             f"{r['floor_peak_mb']:.0f}", f"{r['nxn_mb']:.0f}",
             "yes" if r["results_agree"] else "**no**"] for r in rows]
    lines = [source(results, "bench_influence", "runs"), "",
             f"lambda = {g(b['lam'])}; floor and ours alternate in fresh processes, "
             f"{b.get('repeats', 2)} runs each, fastest counts.", ""]
    lines += table(["n", "d", "n_test", "ours s", "ours cold s", "+spec s", "floor s",
                    "ours/floor", "+spec/floor", "brute s (extrap.)", "brute/ours",
                    "peak MB ours", "peak MB floor", "n x n MB", "agree"], body)
    t = b["targets"]
    notes = []
    for r in rows:
        if r["n"] == 4000 and r["d"] == 784:
            notes.append(f"- n = 4000, d = 784, default `ntk_influence` against the floor "
                         f"(target {g(t['ours_over_floor_at_4000'])}): "
                         f"{verdict(r['ours_over_floor'], t['ours_over_floor_at_4000'])}; "
                         f"all runs: ours {', '.join(fx(v) for v in r['ours_all_s'])} s, floor "
                         f"{', '.join(fx(v) for v in r['floor_all_s'])} s.")
            notes.append(f"- n = 4000, d = 784, with the spectrum read (target "
                         f"{g(t['ours_spectrum_over_floor_at_4000'])}): "
                         + verdict(r["ours_spectrum_over_floor"],
                                    t["ours_spectrum_over_floor_at_4000"]) + ".")
        if r["n"] == 2000:
            ok = r["brute_over_ours"] >= t["brute_over_ours_at_2000"]
            notes.append(f"- n = 2000, d = {r['d']}: brute force / ours = "
                         f"{r['brute_over_ours']:.0f} (target >= "
                         f"{t['brute_over_ours_at_2000']}: {'met' if ok else '**missed**'}).")
    spec = sorted({f"{r['spectrum']} (n = {r['n']})" for r in rows if r["n"] in (1000, 4000)})
    notes.append("- Spectrum method when read: " + ", ".join(spec) + "; warnings seen: "
                 + (", ".join(sorted({w for r in rows for w in r["ours_warnings"]})) or "none")
                 + ".")
    return "\n".join([*lines, "", *notes])


def render_bench_scale_time(results: Path) -> str:
    """benchmarks/README: ``bench_scale.py --part time``, large_influence against the floor."""
    b = load(results, "bench_scale", "bench_scale.json")
    body = [[str(r["n"]), str(r["d"]), fx(r["ours_s"]), fx(r["floor_s"]),
             fx(r["ours_over_floor"]), str(r["repeats"]), f"{r['ours_peak_mb']:.0f}",
             f"{r['plan_host_mb']:.0f}", f"{r['floor_peak_mb']:.0f}", f"{r['nxn_mb']:.0f}",
             r["backend"], "yes" if r["results_agree"] else "**no**"] for r in b["time"]]
    lines = [source(results, "bench_scale", "runs"), ""]
    lines += table(["n", "d", "ours s", "floor s", "ours/floor", "runs", "ours peak MB",
                    "plan MB", "floor peak MB", "n x n MB", "backend", "agree"], body)
    lines += ["", "Measured peak of ours over the plan's host figure: "
              + ", ".join(f"{r['ours_peak_mb'] / r['plan_host_mb']:.2f} at n = {r['n']}"
                          for r in b["time"]) + " (above 1: the plan underestimates)."]
    return "\n".join(lines)


def render_bench_scale_precision(results: Path) -> str:
    """benchmarks/README: ``bench_scale.py --part precision``, float32 policies."""
    b = load(results, "bench_scale", "bench_scale.json")
    body = [[str(r["n"]), f"{r['lam']:.0e}", g(r["cond"]), r["policy"], g(r["beta"], 2),
             g(r["alpha"], 2), g(r["a_diag"], 2), g(r["influence"], 2), g(r["estimate"], 2),
             str(tuple(r["steps"]))] for r in b["precision"]]
    worst = {pol: max(r["influence"] for r in b["precision"] if r["policy"] == pol)
             for pol in sorted({r["policy"] for r in b["precision"]})}
    lines = [source(results, "bench_scale", "runs"), ""]
    lines += table(["n", "lambda", "cond", "policy", "beta", "alpha", "diag(A)", "influence",
                    "estimate", "steps"], body)
    lines += ["", "Largest influence error per policy in this run: "
              + ", ".join(f"{k} {g(v, 2)}" for k, v in worst.items()) + "."]
    return "\n".join(lines)


def render_bench_nets(results: Path) -> str:
    """benchmarks/README: ``bench_nets.py``, IHVP methods, Gauss-Newton against GD, throughput."""
    b = load(results, "bench_nets", "bench_nets.json")
    lines = [source(results, "bench_nets", "runs"), ""]
    ih = b.get("ihvp")
    if ih:
        lines += [f"**IHVP methods** (n = {ih['n_train']}, width {ih['width']}, "
                  f"P = {ih['n_params']}, 4 test points; influence of eq. 12):", ""]
        names = {"dense": "dense `jax.hessian`", "woodbury": "Woodbury (n x n eNTK)",
                 "cg": "CG (forward-over-reverse HVP)", "lissa": "LiSSA (full batch)"}
        lines += table(["method", "time", "iterations", "residual", "max rel. diff vs dense"],
                       [[names[m], seconds(ih[m]["seconds"]) if ih[m]["seconds"] >= 0.1
                         else f"{ih[m]['seconds']:.3f} s",
                         str(ih[m]["iterations"]) if ih[m]["iterations"] else "-",
                         g(ih[m]["residual"], 2), g(ih[m]["max_rel_diff_vs_dense"], 1)]
                        for m in ("dense", "woodbury", "cg", "lissa")])
        lines.append("")
    lines += ["**Gauss-Newton against gradient descent** (width 1024, same start):", ""]
    body = []
    for c in b["gn_vs_gd"]:
        gn, gd = c["gn"], c["gd"]
        body.append([str(c["n_train"]), g(c["lam"]), g(c["f_tol"], 1),
                     f"{fx(gn['seconds'])} s ({gn['iterations']}, {_settled(gn)})",
                     f"{fx(gd['seconds'])} s ({gd['iterations']}, {_settled(gd)}, "
                     f"{gd['stalled']})", f"{c['speedup_gn_over_gd']:.0f}",
                     g(c["max_prediction_gap"], 2)])
    lines += table(["n", "lambda", "f_tol", "GN: time (steps, settled)",
                    "GD: time (steps, settled, stalled)", "GD time / GN time",
                    "max prediction gap"], body)
    if b.get("throughput"):
        lines += ["", "**Leave-one-out throughput** (digits 3-vs-8, n_train = 200, lambda = 0.1; "
                  "a chunk of retrains runs a fixed number of Gauss-Newton steps):", ""]
        lines += table(["width", "ms per GN step per net", "GN steps to f_tol 1e-6",
                        "full training s", "LOO nets/min"],
                       [[str(t["width"]), f"{t['seconds_per_gn_step_per_net'] * 1e3:.1f}",
                         str(t["gn_iterations_to_1e-6"]), fx(t["full_train_seconds"], 1),
                         g(t["loo_nets_per_minute"])] for t in b["throughput"]])
    return "\n".join(lines)


def render_bench_dynamics(results: Path) -> str:
    """benchmarks/README: ``bench_dynamics.py``, exact against first-order time influence."""
    b = load(results, "bench_dynamics", "bench_dynamics.json")
    rows = b["rows"]
    lines = [source(results, "bench_dynamics", "runs"), ""]
    lines += table(["n", "left-out points timed", "exact s/point", "/ numpy eigh",
                    "exact, all points*", "first order, all points", "speed-up"],
                   [[str(r["n"]), str(r["subset"]), g(r["exact_seconds_per_point"]),
                     fx(r["exact_per_point_over_numpy_eigh"], 1),
                     f"~{r['exact_seconds_full_extrapolated']:.0f} s",
                     f"{fx(r['first_order_seconds_all_points'], 1)} s",
                     f"~{r['speedup_first_order_vs_exact_full']:.0f}x"] for r in rows])
    lines += ["", "\\* extrapolated: per-point time x n.", "",
              "Agreement of first order with exact on the timed points (relative Frobenius "
              "error / least-squares slope / share of test points with the same most "
              "influential training point):", ""]
    ts = times(rows[0]["times"])
    lines += table(["n", *[f"t={t}" for t in ts]],
                   [[str(r["n"]), *[f"{g(e, 2)} / {fx(s, 3)} / {fx(m)}" for e, s, m in
                                    zip(r["rel_error"], r["slope"], r["top1_match"])]]
                    for r in rows])
    lo = min(min(r["pearson"]) for r in rows)
    lines += ["", f"Smallest Pearson R over all sizes and times: {fx(lo, 3)}."]
    return "\n".join(lines)


def render_gpu_small(results: Path) -> str:
    """benchmarks/README: ``gpu_influence.py --small`` as a CPU smoke run."""
    b = load(results, "gpu_influence_small", "gpu_influence.json")
    lines = [source(results, "gpu_influence_small", "runs"), ""]
    lines += [f"n = {b['n']}, n_test = {b['n_test']}, d = {b['d']} on {b['device']}: kernel to "
              f"influence matrix in {seconds(b['total_s'])}, residual of "
              f"`(K + lam I) beta = y` on 256 rows {g(b['residual_check'], 2)}, cond "
              f"{g(b['cond'])}; plan: inverse diagonal `{b['plan']['inverse_diagonal']}`, test "
              f"block {b['plan']['test_block']}.", ""]
    lines += table(["stage", "seconds"], [[st["stage"], fx(st["seconds"])]
                                          for st in b["stages"]])
    return "\n".join(lines)


def render_memory_plans(results: Path) -> str:
    """benchmarks/README: ``memory_plans.py``, the plan for the GPU target per device size."""
    b = load(results, "memory_plans", "memory_plans.json")
    lines = [source(results, "memory_plans", "runs"), "",
             f"n = {b['n']}, n_test = {b['n_test']}, d = {b['d']}, {b['dtype']}, one device, "
             f"`backend=\"jax\"`:", ""]
    for row in b["plans"]:
        if row["fits"]:
            st = row["stages_gb"]
            lines.append(f"- {g(row['device_gb'])} GB device: fits; peak on the factor device "
                         f"{row['factor_device_gb']:.1f} GB (K {st['K (n x n)']:.1f} GB, L "
                         f"{st['L (Cholesky)']:.1f} GB, inverse diagonal "
                         f"`{row['inverse_diagonal']}` "
                         f"{st['inverse diagonal workspace']:.1f} GB), test block "
                         f"{row['test_block']} points, host {row['host_gb']:.1f} GB.")
        else:
            msg = row.get("error", "").split("\n")[0]
            lines.append(f"- {g(row['device_gb'])} GB device: refused before allocating: "
                         f"\"{msg}\"")
    return "\n".join(lines)


# ------------------------------------------------------------------ deep and conv nets

DEEP_RUNS = ("deep_mlp_cold", "deep_mlp", "deep_cnn")
DEEP_TARGETS = {"mlp": 0.95, "cnn": 0.9}


def _settled(r: dict[str, Any], key: str = "settled") -> str:
    """Whether a run met the prediction-change rule. Runs recorded before ``settled`` and
    ``converged`` (stationary) were told apart stored that rule under ``converged``."""
    old = key.replace("settled", "converged")
    return "yes" if r.get(key, r.get(old)) else "**no**"


def _grad(r: dict[str, Any], key: str) -> str:
    return g(r[key], 1) if r.get(key) is not None else "n/a"


def _start(c: dict[str, Any]) -> str:
    return "warm" if c["settings"].get("warm_start") else "cold"


def _deep_rows(c: dict[str, Any]) -> list[list[str]]:
    return [[c.get("arch", "two-layer"), _start(c), str(r["width"]), str(r["n_params"]),
             str(r["n_points"]),
             fx(r["pearson"], 3), fx(r["spearman"], 3), fx(r["ntk_slope"]),
             fx(r["entk0_pearson"], 3), fx(r["ihvp_pearson"], 3), fx(r["ihvp_spearman"], 3),
             fx(r["ihvp_slope"]),
             fx(r["entk0_kernel_rel_diff"], 3), _settled(r, "full_settled"),
             _grad(r, "max_rel_grad_norm"),
             g(r["retrain_median_abs_delta"], 2), g(r["retrain_max_error_ratio"], 2),
             seconds(r["seconds_total"])]
            for r in c["widths"]]


def _recorded(results: Path, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The recorded ``compare`` runs among ``names``, and a line for each one not recorded."""
    runs = [r for r in names if (results / r / "compare.json").exists()]
    missing = [f"- `{r}`: not measured for this release (no run recorded)." for r in names
               if r not in runs]
    return runs, missing


def render_deep(results: Path) -> str:
    """README: Table 1 for ``mlp:3`` and ``cnn:2`` (two ``compare --arch`` runs) with the
    eNTK-to-NTK error exponents of ``bench_deep``."""
    body: list[list[str]] = []
    runs, lines = _recorded(results, DEEP_RUNS)
    for run in runs:
        c = load(results, run, "compare.json")
        rec = load(results, run, "run.json")
        note = (" The run collected widths stored by an earlier run in its folder (`--resume`); "
                "each width's own time is in the table." if "--resume" in rec["command"] else "")
        lines += [f"- {c['arch']}: " + source(results, run)[1:-1] + note]
        body += _deep_rows(c)
    c = load(results, runs[0], "compare.json")
    s, d, r0 = c["settings"], c["data"], c["widths"][0]
    lines += ["", "Per run: the training points with the largest `|I_ntk|` summed over "
              f"{r0['test_points']} test points (column `removed`), out of {d['n_train']} "
              f"training points of "
              f"`{d['name']}` (lambda = {g(s['lam'])}); statistics over all (removed point, "
              f"test point) pairs. *Actual*: the Gauss-Newton minimiser of eq. (2) retrained "
              "without the point, from the same W(0) as the full run (`start` cold) or from "
              "the trained weights (warm), W(0) staying the regularisation centre. "
              "NTK: eq. (8-9) with Neural Tangents' analytic NTK of the architecture; eNTK(W0): "
              "the same with the net's empirical NTK at W(0) (what `entk_influence` gives at "
              "the initialisation); IHVP: "
              "eq. (12) on the trained net with the Gauss-Newton Hessian. Width: hidden units "
              "(mlp), channels (cnn).", ""]
    lines += table(["arch", "start", "width", "P", "removed", "R (NTK)", "rho (NTK)", "slope (NTK)",
                    "R (eNTK(W0))", "R (IHVP)",
                    "rho (IHVP)", "slope (IHVP)", "eNTK(W0) rel. error",
                    "full run settled (predictions)", "max rel. gradient",
                    "median abs(Delta)", "max solver error / abs(Delta)", "time"], body)
    b = load(results, "bench_deep", "bench_deep.json")
    fits = "; ".join(
        f"{e['arch']}: " + ", ".join(f"{g(v, 2)} at {w}" for w, v in zip(e["widths"],
                                                                         e["errors"]))
        + f", fitted exponent **{fx(e['exponent'])}**" for e in b["entk_error"])
    e0 = b["entk_error"][0]
    lines += ["", f"eNTK(W0) against NT's kernel on {e0['n_points']} digits, mean relative "
              f"Frobenius error of {e0['seeds']} initialisations ({fits}; `1/sqrt(width)` is "
              f"-0.5). " + source(results, "bench_deep")]
    lines += ["", "Targets:"]
    for run in DEEP_RUNS:
        if run not in runs:
            lines.append(f"- `{run}`: not measured.")
            continue
        c = load(results, run, "compare.json")
        target = DEEP_TARGETS[c["arch"].split(":")[0]]
        rows = sorted(c["widths"], key=lambda r: r["width"])
        top = rows[-1]
        rises = all(a["pearson"] < b["pearson"] for a, b in itertools.pairwise(rows))
        verdict = "met" if top["pearson"] >= target else "**missed**"
        pts = f"{top['n_points']} removed points"
        lines.append(f"- {c['arch']} ({_start(c)} start): R = {fx(top['pearson'], 3)} at the "
                     "widest width run, "
                     f"{top['width']} ({pts}; {seconds(top['seconds_total'])} for that width): "
                     f"R >= {g(target)} {verdict}"
                     + (f"; R rises with width: {'yes' if rises else '**no**'}."
                        if len(rows) > 1 else "; one width only, so no trend."))
    for e in b["entk_error"]:
        lines.append(f"- {e['arch']}: eNTK(W0) error exponent {fx(e['exponent'])} (about -0.5 "
                     f"expected).")
    return "\n".join(lines)


CONV_RUNS = ("bench_conv", "bench_conv_flatten")


def render_bench_conv(results: Path) -> str:
    """benchmarks/README: ``bench_conv.py``, the pieces of a Newton step of a smooth conv net,
    its eNTK against NT's kernel, and a whole training; one block per recorded readout."""
    lines: list[str] = []
    for run in [r for r in CONV_RUNS if (results / r / f"{r}.json").exists()]:
        lines += ([""] if lines else []) + _bench_conv_block(results, run)
    return "\n".join(lines)


def _bench_conv_block(results: Path, run: str) -> list[str]:
    b = load(results, run, f"{run}.json")
    body = [[str(r["channels"]), str(r["n_params"]), f"{r['forward_s']:.3f} s",
             fx(r["forward_s"] / r["forward_floor_s"], 1), f"{r['gram_s']:.3f} s",
             fx(r["gram_s"] / r["gram_floor_s"], 1), f"{r['grad_s']:.3f} s",
             f"{r['hvp_s']:.3f} s", fx(r["hvp_s"] / r["forward_s"], 1),
             f"{r['newton_step_s']:.2f} s", fx(r["step_over_hvp"], 1)] for r in b["rows"]]
    lines = [f"**{b['arch']}** on n = {b['n']} digits. " + source(results, run), ""]
    lines += table(["channels", "P", "forward", "/ floor", "eNTK Gram", "/ floor", "gradient",
                    "HVP", "HVP / forward", "Newton step from W(0)", "step / HVP"], body)
    e = b.get("entk_error")
    if e:
        off = e["offdiag_over_diag"]
        lines += ["", f"eNTK(W0) against NT's kernel on {e['n_points']} digits, relative "
                  f"Frobenius error over {e['seeds']} initialisations, median (mean): "
                  + ", ".join(f"{g(m, 2)} ({g(v, 2)}) at {c}" for c, m, v in
                              zip(e["channels"], e["medians"], e["errors"]))
                  + f" channels; fitted exponent of the median **{fx(e['exponent'])}** "
                  "(`1/sqrt(width)` is -0.5). NT's kernel: mean off-diagonal entry / mean "
                  f"diagonal entry {fx(off, 4)}"
                  + ("; close to a constant matrix, so the error is dominated by one scalar "
                     "that fluctuates from one initialisation to the next, and the influences "
                     "rest on the small remainder." if off > 0.95 else ".")]
    for t in b.get("train", []):
        lines += ["", f"One training from W(0) to a stationary point at {t['channels']} "
                  f"channels (P = {t['n_params']}), n = {b['n']}: **{seconds(t['seconds'])}** "
                  f"including compilation, {t['newton_steps']} Newton steps, ridge-relative "
                  f"gradient {g(t['ridge_rel_grad_norm'], 2)} "
                  f"({'stationary' if t['converged'] else '**not stationary**'}); target "
                  f"< 2 min: {'met' if t['seconds'] < 120 else '**missed**'}."]
    return lines


def render_bench_deep(results: Path) -> str:
    """benchmarks/README: ``bench_deep.py``, the Gauss-Newton step of deep nets."""
    b = load(results, "bench_deep", "bench_deep.json")
    e, st = b["entk"], b["naive_step"]
    lines = [source(results, "bench_deep", "runs"), "",
             f"digits 3-vs-8, n = {b['n_train']}, lambda = {g(b['lam'])}, {b['arch']}; per-step "
             f"times from {b['steps']} steps after compilation.", "",
             f"- eNTK at width {e['width']} (P = {e['n_params']}): structured "
             f"{fx(e['structured_s'])} s, `jax.jacrev` Jacobian contraction "
             f"{fx(e['jacobian_s'])} s: **{fx(e['speedup'], 1)}x**.",
             f"- One Gauss-Newton step at width {st['width']}: the deep nets' own step "
             f"(products from layer taps) {fx(st['tap_s'])} s; the generic autodiff step "
             f"(`jax.linearize`, structured eNTK) {fx(st['autodiff_s'])} s: "
             f"**{fx(st['speedup_autodiff'], 1)}x**; the generic step with the `jax.jacrev` "
             f"eNTK {fx(st['jacobian_s'])} s: **{fx(st['speedup_jacobian'], 1)}x**.", ""]
    body = [[str(r["width"]), str(r["n_params"]), fx(r["step_s"], 3),
             fx(r["autodiff_step_s"], 3), f"{r['autodiff_ratio']:.1f}",
             fx(r["two_layer_step_s"], 4), f"{r['step_ratio']:.0f}",
             (f"{seconds(r['train_estimate_s'])} (estimate: steps at width "
              f"{r['train_estimate_steps_from_width']} x s/step)")
             if "train_estimate_s" in r else "measured below"] for r in b["rows"]]
    lines += table(["width", f"P ({b['arch']})", f"s/step {b['arch']}", "s/step autodiff step",
                    "autodiff / taps", "s/step two-layer", "taps / two-layer",
                    f"full training {b['arch']}"], body)
    lines += [""]
    lines += table(["width", f"train {b['arch']}", "steps", "settled", "train two-layer",
                    "steps"],
                   [[str(t["width"]), seconds(t["mlp"]["seconds"]), str(t["mlp"]["iterations"]),
                     _settled(t["mlp"]),
                     seconds(t["two_layer"]["seconds"]), str(t["two_layer"]["iterations"])]
                    for t in b["train"]])
    return "\n".join(lines)


def _compare_r(results: Path) -> dict[tuple[str, int], tuple[float, str]]:
    """R (NTK) of the recorded cold-start ``compare`` runs by (arch, width), with the run."""
    out: dict[tuple[str, int], tuple[float, str]] = {}
    for run in ("table1", *DEEP_RUNS):
        if (results / run / "compare.json").exists():
            c = load(results, run, "compare.json")
            if c.get("settings", {}).get("warm_start"):
                continue  # the floor is measured from W(0)
            for r in c["widths"]:
                out[(c.get("arch") or "two-layer", int(r["width"]))] = (r["pearson"], run)
    return out


def _floor_setup(b: dict[str, Any]) -> str:
    return (f"`{b['data']}`, n = {b['n_train']}, lambda = {g(b['lam'])}; each net trained from "
            f"W(0), and retrained from W(0) without each of the {b['removed']} training points "
            f"with the largest `|I_ntk|` over the first {b['test_points']} test points, by "
            f"Gauss-Newton and by a second solver (truncated Newton on the exact Hessian; "
            f"annealed GD for the two-layer net, whose Gauss-Newton step is Newton's), to "
            f"f_tol = {g(b['f_tol'])} with at most {b['max_steps']} steps (annealed GD: "
            f"{b['gd_steps']}).")


def render_bench_floor(results: Path) -> str:
    """benchmarks/README: ``bench_floor.py``, two solvers' predictions and LOO changes."""
    b = load(results, "bench_floor", "bench_floor.json")

    def run_cells(r: dict[str, Any]) -> list[str]:
        return [str(r["iterations"]), _settled(r),
                g(r["final_step"], 2), g(r["rel_grad_norm"], 2), fx(r["loss"], 5),
                f"{r.get('retrains_settled', r['retrains_converged'])}/"
                f"{len(r['retrain_iterations'])}"]

    body = [[r["arch"], str(r["width"]), str(r["n_params"]), r["second"], *run_cells(r["gn"]),
             *run_cells(r["other"]), g(r["median_abs_diff"], 2), g(r["median_abs_delta"], 2),
             g(r["median_abs_delta_diff"], 2), fx(r["delta_pearson"], 3),
             seconds(r["gn"]["seconds"] + r["other"]["seconds"])] for r in b["rows"]]
    lines = [source(results, "bench_floor", "runs"), "", _floor_setup(b) + " `t`: the full "
             "run's final accepted step (`TrainResult.final_step`; 1 is the full Gauss-Newton "
             "step; for GD, the step left after annealing). `abs(df)`: the two full runs' "
             "predictions; `abs(Delta)`: Gauss-Newton's leave-one-out changes; `abs(dDelta)`: "
             "Gauss-Newton's against the second solver's; `R(Delta)`: their Pearson correlation "
             "over all (removed point, test point) pairs. Time: both solvers, retrains included.",
             ""]
    lines += table(["arch", "width", "P", "second solver", "GN steps", "settled", "GN t",
                    "GN rel. grad", "GN loss", "GN retrains settled", "2nd steps", "settled",
                    "2nd t", "2nd rel. grad", "2nd loss", "2nd retrains settled",
                    "median abs(df)", "median abs(Delta)", "median abs(dDelta)", "R(Delta)",
                    "time"], body)
    return "\n".join(lines)


SMOOTH_RUNS = ("smooth_erf_warm", "smooth_erf_cold", "smooth_gelu_warm", "smooth_cnn_warm",
               "smooth_cnn_flatten", "smooth_cnn_flatten_cold")
SMOOTH_TARGETS = {"mlp": 0.98, "cnn": 0.9}
FLOOR_RUNS = ("start_floor", "start_floor_cnn")


def _row_start(c: dict[str, Any], r: dict[str, Any]) -> str:
    """A row's start: recorded per row since ``warm_start`` defaults by architecture."""
    return "warm" if r.get("warm_start", c["settings"].get("warm_start")) else "cold"


def render_smooth(results: Path) -> str:
    """README: Table 1 for smooth nets (stationary retraining) with the warm/cold floor."""
    body: list[list[str]] = []
    runs, lines = _recorded(results, SMOOTH_RUNS)
    for run in runs:
        c = load(results, run, "compare.json")
        lines.append(f"- {c['arch']}: " + source(results, run)[1:-1])
        body += [[c["arch"], _row_start(c, r), str(r["width"]), str(r["n_params"]),
                  fx(r["pearson"], 3), fx(r["spearman"], 3), fx(r["ntk_slope"]),
                  fx(r["entk0_pearson"], 3), fx(r["ihvp_pearson"], 3), fx(r["ihvp_slope"]),
                  fx(r["entk0_kernel_rel_diff"], 3), g(abs(r["f_test"] - r["f_ntk_test"]), 2),
                  g(r["max_rel_grad_norm"], 2),
                  g(r["retrain_median_abs_delta"], 2),
                  str(r["retrain_total_iterations"] + r["full_iterations"]),
                  seconds(r["seconds_total"])] for r in c["widths"]]
    if not runs:
        return "\n".join(lines)
    c = load(results, runs[0], "compare.json")
    r0, d = c["widths"][0], c["data"]
    lines += ["", f"Per row: the {r0['n_points']} training points with the largest `|I_ntk|` "
              f"summed over {r0['test_points']} test points, out of {d['n_train']} of "
              f"`{d['name']}` (lambda = {g(c['settings']['lam'])}), each removed and the net "
              "retrained; statistics over all (removed point, test point) pairs. *Actual*: the "
              "stationary point of eq. (2) without the point, by truncated Newton (Gauss-Newton "
              f"preconditioned CG on the exact Hessian, newton_cg = {r0['newton_cg']}) until "
              f"`||grad|| / ||lam (theta - theta0)|| <= {g(r0['g_tol'], 1)}`; `max rel. gradient` "
              "is the largest such ratio over the full run and every retrain of the row, and "
              "`Newton steps` their total. `abs(f - f_NTK)`: the trained net's prediction on "
              "the first test point against the NTK predictor's, how far the net is from the "
              "kernel regime.", ""]
    lines += table(["arch", "start", "width", "P", "R (NTK)", "rho (NTK)", "slope (NTK)",
                    "R (eNTK(W0))", "R (IHVP)", "slope (IHVP)", "eNTK(W0) rel. error",
                    "abs(f - f_NTK)", "max rel. gradient", "median abs(Delta)", "Newton steps",
                    "time"], body)
    floors = [f for f in FLOOR_RUNS if (results / f / "start_floor.json").exists()]
    for f in floors:
        b = load(results, f, "start_floor.json")
        lines += ["", f"**Solver floor ({b['arch']}).** The warm- and cold-start runs above "
                  "are two solver paths to the same problem; R(Delta) is the correlation of "
                  "their leave-one-out influences over all pairs, and `max diff` the largest "
                  "difference relative to the largest influence. "
                  + source(results, f), ""]
        lines += table(["width", "pairs", "R(Delta), warm vs cold", "max diff",
                        "retrain Newton steps warm / cold", "retrain time warm / cold"],
                       [[str(r["width"]), str(r["pairs"]), f"{r['r_warm_cold']:.7f}",
                         g(r["max_rel_diff"], 1),
                         f"{r['iterations_warm']} / {r['iterations_cold']}",
                         f"{seconds(r['seconds_retrain_warm'])} / "
                         f"{seconds(r['seconds_retrain_cold'])}"] for r in b["rows"]])
    lines += ["", "Targets:"]
    for run in runs:
        c = load(results, run, "compare.json")
        rows = sorted(c["widths"], key=lambda r: r["width"])
        top, target = rows[-1], SMOOTH_TARGETS[c["arch"].split(":")[0]]
        rises = all(a["pearson"] < b["pearson"] for a, b in itertools.pairwise(rows))
        worst = max(r["max_rel_grad_norm"] for r in rows)
        lines.append(f"- {c['arch']} ({_row_start(c, top)} start): R = {fx(top['pearson'], 3)} "
                     f"at the widest width run, {top['width']}: R >= {g(target)} "
                     f"{'met' if top['pearson'] >= target else '**missed**'}; R rises with "
                     f"width: {('yes' if rises else '**no**') if len(rows) > 1 else 'n/a (one width)'}"
                     "; largest rel. gradient "
                     f"{g(worst, 2)} (<= 1e-8: {'met' if worst <= 1e-8 else '**missed**'}).")
    if floors:
        low = min(r["r_warm_cold"] for f in floors
                  for r in load(results, f, "start_floor.json")["rows"])
        archs = ", ".join(load(results, f, "start_floor.json")["arch"] for f in floors)
        lines.append(f"- Solver floor ({archs}): smallest R(Delta) {low:.7f} (>= 0.9999: "
                     f"{'met' if low >= 0.9999 else '**missed**'}).")
    return "\n".join(lines)


def render_deep_floor(results: Path) -> str:
    """README: the solver floor of ``bench_floor`` beside the R of the compare runs."""
    b = load(results, "bench_floor", "bench_floor.json")
    rs = _compare_r(results)
    body = []
    for r in b["rows"]:
        rc, run = rs.get((r["arch"], int(r["width"])), (None, None))
        body.append([r["arch"], str(r["width"]), r["second"], g(r["gn"]["final_step"], 2),
                     g(r["median_abs_diff"], 2), g(r["median_abs_delta"], 2),
                     g(r["median_abs_delta_diff"], 2), fx(r["delta_pearson"], 3),
                     fx(math.sqrt(max(r["delta_pearson"], 0.0)), 3),
                     f"{fx(rc, 3)} (`{run}`)" if run else "not run"])
    lines = ["**Solver floor.** " + _floor_setup(b) + " R(Delta) is the correlation of the "
             "two solvers' leave-one-out changes. If each solver's error is independent of the "
             "other's and as large, no influence estimate can correlate with either better than "
             "`sqrt(R(Delta))` (column `R ceiling`); the last column is R (NTK) of the "
             "cold-start compare run at that width (`table1`: one test point). "
             + source(results, "bench_floor"), ""]
    lines += table(["arch", "width", "second solver", "GN final step",
                    "median abs(df), two solvers", "median abs(Delta)",
                    "median abs(dDelta), two solvers", "R(Delta), two solvers", "R ceiling",
                    "R (NTK) of compare (cold start)"], body)
    return "\n".join(lines)


# ------------------------------------------------------------------ sections

SECTIONS: dict[str, Callable[[Path], str]] = {
    "reproduce": render_reproduce,
    "table1": render_table1,
    "table1-detail": render_table1_detail,
    "attribution": render_attribution,
    "attribution-deep": lambda results: render_attribution(results, "attribution_deep"),
    "attribution-deep-relu": lambda results: render_attribution(results,
                                                                "attribution_deep_relu"),
    "clean": render_clean,
    "mislabel": render_mislabel,
    "bench-influence": render_bench_influence,
    "bench-scale-time": render_bench_scale_time,
    "bench-scale-precision": render_bench_scale_precision,
    "bench-nets": render_bench_nets,
    "bench-dynamics": render_bench_dynamics,
    "gpu-small": render_gpu_small,
    "memory-plans": render_memory_plans,
    "deep": render_deep,
    "bench-deep": render_bench_deep,
    "bench-floor": render_bench_floor,
    "deep-floor": render_deep_floor,
    "smooth": render_smooth,
    "bench-conv": render_bench_conv,
}

MARK = re.compile(r"(<!-- render:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /render:(?P=name) -->)",
                  re.S)


def render_text(text: str, results: Path,
                sections: dict[str, Callable[[Path], str]] | None = None) -> str:
    """``text`` with every marked section replaced by its rendering.

    Args:
      text: a Markdown document.
      results: the results folder.
      sections: name -> renderer (default: :data:`SECTIONS`).

    Returns:
      The new text; text outside the markers is unchanged.
    """
    sections = SECTIONS if sections is None else sections
    opened = re.findall(r"<!-- render:([\w-]+) -->", text)
    closed = re.findall(r"<!-- /render:([\w-]+) -->", text)
    if sorted(opened) != sorted(closed) or len(opened) != len(MARK.findall(text)):
        raise ValueError(f"unbalanced render markers: opened {opened}, closed {closed}.")
    unknown = [n for n in opened if n not in sections]
    if unknown:
        raise ValueError(f"no renderer for section(s) {unknown}; known: {sorted(sections)}.")

    def sub(m: re.Match[str]) -> str:
        return m.group(1) + sections[m.group("name")](results).rstrip("\n") + "\n" + m.group(4)

    return MARK.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    """Render or check the documentation, or record a run; the exit code says the outcome."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"]:
        ap = argparse.ArgumentParser(prog="render_docs.py record")
        ap.add_argument("name")
        ap.add_argument("--collect", nargs="+", action="extend", required=True)
        ap.add_argument("--results", type=Path, default=RESULTS)
        cmd = argv[argv.index("--") + 1:] if "--" in argv else []
        a = ap.parse_args(argv[1:argv.index("--")] if "--" in argv else argv[1:])
        rec = record(a.name, cmd, a.collect, a.results, run=bool(cmd))
        print(json.dumps(rec, indent=2))
        return int(rec.get("exit_code", 0)) or (1 if "error" in rec else 0)
    ap = argparse.ArgumentParser(description="Render the measured sections of the docs.")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 when a section differs from its JSON")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    ap.add_argument("--docs", type=Path, nargs="+", default=DOCS, help="the documents")
    a = ap.parse_args(argv)
    stale = []
    for doc in a.docs:
        old = doc.read_text()
        try:
            new = render_text(old, a.results)
        except (ValueError, MissingRunError) as e:
            print(f"{doc}: {e}", file=sys.stderr)
            return 2
        if new != old:
            stale.append(doc)
            if not a.check:
                doc.write_text(new)
    if a.check and stale:
        print("out of date with their JSON (run python benchmarks/render_docs.py): "
              + ", ".join(str(d) for d in stale), file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(str(d) for d in stale)) if stale and not a.check
          else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
