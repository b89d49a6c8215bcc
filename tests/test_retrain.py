"""Leave-one-out retraining: vmapped == sequential == deleting the point; eq. (7); resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import nets as N
from ntk_influence import training as R
from ntk_influence import training as T

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
    assert res.settled.all()
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


def test_group_retraining_equals_direct_weighted_training(case):
    # Sets of removed points through the driver (index lists, a removal mask, a keep mask)
    # against train(..., weights=mask) run directly for each set.
    net, x, y, xt, yt, full, _ = case
    sets = [[1, 4], [0, 2, 7, 9], [5]]
    res = R.retrain_without(net, x, y, xt, yt, LAM, remove=sets, settings=S, full=full,
                            chunk_size=2, show_progress=False)
    for j, st in enumerate(sets):
        w = np.ones(len(y))
        w[st] = 0.0
        ref = T.train(net, x, y, LAM, x_test=xt, settings=S, weights=w)
        np.testing.assert_allclose(res.f_retrain_test[j], ref.f_test, atol=1e-10)
        np.testing.assert_allclose(res.delta[j], ref.f_test - full.f_test, atol=1e-10)
    np.testing.assert_array_equal(res.group_size, [2, 4, 1])
    assert not res.is_leave_one_out and res.summary()["max_group_size"] == 4
    with pytest.raises(ni.InputError, match="groups"):
        _ = res.train_index
    keep = ~res.removed
    again = R.retrain_without(net, x, y, xt, yt, LAM, keep=keep, settings=S, full=full,
                              show_progress=False)
    np.testing.assert_allclose(again.f_retrain_test, res.f_retrain_test, rtol=0, atol=1e-13)
    np.testing.assert_allclose(res.influence, 0.5 * (res.f_retrain_test - yt) ** 2
                               - 0.5 * (full.f_test - yt) ** 2, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("arch,settings", [
    ("two-layer", T.SolverSettings("gn", f_tol=1e-4)),
    ("two-layer", T.SolverSettings("gd", f_tol=1e-5, max_steps=3000)),
    ("mlp:2:erf", T.SolverSettings.stationary()),
    ("two-layer", T.SolverSettings("sgd", step_size=0.05, max_steps=40, batch_size=4)),
], ids=["gn-relu", "gd-relu", "newton-erf", "sgd"])
@pytest.mark.filterwarnings("ignore::ntk_influence.errors.NotConvergedWarning")  # SGD's 40 steps
def test_sets_of_one_size_solve_on_their_kept_rows_as_the_weighted_problem(arch, settings):
    # Sets of one size are fitted on their kept rows only (the removed rows tracked like test
    # rows); sets of mixed sizes weight every row. The same two sets through both paths, and
    # train(..., weights=) directly: the same steps, stopping point and solver error. A loose
    # f_tol on ReLU stops mid-way through the kinks, where any change of path would show.
    # Minibatch SGD draws its batches from all n rows, so it always weights them.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=12))
    xt, yt = rng.normal(size=(3, 5)) / np.sqrt(5), np.array([1.0, -1.0, 1.0])
    net = ni.nets.architecture(arch).net(x, 256, seed=1)
    sets = [[1, 4, 8], [0, 2, 11]]
    one = R.retrain_without(net, x, y, xt, yt, LAM, remove=sets, settings=settings,
                            chunk_size=2, show_progress=False)
    mixed = R.retrain_without(net, x, y, xt, yt, LAM, remove=[*sets, [3]], settings=settings,
                              full=one.full, chunk_size=3, show_progress=False)
    sgd = settings.method == "sgd"
    assert (one.rows_fitted, one.summary()["rows_fitted"]) == ((None, 12) if sgd else (9, 9))
    assert (mixed.rows_fitted, mixed.summary()["rows_fitted"]) == (None, 12)
    np.testing.assert_array_equal(one.iterations, mixed.iterations[:2])
    np.testing.assert_allclose(one.f_retrain_test, mixed.f_retrain_test[:2], rtol=0,
                               atol=1e-12)
    np.testing.assert_allclose(one.solver_error, mixed.solver_error[:2], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(one.grad_norm, mixed.grad_norm[:2], rtol=1e-8, atol=1e-13)
    for j, st in enumerate(sets):
        w = np.ones(len(y))
        w[st] = 0.0
        ref = T.train(net, x, y, LAM, x_test=xt, settings=settings, weights=w)
        assert one.iterations[j] == ref.iterations
        np.testing.assert_allclose(one.f_retrain_test[j], ref.f_test, rtol=0, atol=1e-12)


def test_wide_net_group_removal_matches_kernel_refit():
    # At large width, removing half the training set from the net moves the test predictions as
    # a dense kernel ridge refit without that half does (eq. 4 kernel, loosely: finite width).
    from conftest import closed_form_kernel

    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=12))
    xt = x[:3] * 0.6 + 0.4 * x[6:9]
    xt /= np.linalg.norm(xt, axis=1, keepdims=True)
    lam = 0.5
    subsets = rng.random((4, 12)) < 0.5
    net = N.two_layer_net(5, 16384, symmetric=True, seed=0)
    res = R.retrain_without(net, x, y, xt, np.zeros(3), lam, remove=subsets,
                            settings=T.SolverSettings("gn", f_tol=1e-10), show_progress=False)
    k, kt = closed_form_kernel(x, x), closed_form_kernel(x, xt)

    def krr(keep):
        return kt[keep].T @ np.linalg.solve(k[np.ix_(keep, keep)] + lam * np.eye(keep.sum()),
                                            y[keep])

    full = krr(np.ones(12, bool))
    ref = np.stack([krr(~s) - full for s in subsets])
    np.testing.assert_allclose(res.f_test, full, atol=0.03)
    err = np.abs(res.delta - ref).max() / np.abs(ref).max()
    assert err < 0.05, err


def test_refined_retrains_refine_the_full_run(case):
    # The predicted scale overestimates abs(Delta) 30x, so the relative rule stops retrains too
    # early and the refine pass reruns them at rel_tol times the measured abs(Delta). The full
    # run's error enters every Delta, so it must be retrained to the tightest tolerance too:
    # its tolerance and its error end at or below the smallest retrain tolerance.
    net, x, y, xt, yt, full, tight = case
    rel = 0.02
    scale = 30 * np.abs(tight.delta).min(axis=1)
    res = R.loo_retrain(net, x, y, xt, yt, LAM, train_index=tight.train_index,
                        settings=T.SolverSettings("gn", f_tol=1e-10), show_progress=False,
                        rel_tol=rel, delta_scale=scale)
    assert res.refined.any()
    assert res.f_tol.min() < 0.5 * rel * scale.min()  # tightened below the first full run's
    assert res.full.settings.f_tol == pytest.approx(res.f_tol.min())
    assert res.full_solver_error <= res.f_tol.min()
    assert res.summary()["full_f_tol"] == pytest.approx(res.f_tol.min())
    err = np.abs(res.delta - tight.delta) / np.abs(tight.delta)
    assert err.max() < 2 * rel
    assert res.error_ratio.max() < 4 * rel


def test_removal_masks_bad_input():
    with pytest.raises(ni.InputError, match="exactly one"):
        R.removal_masks(5)
    with pytest.raises(ni.InputError, match="exactly one"):
        R.removal_masks(5, remove=[[1]], keep=np.ones((1, 5), bool))
    with pytest.raises(ni.InputError, match=r"\(k, 5\)"):
        R.removal_masks(5, remove=np.ones((2, 4), bool))
    with pytest.raises(ni.InputError, match="outside"):
        R.removal_masks(5, remove=[[1], [7]])
    with pytest.raises(ni.InputError, match="every training point"):
        R.removal_masks(3, keep=np.zeros((1, 3), bool))
    with pytest.raises(ni.InputError, match="repeated"):
        R.removal_masks(5, remove=[[1, 1]])
    with pytest.raises(ni.InputError, match="chunk_size"):
        ni.training.map_chunks(lambda c, a: {"a": c}, np.arange(3), chunk_size=0)


CHILD = textwrap.dedent(r'''
    import json, os, sys
    import jax, jax.numpy as jnp, numpy as np
    import ntk_influence as ni
    from ntk_influence import nets as N, training as rt, training as tr
    from ntk_influence.io import ResultStore

    out = {"devices": jax.device_count()}
    mesh = ni.scale.make_mesh()
    rng = np.random.default_rng(0)
    n, t, d, lam = 40, 5, 5, 0.1
    x = ni.data.unit_normalize(rng.normal(size=(n, d)))
    xt = ni.data.unit_normalize(rng.normal(size=(t, d)))
    y = np.sign(rng.normal(size=n))
    ref = ni.ntk_influence(x, y, xt, np.zeros(t), lam)
    with ni.precision("float64"):
        k = jnp.asarray(ni.kernels.kernel_matrix("paper", x))
        kt = jnp.asarray(ni.kernels.kernel_matrix("paper", x, xt))

    # Exact KRR refits without each point, through the chunk runner, against eq. (9), with an
    # interruption after 3 saved chunks and a resume.
    def refit(idx, args):
        kk, kkt, yy = args
        def one(i):
            m = (jnp.arange(n) != i).astype(kk.dtype)
            a = m[:, None] * kk * m[None, :] + lam * jnp.eye(n, dtype=kk.dtype)
            return kkt.T @ jnp.linalg.solve(a, m * yy)
        return {"f_loo": jax.vmap(one)(idx), "index": idx}

    idx = np.arange(0, n, 2)  # 20 left-out points, chunks of 3 -> 7 chunks, 2 rounds
    saved = []
    orig = ResultStore.save
    def failing(self, key, **arrays):
        if len(saved) == 3:
            raise KeyboardInterrupt("simulated interruption")
        saved.append(key)
        return orig(self, key, **arrays)
    store = sys.argv[1]
    with ni.precision("float64"):
        args = (k, kt, jnp.asarray(y))
        ResultStore.save = failing
        try:
            ni.training.map_chunks(refit, idx, chunk_size=3, args=args, mesh=mesh, store=store,
                          show_progress=False)
        except KeyboardInterrupt:
            out["interrupted_after"] = len(saved)
        ResultStore.save = orig
        res = ni.training.map_chunks(refit, idx, chunk_size=3, args=args, mesh=mesh, store=store,
                            show_progress=False)
        one = ni.training.map_chunks(refit, idx, chunk_size=3, args=args, show_progress=False)
        again = ni.training.map_chunks(refit, idx, chunk_size=3, args=args, mesh=mesh, store=store,
                              show_progress=False)
    out["computed"], out["total"] = res.computed_chunks, res.total_chunks
    out["rerun_computed"] = again.computed_chunks
    out["order"] = bool(np.array_equal(res.outputs["index"], idx))
    delta = res.outputs["f_loo"] - ref.f_test[None]
    out["loo_vs_eq9"] = float(np.abs(delta - ref.delta[idx]).max() / np.abs(ref.delta).max())
    out["one_vs_mesh"] = float(np.abs(one.outputs["f_loo"] - res.outputs["f_loo"]).max())

    # Group retraining of a finite net sharded over the mesh, against one device, resumed.
    net = N.two_layer_net(d, 64, symmetric=True, seed=1)
    st = tr.SolverSettings("gn", f_tol=1e-12)
    xn, yn = x[:8], y[:8]
    sets = [[0], [1, 2], [3], [4, 5, 6], [7], [2, 6]]
    single = rt.retrain_without(net, xn, yn, xt[:3], np.zeros(3), 5.0, remove=sets,
                                settings=st, chunk_size=1, show_progress=False)
    saved.clear()
    ResultStore.save = failing
    store2 = sys.argv[1] + "_retrain"
    try:
        rt.retrain_without(net, xn, yn, xt[:3], np.zeros(3), 5.0, remove=sets, settings=st,
                           chunk_size=1, mesh=mesh, store=store2, show_progress=False)
    except KeyboardInterrupt:
        out["retrain_interrupted_after"] = len(saved)
    ResultStore.save = orig
    shard = rt.retrain_without(net, xn, yn, xt[:3], np.zeros(3), 5.0, remove=sets,
                               settings=st, chunk_size=1, mesh=mesh, store=store2,
                               show_progress=False)
    out["retrain_diff"] = float(np.abs(shard.f_retrain_test - single.f_retrain_test).max())
    out["retrain_delta_scale"] = float(np.abs(single.delta).max())
    out["retrain_iterations_same"] = bool(np.array_equal(shard.iterations, single.iterations))
    out["retrain_chunks_on_disk"] = len([p for p in os.listdir(store2) if p.startswith("item_")])
    print("RESULT " + json.dumps(out))
''')


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    script = tmp_path_factory.mktemp("mesh") / "child.py"
    script.write_text(CHILD)
    store = tmp_path_factory.mktemp("store")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu",
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(script), str(store / "s")], capture_output=True,
                       text=True, env=env, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-4000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_chunk_runner_on_a_mesh_resumes_and_matches(four_devices):
    r = four_devices
    assert r["devices"] == 4
    assert r["interrupted_after"] == 3 and r["total"] == 7
    assert r["computed"] == 7 - 3 and r["rerun_computed"] == 0  # finished chunks not redone
    assert r["order"]
    assert r["loo_vs_eq9"] <= 1e-9  # exact refits equal eq. (9)
    assert r["one_vs_mesh"] <= 1e-12


def test_sharded_group_retraining_equals_one_device(four_devices):
    r = four_devices
    assert r["retrain_interrupted_after"] == 3 and r["retrain_chunks_on_disk"] == 6
    assert r["retrain_iterations_same"]
    assert r["retrain_diff"] <= 1e-9 * max(1.0, r["retrain_delta_scale"])
    assert r["retrain_delta_scale"] > 1e-6


def test_plan_chunk_size_one_per_chunk_on_a_cpu_else_the_memory_budget():
    net = ni.two_layer_net(64, 1024, symmetric=True)
    n_points = 250
    per = 10 * net.n_params * 8 + 6 * n_points * 1024 * 8  # the two-layer retrain_bytes hook
    assert ni.training.plan_chunk_size(net, n_points, 2**32, backend="cpu") == 1
    assert ni.training.plan_chunk_size(net, n_points, 2**32, backend="gpu") == 2**32 // per
    assert ni.training.plan_chunk_size(net, n_points, 10, backend="tpu") == 1  # never below one


def test_second_retrain_does_not_recompile_and_net_is_freed():
    """The retrain chunk program lives on the net (and its compiled form on the chunk function):
    a second sweep with the same shapes compiles nothing, and dropping the net frees both."""
    import gc
    import weakref

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y, xt, yt = np.sign(rng.normal(size=6)), x[:2] * 0.9, np.ones(2)
    net = N.two_layer_net(4, 16, seed=1)
    s = T.SolverSettings("gn", f_tol=1e-8)
    kw = dict(remove=[[0], [1]], settings=s, show_progress=False)
    a = R.retrain_without(net, x, y, xt, yt, 1.0, **kw)

    def sizes(nt):
        out = {k: v._cache_size() for k, v in nt._programs.items() if hasattr(v, "_cache_size")}
        for k, v in nt._programs.items():
            for mesh, prog in getattr(v, "_map_chunks_programs", {}).items():
                out[(k, mesh)] = prog._cache_size()
        return out

    before = sizes(net)
    assert [v for k, v in before.items() if isinstance(k, tuple) and k[-1] is None] == [1]
    b = R.retrain_without(net, x, y, xt, yt, 1.0, **kw)
    assert sizes(net) == before
    np.testing.assert_array_equal(a.delta, b.delta)
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None
