"""Every kind of bad input gets an InputError that says what is wrong and how to fix it."""

from __future__ import annotations

import numpy as np
import pytest

import ntk_influence as ni


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = ni.unit_normalize(rng.normal(size=(12, 4)))
    return x, np.sign(x[:, 0]), x[:3], np.sign(x[:3, 1])


@pytest.mark.parametrize("field", [0, 1, 2, 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_rejected(xy, field, bad):
    args = [a.copy() for a in xy]
    args[field].flat[1] = bad
    with pytest.raises(ni.InputError, match="NaN/Inf"):
        ni.ntk_influence(*args)


def test_shape_mismatches(xy):
    x, y, xt, yt = xy
    with pytest.raises(ni.InputError, match="y_train has 11 rows"):
        ni.ntk_influence(x, y[:-1], xt, yt)
    with pytest.raises(ni.InputError, match="feature shape"):
        ni.ntk_influence(x, y, xt[:, :3], yt)
    with pytest.raises(ni.InputError, match="y_test has 2 rows"):
        ni.ntk_influence(x, y, xt, yt[:2])
    with pytest.raises(ni.InputError, match="dimensions"):
        ni.ntk_influence(x[0], y, xt, yt)
    with pytest.raises(ni.InputError, match="transpose"):
        k = x @ x.T
        ni.influence_from_kernels(k, (x @ xt.T).T, y, yt)


def test_empty_and_negative_lam(xy):
    x, y, xt, yt = xy
    with pytest.raises(ni.InputError, match="empty"):
        ni.ntk_influence(x[:0], y[:0], xt, yt)
    with pytest.raises(ni.InputError, match="lam must be finite and >= 0"):
        ni.ntk_influence(x, y, xt, yt, lam=-0.1)
    with pytest.raises(ni.InputError, match="lam must be"):
        ni.ntk_influence(x, y, xt, yt, lam=float("nan"))


def test_non_unit_norm_raise_or_normalize(xy):
    x, y, xt, yt = xy
    with pytest.raises(ni.InputError, match="unit"):
        ni.ntk_influence(3 * x, y, xt, yt)
    a = ni.ntk_influence(3 * x, y, 2 * xt, yt, normalize=True)
    b = ni.ntk_influence(x, y, xt, yt)
    # Rounding of 3x/|3x| moves x.x' near 1 by ~1e-16, which NT's arccos amplifies to ~1e-8.
    np.testing.assert_allclose(a.influence, b.influence, rtol=1e-6, atol=1e-12)


def test_large_labels_warn(xy):
    x, y, xt, yt = xy
    with pytest.warns(ni.TheoryAssumptionWarning, match=r"\|y\| <= 1"):
        ni.ntk_influence(x, 3 * y, xt, yt)


def test_unknown_kernel_and_singular(xy):
    x, y, xt, yt = xy
    with pytest.raises(ni.InputError, match="unknown kernel"):
        ni.ntk_influence(x, y, xt, yt, kernel="rbf")
    k = np.ones((12, 12))
    with pytest.raises(ni.SingularKernelError, match="lam"):
        ni.influence_from_kernels(k, np.ones((12, 3)), y, yt, lam=0.0)
    with pytest.raises(ni.InputError, match="symmetric"):
        ni.influence_from_kernels(np.triu(np.ones((12, 12))), np.ones((12, 3)), y, yt)


def test_group_errors(xy):
    res = ni.ntk_influence(*xy)
    with pytest.raises(ni.InputError, match="outside"):
        res.group_influence(np.array([0, 12]))
    with pytest.raises(ni.InputError, match="repeated"):
        res.group_influence(np.array([1, 1]))
    with pytest.raises(ni.InputError, match="empty"):
        res.group_influence(np.array([], dtype=int))
    with pytest.raises(ni.InputError, match="every training point"):
        res.group_influence(np.arange(12))


def test_errors_are_value_errors():
    assert issubclass(ni.InputError, ValueError)
    assert issubclass(ni.SingularKernelError, ValueError)
