"""KDE density against scipy, per-point error rates, the Definition 1 mixture and Theorem 4."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import gaussian_kde

import ntk_influence as ni
from ntk_influence import experiments as de


def test_kde_matches_scipy_in_low_dimension():
    x = np.random.default_rng(0).normal(size=(120, 3))
    for rule in ("scott", "silverman"):
        res = de.kde_log_density(x, bandwidth=rule)
        ref = np.log(gaussian_kde(x.T, bw_method=rule)(x.T))
        np.testing.assert_allclose(res.log_density, ref, rtol=1e-9)
        assert not res.pca and res.dim == 3 and res.bandwidth_rule == rule
    res = de.kde_log_density(x, bandwidth=0.4)
    np.testing.assert_allclose(res.log_density, np.log(gaussian_kde(x.T, bw_method=0.4)(x.T)),
                               rtol=1e-9)


def test_kde_pca_and_leave_one_out():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 30)) @ rng.normal(size=(30, 30))
    res = de.kde_log_density(x, dim=4)
    c = x - x.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    z = c @ vt[:4].T
    np.testing.assert_allclose(res.log_density, np.log(gaussian_kde(z.T)(z.T)), rtol=1e-8)
    assert res.pca and res.dim == 4 and 0 < res.explained_variance < 1
    loo = de.kde_log_density(x, dim=4, leave_one_out=True)
    kde = gaussian_kde(z.T)
    n = z.shape[0]
    # leave-one-out density = (n p(x_i) - K_h(0)) / (n - 1)
    k0 = 1.0 / np.sqrt(np.linalg.det(2 * np.pi * kde.covariance))
    ref = (n * kde(z.T) - k0) / (n - 1)
    np.testing.assert_allclose(loo.log_density, np.log(ref), rtol=1e-8)
    with pytest.raises(ni.InputError):
        de.kde_log_density(x, bandwidth="wide")
    with pytest.raises(ni.InputError):
        de.kde_log_density(x, bandwidth=-1.0)


def test_point_error_rate_and_density_correlation(digits38):
    ds = digits38
    res = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0.1)
    rate = np.abs(res.influence - res.ihvp) / np.abs(res.influence)
    np.testing.assert_allclose(de.point_error_rate(res), np.median(rate, axis=1))
    np.testing.assert_allclose(de.point_error_rate(res, "mean"), np.mean(rate, axis=1))
    da = de.density_vs_error(ds.x_train, res)
    assert da.kde.pca and da.kde.dim == 10
    # Theorem 4 / Figure 3: denser points have smaller IHVP error; leverage explains it.
    assert da.spearman_density_error < -0.3
    assert da.spearman_leverage_error > 0.9
    assert da.spearman_density_leverage < -0.3


def test_finite_mixture_definition1():
    p = [0.5, 0.3, 0.2]
    mx = de.finite_mixture(101, p, d=6, r=0.3, seed=4)
    np.testing.assert_allclose(np.linalg.norm(mx.x, axis=1), 1.0, atol=1e-12)
    assert mx.counts.sum() == 101 and np.all(np.abs(mx.counts - np.asarray(p) * 101) <= 1)
    np.testing.assert_array_equal(np.bincount(mx.component), mx.counts)
    dist = np.linalg.norm(mx.x - mx.means[mx.component], axis=1)
    assert dist.max() <= 0.3 + 1e-12
    np.testing.assert_array_equal(mx.y, mx.labels[mx.component])
    for bad in ([0.5, 0.6], [1.2, -0.2], []):
        with pytest.raises(ni.InputError):
            de.finite_mixture(50, bad)
    with pytest.raises(ni.InputError):
        de.finite_mixture(50, [1.0], r=3.0)


@pytest.mark.parametrize("seed,lam", [(0, 0.1), (2, 1.0)])
def test_theorem4_error_grows_as_proportion_shrinks(seed, lam):
    ex = de.mixture_experiment(n=200, n_test=60, lam=lam, seed=seed, repeats=3)
    order = np.argsort(-ex.p)  # largest component first
    err = ex.component_error[order]
    assert ex.component_error_per_repeat.shape == (3, ex.p.size)
    # a margin-tolerant trend: strongly negative rank correlation, and the two rarest
    # components err more than the two most common ones
    assert ex.spearman_p_error <= -0.6
    assert err[-2:].mean() > err[:2].mean() * 1.1
    # the leverage follows the same trend: it is term I's exact relative error
    lev = ex.component_leverage[order]
    assert lev[-2:].mean() > lev[:2].mean()


def test_mixture_experiment_bad_input():
    with pytest.raises(ni.InputError, match="d >= K"):
        de.mixture_experiment(p=[0.5, 0.3, 0.2], d=2)
    with pytest.raises(ni.InputError, match="centres"):
        de.mixture_experiment(centres="grid")
    with pytest.raises(ni.InputError, match="repeats"):
        de.mixture_experiment(repeats=0)
