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
