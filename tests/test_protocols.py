"""The fresh-seed protocol and the LDS runs: each fresh retrain against a brute-force training of
the net drawn from its seed, the noise floor against a Spearman computed by hand, resuming, and
the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import ntk_influence as ni
from ntk_influence import attribution as attr
from ntk_influence.attribution._protocols import fresh_seeds, lds_run, seed_protocols
from ntk_influence.errors import InputError


@pytest.fixture(scope="module")
def small():
    return ni.load_dataset("digits:3,8", n_train=16, n_test=4, seed=2)


SETTINGS = ni.SolverSettings(f_tol=1e-10, max_steps=400)


def _direct(net, ds, keep, seed, settings=SETTINGS):
    """Brute force: draw the net from ``seed`` and train it on the kept points alone."""
    return ni.training.train(net.reseeded(int(seed)), ds.x_train[keep], ds.y_train[keep], 0.1,
                             x_test=ds.x_test, settings=settings, warn=False)


def test_each_fresh_retrain_is_the_net_drawn_from_its_seed_trained_without_the_set(small):
    net = ni.two_layer_net(small.x_train.shape[1], 32, symmetric=True, seed=0)
    sets = [np.array([0, 5]), np.array([3]), np.array([1, 2, 9])]
    seeds = [11, 12, 13]
    ret = ni.retrain_without(net, small.x_train, small.y_train, small.x_test, small.y_test, 0.1,
                             remove=sets, settings=SETTINGS, seeds=seeds, show_progress=False)
    assert ret.summary()["seed_protocol"] == "fresh"
    assert ret.summary()["start"] == "fresh W(0) per retrain"
    np.testing.assert_array_equal(ret.seeds, seeds)
    for j, (rm, sd) in enumerate(zip(sets, seeds, strict=True)):
        keep = np.setdiff1d(np.arange(16), rm)
        np.testing.assert_allclose(ret.f_retrain_test[j], _direct(net, small, keep, sd).f_test,
                                   atol=1e-9)
    # the start moves the prediction: a fresh retrain is not the fixed-seed one
    fixed = ni.retrain_without(net, small.x_train, small.y_train, small.x_test, small.y_test, 0.1,
                               remove=sets, settings=SETTINGS, show_progress=False)
    assert fixed.summary()["seed_protocol"] == "fixed" and fixed.seeds is None
    assert np.abs(fixed.f_retrain_test - ret.f_retrain_test).max() > 1e-3


def test_fresh_retrains_of_a_deep_net_match_direct_training(small):
    net = ni.nets.functional(ni.nets.mlp(small.x_train.shape[1], 16, depth=2, activation="erf",
                                         seed=0))
    s = ni.SolverSettings.stationary(g_tol=1e-9)
    ret = ni.retrain_without(net, small.x_train, small.y_train, small.x_test, small.y_test, 0.1,
                             remove=[np.array([4])], settings=s, seeds=[21], show_progress=False)
    assert ret.converged.all()
    keep = np.setdiff1d(np.arange(16), [4])
    np.testing.assert_allclose(ret.f_retrain_test[0], _direct(net, small, keep, 21, s).f_test,
                               atol=1e-7)


def test_fresh_retrains_resume_and_refuse_other_seeds(small, tmp_path):
    net = ni.two_layer_net(small.x_train.shape[1], 16, symmetric=True, seed=0)
    kw = dict(remove=[[0], [1], [2]], settings=ni.SolverSettings(f_tol=1e-8),
              show_progress=False, store=tmp_path / "s")
    a = ni.retrain_without(net, small.x_train, small.y_train, small.x_test, small.y_test, 0.1,
                           seeds=[1, 2, 3], **kw)
    files = sorted((tmp_path / "s").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in files]
    b = ni.retrain_without(net, small.x_train, small.y_train, small.x_test, small.y_test, 0.1,
                           seeds=[1, 2, 3], **kw)
    assert [p.stat().st_mtime_ns for p in files] == stamps
    np.testing.assert_array_equal(a.f_retrain_test, b.f_retrain_test)
    with pytest.raises(InputError):
        ni.retrain_without(net, small.x_train, small.y_train, small.x_test, small.y_test, 0.1,
                           seeds=[1, 2, 4], **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(seeds=[1, 2]), "3 non-negative integers"),
    (dict(seeds=[1.5, 2, 3]), "integers"),
    (dict(seeds=[-1, 2, 3]), "non-negative"),
    (dict(seeds=[1, 2, 3], warm_start=True), "warm_start"),
    (dict(seeds=[1, 2, 3], rel_tol=0.1, delta_scale=[1.0, 1.0, 1.0]), "rel_tol"),
])
def test_bad_seeds_are_refused_before_any_training(small, kw, match):
    net = ni.two_layer_net(small.x_train.shape[1], 8, symmetric=True, seed=0)
    with pytest.raises(InputError, match=match):
        ni.retrain_without(net, small.x_train, small.y_train, small.x_test, small.y_test, 0.1,
                           remove=[[0], [1], [2]], show_progress=False, **kw)


def test_fresh_seeds_are_reproducible_distinct_and_apart_from_small_seeds():
    a, b = fresh_seeds(50, 0, 0), fresh_seeds(50, 0, 1)
    np.testing.assert_array_equal(a, fresh_seeds(50, 0, 0))
    assert len(set(a) | set(b)) == 100 and min(a.min(), b.min()) >= 2**20
    assert seed_protocols("both") == ("fixed", "fresh")
    with pytest.raises(InputError, match="seed_protocol"):
        seed_protocols("cross")


def test_lds_run_floor_and_ceiling_by_hand(small):
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    net = ni.two_layer_net(x.shape[1], 32, symmetric=True, seed=0)
    s = ni.SolverSettings(f_tol=1e-8, max_steps=400)
    full = ni.training.train(net, x, y, 0.1, x_test=xt, settings=s)
    scores, _, res = attr.method_scores(net, full, x, y, xt, yt, 0.1, methods=("ntk",))
    run = lds_run(net, full, x, y, xt, yt, 0.1, alpha=0.75, protocol="fresh", subsets=5, seed=3,
                  stream=0, scores=scores, ntk=res, settings=s, store=None, chunk_size=None,
                  show_progress=False)
    keep_idx = attr.random_subsets(16, 5, 0.75, 3)
    np.testing.assert_array_equal(run.subset_indices, keep_idx)
    first, second = fresh_seeds(5, 3, 0), fresh_seeds(5, 3, 1)
    loss = lambda f: 0.5 * (f - yt) ** 2  # noqa: E731
    a = np.stack([loss(_direct(net, small, k, sd, s).f_test) for k, sd in zip(keep_idx, first)])
    b = np.stack([loss(_direct(net, small, k, sd, s).f_test) for k, sd in zip(keep_idx, second)])
    np.testing.assert_allclose(run.subset_losses, a, atol=1e-6)
    np.testing.assert_allclose(run.floor_losses, b, atol=1e-6)
    rho = np.array([scipy.stats.spearmanr(b[:, j], a[:, j])[0] for j in range(4)])
    assert run.noise_floor == pytest.approx(rho.mean(), abs=1e-12)
    assert run.noise_ceiling == pytest.approx(np.sqrt(np.maximum(rho, 0)).mean(), abs=1e-12)
    refit = 0.5 * (attr.ntk_refit_outputs(res, keep_idx) - yt) ** 2
    want = np.mean([scipy.stats.spearmanr(refit[:, j], a[:, j])[0] for j in range(4)])
    assert run.lds["ntk_refit"] == pytest.approx(want, abs=1e-12)
    rec = run.record()
    assert rec["protocol"] == "fresh" and rec["kept_points"] == 12
    assert rec["dropped_fraction"] == pytest.approx(0.25)
    assert set(run.arrays()) == {f"fresh_alpha0.75_{k}" for k in (
        "subset_indices", "subset_outputs", "subset_losses", "refit_losses", "floor_losses")}


def test_benchmark_runs_every_alpha_under_both_protocols_on_the_same_subsets(small):
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    res = attr.attribution_benchmark(
        x, y, xt, yt, width=16, subsets=4, alpha=(0.5, 0.9), seed_protocol="both",
        loo_points=0, noise=0.0, methods=("ntk",), settings=ni.SolverSettings(f_tol=1e-8),
        coarse_f_tol=1e-6, show_progress=False)
    table = res.lds_table()
    assert list(table) == ["fixed_alpha0.5", "fresh_alpha0.5", "fixed_alpha0.9", "fresh_alpha0.9"]
    assert table["fixed_alpha0.5"]["noise_floor"] is None
    assert -1 <= table["fresh_alpha0.9"]["noise_floor"] <= 1
    fixed, fresh = res.lds_runs[0], res.lds_runs[1]
    np.testing.assert_array_equal(fixed.subset_indices, fresh.subset_indices)
    assert res.metrics["ntk_refit"]["lds"] == table["fixed_alpha0.5"]["ntk_refit"]
    np.testing.assert_array_equal(res.subset_losses, fixed.subset_losses)
    assert res.lds_runs[2].subset_indices.shape == (4, 15)  # ceil(0.9 * 16)
    assert [r["alpha"] for r in res.info["lds_runs"]] == [0.5, 0.5, 0.9, 0.9]
    assert "fresh_alpha0.9_floor_losses" in res.arrays()
    with pytest.raises(InputError, match="distinct"):
        attr.attribution_benchmark(x, y, xt, yt, width=16, subsets=4, alpha=(0.5, 0.5),
                                   loo_points=0, show_progress=False)
    with pytest.raises(InputError, match="alpha"):
        attr.attribution_benchmark(x, y, xt, yt, width=16, subsets=4, alpha=(0.5, 1.0),
                                   loo_points=0, show_progress=False)


def test_benchmark_on_a_deep_smooth_net_uses_its_nt_kernel_and_stationary_retrains(small):
    x, y, xt, yt = small.x_train, small.y_train, small.x_test, small.y_test
    res = attr.attribution_benchmark(x, y, xt, yt, arch="mlp:2:erf", width=16, subsets=3,
                                     loo_points=2, noise=0.0, methods=("ntk",),
                                     show_progress=False)
    assert res.info["arch"] == "mlp:2:erf"
    assert res.info["subset_retrain"]["stop"] == "gradient"
    assert res.info["subset_retrain"]["all_converged"]
    assert res.info["loo_retrain"]["max_ridge_rel_grad_norm"] <= 1e-8
    with ni.precision("float64"):
        kfn = ni.nets.architecture("mlp:2:erf").kernel()
        k = np.asarray(ni.kernels.kernel_matrix(kfn, x), np.float64)
        kt = np.asarray(ni.kernels.kernel_matrix(kfn, x, xt), np.float64)
    want = ni.influence.influence_from_kernels(k, kt, y, yt, 0.1).influence
    np.testing.assert_allclose(res.scores["ntk"], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fn", ["train", "retrain_without"])
def test_a_flax_model_instead_of_a_functional_net_is_refused_with_the_fix(small, fn):
    model = ni.nets.mlp(small.x_train.shape[1], 8, depth=1, seed=0)
    args = (small.x_train, small.y_train) if fn == "train" else (
        small.x_train, small.y_train, small.x_test, small.y_test)
    kw = {} if fn == "train" else {"remove": [[0]], "show_progress": False}
    with pytest.raises(InputError, match=r"ni.nets.functional\(model\)"):
        getattr(ni.training, fn)(model, *args, **kw)
    with pytest.raises(InputError, match="must be a FunctionalNet"):
        getattr(ni.training, fn)("net", *args, **kw)
