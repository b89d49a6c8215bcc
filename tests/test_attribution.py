"""Attribution yardsticks: metrics by hand and against dattri's definitions, the NTK refit against a
dense refit, TRAK against the dense-Hessian IHVP and finite differences, TracIn against
per-example gradients, subset retraining against direct weighted training, and the CLI."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import ntk_influence as ni
from ntk_influence import attribution as attr
from ntk_influence.attribution import projection_chunk


@pytest.fixture(scope="module")
def small():
    return ni.load_dataset("digits:3,8", n_train=16, n_test=5, seed=1)


@pytest.fixture(scope="module")
def trained(small):
    with ni.precision("float64"):
        net = ni.two_layer_net(small.x_train.shape[1], 8, symmetric=True, seed=3)
        full = ni.training.train(net, small.x_train, small.y_train, 0.1,
                            settings=ni.SolverSettings(f_tol=1e-9, max_steps=400))
    return net, full


def dattri_lds(score, gt_values, indices):
    """dattri's ``lds``: scores summed over each subset's *kept* points, Spearman per test point."""
    sums = np.stack([score[idx].sum(axis=0) for idx in indices])
    return np.array([scipy.stats.spearmanr(sums[:, j], gt_values[:, j])[0]
                     for j in range(gt_values.shape[1])])


# ------------------------------------------------------------------------------------ metrics


def test_spearman_pearson_auc_by_hand():
    assert attr.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    # ties share their average rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert attr.spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(4.5 / np.sqrt(22.5))
    assert attr.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(
        np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    assert np.isnan(attr.pearson([1, 1, 1], [1, 2, 3]))
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs won
    assert attr.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert attr.auc([1.0, 1.0, 2.0], [1, 0, 0]) == pytest.approx(0.25)  # a tie counts 1/2
    with pytest.raises(ni.InputError):
        attr.auc([1.0, 2.0], [1, 1])


def test_correlations_share_one_size_rule_and_one_nan_convention():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert attr.pearson(a, b) == pytest.approx(scipy.stats.pearsonr(a, b)[0], rel=1e-12)
    assert attr.spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b)[0], rel=1e-12)
    st = attr.agreement(b, a)
    assert st["pearson"] == attr.pearson(a, b) and st["spearman"] == attr.spearman(a, b)
    for fn in (attr.pearson, attr.spearman, attr.agreement):  # >= 2 values, same size
        with pytest.raises(ni.InputError, match="at least 2 values"):
            fn([1.0], [2.0])
        with pytest.raises(ni.InputError, match="same size"):
            fn([1.0, 2.0, 3.0], [1.0, 2.0])
    assert attr.pearson([1.0, 2.0], [3.0, 1.0]) == pytest.approx(-1.0)
    with warnings.catch_warnings():  # a constant sample is NaN, silently, everywhere
        warnings.simplefilter("error")
        assert np.isnan(attr.pearson([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))
        assert np.isnan(attr.spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
        st = attr.agreement([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])
        assert np.isnan(st["pearson"]) and np.isnan(st["spearman"]) and np.isnan(st["slope"])
        assert np.isnan(attr.agreement([1.0, 2.0], [0.0, 0.0])["rel_error"])


def test_found_at_counts_positives_among_the_top_fraction_by_hand():
    scores = [0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.0, 0.6, 0.5, 0.4]
    noisy = np.zeros(10, bool)
    noisy[[0, 1, 4, 9]] = True  # ranked 1st, 9th, 3rd and 6th
    assert attr.found_at(scores, noisy, 0.1) == 0.25  # top 1: point 0
    assert attr.found_at(scores, noisy, 0.3) == 0.5  # top 3: 0, 2, 4
    assert attr.found_at(scores, noisy, 0.25) == 0.5  # ceil(2.5) = 3 inspected
    assert attr.found_at(scores, noisy, 1.0) == 1.0
    with pytest.raises(ni.InputError, match="fraction"):
        attr.found_at(scores, noisy, 0.0)
    with pytest.raises(ni.InputError, match="positive"):
        attr.found_at(scores, np.zeros(10, bool))


def test_auc_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(4)
    s = np.round(rng.normal(size=40), 1)  # ties included
    pos = rng.random(40) < 0.3
    ranks = scipy.stats.rankdata(s)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    ref = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert attr.auc(s, pos) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("bad", [8.0, True, 0])
def test_whole_number_arguments_are_checked_alike(small, trained, bad):
    net, full = trained
    x, y = small.x_train, small.y_train
    with pytest.raises(ni.InputError, match="projection dimension must be"):
        ni.attribution.trak_scores(net, full.theta, x, y, x, y, 0.1, dim=bad)
    with pytest.raises(ni.InputError, match="checkpoints must be"):
        ni.attribution.training_path(net, x, y, 0.1, checkpoints=bad)
    with pytest.raises(ni.InputError, match="number of subsets must be"):
        attr.random_subsets(10, bad if bad != 0 else 1, 0.5)


def test_first_order_scores_refuse_a_singular_kernel():
    """A rank-one Gram matrix with a negligible ridge raises the library's SingularKernelError."""
    phi = np.ones((6, 1))
    k = phi @ phi.T
    with pytest.raises(ni.SingularKernelError, match="singular"):
        ni.attribution.first_order_scores(k, k, np.ones(6), np.ones(6), 1e-300)


def test_lds_matches_dattri_definition_on_a_saved_npz(tmp_path):
    rng = np.random.default_rng(0)
    n, t, m = 20, 6, 15
    idx = attr.random_subsets(n, m, 0.5, seed=2)
    assert idx.shape == (m, 10) and all(len(set(r)) == 10 for r in idx)
    scores = rng.normal(size=(n, t))
    truth = 0.5 + (~attr.subset_mask(idx, n)).astype(float) @ scores + 0.3 * rng.normal(
        size=(m, t))
    ni.io.save_npz(tmp_path / "a.npz", scores_x=scores, subset_indices=idx, subset_losses=truth)
    z = ni.io.load_npz(tmp_path / "a.npz")
    ours_mean, ours = attr.linear_datamodeling_score(
        attr.additive_predictions(z["scores_x"], z["subset_indices"], np.zeros(t)),
        z["subset_losses"])
    ref = dattri_lds(-z["scores_x"], z["subset_losses"], z["subset_indices"])
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert ours_mean == pytest.approx(ref.mean())
    assert ours_mean > 0.5  # the planted linear datamodel is recovered


# ------------------------------------------------------------------------------ NTK refit


def test_ntk_refit_equals_dense_krr_refit(small):
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    lam = 0.1

    def eq4(a, b):
        g = np.clip(a @ b.T, -1.0, 1.0)
        return g * (np.pi - np.arccos(g)) / (2 * np.pi)

    k, kt = eq4(x, x), eq4(x, xt)  # sliced below: arccos near 1 amplifies rounding of x.x
    res = ni.influence.influence_from_kernels(k, kt, y, yt, lam)
    idx = attr.random_subsets(len(y), 4, 0.5, seed=0)
    got = attr.ntk_refit_outputs(res, idx)
    for j, s in enumerate(idx):
        ks = k[np.ix_(s, s)]
        want = kt[s].T @ np.linalg.solve(ks + lam * np.eye(len(s)), y[s])
        np.testing.assert_allclose(got[j], want, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------- TRAK


def test_trak_without_projection_is_the_dense_hessian_ihvp(small, trained):
    net, full = trained
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    got = ni.attribution.trak_scores(net, full.theta, x, y, xt, yt, 0.1, dim=None)
    ref = ni.ihvp_influence(net, full.theta, x, y, xt, yt, 0.1, method="dense").influence
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-12 * np.abs(ref).max())


def test_first_order_sign_against_leave_one_out_retraining(small):
    """Positive scores are removals that raise the test loss: same sign as retraining shows."""
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    net = ni.two_layer_net(x.shape[1], 2048, symmetric=True, seed=0)
    s = ni.SolverSettings(f_tol=1e-10)
    idx = np.array([0, 3, 7, 11])
    loo = ni.loo_retrain(net, x, y, xt, yt, 0.1, train_index=idx, settings=s,
                         show_progress=False)
    scores = ni.attribution.trak_scores(net, loo.full.theta, x, y, xt, yt, 0.1, dim=None)[idx]
    big = np.abs(loo.influence) > 0.2 * np.abs(loo.influence).max()
    assert big.sum() >= 3
    np.testing.assert_array_equal(np.sign(scores[big]), np.sign(loo.influence[big]))
    assert attr.pearson(scores, loo.influence) > 0.9


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_chunked_projection_equals_the_explicit_projection(small, trained, kind):
    net, full = trained
    x = small.x_train[:6]
    rows = 100  # P = 8 * 64 = 512: five full chunks and a partial one, not neuron-aligned
    got = ni.attribution.projected_gradients(net, full.theta, x, 40, seed=5, projection=kind,
                                 chunk_params=rows)
    with ni.precision("float64"):
        r = np.concatenate([projection_chunk(5, c, rows, 40, kind)
                            for c in range(-(-net.n_params // rows))])[:net.n_params]
        jac = np.asarray(jax.jacrev(lambda t: net.apply(t, jnp.asarray(x)))(full.theta))
    np.testing.assert_allclose(got, jac @ r, rtol=1e-10, atol=1e-12)
    if kind == "rademacher":
        assert set(np.unique(np.abs(r))) == {1 / np.sqrt(40)}


def test_projection_of_a_net_without_a_closed_form_uses_its_jacobian(small):
    """A deep MLP has no closed-form Jacobian chunk: its Jacobian is formed once and projected."""
    x = small.x_train[:5]
    with ni.precision("float64"):
        net = ni.nets.functional(ni.nets.mlp(x.shape[1], 6, depth=2, seed=1))
        assert not net.closed_form_jacobian
        got = ni.attribution.projected_gradients(net, net.theta0, x, 12, seed=1, chunk_params=150)
        r = np.concatenate([projection_chunk(1, c, 150, 12, "gaussian")
                            for c in range(-(-net.n_params // 150))])[:net.n_params]
        jac = np.asarray(jax.jacrev(lambda t: net.apply(t, jnp.asarray(x)))(net.theta0))
    np.testing.assert_allclose(got, jac @ r, rtol=1e-10, atol=1e-12)


def test_trak_self_influence_projects_once_and_matches_the_cross_scores(small, trained):
    """x_test = x_train takes the one-projection path; it equals the concatenated path's scores
    and the first-order score of explicitly projected features."""
    net, full = trained
    x, y = small.x_train, small.y_train
    own = ni.attribution.trak_scores(net, full.theta, x, y, x, y, 0.1, dim=24, seed=2)
    cross = ni.attribution.trak_scores(net, full.theta, x, y, x[:5], y[:5], 0.1, dim=24, seed=2)
    np.testing.assert_allclose(own[:, :5], cross, rtol=1e-10, atol=1e-14)
    phi = ni.attribution.projected_gradients(net, full.theta, x, 24, seed=2)
    r = np.asarray(full.f_train) - y
    ref = ni.attribution.first_order_scores(phi @ phi.T, phi @ phi.T, r, r, 0.1)
    np.testing.assert_allclose(own, ref, rtol=1e-8, atol=1e-12 * np.abs(ref).max())


def test_trak_ensemble_is_the_mean_of_its_members_under_one_projection(small, trained):
    net, full = trained
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    other = ni.two_layer_net(x.shape[1], 8, symmetric=True, seed=4)
    th2 = ni.training.train(other, x, y, 0.1,
                       settings=ni.SolverSettings(f_tol=1e-9, max_steps=400)).theta
    pairs = [(net, full.theta), (other, th2)]
    ens = ni.attribution.trak_ensemble_scores(pairs, x, y, xt, yt, 0.1, dim=24, seed=3)
    one = [ni.attribution.trak_scores(m, th, x, y, xt, yt, 0.1, dim=24, seed=3) for m, th in pairs]
    assert np.abs(one[0] - one[1]).max() > 0.1 * np.abs(one[0]).max()  # the nets differ
    np.testing.assert_allclose(ens, (one[0] + one[1]) / 2, rtol=1e-10,
                               atol=1e-14 * np.abs(ens).max())


# --------------------------------------------------------------------------------- TracIn


def test_tracin_one_checkpoint_is_grad_dot_times_the_step(small):
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    net = ni.two_layer_net(x.shape[1], 16, symmetric=True, seed=3)
    path = ni.attribution.training_path(net, x, y, 0.1, steps=30, checkpoints=1)
    assert path.weights == pytest.approx([path.step_size * 30])
    got = ni.attribution.tracin_scores(net, path, x, y, xt, yt)
    with ni.precision("float64"):
        theta = jnp.asarray(path.thetas[0])

        def g(xi, yi):
            return jax.grad(lambda t: 0.5 * (net.apply(t, xi[None])[0] - yi) ** 2)(theta)

        gtr = np.stack([np.asarray(g(jnp.asarray(a), b)) for a, b in zip(x, y, strict=True)])
        gte = np.stack([np.asarray(g(jnp.asarray(a), b)) for a, b in zip(xt, yt, strict=True)])
    np.testing.assert_allclose(got, path.step_size * 30 * gtr @ gte.T, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ni.attribution.grad_dot_scores(net, theta, x, y, xt, yt), gtr @ gte.T,
                               rtol=1e-9, atol=1e-13)


def test_training_path_segments_follow_one_gd_run(small):
    x, y = small.x_train, small.y_train
    net = ni.two_layer_net(x.shape[1], 16, symmetric=True, seed=3)
    two = ni.attribution.training_path(net, x, y, 0.1, steps=40, checkpoints=2)
    one = ni.attribution.training_path(net, x, y, 0.1, steps=40, checkpoints=1)
    np.testing.assert_allclose(two.thetas[-1], one.thetas[0], rtol=1e-12, atol=1e-14)
    direct = net.theta0
    with ni.precision("float64"):
        grad = jax.grad(lambda t: ni.training.objective(net, t, jnp.asarray(x), jnp.asarray(y), 0.1))
        for _ in range(20):
            direct = direct - two.step_size * grad(direct)
    np.testing.assert_allclose(two.thetas[0], np.asarray(direct), rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------- subset retraining and CLI


@pytest.mark.slow
def test_cli_writes_documented_files_resumes_and_matches_direct_training(tmp_path):
    from ntk_influence.cli import main

    out = tmp_path / "attr"
    argv = ["attribution", "--n-train", "16", "--n-test", "4", "--width", "32", "--subsets", "6",
            "--loo-points", "3", "--trak-dim", "16", "--trak-ensemble", "2", "--tracin-steps",
            "10", "--tracin-checkpoints", "2", "--f-tol", "1e-10", "--coarse-f-tol", "1e-10",
            "--quiet", "--out", str(out)]
    assert main(argv) == 0
    z = ni.io.load_npz(out / "attribution.npz")
    n, t, m = 16, 4, 6
    assert z["subset_indices"].shape == (m, 8) and z["subset_indices"].dtype.kind == "i"
    for k in ("subset_losses", "subset_outputs", "refit_losses"):
        assert z[k].shape == (m, t)
    assert z["full_losses"].shape == (t,)
    assert z["noisy_mask"].shape == (n,) and z["noisy_mask"].dtype == bool
    assert z["noisy_mask"].sum() == 2  # round(0.1 * 16)
    for meth in ("ntk", "ihvp", "trak", "tracin", "grad_dot"):
        assert z[f"scores_{meth}"].shape == (n, t) and z[f"self_{meth}"].shape == (n,)
    summary = ni.io.load_json(out / "attribution.json")
    for meth in ("ntk", "ihvp", "trak", "tracin", "grad_dot"):
        assert set(summary["methods"][meth]) >= {"lds", "loo_pearson", "loo_spearman",
                                                  "mislabel_auc", "seconds"}
    assert "not_applicable" in summary["methods"]["ntk_f0"]
    assert "lds" in summary["methods"]["ntk_refit"]
    assert (out / "attribution.png").stat().st_size > 0
    # dattri's definition on the saved arrays gives the recorded LDS
    ref = dattri_lds(-z["scores_ntk"], z["subset_losses"], z["subset_indices"])
    assert summary["methods"]["ntk"]["lds"] == pytest.approx(np.nanmean(ref), abs=1e-12)
    # subset retraining equals direct weighted training of the same W(0)
    ds = ni.load_dataset("digits:3,8", n_train=n, n_test=t, seed=0)
    net = ni.two_layer_net(ds.x_train.shape[1], 32, symmetric=True, seed=0)
    w = attr.subset_mask(z["subset_indices"][:2], n).astype(float)
    for j in range(2):
        direct = ni.training.train(net, ds.x_train, ds.y_train, 0.1, x_test=ds.x_test, weights=w[j],
                              settings=ni.SolverSettings(f_tol=1e-10))
        np.testing.assert_allclose(z["subset_outputs"][j], direct.f_test, atol=1e-8)
    # resuming reuses the finished retraining chunks and gives the same arrays
    chunks = sorted((out / "retrain").rglob("*.npz"))
    assert chunks
    stamps = [p.stat().st_mtime_ns for p in chunks]
    assert main([*argv, "--resume"]) == 0
    assert [p.stat().st_mtime_ns for p in chunks] == stamps
    z2 = ni.io.load_npz(out / "attribution.npz")
    np.testing.assert_allclose(z2["subset_losses"], z["subset_losses"], rtol=0, atol=0)
    assert main([*argv[:-2], "--width", "64", "--out", str(out), "--resume"]) == 2


def test_subset_retraining_equals_direct_weighted_training(small):
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    net = ni.two_layer_net(x.shape[1], 64, symmetric=True, seed=2)
    s = ni.SolverSettings(f_tol=1e-9, max_steps=400)
    idx = attr.random_subsets(len(y), 2, 0.5, seed=4)
    keep = attr.subset_mask(idx, len(y))
    assert keep.sum(axis=1).tolist() == [8, 8]
    ret = ni.retrain_without(net, x, y, xt, yt, 0.1, keep=keep, settings=s, show_progress=False)
    for j in range(2):
        direct = ni.training.train(net, x, y, 0.1, x_test=xt, weights=keep[j].astype(float),
                              settings=s, warn=False)
        np.testing.assert_allclose(ret.f_retrain_test[j], direct.f_test, atol=1e-8)


def test_subset_retrains_stop_at_their_own_tolerance(small):
    """coarse_f_tol reaches the subset retrains; the LOO retrains keep settings.f_tol."""
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    res = attr.attribution_benchmark(
        x, y, xt, yt, width=32, subsets=3, loo_points=2, noise=0.0, methods=("ntk",),
        settings=ni.SolverSettings(f_tol=1e-9, max_steps=400), coarse_f_tol=1e-3, chunk_size=2,
        show_progress=False)
    sub, loo = res.info["subset_retrain"], res.info["loo_retrain"]
    assert sub["f_tol"] == 1e-3 and loo["f_tol"] == 1e-9 and loo["all_settled"]
    assert sub["chunk_size"] == 2 and sub["max_solver_error"] <= 1e-3
    assert 0 < res.info["subset_loss_error_over_spread"] < np.inf
    # each subset retrain is the weighted training of the same W(0) stopped at 1e-3
    net = ni.two_layer_net(x.shape[1], 32, symmetric=True, seed=0)
    w = attr.subset_mask(res.subset_indices, len(y)).astype(float)
    direct = np.stack([ni.training.train(net, x, y, 0.1, x_test=xt, weights=wj,
                                    settings=ni.SolverSettings(f_tol=1e-3)).f_test for wj in w])
    np.testing.assert_allclose(res.subset_outputs, direct, atol=1e-10)
