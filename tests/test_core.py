"""The exact NTK influence engine against brute-force refits, dense solves and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import closed_form_kernel, krr_predict

import ntk_influence as ni

LAM = 0.1


@pytest.fixture(scope="module")
def setup(digits38):
    ds = digits38
    k = closed_form_kernel(ds.x_train, ds.x_train)
    kt = closed_form_kernel(ds.x_train, ds.x_test)
    res = ni.influence.influence_from_kernels(k, kt, ds.y_train, ds.y_test, LAM)
    return ds, k, kt, res


def _brute_influence(k, kt, y, yt, lam, removed):
    """Refit KRR without ``removed`` and subtract the two losses exactly (float64)."""
    n = k.shape[0]
    f = krr_predict(k, kt, y, lam)
    keep = np.setdiff1d(np.arange(n), removed)
    fi = krr_predict(k[np.ix_(keep, keep)], kt[keep], y[keep], lam)
    loss = lambda p: 0.5 * np.sum(((p - yt).reshape(len(yt), -1)) ** 2, axis=1)  # noqa: E731
    return fi - f, loss(fi) - loss(f), fi


def test_prediction_matches_dense_solve(setup):
    ds, k, kt, res = setup
    np.testing.assert_allclose(res.f_test, krr_predict(k, kt, ds.y_train, LAM), rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("i", [0, 7, 63, 119])
def test_exact_loo_matches_refit(setup, i):
    ds, k, kt, res = setup
    delta, infl, _ = _brute_influence(k, kt, ds.y_train, ds.y_test, LAM, [i])
    np.testing.assert_allclose(res.delta[i], delta, rtol=1e-9, atol=1e-14)
    # The loss difference itself loses digits to cancellation; compare relative to its scale.
    err = np.max(np.abs(res.influence[i] - infl)) / np.max(np.abs(infl))
    assert err <= 1e-10


def test_all_points_loo_matches_refit_small():
    rng = np.random.default_rng(3)
    x = ni.data.unit_normalize(rng.normal(size=(25, 5)))
    xt = ni.data.unit_normalize(rng.normal(size=(7, 5)))
    y, yt = np.sign(rng.normal(size=25)), np.sign(rng.normal(size=7))
    k, kt = closed_form_kernel(x, x), closed_form_kernel(x, xt)
    res = ni.influence.influence_from_kernels(k, kt, y, yt, 0.05)
    for i in range(25):
        delta, _, fi = _brute_influence(k, kt, y, yt, 0.05, [i])
        np.testing.assert_allclose(res.delta[i], delta, rtol=1e-10, atol=1e-15)
        # loo prediction on the removed training point
        f_loo_i = k[i, np.arange(25) != i] @ np.linalg.solve(
            k[np.ix_(np.arange(25) != i, np.arange(25) != i)] + 0.05 * np.eye(24), y[np.arange(25) != i])
        np.testing.assert_allclose(res.loo_f_train[i], f_loo_i, rtol=1e-10)


def test_group_removal_matches_refit(setup):
    ds, k, kt, res = setup
    groups = [np.array([3, 4, 50]), np.arange(10, 40), np.array([119])]
    got = res.group_influence(groups)
    for g, row in zip(groups, got):
        delta, infl, _ = _brute_influence(k, kt, ds.y_train, ds.y_test, LAM, g)
        np.testing.assert_allclose(res.group_delta(g), delta, rtol=1e-9, atol=1e-14)
        assert np.max(np.abs(row - infl)) / np.max(np.abs(infl)) <= 1e-10
    # A group of several points is not the sum of single influences.
    assert np.max(np.abs(got[1] - res.influence[10:40].sum(0))) > 1e-6
    # A single-point group equals the single influence.
    np.testing.assert_allclose(got[2], res.influence[119], rtol=1e-10, atol=1e-16)


def test_multi_output_sums_over_outputs(digits_multi):
    ds = digits_multi
    k, kt = closed_form_kernel(ds.x_train, ds.x_train), closed_form_kernel(ds.x_train, ds.x_test)
    res = ni.influence.influence_from_kernels(k, kt, ds.y_train, ds.y_test, 0.2)
    assert res.f_test.shape == ds.y_test.shape
    for i in (0, 44):
        delta, infl, _ = _brute_influence(k, kt, ds.y_train, ds.y_test, 0.2, [i])
        np.testing.assert_allclose(res.delta[i], delta, rtol=1e-9, atol=1e-14)
        assert np.max(np.abs(res.influence[i] - infl)) / np.max(np.abs(infl)) <= 1e-10
    g = np.array([1, 2, 3])
    _, infl, _ = _brute_influence(k, kt, ds.y_train, ds.y_test, 0.2, g)
    assert np.max(np.abs(res.group_influence(g) - infl)) / np.max(np.abs(infl)) <= 1e-10
    # each output on its own, summed, equals the multi-output influence
    per = [ni.influence.influence_from_kernels(k, kt, ds.y_train[:, c], ds.y_test[:, c], 0.2).influence
           for c in range(3)]
    np.testing.assert_allclose(sum(per), res.influence, rtol=1e-10, atol=1e-16)


def test_prop2_residual_identities_and_ihvp(setup):
    ds, k, kt, res = setup
    n = k.shape[0]
    a = np.linalg.inv(k + LAM * np.eye(n))
    beta = a @ ds.y_train
    alpha = a @ kt  # (n, t)
    np.testing.assert_allclose(res.alpha, alpha, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(res.a_diag, np.diag(a), rtol=1e-11)
    f_train = k @ beta
    np.testing.assert_allclose(res.f_train, f_train, atol=1e-10)
    np.testing.assert_allclose(res.train_residual, f_train - ds.y_train, atol=1e-10)
    # Prop. 2: I = term I + term II
    np.testing.assert_allclose(res.term1 + res.term2, res.influence, rtol=1e-12, atol=1e-18)
    # eq. (13) from its definition
    r_te = res.f_test - ds.y_test
    ihvp = alpha * r_te[None, :] * (f_train - ds.y_train)[:, None]
    np.testing.assert_allclose(res.ihvp, ihvp, rtol=1e-8, atol=1e-16)
    # term I / Ihat = 1 / (lam A_ii): the IHVP misses exactly h_i of term I
    ratio = res.ihvp / res.term1
    np.testing.assert_allclose(ratio, (LAM * np.diag(a))[:, None] * np.ones_like(ratio), rtol=1e-8)
    np.testing.assert_allclose(res.leverage, np.diag(k @ a), rtol=1e-9)


def test_theorem3_bound_holds_on_every_pair(setup):
    ds, k, kt, res = setup
    ev = np.linalg.eigvalsh(k)
    assert res.lambda_min == pytest.approx(ev[0], rel=1e-8)
    assert res.lambda_max == pytest.approx(ev[-1], rel=1e-10)
    assert res.cond == pytest.approx((ev[-1] + LAM) / (ev[0] + LAM), rel=1e-8)
    assert np.all(res.leverage >= res.theorem3_lower - 1e-12)
    assert np.all(res.leverage <= res.theorem3_upper + 1e-12)
    assert np.all(res.ihvp_error >= res.theorem3_bound - 1e-14)


def test_error_rate_is_nan_where_the_influence_is_zero(setup):
    # one convention: |I - Ihat| / |I|, NaN (never inf) where I = 0 exactly
    ds, k, kt, res = setup
    kt0 = np.concatenate([kt, np.zeros((kt.shape[0], 1))], axis=1)  # alpha = 0: I = Ihat = 0
    yt0 = np.append(ds.y_test, 1.0)
    r0 = ni.influence.influence_from_kernels(k, kt0, ds.y_train, yt0, LAM)
    assert np.all(r0.influence[:, -1] == 0.0) and np.all(r0.ihvp[:, -1] == 0.0)
    rate = r0.ihvp_error_rate
    np.testing.assert_array_equal(rate, ni.influence.pair_error_rate(r0))
    assert np.all(np.isnan(rate[:, -1])) and not np.any(np.isinf(rate))
    np.testing.assert_allclose(rate[:, :-1], np.abs(res.influence - res.ihvp) / np.abs(res.influence),
                               rtol=1e-12)
    # the per-point rate leaves the undefined pairs out
    np.testing.assert_allclose(ni.experiments.point_error_rate(r0), ni.experiments.point_error_rate(res),
                               rtol=1e-12)
    # arrays: 0 influence with a nonzero estimate is NaN too
    np.testing.assert_array_equal(ni.influence.pair_error_rate(np.array([[0.0, 2.0, -4.0]]),
                                                               np.array([[1.0, 1.0, -1.0]])),
                                  [[np.nan, 0.5, 0.75]])


def test_self_influence(setup):
    ds, k, kt, res = setup
    for i in (2, 90):
        keep = np.arange(k.shape[0]) != i
        fi = k[i, keep] @ np.linalg.solve(k[np.ix_(keep, keep)] + LAM * np.eye(keep.sum()),
                                          ds.y_train[keep])
        f = (k @ np.linalg.solve(k + LAM * np.eye(k.shape[0]), ds.y_train))[i]
        ref = 0.5 * (fi - ds.y_train[i]) ** 2 - 0.5 * (f - ds.y_train[i]) ** 2
        assert res.self_influence[i] == pytest.approx(ref, rel=1e-9)
        assert res.self_influence[i] > 0


def test_ntk_influence_end_to_end_uses_eq4(digits38):
    ds = digits38
    res = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=LAM)
    ref = ni.influence.influence_from_kernels(closed_form_kernel(ds.x_train, ds.x_train),
                                    closed_form_kernel(ds.x_train, ds.x_test),
                                    ds.y_train, ds.y_test, LAM)
    # The closed form matches the extended-precision eq. (4) to rounding (measured 1.2e-14).
    assert np.max(np.abs(res.influence - ref.influence)) <= 1e-12 * np.max(np.abs(ref.influence))
    assert res.influence.dtype == np.float64


def test_lambda_zero_allowed_when_pd_and_rejected_when_singular():
    rng = np.random.default_rng(0)
    x = ni.data.unit_normalize(rng.normal(size=(15, 20)))
    y = np.sign(rng.normal(size=15))
    res = ni.ntk_influence(x, y, x[:3], y[:3], lam=0.0)
    keep = np.arange(15) != 4
    k = closed_form_kernel(x, x)
    f4 = closed_form_kernel(x[keep], x[:3]).T @ np.linalg.solve(k[np.ix_(keep, keep)], y[keep])
    np.testing.assert_allclose(res.delta[4], f4 - y[:3], atol=1e-7)
    xd = np.concatenate([x, x[:2]])
    with pytest.raises(ni.SingularKernelError, match="lam > 0"):
        ni.ntk_influence(xd, np.concatenate([y, y[:2]]), x[:3], y[:3], lam=0.0)


def test_spectrum_iterative_and_exact_match_eigvalsh(setup):
    ds, k, kt, res = setup
    ev = np.linalg.eigvalsh(k)
    assert res.spectrum_method == "exact"  # n <= 1024: dense, computed on first read
    assert res.lambda_max == pytest.approx(ev[-1], rel=1e-12)
    assert res.lambda_min == pytest.approx(ev[0], rel=1e-9, abs=1e-12)
    sp = ni.factorize(k, ds.y_train, LAM, spectrum_method="iterative").spectrum
    assert sp.method == "iterative" and sp.converged
    assert sp.lambda_max == pytest.approx(ev[-1], rel=1e-10)
    assert sp.lambda_min == pytest.approx(ev[0], rel=1e-6, abs=1e-10)
    assert res.cond == pytest.approx((ev[-1] + LAM) / (ev[0] + LAM), rel=1e-9)
    assert res.cond_estimate <= res.cond * (1 + 1e-12)  # the cheap estimate is a lower bound


def test_ranking(setup):
    _, _, _, res = setup
    col = res.influence[:, 3]
    assert res.ranking(3, 1, "helpful")[0] == np.argmax(col)
    assert res.ranking(3, 1, "harmful")[0] == np.argmin(col)
    assert res.ranking(3, 1, "uninfluential")[0] == np.argmin(np.abs(col))
