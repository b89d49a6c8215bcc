"""Influence along training (eq. 20 with lam) against brute-force refits of the time-t predictor."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl
from conftest import closed_form_kernel
from scipy.integrate import solve_ivp

import ntk_influence as ni
from ntk_influence import influence as dy
from ntk_influence import influence as flow

TIMES = [0.0, 0.3, 2.0, 25.0, np.inf]


def _toy(n=24, m=6, d=5, seed=0, k_out=None):
    rng = np.random.default_rng(seed)
    x = ni.data.unit_normalize(rng.normal(size=(n, d)))
    xt = ni.data.unit_normalize(rng.normal(size=(m, d)))
    if k_out is None:
        y, yt = np.sign(rng.normal(size=n)), np.sign(rng.normal(size=m))
    else:
        y = np.eye(k_out)[rng.integers(0, k_out, n)]
        yt = np.eye(k_out)[rng.integers(0, k_out, m)]
    return x, xt, closed_form_kernel(x, x), closed_form_kernel(x, xt), y, yt


def _pred(k, kt, y, lam, t):
    """Time-t predictor by scipy's matrix exponential and a dense solve (the reference)."""
    m = k + lam * np.eye(k.shape[0])
    if np.isinf(t):
        return kt.T @ np.linalg.solve(m, y)
    return kt.T @ np.linalg.solve(m, (np.eye(k.shape[0]) - sl.expm(-t * m)) @ y)


def _brute(k, kt, y, yt, lam, times):
    n, mm = kt.shape
    out = np.empty((len(times), n, mm))
    for a, t in enumerate(times):
        f = _pred(k, kt, y, lam, t)
        for i in range(n):
            keep = np.arange(n) != i
            d = _pred(k[np.ix_(keep, keep)], kt[keep], y[keep], lam, t) - f
            r = f - yt
            out[a, i] = np.sum((d * r + 0.5 * d * d).reshape(mm, -1), axis=1)
    return out


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_predictions_match_expm_and_ode(lam):
    x, xt, k, kt, y, yt = _toy()
    times = [0.0, 0.5, 4.0, 40.0]
    dyn = dy.linearized_predictions(k, kt, y, lam, times)
    for a, t in enumerate(times):
        np.testing.assert_allclose(dyn.f_test[a], _pred(k, kt, y, lam, t), atol=1e-11)
        np.testing.assert_allclose(dyn.f_train[a], _pred(k, k, y, lam, t), atol=1e-11)
    # time unit "flow": gradient flow on eq. (2) (sum loss) in function space,
    # df/dt = -K (f - y) - lam f on the training points (f_0 = 0).
    n = k.shape[0]
    sol = solve_ivp(lambda t, f: -k @ (f - y) - lam * f, (0, 4.0), np.zeros(n), rtol=1e-11,
                    atol=1e-12, t_eval=[0.5, 4.0])
    np.testing.assert_allclose(sol.y.T, dyn.f_train[1:3], atol=1e-8)


def test_paper_time_unit_is_eq20():
    x, xt, k, kt, y, yt = _toy()
    n = k.shape[0]
    t = 7.0
    dyn = dy.linearized_predictions(k, kt, y, 0.0, [t], time_unit="paper")
    ref = kt.T @ np.linalg.solve(k, (np.eye(n) - sl.expm(-2 * t / n * k)) @ y)  # eq. (20)
    np.testing.assert_allclose(dyn.f_test[0], ref, atol=1e-10)
    assert dyn.flow_times[0] == pytest.approx(2 * t / n)


def test_end_of_training_is_krr():
    x, xt, k, kt, y, yt = _toy()
    dyn = dy.linearized_predictions(k, kt, y, 0.1, [np.inf, 1e4])
    res = ni.influence.influence_from_kernels(k, kt, y, yt, 0.1)
    np.testing.assert_allclose(dyn.f_test[0], res.f_test, atol=1e-12)
    np.testing.assert_allclose(dyn.f_test[1], res.f_test, atol=1e-12)


@pytest.mark.parametrize("backend", ["jax", "lapack"])
@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_exact_matches_brute_force_refits(lam, backend):
    x, xt, k, kt, y, yt = _toy(n=18, m=5)
    times = [0.0, 0.3, 2.0, 25.0] + ([np.inf] if lam > 0 else [])
    res = dy.time_influence_from_kernels(k, kt, y, yt, lam, times, chunk_size=5, backend=backend)
    ref = _brute(k, kt, y, yt, lam, times)
    scale = np.abs(ref).max(axis=(1, 2), keepdims=True) + 1e-300
    assert np.max(np.abs(res.influence - ref) / scale) < 1e-9
    assert np.all(res.influence[0] == 0.0)  # t = 0: nothing learned, no influence


@pytest.mark.parametrize("backend", ["jax", "lapack"])
def test_exact_multi_output_matches_brute_force(backend):
    x, xt, k, kt, y, yt = _toy(n=15, m=4, k_out=3)
    res = dy.time_influence_from_kernels(k, kt, y, yt, 0.1, [0.7, 9.0], backend=backend)
    ref = _brute(k, kt, y, yt, 0.1, [0.7, 9.0])
    assert np.max(np.abs(res.influence - ref)) / np.abs(ref).max() < 1e-9


def test_infinite_time_equals_core_engine(digits38):
    ds = digits38
    res = dy.influence_over_time(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0.1,
                                 [np.inf, 1e6])
    core = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0.1)
    scale = np.abs(core.influence).max()
    assert res.shape == (2, ds.x_train.shape[0], ds.x_test.shape[0])
    assert np.max(np.abs(res[0] - core.influence)) / scale < 1e-8
    assert np.max(np.abs(res[1] - core.influence)) / scale < 1e-8


def test_precomputed_kernels_subset_and_chunks_agree():
    x, xt, k, kt, y, yt = _toy(n=20, m=5)
    a = dy.influence_over_time(x, y, xt, yt, 0.1, [1.0, 5.0], kernel="paper")
    k, kt = ni.kernels.kernel_matrix("paper", x), ni.kernels.kernel_matrix("paper", x, xt)
    b = dy.influence_over_time(None, y, None, yt, 0.1, [1.0, 5.0], k_train=k, k_test=kt,
                               chunk_size=3)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    sub = dy.time_influence_from_kernels(k, kt, y, yt, 0.1, [1.0, 5.0], train_index=[4, 11])
    np.testing.assert_allclose(sub.influence, b[:, [4, 11]], rtol=1e-10, atol=1e-14)


def test_store_resumes_chunks_from_one_eigendecomposition(tmp_path, monkeypatch):
    x, xt, k, kt, y, yt = _toy(n=20, m=5)
    times = [1.0, np.inf]
    ref = dy.time_influence_from_kernels(k, kt, y, yt, 0.1, times, method="both")
    calls = []
    real_eigh = np.linalg.eigh

    def counting_eigh(a, *args, **kw):  # counts the n x n decompositions of K + lam I
        calls.append(a.shape[0])
        return real_eigh(a, *args, **kw)

    monkeypatch.setattr(np.linalg, "eigh", counting_eigh)
    store = ni.io.ResultStore(tmp_path / "work", meta={"chunk": 6})
    res = dy.time_influence_from_kernels(k, kt, y, yt, 0.1, times, method="both", chunk_size=6,
                                         store=store, backend="lapack")
    assert calls.count(20) == 1  # one eigendecomposition for every chunk and the first order
    np.testing.assert_array_equal(res.influence, ref.influence)
    np.testing.assert_array_equal(res.first_order, ref.first_order)
    assert store.keys() == ["0", "12", "18", "6"]
    np.testing.assert_array_equal(store.load(6)["influence"], ref.influence[:, 6:12])
    # a finished chunk is loaded, not recomputed; a missing one is redone
    store.save(6, influence=np.zeros((2, 6, 5)))
    (tmp_path / "work" / "item_12.npz").unlink()
    again = dy.influence_over_time(None, y, None, yt, 0.1, times, k_train=k, k_test=kt,
                                   chunk_size=6, store=store)
    assert not again[:, 6:12].any()
    np.testing.assert_array_equal(again[:, 12:18], ref.influence[:, 12:18])


def test_lambda_sweep_store_resumes(tmp_path):
    x, xt, k, kt, y, yt = _toy(n=20, m=5)
    ref = ni.experiments.lambda_sweep(k, kt, y, yt, [0.5, 2.0])
    store = ni.io.ResultStore(tmp_path / "sweep")
    a = ni.experiments.lambda_sweep(k, kt, y, yt, [0.5, 2.0], store=store)
    for f in ("mean_error_rate", "lower", "leverage", "bound_violations", "leverage_in_bounds"):
        np.testing.assert_array_equal(getattr(a, f), getattr(ref, f))
        assert getattr(a, f).dtype == getattr(ref, f).dtype
    store.save(1, **{**store.load(1), "mean": np.asarray(-1.0)})
    b = ni.experiments.lambda_sweep(k, kt, y, yt, [0.5, 2.0], store=store)
    assert b.mean_error_rate[1] == -1.0 and b.mean_error_rate[0] == ref.mean_error_rate[0]


def test_first_order_at_infinity_is_the_kernel_ihvp():
    x, xt, k, kt, y, yt = _toy()
    res = dy.time_influence_from_kernels(k, kt, y, yt, 0.1, [np.inf], method="first-order")
    core = ni.influence.influence_from_kernels(k, kt, y, yt, 0.1)
    np.testing.assert_allclose(res.first_order[0], core.ihvp, rtol=1e-9,
                               atol=1e-12 * np.abs(core.ihvp).max())


def test_first_order_is_the_derivative_of_the_weighted_flow():
    """-dF/dw_i by central finite differences of the weighted-loss predictor F(w)."""
    x, xt, k, kt, y, yt = _toy(n=16, m=4)
    lam, times = 0.1, [0.4, 3.0]
    res = dy.time_influence_from_kernels(k, kt, y, yt, lam, times, method="first-order")
    n = k.shape[0]

    def f_w(w, t):
        s = np.diag(np.sqrt(w))
        m = s @ k @ s + lam * np.eye(n)
        return kt.T @ s @ np.linalg.solve(m, (np.eye(n) - sl.expm(-t * m)) @ (s @ y))

    for a, t in enumerate(times):
        r = f_w(np.ones(n), t) - yt
        for i in (0, 7, 15):
            h = 1e-5
            wp, wm = np.ones(n), np.ones(n)
            wp[i] += h
            wm[i] -= h
            dfdw = (f_w(wp, t) - f_w(wm, t)) / (2 * h)
            np.testing.assert_allclose(res.first_order[a, i], -dfdw * r, rtol=1e-6,
                                       atol=1e-9 * np.abs(dfdw * r).max())


def test_first_order_agreement_improves_early_and_with_ridge():
    x, xt, k, kt, y, yt = _toy(n=30, m=8)
    times = [0.01, 0.1, 1.0, 10.0]
    res = dy.time_influence_from_kernels(k, kt, y, yt, 0.1, times, method="both")
    rel = res.agreement.rel_error
    assert np.all(np.diff(rel) > 0)  # exact to leading order in t: better early in training
    assert rel[0] < 0.01
    # At the end of training the gap is the IHVP's: it shrinks as lam grows (Theorem 3).
    ends = [dy.time_influence_from_kernels(k, kt, y, yt, lam, [np.inf], method="both")
            .agreement.rel_error[0] for lam in (0.01, 0.1, 1.0, 10.0)]
    assert np.all(np.diff(ends) < 0)


def test_divided_differences_and_derivative():
    mu = np.array([1e-3, 0.2, 0.2 + 1e-9, 0.2 + 0.04, 1.0, 3.0, 50.0])
    for t in (0.05, 2.0, 30.0):
        g = flow.divided_differences(t, mu)
        assert np.allclose(g, g.T, rtol=1e-13, atol=0)
        gm = flow.g_flow(t, mu)
        for i in range(mu.size):
            for j in range(mu.size):
                if abs(mu[i] - mu[j]) > 0.3 * min(mu[i], mu[j]):
                    q = (gm[i] - gm[j]) / (mu[i] - mu[j])
                    assert g[i, j] == pytest.approx(q, rel=1e-10)
        # near-equal pairs: close to the derivative at the midpoint
        assert g[1, 2] == pytest.approx(flow.g_flow_prime(t, np.array([0.2 + 5e-10]))[0], rel=1e-8)
        # the quadrature branch (|gap| = 0.2 mu) against a quotient in long arithmetic
        a, b = mu[3], mu[1]
        ga = -np.expm1(np.longdouble(-t * a)) / np.longdouble(a)
        gb = -np.expm1(np.longdouble(-t * b)) / np.longdouble(b)
        assert g[3, 1] == pytest.approx(float((ga - gb) / (np.longdouble(a) - np.longdouble(b))),
                                        rel=1e-9)
    # derivative: series and closed form agree with a finite difference
    for t, m0 in ((3.0, 0.1), (3.0, 0.2), (0.01, 5.0), (100.0, 0.02)):
        h = 1e-6 * m0
        fd = (flow.g_flow(t, np.array([m0 + h])) - flow.g_flow(t, np.array([m0 - h])))[0] / (2 * h)
        assert flow.g_flow_prime(t, np.array([m0]))[0] == pytest.approx(fd, rel=1e-6)
    assert np.all(flow.divided_differences(0.0, mu) == 0)
    np.testing.assert_allclose(flow.divided_differences(np.inf, mu), -1 / np.outer(mu, mu))


def test_most_influential_and_noise_bookkeeping_by_hand():
    infl = np.zeros((2, 4, 3))
    # time 0: test 0 -> point 1 (|-5|), test 1 -> point 2, test 2 -> point 0
    infl[0, :, 0] = [1, -5, 2, 0]
    infl[0, :, 1] = [0, 1, 3, -2]
    infl[0, :, 2] = [4, 0, 0, 1]
    # time 1: every test point -> point 3
    infl[1, 3, :] = 9
    top = dy.most_influential(infl)
    np.testing.assert_array_equal(top, [[1, 2, 0], [3, 3, 3]])
    np.testing.assert_array_equal(dy.most_influential(infl, by="helpful")[0], [2, 2, 0])
    np.testing.assert_array_equal(dy.most_influential(infl, by="harmful")[0], [1, 3, 1])
    sh = ni.experiments.noise_shares(top, noisy_index=[1, 3], n_train=4)
    np.testing.assert_allclose(sh.share_noisy, [1 / 3, 1.0])
    np.testing.assert_allclose(sh.share_clean, [2 / 3, 0.0])
    np.testing.assert_array_equal(sh.count_noisy, [1, 3])
    assert sh.slots == 3 and sh.noise_fraction == 0.5
    top2 = dy.most_influential(infl, k=2)
    assert top2.shape == (2, 2, 3)
    sh2 = ni.experiments.noise_shares(top2, [1, 3], 4)
    # time 0 top-2: test0 {1, 2}, test1 {2, 3}, test2 {0, 3} -> noisy slots 1, 3, 3 = 3 of 6
    np.testing.assert_allclose(sh2.share_noisy[0], 0.5)


def test_label_noise_experiment_bookkeeping(digits38):
    ds = digits38
    x, xt = ds.x_train[:40], ds.x_test[:10]
    y, yt = ds.y_train[:40], ds.y_test[:10]
    res = ni.experiments.label_noise_experiment(x, y, xt, yt, 0.1, [0.5, 50.0], fraction=0.4, seed=3)
    y_ref, noisy_ref = ni.data.flip_labels(y, 0.4, 3)
    np.testing.assert_array_equal(res.noisy_index, noisy_ref)
    np.testing.assert_array_equal(res.y_train_noisy, y_ref)
    assert res.noisy_index.size == 16
    infl = dy.influence_over_time(x, y_ref, xt, yt, 0.1, [0.5, 50.0])
    np.testing.assert_allclose(res.influence, infl)
    top = np.argmax(np.abs(infl), axis=1)
    np.testing.assert_array_equal(res.most_influential, top)
    expect = np.isin(top, noisy_ref).mean(axis=1)
    np.testing.assert_allclose(res.shares.share_noisy, expect)
    np.testing.assert_allclose(res.shares.share_clean + res.shares.share_noisy, 1.0)


def test_bad_input():
    x, xt, k, kt, y, yt = _toy(n=10, m=3)
    with pytest.raises(ni.InputError, match=">= 0"):
        dy.time_influence_from_kernels(k, kt, y, yt, 0.1, [1.0, -0.5])
    with pytest.raises(ni.InputError, match="NaN"):
        dy.linearized_predictions(k, kt, y, 0.1, [np.nan])
    with pytest.raises(ni.InputError):
        dy.linearized_predictions(k, kt, y, 0.1, [])
    with pytest.raises(ni.InputError, match="time_unit"):
        dy.linearized_predictions(k, kt, y, 0.1, [1.0], time_unit="epochs")
    with pytest.raises(ni.InputError, match="method"):
        dy.time_influence_from_kernels(k, kt, y, yt, 0.1, [1.0], method="second-order")
    for frac in (1.0, -0.1, 1.5):
        with pytest.raises(ni.InputError, match=r"\[0, 1\)"):
            ni.experiments.label_noise_experiment(x, y, xt, yt, 0.1, [1.0], fraction=frac)
    with pytest.raises(ni.InputError, match="both"):
        dy.influence_over_time(x, y, xt, yt, 0.1, [1.0], k_train=k)
    for bad in ("torch", "numpy"):
        with pytest.raises(ni.InputError, match="backend must be 'auto', 'lapack'"):
            dy.time_influence_from_kernels(k, kt, y, yt, 0.1, [1.0], backend=bad)
    with pytest.raises(ni.InputError, match="transpose"):
        dy.time_influence_from_kernels(k, kt.T, y, yt, 0.1, [1.0])
    sing = np.ones((4, 4))
    with pytest.raises(ni.SingularKernelError):
        dy.linearized_predictions(sing, np.ones((4, 2)), np.ones(4), 0.0, [np.inf])
    # a singular K is fine at finite time with lam = 0
    dy.linearized_predictions(sing, np.ones((4, 2)), np.ones(4), 0.0, [3.0])


@pytest.mark.slow
def test_exact_matches_brute_force_larger(digits38):
    ds = digits38
    k = closed_form_kernel(ds.x_train, ds.x_train)
    kt = closed_form_kernel(ds.x_train, ds.x_test[:8])
    times = [0.05, 1.0, 20.0]
    res = dy.time_influence_from_kernels(k, kt, ds.y_train, ds.y_test[:8], 0.01, times,
                                         method="both")
    idx = [0, 33, 77, 119]
    n = k.shape[0]
    for a, t in enumerate(times):
        f = _pred(k, kt, ds.y_train, 0.01, t)
        for i in idx:
            keep = np.arange(n) != i
            d = _pred(k[np.ix_(keep, keep)], kt[keep], ds.y_train[keep], 0.01, t) - f
            ref = d * (f - ds.y_test[:8]) + 0.5 * d * d
            assert np.max(np.abs(res.influence[a, i] - ref)) <= 1e-9 * np.abs(ref).max()


def test_time_agreement_closed_forms():
    rng = np.random.default_rng(3)
    ex = rng.normal(size=(2, 7, 4))
    same = ni.influence.time_agreement(ex, ex)
    np.testing.assert_allclose(same.rel_error, 0.0, atol=1e-15)
    np.testing.assert_allclose([same.pearson, same.slope, same.top1_match], 1.0, rtol=1e-12)
    doubled = ni.influence.time_agreement(ex, 2.0 * ex)  # slope 2, relative error 1, ranks unchanged
    np.testing.assert_allclose(doubled.slope, 2.0, rtol=1e-12)
    np.testing.assert_allclose(doubled.rel_error, 1.0, rtol=1e-12)
    np.testing.assert_allclose(doubled.spearman, 1.0, rtol=1e-12)
    flipped = ni.influence.time_agreement(ex, -ex)
    np.testing.assert_allclose(flipped.pearson, -1.0, rtol=1e-12)
    np.testing.assert_allclose(flipped.top1_match, 1.0)  # largest |I| is the same point
    assert isinstance(flipped, ni.influence.TimeAgreement)
