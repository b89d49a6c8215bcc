"""The documentation renderer: marked sections come from the JSON of named runs, and --check
fails when a section no longer matches its JSON. Small fixtures only; no benchmark is run."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rd():
    spec = importlib.util.spec_from_file_location("render_docs",
                                                  ROOT / "benchmarks" / "render_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RUN = {"command": "python benchmarks/bench_dynamics.py --sizes 50", "date":
       "2026-11-29T04:00:00+00:00", "machine": "Linux-test", "processor": "", "cpus": 2,
       "load_avg_start": [3.25, 2.0, 1.0], "load_avg_end": [4.75, 3.0, 2.0], "wall_s": 318.0,
       "exit_code": 0}


def _dyn_row(n: int, per_point: float) -> dict:
    return {"n": n, "n_test": 10, "times": ["0.01", "inf"], "subset": 4,
            "exact_seconds_per_point": per_point, "exact_seconds_full_extrapolated": per_point * n,
            "first_order_seconds_all_points": 0.5, "numpy_eigh_seconds": per_point / 2,
            "exact_per_point_over_numpy_eigh": 2.0,
            "speedup_first_order_vs_exact_full": per_point * n / 0.5,
            "rel_error": [0.004, 0.63], "pearson": [1.0, 0.987], "spearman": [1.0, 0.99],
            "slope": [0.996, 0.37], "top1_match": [1.0, 0.83]}


def _results(tmp: Path, per_point: float = 0.25) -> Path:
    res = tmp / "results"
    (res / "bench_dynamics").mkdir(parents=True, exist_ok=True)
    (res / "bench_dynamics" / "run.json").write_text(json.dumps(RUN))
    (res / "bench_dynamics" / "bench_dynamics.json").write_text(
        json.dumps({"rows": [_dyn_row(200, per_point)]}))
    return res


DOC = """# Title

Hand-written text stays: 12.5 s.

<!-- render:bench-dynamics -->
stale numbers 1 2 3
<!-- /render:bench-dynamics -->

Tail text.
"""


def test_render_writes_the_json_numbers_and_keeps_the_rest(rd, tmp_path):
    res = _results(tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    assert rd.main(["--check", "--results", str(res), "--docs", str(doc)]) == 1
    assert doc.read_text() == DOC  # --check never writes
    assert rd.main(["--results", str(res), "--docs", str(doc)]) == 0
    text = doc.read_text()
    assert "stale numbers" not in text
    assert text.startswith("# Title\n\nHand-written text stays: 12.5 s.\n\n<!-- render:bench")
    assert text.endswith("<!-- /render:bench-dynamics -->\n\nTail text.\n")
    # the run's record and the row's numbers (0.25 s/point x 200 points = 50 s; 50/0.5 = 100x)
    assert "`python benchmarks/bench_dynamics.py --sizes 50`" in text
    assert "load average (1/5/15 min) 3.2/2.0/1.0 at the start and 4.8/3.0/2.0 at the end" in text
    assert "wall time 5 min 18 s" in text
    assert "| 200 | 4 | 0.25 | 2.0 | ~50 s | 0.5 s | ~100x |" in text
    assert "| 200 | 0.004 / 0.996 / 1.00 | 0.63 / 0.370 / 0.83 |" in text
    assert "Smallest Pearson R over all sizes and times: 0.987." in text
    assert rd.main(["--check", "--results", str(res), "--docs", str(doc)]) == 0


def test_check_fails_when_the_json_changes(rd, tmp_path):
    res = _results(tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    assert rd.main(["--results", str(res), "--docs", str(doc)]) == 0
    rendered = doc.read_text()
    _results(tmp_path, per_point=0.5)  # a new run of the same benchmark
    assert rd.main(["--check", "--results", str(res), "--docs", str(doc)]) == 1
    assert doc.read_text() == rendered
    assert rd.main(["--results", str(res), "--docs", str(doc)]) == 0
    assert "~100 s" in doc.read_text() and "~50 s" not in doc.read_text()


@pytest.mark.parametrize("text, needle", [
    ("<!-- render:nope -->\nx\n<!-- /render:nope -->\n", "no renderer"),
    ("<!-- render:bench-dynamics -->\nx\n", "unbalanced"),
    ("<!-- render:bench-nets -->\nx\n<!-- /render:bench-nets -->\n", "bench_nets"),
])
def test_bad_markers_and_missing_runs_are_refused(rd, tmp_path, capsys, text, needle):
    res = _results(tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    assert rd.main(["--results", str(res), "--docs", str(doc)]) == 2
    assert needle in capsys.readouterr().err
    assert doc.read_text() == text


def test_targets_are_judged_from_the_numbers(rd):
    assert rd.verdict(1.5, 1.2) == "**missed** (1.50, 25% above 1.2)"
    assert rd.verdict(1.1, 1.2) == "met (1.10 <= 1.2)"
    assert rd.seconds(318) == "5 min 18 s"
    assert rd.seconds(4.25) == "4.2 s"


def test_record_runs_the_command_and_collects_its_json(rd, tmp_path):
    out = tmp_path / "out"
    code = (f"import json, pathlib; p = pathlib.Path({str(out)!r}); p.mkdir(); "
            "(p / 'a.json').write_text(json.dumps({'x': 1}))")
    rec = rd.record("demo", [sys.executable, "-c", code], [str(out)], tmp_path / "results")
    assert rec["exit_code"] == 0 and rec["files"] == ["a.json"]
    saved = json.loads((tmp_path / "results" / "demo" / "run.json").read_text())
    assert shlex.split(saved["command"]) == [sys.executable, "-c", code]
    assert len(saved["load_avg_start"]) == 3 and len(saved["load_avg_end"]) == 3
    assert saved["wall_s"] >= 0
    assert json.loads((tmp_path / "results" / "demo" / "a.json").read_text()) == {"x": 1}
    # a failing command leaves the recorded run as it was
    bad = rd.record("demo", [sys.executable, "-c", "raise SystemExit(3)"], [str(out / "b.json")],
                    tmp_path / "results")
    assert bad["exit_code"] == 3 and "left as it was" in bad["error"]
    assert json.loads((tmp_path / "results" / "demo" / "run.json").read_text()) == saved


def test_committed_docs_match_their_committed_json(rd):
    """README.md and benchmarks/README.md are what the committed runs render to."""
    assert rd.main(["--check"]) == 0


def _attribution_json(trak_lds: float) -> dict:
    meth = {"ntk_refit": {"lds": 0.963, "loo_pearson": 0.987, "loo_spearman": 0.893,
                          "mislabel_auc": 0.999, "seconds": 2.5},
            "ntk": {"lds": 0.767, "loo_pearson": 0.987, "loo_spearman": 0.893,
                    "mislabel_auc": 0.999, "seconds": 0.4},
            "trak": {"lds": trak_lds, "loo_pearson": 0.964, "loo_spearman": 0.838,
                     "mislabel_auc": 0.998, "seconds": 125.0},
            "tracin": {"lds": 0.289, "loo_pearson": 0.46, "loo_spearman": 0.11,
                       "mislabel_auc": 0.997, "seconds": 33.5},
            "ntk_f0": {"not_applicable": "symmetric initialisation"},
            "loss": {"mislabel_auc": 0.9969}}
    sub = {"n_retrains": 100, "total_iterations": 4500, "max_iterations": 55,
           "median_abs_delta": 0.0647}
    loo = {"n_retrains": 20, "max_iterations": 160, "max_solver_error": 9.9e-8,
           "median_abs_delta": 0.00171}
    return {"settings": {"width": 16384, "kappa": 1.0, "init": "symmetric", "dtype": "float64",
                         "lam": 0.1, "f_tol": 1e-7, "subsets": 100, "alpha": 0.5, "noise": 0.1},
            "data": {"name": "digits:3,8", "n_train": 200, "n_test": 50}, "seconds": 700.0,
            "methods": meth,
            "info": {"subset_retrain": sub, "loo_retrain": loo, "coarse_f_tol": 1e-5,
                     "subset_loss_error_over_spread": 0.0042,
                     "options": {"trak_ensemble": 4, "trak_projection": "gaussian",
                                 "trak_dim": 1024, "tracin_checkpoints": 5,
                                 "tracin_steps": 500, "tracin_method": "gd"},
                     "seconds_train": 20.0, "seconds_subsets": 400.0, "seconds_loo": 200.0,
                     "seconds_mislabel": 100.0}}


@pytest.mark.parametrize("trak_lds, wall", [(0.693, 712.0), (0.8, 1000.0)])
def test_attribution_section_states_the_setup_table_and_targets(rd, tmp_path, trak_lds, wall):
    res = tmp_path / "results"
    (res / "attribution").mkdir(parents=True)
    (res / "attribution" / "run.json").write_text(json.dumps({**RUN, "wall_s": wall}))
    (res / "attribution" / "attribution.json").write_text(json.dumps(_attribution_json(trak_lds)))
    text = rd.render_attribution(res)
    assert "200 training and 50 test points" in text and "width 16384" in text
    assert "100 random subsets of 100 points (alpha = 0.5)" in text
    assert "`--coarse-f-tol 1e-05` (45 steps on average, at most 55; median `|Delta|` 0.065" in text
    assert "(median `|Delta|` 0.0017; at most 160 steps" in text
    assert "at most 0.0042 of the spread" in text and "**LOO**: 20 random" in text
    assert ("| `ntk_refit` | NTK: kernel ridge regression refit on the kept points (not additive) "
            "| 0.963 | 0.987 | 0.893 | 0.999 | - | 2.5 s |") in text
    assert "| `loss` | training loss (mislabel baseline) | - | - | - | 0.997 | - | - |" in text
    assert "| `tracin` | TracIn-CP | 0.289 | 0.460 | 0.110 | 0.997 | - | 34 s |" in text
    assert "| `ntk` | NTK leave-one-out influence (eq. 8-9) | 0.767 | 0.987 | 0.893 | 0.999 | " \
           "- | 0.4 s |" in text
    assert "solver error at most 9.9e-08" in text
    assert "`ntk_f0` (the NTK fitted to `y - f_0`) does not apply" in text
    assert "- `ntk_refit` LDS >= 0.9: met (0.963)." in text
    assert "- Mislabel AUC of the NTK self-influence >= the loss baseline: met (0.999 against " \
           "0.997); every method and the baseline lie between 0.997 and 0.999." in text
    order = "`trak` 0.800, `ntk` 0.767" if trak_lds > 0.767 else "`ntk` 0.767, `trak` 0.693"
    assert f"- Additive methods by LDS: {order}, `tracin` 0.289." in text
    if trak_lds < 0.767:
        assert "`ntk` (additive) LDS against `trak` (0.693) and `tracin` (0.289): 0.767, at " \
               "least both." in text
        assert "- The whole run <= 15 min: met (11 min 52 s)." in text
    else:
        assert "0.767, **below** `trak`." in text
        assert "**missed** (16 min 40 s, 11% above)." in text


def test_attribution_section_renders_protocols_floor_and_brittleness(rd, tmp_path):
    res = tmp_path / "results"
    (res / "attribution").mkdir(parents=True)
    (res / "attribution" / "run.json").write_text(json.dumps({**RUN, "wall_s": 1500.0}))
    a = _attribution_json(0.7)
    lds = {"ntk_refit": 0.97, "ntk": 0.78, "trak": 0.76, "tracin": 0.26}
    retr = {"n_retrains": 100, "seconds": 85.0, "rows_fitted": 100}
    a["info"]["lds_runs"] = [
        {"alpha": 0.5, "protocol": "fixed", "dropped_fraction": 0.5, "subsets": 100,
         "kept_points": 100, "lds": lds, "noise_floor": None, "noise_ceiling": None,
         "loss_error_over_spread": 0.004, "subset_retrain": retr},
        {"alpha": 0.5, "protocol": "fresh", "dropped_fraction": 0.5, "subsets": 100,
         "kept_points": 100, "lds": {**lds, "ntk_refit": 0.96}, "noise_floor": 0.95,
         "noise_ceiling": 0.975, "loss_error_over_spread": 0.006, "subset_retrain": retr}]
    summ = {"found": 10, "of": 40, "median_size": 20.0, "median_size_all": None,
            "verified": 0.9, "refit_verified": 1.0, "larger_than_refit": None}
    a["info"]["brittleness"] = {
        "test_points": 40, "max_size": 40, "margin": 0.05, "retrain": {"n_retrains": 14},
        "min_abs_retrained_over_error": 50.0,
        "summary": {"ntk_refit": summ, "ntk": {**summ, "found": 4, "verified": 0.5,
                                               "larger_than_refit": 0.75}}}
    (res / "attribution" / "attribution.json").write_text(json.dumps(a))
    text = rd.render_attribution(res)
    assert "| 50% (100 subsets of 100) | fresh | 0.960 | 0.780 | 0.760 | 0.260 | 0.950 | " \
           "0.975 |" in text
    assert "- `ntk_refit` LDS >= 0.95 under fresh seeds at alpha = 0.5: met (0.960; noise " \
           "floor 0.950, ceiling about 0.975)." in text
    assert "at most 0.006 of that test point's spread" in text
    assert "- The whole run <= 20 min: **missed** (25 min 0 s, 25% above)." in text
    assert "| `ntk_refit` | 10 of 40 | > 40 | 20 | 0.90 | 1.00 | - |" in text
    assert "- `ntk_refit` flip sets verified by retraining >= 90%: met (90% of 10)." in text
    assert "verified sets found: `ntk_refit` 9, `ntk` 2" in text
    assert "`ntk` 75% of those points" in text and "at least 0.05 past zero" in text
    assert "(per retrain, 0.85 s with 50% dropped, fitting its 100 kept points)" in text
    # a median decided within the cap, against a method past it
    b = a["info"]["brittleness"]["summary"]
    b["ntk_refit"] = {**summ, "found": 30, "median_size_all": 25.0}
    (res / "attribution" / "attribution.json").write_text(json.dumps(a))
    assert "- `ntk_refit`'s sets smaller than the additive methods' on median: met (median 25 " \
           "over every point searched, a point without a verified set counting as larger than " \
           "any; `ntk` > 40)." in rd.render_attribution(res)


def _floor_run(gn_step: float) -> dict:
    run = {"iterations": 117, "converged": True, "stalled": False, "loss": 7.5, "rel_grad_norm":
           0.004, "final_step": gn_step, "f_change_test": 1e-8, "seconds": 30.0,
           "retrain_iterations": [100, 90, 95], "retrains_converged": 3}
    return {"arch": "two-layer", "width": 1024, "n_params": 65536, "second": "annealed GD",
            "removed": [4, 7, 1], "gn": run, "other": {**run, "final_step": 2e-7},
            "max_abs_diff": 0.027, "median_abs_diff": 0.0085, "median_abs_delta": 0.0126,
            "median_abs_delta_other": 0.012, "median_abs_delta_diff": 0.0057,
            "delta_pearson": 0.985}


def test_floor_sections_pair_each_width_with_its_compare_run(rd, tmp_path):
    res = tmp_path / "results"
    (res / "bench_floor").mkdir(parents=True)
    (res / "bench_floor" / "run.json").write_text(json.dumps(RUN))
    b = {"data": "digits:3,8", "n_train": 200, "lam": 0.1, "f_tol": 1e-7, "max_steps": 400,
         "gd_steps": 20000, "test_points": 10, "removed": 3,
         "rows": [_floor_run(3.8e-6), {**_floor_run(1.5e-5), "width": 4096}]}
    (res / "bench_floor" / "bench_floor.json").write_text(json.dumps(b))
    (res / "table1").mkdir()
    (res / "table1" / "compare.json").write_text(json.dumps(
        {"widths": [{"width": 1024, "pearson": 0.947, "retrain_median_abs_delta": 0.0107}]}))
    text = rd.render_deep_floor(res)
    assert "without each of the 3 training points with the largest `|I_ntk|` over the first " \
           "10 test points" in text
    assert "| two-layer | 1024 | annealed GD | 3.8e-06 | 0.0085 | 0.013 | 0.0057 | 0.985 | " \
           "0.992 | 0.947 (`table1`) |" in text
    assert "| two-layer | 4096 | annealed GD | 1.5e-05 | 0.0085 | 0.013 | 0.0057 | 0.985 | " \
           "0.992 | not run |" in text
    bench = rd.render_bench_floor(res)
    assert "| 117 | yes | 3.8e-06 | 0.004 | 7.50000 | 3/3 | 117 | yes | 2.0e-07 |" in bench
    assert "1 min 0 s" in bench


def _smooth_row(width: int, r: float, grad: float) -> dict:
    return {"width": width, "n_params": 1000 * width, "pearson": r, "spearman": 0.9,
            "ntk_slope": 0.95, "entk0_pearson": 0.9, "ihvp_pearson": 0.97, "ihvp_slope": 0.6,
            "entk0_kernel_rel_diff": 0.1, "max_rel_grad_norm": grad,
            "retrain_median_abs_delta": 0.004, "retrain_total_iterations": 120,
            "full_iterations": 11, "seconds_total": 95.0, "n_points": 40, "test_points": 10,
            "newton_cg": 50, "g_tol": 1e-8, "warm_start": True, "full_ridge_rel_grad_norm": grad,
            "f_test": -0.5, "f_ntk_test": -0.42,
            "retrain_max_ridge_rel_grad_norm": grad}


@pytest.mark.parametrize("top, grad, floor_r, verdicts", [
    (0.985, 8e-9, 0.99999, ["R >= 0.98 met; R rises with width: yes; largest rel. gradient "
                            "8.0e-09 (<= 1e-8: met)", "smallest R(Delta) 0.9999900 (>= 0.9999: met)"]),
    (0.95, 3e-8, 0.999, ["R >= 0.98 **missed**", "(<= 1e-8: **missed**)",
                         "(>= 0.9999: **missed**)"]),
])
def test_smooth_section_renders_rows_floor_and_targets(rd, tmp_path, top, grad, floor_r,
                                                       verdicts):
    res = tmp_path / "results"
    for run in ("smooth_erf_warm", "start_floor"):
        (res / run).mkdir(parents=True)
        (res / run / "run.json").write_text(json.dumps(RUN))
    c = {"arch": "mlp:3:erf", "settings": {"lam": 0.1, "warm_start": True},
         "data": {"name": "digits:3,8", "n_train": 200},
         "widths": [_smooth_row(128, 0.93, 5e-9), _smooth_row(512, top, grad)]}
    (res / "smooth_erf_warm" / "compare.json").write_text(json.dumps(c))
    fl = {"arch": "mlp:3:erf", "rows": [{"width": 128, "pairs": 400, "r_warm_cold": floor_r,
                                         "max_rel_diff": 2e-8, "iterations_warm": 100,
                                         "iterations_cold": 300, "seconds_retrain_warm": 40.0,
                                         "seconds_retrain_cold": 100.0}]}
    (res / "start_floor" / "start_floor.json").write_text(json.dumps(fl))
    text = rd.render_smooth(res)
    assert "- `smooth_erf_cold`: not measured for this release (no run recorded)." in text
    assert (f"| mlp:3:erf | warm | 512 | 512000 | {top:.3f} | 0.900 | 0.95 | 0.900 | 0.970 | "
            f"0.60 | 0.100 | 0.08 | {grad:.1e} | 0.004 | 131 | 1 min 35 s |") in text
    assert "newton_cg = 50" in text and "<= 1e-08`" in text
    assert f"| 128 | 400 | {floor_r:.7f} | 2e-08 | 100 / 300 | 40 s / 1 min 40 s |" in text
    for v in verdicts:
        assert v in text, v


@pytest.mark.parametrize("exact_gain, verdict", [(0.05, "met"), (0.03, "**missed**")])
def test_clean_section_judges_the_target_on_the_pooled_trials(rd, tmp_path, exact_gain, verdict):
    res = tmp_path / "results"
    (res / "clean").mkdir(parents=True)
    (res / "clean" / "run.json").write_text(json.dumps({**RUN, "wall_s": 900.0}))

    def one(gain):
        return {"test_acc_before": 0.9, "test_acc_after": 0.9 + gain, "test_loss_before": 0.2,
                "test_loss_after": 0.1, "noisy_removed": 20, "val_loss_after": 0.1,
                "seconds_ranking": 1.0}

    pooled = {"trials": 3, "extra": [{"k_star": 18}, {"k_star": 25}],
              "methods": {n: {"test_acc_gain_mean": gv, "test_acc_gain_sem": 0.01,
                              "test_loss_after_mean": 0.1, "test_loss_after_sem": 0.004,
                              "noisy_removed_mean": 19.5}
                          for n, gv in (("ntk_refit", exact_gain), ("trak", 0.04),
                                        ("ihvp", 0.035), ("loss", 0.02))},
              "exact_vs": {n: {"acc_wins": 2, "acc_ties": 1, "acc_losses": 0,
                               "loss_diff_mean": d, "loss_diff_sem": 0.002}
                           for n, d in (("trak", -0.001), ("ihvp", -0.01), ("loss", -0.03))}}
    c = {"settings": {"f_tol": 1e-4, "seed": 0}, "data": {"name": "digits:3,8"},
         "info": {"n_train": 200, "noise": 0.2, "n_noisy": 40, "n_val": 50, "n_test": 100,
                  "width": 16384, "lam": 0.1, "retrain": {"n_retrains": 54}},
         "k_star": 22, "ks": [0, 22, 40], "seconds": 800.0,
         "methods": {"ntk_refit": one(0.04), "trak": one(0.04), "ihvp": one(0.05),
                     "loss": one(0.03)},
         "curves": {n: {"test_loss": [0.2, 0.1, 0.09]} for n in ("ntk_refit", "trak")},
         "trials": pooled}
    (res / "clean" / "clean.json").write_text(json.dumps(c))
    text = rd.render_clean(res)
    assert "**Over 3 trials.**" in text and "(k = 22, 18, 25)" in text
    assert f"on the mean over 3 trials: {verdict} ({100 * exact_gain:+.1f} points against " \
           "`trak` +4.0, `ihvp` +3.5, `loss` +2.0" in text
    assert "| `trak` | +4.0 +- 1.0 | 0.1000 +- 0.0040 | 19.5 | 2 / 1 / 0 | -0.0010 +- 0.0020 |" \
        in text
    assert "two standard errors from zero: `ihvp` (-0.0100), `loss` (-0.0300)." in text
