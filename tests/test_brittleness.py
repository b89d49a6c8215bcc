"""Brittleness: greedy exact-refit flip sets against brute-force dense refits, additive prefixes by
hand, and the verification retrains against direct training of the net without each set."""

from __future__ import annotations

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import attribution as attr
from ntk_influence.errors import InputError

LAM = 0.1


def eq4(a, b):
    g = np.clip(a @ b.T, -1.0, 1.0)
    return g * (np.pi - np.arccos(g)) / (2 * np.pi)


@pytest.fixture(scope="module")
def kernel_model():
    ds = ni.load_dataset("digits:3,8", n_train=40, n_test=12, seed=5)
    x, y, xt, yt = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    k, kt = eq4(x, x), eq4(x, xt)
    return k, kt, y, yt, ni.influence.influence_from_kernels(k, kt, y, yt, LAM)


def dense_refit(k, kt, y, removed):
    """Kernel ridge regression on the kept points alone: the brute-force reference."""
    s = np.setdiff1d(np.arange(len(y)), removed)
    return kt[s].T @ np.linalg.solve(k[np.ix_(s, s)] + LAM * np.eye(s.size), y[s])


def test_greedy_steps_are_the_best_brute_force_extensions(kernel_model):
    """Each greedy choice is the candidate whose removal, with the points before it, moves the
    dense refit furthest towards the other sign; the set flips it and every point kept is needed."""
    k, kt, y, yt, res = kernel_model
    j = 4  # f = 0.85: the greedy path takes 13 points, and pruning puts one back
    sign = np.sign(res.f_test[j])
    got = attr.greedy_flip_set(res, j, max_size=40)
    assert got is not None
    f_set = dense_refit(k, kt, y, got)[j]
    assert np.sign(f_set) != sign
    for c in got[:-1]:  # pruned: putting any earlier point back undoes the flip
        assert np.sign(dense_refit(k, kt, y, got[got != c])[j]) == sign
    # the path before pruning is the brute-force greedy path, step by step
    path = attr.greedy_flip_set(res, j, max_size=40, prune=False)
    assert set(got) <= set(path) and path[-1] == got[-1]
    removed: list[int] = []
    for _ in range(len(path)):
        cand = [c for c in range(len(y)) if c not in removed]
        vals = [sign * dense_refit(k, kt, y, [*removed, c])[j] for c in cand]
        removed.append(cand[int(np.argmin(vals))])
    np.testing.assert_array_equal(path, removed)
    assert len(path) == 13 and len(got) == 12
    assert np.sign(dense_refit(k, kt, y, path[:-1])[j]) == sign  # the first flip


def test_a_margin_makes_the_flip_land_past_it(kernel_model):
    k, kt, y, yt, res = kernel_model
    j, margin = 4, 0.1
    sign = np.sign(res.f_test[j])
    plain = attr.greedy_flip_set(res, j, max_size=40)
    wide = attr.greedy_flip_set(res, j, max_size=40, margin=margin)
    assert sign * dense_refit(k, kt, y, wide)[j] < -margin
    assert sign * dense_refit(k, kt, y, plain)[j] > -margin  # the plain set lands inside it
    assert len(wide) > len(plain)
    for c in wide[:-1]:  # pruning respects the margin
        assert sign * dense_refit(k, kt, y, wide[wide != c])[j] >= -margin


def test_greedy_schur_step_matches_group_delta_for_every_candidate(kernel_model):
    k, kt, y, yt, res = kernel_model
    j, removed = 3, [4, 17, 30]
    base = res.group_delta(removed)[j]
    for c in (0, 5, 39):
        want = dense_refit(k, kt, y, [*removed, c])[j] - res.f_test[j]
        assert res.group_delta([*removed, c])[j] == pytest.approx(want, abs=1e-10)
    assert base == pytest.approx(dense_refit(k, kt, y, removed)[j] - res.f_test[j], abs=1e-10)


def test_greedy_gives_none_when_no_small_set_flips(kernel_model):
    *_, res = kernel_model
    j = int(np.argmax(np.abs(res.f_test)))  # the most confident point
    assert attr.greedy_flip_set(res, j, max_size=1) is None


def test_additive_flip_set_by_hand():
    # f = 0.5, y = 1: r = -0.5, scores s -> changes s / r = -2 s
    scores = np.array([-0.05, 0.1, 0.2, -0.3, 0.0])  # changes 0.1, -0.2, -0.4, 0.6, 0
    got = attr.additive_flip_set(scores, 0.5, 1.0, max_size=5)
    np.testing.assert_array_equal(got, [2, 1])  # 0.5 - 0.4 - 0.2 < 0
    assert attr.additive_flip_set(scores, 0.5, 1.0, max_size=1) is None
    assert attr.additive_flip_set(scores, 1.0, 1.0, max_size=5) is None  # zero residual
    assert attr.additive_flip_set(scores, 0.5, 1.0, max_size=5, margin=0.15) is None  # -0.1 only
    np.testing.assert_array_equal(attr.additive_flip_set(scores, 0.5, 1.0, 5, margin=0.05),
                                  [2, 1])


def test_brittleness_sets_are_verified_by_retraining_the_net_without_them():
    ds = ni.load_dataset("digits:3,8", n_train=40, n_test=10, seed=0)
    x, y, xt, yt = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    net = ni.two_layer_net(64, 256, symmetric=True, seed=0)
    s = ni.SolverSettings(f_tol=1e-8, max_steps=400)
    full = ni.training.train(net, x, y, LAM, x_test=xt, settings=s)
    scores, _, res = attr.method_scores(net, full, x, y, xt, yt, LAM, methods=("ntk", "ihvp"))
    b = attr.brittleness(net, full, res, scores, x, y, xt, yt, LAM, test_points=10,
                         max_fraction=0.45, settings=s, show_progress=False)
    assert set(b.summary) == {"ntk_refit", "ntk", "ihvp"}
    assert np.all(np.sign(b.f_test) == yt[b.test_index])
    found = [(k, st) for k, st in enumerate(b.sets["ntk_refit"]) if st is not None]
    assert found, "the greedy search found no flip set"
    k, st = found[0]
    keep = np.setdiff1d(np.arange(40), st)
    direct = ni.training.train(net, x, y, LAM, x_test=xt, settings=s,
                               weights=np.isin(np.arange(40), keep).astype(float))
    assert b.retrained["ntk_refit"][k] == pytest.approx(direct.f_test[b.test_index[k]], abs=1e-7)
    want = res.f_test[b.test_index[k]] + res.group_delta(st)[b.test_index[k]]
    assert b.refit["ntk_refit"][k] == pytest.approx(want, abs=1e-12)
    summ = b.summary["ntk_refit"]
    flips = np.sign(b.retrained["ntk_refit"]) != np.sign(b.f_test)
    assert summ["found"] == len(found)
    assert summ["verified"] == pytest.approx(flips[[k for k, _ in found]].mean())
    arrays = b.arrays()
    assert arrays["brittleness_set_ntk_refit"].shape == (b.test_index.size, b.info["max_size"])
    np.testing.assert_array_equal(arrays["brittleness_set_ntk_refit"][k, :st.size], st)
    with pytest.raises(InputError, match="max_fraction"):
        attr.brittleness(net, full, res, scores, x, y, xt, yt, LAM, max_fraction=1.0)
