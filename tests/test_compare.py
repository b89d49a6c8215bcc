"""Width sweep: agreement statistics, the f_0 kernel variant, a wide net's R, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import compare as C
from ntk_influence import nets as N
from ntk_influence.cli import main
from ntk_influence.empirical import entk


def test_agreement_reports_slope_and_error():
    a = np.array([1.0, -2.0, 3.0, 0.5])
    st = C.agreement(0.5 * a, a)
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
    res = ni.influence_from_kernels(k, kt, y - f0, yt - f0t, 0.1)

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
        assert r["full_converged"] and r["full_f_change"] <= r["full_f_tol"]
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
