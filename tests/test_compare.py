"""Width sweep: agreement statistics, the f_0 kernel variant, a wide net's R, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import closed_form_kernel

import ntk_influence as ni
import ntk_influence.experiments._compare as compare_impl
from ntk_influence import experiments as C
from ntk_influence import nets as N
from ntk_influence.cli import main
from ntk_influence.nets import entk


def test_agreement_reports_slope_and_error():
    a = np.array([1.0, -2.0, 3.0, 0.5])
    st = ni.attribution.agreement(0.5 * a, a)
    assert st["pearson"] == pytest.approx(1.0) and st["spearman"] == pytest.approx(1.0)
    assert st["slope"] == pytest.approx(0.5) and st["rel_error"] == pytest.approx(0.5)


def test_kernel_with_f0_is_the_linearised_network():
    """influence_from_kernels on residuals y - f_0 == brute-force LOO of the linearised net."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y, xt, yt = np.sign(rng.normal(size=8)), x[:2] * 0.6 + 0.4 * x[3:5], np.array([1.0, -1.0])
    net = N.two_layer_net(4, 64, seed=1)  # standard init: f_0 != 0
    f0, f0t = N.initial_output(net, x), N.initial_output(net, xt)
    assert np.abs(f0).max() > 1e-2
    k, kt = np.asarray(entk(net, x)), np.asarray(entk(net, x, xt))
    res = ni.influence.influence_from_kernels(k, kt, y - f0, yt - f0t, 0.1)

    def lin_predict(keep):  # the linearised net trained on eq. (2), in closed form
        kk = k[np.ix_(keep, keep)]
        return f0t + kt[keep].T @ np.linalg.solve(kk + 0.1 * np.eye(len(keep)), (y - f0)[keep])

    full = lin_predict(np.arange(8))
    for i in (0, 5):
        fi = lin_predict(np.setdiff1d(np.arange(8), [i]))
        ref = 0.5 * (fi - yt) ** 2 - 0.5 * (full - yt) ** 2
        np.testing.assert_allclose(res.influence[i], ref, rtol=1e-8, atol=1e-14)


@pytest.fixture(scope="module")
def wide(digits38):  # used by a slow test only
    ds = digits38
    return ds, C.compare_width(ds.x_train[:40], ds.y_train[:40], ds.x_test, ds.y_test, 4096, 0.1,
                               test_index=0, n_points=8, show_progress=False)


@pytest.mark.slow
def test_wide_net_matches_ntk(wide):
    ds, c = wide
    assert c.f0_test == 0.0
    assert c.stats["ntk"]["pearson"] > 0.95
    assert 0.7 < c.stats["ntk"]["slope"] < 1.3
    assert c.stats["ihvp"]["slope"] < c.stats["ntk"]["slope"]  # the IHVP underestimates
    assert c.info["retrain_max_error_ratio"] < 1e-3
    row = c.row()
    for key in ("width", "pearson", "spearman", "ihvp_pearson", "ihvp_spearman", "f0_test",
                "full_grad_norm", "retrain_max_grad_norm"):
        assert key in row


def test_bad_compare_input(digits38):
    ds = digits38
    with pytest.raises(ni.InputError, match="test_index"):
        C.compare_width(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 64, test_index=999)
    with pytest.raises(ni.InputError, match="n_points"):
        C.compare_width(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 64, n_points=0)
    with pytest.raises(ni.InputError, match="lam"):
        C.compare_width(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 64, lam=-0.1)
    with pytest.raises(ni.InputError, match="width"):
        C.compare_width(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0)


def test_cli_compare_writes_table_and_resumes(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--n-train", "16", "--n-test", "4", "--widths", "32", "64",
            "--n-points", "4", "--rel-tol", "0.02", "--out", str(out), "--quiet"]
    assert main(args) == 0
    d = json.loads((out / "compare.json").read_text())
    assert [r["width"] for r in d["widths"]] == [32, 64]
    for r in d["widths"]:  # the relative rule is recorded with its measured check
        assert r["rel_tol"] == 0.02 and r["full_f_tol"] <= r["retrain_max_f_tol"]
        # the full run is (re)trained to the tightest tolerance any retrain got, refined or not
        assert r["full_f_tol"] == pytest.approx(r["retrain_min_f_tol"])
        assert r["retrain_full_f_tol"] == pytest.approx(r["retrain_min_f_tol"])
        assert r["full_settled"] and r["full_f_change"] <= r["full_f_tol"]
        assert r["stop"] == "predictions" and not r["warm_start"]  # the ReLU defaults
        assert r["max_rel_grad_norm"] >= r["full_ridge_rel_grad_norm"] > 0
        assert r["retrain_min_f_tol"] >= 1e-7 and r["retrain_n_refined"] >= 0
    for key in ("pearson", "spearman", "ihvp_pearson", "ihvp_spearman", "f0_test",
                "full_grad_norm"):
        assert all(key in r for r in d["widths"])
    for f in ("compare.csv", "compare.md", "figure1.png"):
        assert (out / f).stat().st_size > 0
    stamp = (out / "width_32.json").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert (out / "width_32.json").stat().st_mtime_ns == stamp
    assert main(["compare", "--n-train", "24", "--widths", "64", "--test-index", "99",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2


# ------------------------------------------------------------------ several test points, resume

@pytest.fixture(scope="module")
def sweep3(digits38, tmp_path_factory):
    """A stored one-width sweep on 3 test points (fixed tolerance: comparable retrains)."""
    ds = digits38
    data = (ds.x_train[:16], ds.y_train[:16], ds.x_test[:6], ds.y_test[:6])
    out = tmp_path_factory.mktemp("sweep3")
    kw = {"n_points": 4, "test_points": 3, "test_index": 1, "show_progress": False}
    (c,) = C.width_sweep(*data, [16], 0.1, out=out, **kw)
    return data, out, kw, c


def test_test_points_pair_every_removed_point_with_every_test_point(sweep3):
    data, _, _, c = sweep3
    x, y, xt, yt = data
    assert c.actual.shape == (4, 3) and list(c.test_indices) == [1, 2, 3]
    for v in C.VARIANTS:
        assert c.predicted[v].shape == (4, 3)
        ref = ni.attribution.agreement(c.predicted[v].ravel(), c.actual.ravel())  # all 12 pairs
        assert c.stats[v] == pytest.approx(ref)
    # the removed points: the largest abs(I_ntk) summed over the 3 test points (dense solve)
    k, kt = closed_form_kernel(x, x), closed_form_kernel(x, xt[1:4])
    a = np.linalg.solve(k + 0.1 * np.eye(16), np.eye(16))
    f = kt.T @ a @ y
    infl = np.empty((16, 3))
    for i in range(16):
        keep = np.setdiff1d(np.arange(16), [i])
        fi = kt[keep].T @ np.linalg.solve(k[np.ix_(keep, keep)] + 0.1 * np.eye(15), y[keep])
        infl[i] = 0.5 * (fi - yt[1:4]) ** 2 - 0.5 * (f - yt[1:4]) ** 2
    assert sorted(c.train_index) == sorted(np.argsort(-np.abs(infl).sum(1))[:4])
    np.testing.assert_allclose(c.predicted["ntk"], infl[c.train_index], rtol=1e-8, atol=1e-13)
    assert c.row()["test_points"] == 3 and c.info["test_indices"] == [1, 2, 3]
    assert c.info["ntk_residual_test"] == pytest.approx(np.abs(f - yt[1:4]).mean(), rel=1e-8)


def test_each_test_point_column_is_that_test_points_comparison(sweep3):
    """The K-point run's column j equals a one-point run on test point j (same removed points)."""
    data, _, kw, c = sweep3
    one = C.compare_width(*data, 16, 0.1, test_index=2, train_index=c.train_index,
                          show_progress=False)
    assert one.actual.shape == (4, 1)
    np.testing.assert_allclose(one.actual[:, 0], c.actual[:, 1], rtol=1e-9,
                               atol=1e-12 * np.abs(c.actual).max())
    np.testing.assert_allclose(one.predicted["ntk"][:, 0], c.predicted["ntk"][:, 1], rtol=1e-10)


def _flip(data):
    x, y, xt, yt = data
    return x, -y, xt, yt


# (name, change to the data, change to the options, what the refusal names)
RESUME_CASES = [
    ("lam", None, {"lam": 0.2}, "lam: 0.1 stored, 0.2 requested"),
    ("seed", None, {"seed": 3}, "seed: 0 stored, 3 requested"),
    ("test points", None, {"test_points": 2}, "test_points: 3 stored, 2 requested"),
    ("test index", None, {"test_index": 0}, "test_index: 1 stored, 0 requested"),
    ("n points", None, {"n_points": 5}, "n_points: 4 stored, 5 requested"),
    ("rel_tol", None, {"rel_tol": 0.01}, "rel_tol: None stored, 0.01 requested"),
    ("kappa", None, {"kappa": 0.5}, "kappa: 1.0 stored, 0.5 requested"),
    ("init", None, {"symmetric": False}, "symmetric: True stored, False requested"),
    ("solver", None, {"settings": ni.SolverSettings(f_tol=1e-6)}, "solver.f_tol"),
    ("dtype", None, {"dtype": np.float32}, "dtype: float64 stored, float32 requested"),
    ("warm start", None, {"warm_start": True}, "warm_start: False stored, True requested"),
    ("data", _flip, {}, "data_sha256: "),
]


@pytest.mark.parametrize("name,data_change,change,shown", RESUME_CASES,
                         ids=[c[0] for c in RESUME_CASES])
def test_stored_width_of_other_settings_is_refused(sweep3, monkeypatch, name, data_change,
                                                   change, shown):
    data, out, kw, _ = sweep3

    def never(*a, **k):
        raise AssertionError("computed instead of refusing")

    monkeypatch.setattr(compare_impl, "compare_width", never)
    data = data_change(data) if data_change else data
    opts = {**kw, "lam": 0.1, **change}
    lam = opts.pop("lam")
    with pytest.raises(ni.InputError, match="holds width 16 computed with other settings") as e:
        C.width_sweep(*data, [16], lam, out=out, **opts)
    assert shown in str(e.value)


def test_stored_width_of_the_same_settings_is_reused(sweep3, monkeypatch):
    data, out, kw, c = sweep3

    def never(*a, **k):
        raise AssertionError("recomputed a stored width")

    monkeypatch.setattr(compare_impl, "compare_width", never)
    seen = []
    (again,) = C.width_sweep(*data, [16], 0.1, out=out, on_result=seen.append,
                             chunk_size=2, **kw)  # how the work is run does not matter
    assert seen == [again]
    np.testing.assert_array_equal(again.actual, c.actual)
    assert again.settings == c.settings and list(again.test_indices) == [1, 2, 3]


# ------------------------------------------------------------------ the Markdown table

def _fake(width, f0=0.0, r=0.9):
    st = {k: 0.5 for k in ("pearson", "spearman", "slope", "rel_error")}
    stats = {v: dict(st) for v in C.VARIANTS}
    stats["ntk"]["pearson"] = r
    info = {"f0_max_abs": abs(f0), "entk0_kernel_rel_diff": 0.4, "entk0_residual_test": 0.002,
            "full_grad_norm": 1e-9,
            "retrain_max_error_ratio": 1e-3, "seconds_total": 1.0, "test_points": 1,
            "max_rel_grad_norm": 2e-9}
    k = np.arange(4.0)
    return C.WidthComparison(width, 0, np.arange(4), k, {v: k for v in C.VARIANTS}, stats, f0,
                             info)


# (name, results, rows that must appear in this order, rows that must not appear)
TABLE_CASES = [
    ("ascending widths", [_fake(4096), _fake(1024)], ["| | m = 1024 | m = 4096 |"], []),
    ("f0 = 0 drops NTK + f0", [_fake(64)], ["NTK + f0 rows omitted"], ["| NTK + f0 R |"]),
    ("f0 != 0 keeps NTK + f0", [_fake(64, f0=0.3)], ["| NTK + f0 R |"], ["rows omitted"]),
    ("eNTK(W0) is explained", [_fake(64)],
     ["| eNTK(W0) + f0 R |", "eNTK(W0) vs eq. (4): rel. difference | 0.400 |",
      "eNTK(W0) mean abs(f - y) at the test points | 0.002 |",
      "empirical NTK of the net at its initialisation W(0) used as the kernel"], []),
]


@pytest.mark.parametrize("name,results,present,absent", TABLE_CASES,
                         ids=[c[0] for c in TABLE_CASES])
def test_table_markdown(name, results, present, absent):
    md = C.table_markdown(results)
    pos = [md.index(p) for p in present]
    assert pos == sorted(pos)
    for a in absent:
        assert a not in md


# ------------------------------------------------------------------ the command: rows as they come

def test_cli_prints_each_width_as_soon_as_it_is_done(tmp_path, capsys, monkeypatch):
    def fake(x, y, xt, yt, width, lam, **kw):
        if width == 32:
            raise KeyboardInterrupt  # the second width never finishes
        return _fake(width, r=0.777)

    monkeypatch.setattr(compare_impl, "compare_width", fake)
    code = main(["compare", "--n-train", "16", "--n-test", "4", "--widths", "16", "32",
                 "--n-points", "4", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 130
    assert "width 16: R=0.777" in err and "width 32: R=" not in err


def test_cli_compare_writes_both_figures_and_test_points(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare_impl, "compare_width", lambda *a, **kw: _fake(a[4]))
    out = tmp_path / "c"
    assert main(["compare", "--n-train", "16", "--n-test", "4", "--widths", "64", "16",
                 "--n-points", "4", "--test-points", "3", "--out", str(out), "--quiet"]) == 0
    for f in ("figure1.png", "figure1_ihvp.png"):
        assert (out / f).stat().st_size > 1000, f
    d = json.loads((out / "compare.json").read_text())
    assert d["settings"]["test_points"] == 3 and d["test_points"] == 3
    md = (out / "compare.md").read_text()
    assert md.index("m = 16") < md.index("m = 64")


def test_cli_compare_help_documents_refine_and_test_points(capsys):
    assert main(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "LOO refine" in text and "1.5 rel-tol of the measured abs(Delta)" in text
    assert "tightest tolerance" in text
    assert "--test-points K" in text and "stationary point" in text and "--cold-start" in text
