"""Group complexity (eq. 19) against brute-force leave-group-out solves; influence groups."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import closed_form_kernel

import ntk_influence as ni
from ntk_influence.influence import complexity_of_influence_groups, group_complexity, influence_groups


def _brute(k, y, groups, lam):
    """sqrt(y^T (K+lam)^-1 y) - sqrt(y_rest^T (K_rest+lam)^-1 y_rest) by direct dense solves."""
    n = k.shape[0]
    y2 = y.reshape(n, -1)
    full = np.sqrt(np.sum(y2 * np.linalg.solve(k + lam * np.eye(n), y2)))
    out = []
    for g in groups:
        keep = np.setdiff1d(np.arange(n), g)
        kr = k[np.ix_(keep, keep)] + lam * np.eye(keep.size)
        out.append(full - np.sqrt(np.sum(y2[keep] * np.linalg.solve(kr, y2[keep]))))
    return np.asarray(out)


@pytest.fixture(scope="module")
def kd(digits38):
    return closed_form_kernel(digits38.x_train, digits38.x_train), digits38.y_train


def test_ridgeless_matches_brute_force(kd):
    k, y = kd
    rng = np.random.default_rng(0)
    groups = np.array_split(rng.permutation(k.shape[0]), 10)
    res = group_complexity(k, y, groups)
    assert res.matrix == "K^-1" and res.lam_used == 0.0
    assert res.cond == pytest.approx(res.lambda_max / res.lambda_min, rel=1e-8)
    np.testing.assert_allclose(np.asarray(res), _brute(k, y, groups, 0.0), rtol=1e-7, atol=1e-10)
    assert len(res) == 10 and res[3] == res.values[3] and list(res) == res.values.tolist()


@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_with_ridge_matches_brute_force(kd, lam):
    k, y = kd
    groups = [np.array([0, 5, 9]), np.array([1]), np.arange(40, 90)]
    res = group_complexity(k, y, groups, lam=lam)
    np.testing.assert_allclose(res.values, _brute(k, y, groups, lam), rtol=1e-9, atol=1e-12)
    assert res.matrix.startswith("(K + ")


def test_multi_output(digits_multi):
    ds = digits_multi
    k = closed_form_kernel(ds.x_train, ds.x_train)
    groups = np.array_split(np.arange(ds.x_train.shape[0]), 5)
    res = group_complexity(k, ds.y_train, groups, lam=0.01)
    np.testing.assert_allclose(res.values, _brute(k, ds.y_train, groups, 0.01), rtol=1e-9)


def test_singular_kernel_uses_small_ridge_and_says_so():
    rng = np.random.default_rng(1)
    x = ni.data.unit_normalize(rng.normal(size=(30, 4)))
    x[7] = x[3]  # a duplicate point makes K singular
    k = closed_form_kernel(x, x)
    y = np.sign(rng.normal(size=30))
    groups = [np.arange(5), np.arange(10, 20)]
    res = group_complexity(k, y, groups)
    assert res.lam_used > 0 and "I)^-1" in res.matrix
    assert res.cond <= 1.0001e10
    np.testing.assert_allclose(res.values, _brute(k, y, groups, res.lam_used), rtol=1e-5)
    fixed = group_complexity(k, y, groups, ridge=1e-4)
    assert fixed.lam_used == 1e-4
    np.testing.assert_allclose(fixed.values, _brute(k, y, groups, 1e-4), rtol=1e-8)


def test_bad_groups(kd):
    k, y = kd
    n = k.shape[0]
    with pytest.raises(ni.InputError, match="empty"):
        group_complexity(k, y, [np.array([0, 1]), np.array([], int)])
    with pytest.raises(ni.InputError, match="overlap"):
        group_complexity(k, y, [np.array([0, 1]), np.array([1, 2])])
    with pytest.raises(ni.InputError, match="outside"):
        group_complexity(k, y, [np.array([0, n])])
    with pytest.raises(ni.InputError, match="every training point"):
        group_complexity(k, y, [np.arange(n)])
    with pytest.raises(ni.InputError, match="integer"):
        group_complexity(k, y, [np.array([0.5, 1.0])])
    with pytest.raises(ni.InputError):
        group_complexity(k, y, [])
    # a 2-D array is one group per row; a flat list is one group
    rows = group_complexity(k, y, np.arange(20).reshape(4, 5))
    assert len(rows) == 4
    assert len(group_complexity(k, y, [0, 1, 2])) == 1


def test_influence_groups_order_and_sizes():
    rng = np.random.default_rng(2)
    infl = rng.normal(size=(53, 7))
    g = influence_groups(infl, 10)
    assert len(g.groups) == 10
    sizes = [x.size for x in g.groups]
    assert sum(sizes) == 53 and max(sizes) - min(sizes) <= 1
    allidx = np.concatenate(g.groups)
    assert np.array_equal(np.sort(allidx), np.arange(53))
    score = infl.sum(axis=1)
    np.testing.assert_allclose(g.score, score)
    # group 0 is the most harmful (lowest sum), group 9 the most helpful
    assert score[g.groups[0]].max() <= score[g.groups[1]].min()
    assert score[g.groups[9]].min() >= score[g.groups[8]].max()
    assert np.all(np.diff(g.group_score) > 0)
    gm = influence_groups(infl, 10, reduce="mean")
    assert all(np.array_equal(a, b) for a, b in zip(g.groups, gm.groups))
    np.testing.assert_allclose(gm.score, infl.mean(axis=1))
    sub = influence_groups(infl, 4, test_index=[2, 5])
    np.testing.assert_allclose(sub.score, infl[:, [2, 5]].sum(axis=1))
    with pytest.raises(ni.InputError):
        influence_groups(infl, 0)
    with pytest.raises(ni.InputError):
        influence_groups(infl, 3, reduce="max")
    with pytest.raises(ni.InputError):
        influence_groups(infl, 3, test_index=[7])


def test_figure5_pipeline_most_influential_groups_most_complex(digits38):
    ds = digits38
    k = closed_form_kernel(ds.x_train, ds.x_train)
    kt = closed_form_kernel(ds.x_train, ds.x_test)
    res = ni.influence.influence_from_kernels(k, kt, ds.y_train, ds.y_test, 0.1)
    g, c = complexity_of_influence_groups(k, ds.y_train, res, 10)
    np.testing.assert_allclose(c.values, _brute(k, ds.y_train, g.groups, 0.0), rtol=1e-7)
    # the paper's observation: the extreme groups contribute the most complexity
    middle = c.values[2:8].max()
    assert c.values[0] > middle and c.values[9] > middle
