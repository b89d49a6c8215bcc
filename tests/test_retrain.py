"""Leave-one-out retraining: vmapped == sequential == deleting the point; eq. (7); resume."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import nets as N
from ntk_influence import retrain as R
from ntk_influence import train as T

LAM = 0.2
S = T.SolverSettings("gn", f_tol=1e-12)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=10))
    xt, yt = x[:2] * 0.7 + 0.3 * x[5:7], np.array([1.0, -1.0])
    net = N.two_layer_net(5, 512, symmetric=True, seed=0)
    full = T.train(net, x, y, LAM, x_test=xt, settings=S)
    res = R.loo_retrain(net, x, y, xt, yt, LAM, train_index=[1, 4, 7], settings=S, full=full,
                        chunk_size=2, show_progress=False)
    return net, x, y, xt, yt, full, res


def test_vmapped_equals_sequential_and_deletion(case):
    net, x, y, xt, yt, full, res = case
    for k, i in enumerate(res.train_index):
        w = np.ones(len(y))
        w[i] = 0.0
        seq = T.train(net, x, y, LAM, x_test=xt, settings=S, weights=w)
        np.testing.assert_allclose(res.f_loo_test[k], seq.f_test, atol=1e-10)
        keep = np.arange(len(y)) != i
        dele = T.train(net, x[keep], y[keep], LAM, x_test=xt, settings=S)
        np.testing.assert_allclose(res.f_loo_test[k], dele.f_test, atol=1e-8)


def test_influence_from_delta_equals_loss_difference(case):
    net, x, y, xt, yt, full, res = case
    direct = 0.5 * (res.f_loo_test - yt) ** 2 - 0.5 * (res.f_test - yt) ** 2  # float64, eq. (7)
    np.testing.assert_allclose(res.influence, direct, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(R.actual_influence(res.delta, res.f_test, yt), res.influence)


def test_solver_error_far_below_delta(case):
    *_, res = case
    assert res.converged.all()
    assert res.error_ratio.max() < 1e-6
    s = res.summary()
    assert s["start"] == "same W(0)" and not s["warm_start"] and s["n_retrains"] == 3


def test_store_resumes_without_recomputing(case, tmp_path):
    net, x, y, xt, yt, full, _ = case
    kw = dict(train_index=[2, 3, 5], settings=S, full=full, chunk_size=2, show_progress=False)
    a = R.loo_retrain(net, x, y, xt, yt, LAM, store=tmp_path / "s", **kw)
    files = sorted((tmp_path / "s").glob("item_*.npz"))
    assert len(files) == 2
    stamps = [os.stat(f).st_mtime_ns for f in files]
    b = R.loo_retrain(net, x, y, xt, yt, LAM, store=tmp_path / "s", **kw)
    assert [os.stat(f).st_mtime_ns for f in files] == stamps
    np.testing.assert_array_equal(a.influence, b.influence)
    with pytest.raises(ni.InputError, match="other settings"):
        R.loo_retrain(net, x, y, xt, yt, LAM, store=tmp_path / "s", warm_start=True, **kw)


def test_warm_start_is_recorded(case):
    net, x, y, xt, yt, full, res = case
    w = R.loo_retrain(net, x, y, xt, yt, LAM, train_index=[1], settings=S, full=full,
                      warm_start=True, show_progress=False)
    assert w.warm_start and w.summary()["start"].startswith("trained W")


def test_bad_index(case):
    net, x, y, xt, yt, full, _ = case
    with pytest.raises(ni.InputError, match="outside"):
        R.loo_retrain(net, x, y, xt, yt, LAM, train_index=[10], full=full, show_progress=False)


def test_relative_stopping_rule_keeps_influences_within_tolerance(case):
    # Loose retrains stopped at 2% of the predicted abs(Delta) against tight ones (f_tol 1e-12):
    # the prediction changes, hence the influences, agree to well under 2 x 2% of abs(Delta),
    # with fewer solver steps, and each retrain records its tolerance and error ratio.
    net, x, y, xt, yt, full, tight = case
    rel = 0.02
    scale = np.abs(tight.delta[:, 0])
    loose_s = T.SolverSettings("gn", f_tol=1e-9)
    loose = R.loo_retrain(net, x, y, xt, yt, LAM, train_index=tight.train_index,
                          settings=loose_s, chunk_size=1, show_progress=False, rel_tol=rel,
                          delta_scale=scale)
    np.testing.assert_allclose(loose.f_tol, np.maximum(1e-9, rel * scale))
    assert loose.full.settings.f_tol == pytest.approx(loose.f_tol.min())
    assert loose.iterations.sum() < tight.iterations.sum()
    err = np.abs(loose.delta - tight.delta) / np.abs(tight.delta)
    assert err.max() < 2 * rel
    np.testing.assert_allclose(loose.influence, tight.influence,
                               atol=2 * rel * np.abs(tight.influence).max())
    assert (loose.error_ratio[:, 0] > 0).all() and not loose.flagged(4 * rel).any()
    summ = loose.summary()
    assert summ["rel_tol"] == rel and summ["n_flagged_5pct"] == 0


def test_relative_rule_bad_input():
    s = T.SolverSettings("gn").resolved()
    with pytest.raises(ni.InputError, match="delta_scale"):
        R.retrain_tolerances(s, 3, 0.02, None)
    with pytest.raises(ni.InputError, match="3 finite"):
        R.retrain_tolerances(s, 3, 0.02, [1.0, 2.0])
    with pytest.raises(ni.InputError, match="rel_tol"):
        R.retrain_tolerances(s, 3, 1.5, [1.0, 2.0, 3.0])
