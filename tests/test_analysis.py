"""Lambda sweep against Theorem 3 on every pair, with brute-force references; examples."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import closed_form_kernel, krr_predict

import ntk_influence as ni
from ntk_influence import experiments as an


@pytest.fixture(scope="module")
def small(digits38):
    ds = digits38
    x, xt = ds.x_train[:50], ds.x_test[:12]
    return (closed_form_kernel(x, x), closed_form_kernel(x, xt), ds.y_train[:50],
            ds.y_test[:12])


def _brute_rates(k, kt, y, yt, lam):
    """|I - Ihat| / |I| from refits (I) and dense solves (Ihat, eq. 13)."""
    n = k.shape[0]
    f = krr_predict(k, kt, y, lam)
    f_tr = krr_predict(k, k, y, lam)
    alpha = np.linalg.solve(k + lam * np.eye(n), kt)
    rates = np.empty((n, kt.shape[1]))
    for i in range(n):
        keep = np.arange(n) != i
        d = krr_predict(k[np.ix_(keep, keep)], kt[keep], y[keep], lam) - f
        infl = d * (f - yt) + 0.5 * d * d
        ihat = alpha[i] * (f - yt) * (f_tr[i] - y[i])
        rates[i] = np.abs(infl - ihat) / np.abs(infl)
    return rates


def test_sweep_matches_brute_force_and_bounds(small):
    k, kt, y, yt = small
    lams = [2.0**-4, 1.0, 2.0**4]
    sw = an.lambda_sweep(k, kt, y, yt, lams)
    ev = np.linalg.eigvalsh(k)
    for j, lam in enumerate(lams):
        rates = _brute_rates(k, kt, y, yt, lam)
        assert sw.mean_error_rate[j] == pytest.approx(rates.mean(), rel=1e-6)
        assert sw.median_error_rate[j] == pytest.approx(np.median(rates), rel=1e-6)
        assert sw.lower[j] == pytest.approx(ev[0] / (ev[0] + lam), rel=1e-8)
        assert sw.upper[j] == pytest.approx(ev[-1] / (ev[-1] + lam), rel=1e-10)
        a = np.linalg.inv(k + lam * np.eye(k.shape[0]))
        np.testing.assert_allclose(sw.leverage[j], 1 - lam * np.diag(a), rtol=1e-9)
    assert np.all(np.diff(sw.mean_leverage) < 0)


def test_theorem3_holds_on_every_pair_across_default_sweep(digits38):
    ds = digits38
    k = closed_form_kernel(ds.x_train, ds.x_train)
    kt = closed_form_kernel(ds.x_train, ds.x_test)
    sw = an.lambda_sweep(k, kt, ds.y_train, ds.y_test)
    np.testing.assert_allclose(sw.lams, 2.0 ** np.arange(-4, 5))
    assert np.all(sw.bound_violations == 0)
    assert np.all(sw.bound_min_slack >= -1e-9)
    assert np.all(sw.leverage_in_bounds)
    # eq. (16) checked independently here on every pair, from the engine's fields
    for lam in sw.lams:
        res = ni.influence.influence_from_kernels(k, kt, ds.y_train, ds.y_test, lam)
        lo = res.lambda_min / (res.lambda_min + lam)
        lhs = np.abs(res.influence - res.ihvp)
        rhs = lo * np.abs(res.influence) - 0.5 * res.alpha**2 * (res.loo_residual**2)[:, None]
        assert np.all(lhs >= rhs - 1e-12 * np.abs(res.influence).max())
    # the mean error rate sits above the lower bound (Figure 2)
    assert np.all(sw.median_error_rate >= sw.lower)


def test_net_error_hook_and_bad_lams(small):
    k, kt, y, yt = small
    seen = []
    sw = an.lambda_sweep(k, kt, y, yt, [0.5, 2.0], net_error=lambda lam: seen.append(lam) or 0.3)
    assert seen == [0.5, 2.0]
    np.testing.assert_allclose(sw.net_error_rate, [0.3, 0.3])
    with pytest.raises(ni.InputError, match="> 0"):
        an.lambda_sweep(k, kt, y, yt, [0.0, 1.0])
    with pytest.raises(ni.InputError):
        an.lambda_sweep(k, kt, y, yt, [])


def test_influential_examples():
    rng = np.random.default_rng(0)
    infl = rng.normal(size=(30, 6))
    ex = ni.influence.influential_examples(infl, [1, 4], k=3)
    for r, j in enumerate([1, 4]):
        col = infl[:, j]
        np.testing.assert_array_equal(ex.helpful[r], np.argsort(-col)[:3])
        np.testing.assert_array_equal(ex.harmful[r], np.argsort(col)[:3])
        np.testing.assert_array_equal(ex.uninfluential[r], np.argsort(np.abs(col))[:3])
        np.testing.assert_allclose(ex.helpful_value[r], col[ex.helpful[r]])
    assert np.all(ex.helpful_value > 0) and np.all(ex.harmful_value < 0)
    with pytest.raises(ni.InputError):
        ni.influence.influential_examples(infl, [6])
    with pytest.raises(ni.InputError):
        ni.influence.influential_examples(infl, [0], k=0)


def test_figures_draw_and_unknown_name(tmp_path, small):
    from ntk_influence import plots

    k, kt, y, yt = small
    sw = an.lambda_sweep(k, kt, y, yt, [0.25, 1.0, 4.0])
    fig = plots.plot_figure("fig2", sw, path=tmp_path / "f2.png")
    assert (tmp_path / "f2.png").stat().st_size > 1000
    plt.close(fig)
    with pytest.raises(ni.InputError, match="unknown figure"):
        plots.plot_figure("fig9", sw)
    with pytest.raises(ni.InputError, match="unknown figure"):
        plots.plot_figure("histogram", sw)


@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (32, 32, 3)])
def test_image_grids_for_each_image_shape(tmp_path, shape):
    from ntk_influence import plots
    from ntk_influence.influence import most_influential

    rng = np.random.default_rng(0)
    d = int(np.prod(shape))
    xtr, xte = rng.random((12, d)), rng.random((3, d))
    infl = rng.normal(size=(12, 3))
    ex = ni.influence.influential_examples(infl, [0, 2], k=2)
    fig = plots.plot_figure("figure 4", ex, xtr, xte, shape, path=tmp_path / "f4.png")
    imgs = [im for ax in fig.axes for im in ax.get_images()]
    assert len(imgs) == 2 * (1 + 3 * 2)
    assert imgs[0].get_array().shape == shape
    plt.close(fig)
    top = most_influential(rng.normal(size=(4, 12, 3)))
    fig = plots.plot_figure(6, top, [0.1, 1, 10, np.inf], xtr, xte, shape,
                            path=tmp_path / "f6.png")
    assert len([im for ax in fig.axes for im in ax.get_images()]) == 5 * 3
    plt.close(fig)
    assert (tmp_path / "f4.png").exists() and (tmp_path / "f6.png").exists()
