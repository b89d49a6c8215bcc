"""Every kind of bad input gets an InputError that says what is wrong and how to fix it."""

from __future__ import annotations

import numpy as np
import pytest

import ntk_influence as ni


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = ni.data.unit_normalize(rng.normal(size=(12, 4)))
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
        ni.influence.influence_from_kernels(k, (x @ xt.T).T, y, yt)


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
    # 3x/|3x| differs from x by rounding only, and eq. (4) is evaluated stably (measured 4e-16).
    np.testing.assert_allclose(a.influence, b.influence, rtol=0, atol=1e-13)


def test_large_labels_warn(xy):
    x, y, xt, yt = xy
    with pytest.warns(ni.errors.TheoryAssumptionWarning, match=r"\|y\| <= 1"):
        ni.ntk_influence(x, 3 * y, xt, yt)


def test_unknown_kernel_and_singular(xy):
    x, y, xt, yt = xy
    with pytest.raises(ni.InputError, match="unknown kernel"):
        ni.ntk_influence(x, y, xt, yt, kernel="rbf")
    k = np.ones((12, 12))
    with pytest.raises(ni.SingularKernelError, match="lam"):
        ni.influence.influence_from_kernels(k, np.ones((12, 3)), y, yt, lam=0.0)
    with pytest.raises(ni.InputError, match="symmetric"):
        ni.influence.influence_from_kernels(np.triu(np.ones((12, 12))), np.ones((12, 3)), y, yt)


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


def _rows(scale):
    x = ni.data.unit_normalize(np.random.default_rng(4).normal(size=(5, 3)))
    return x * np.asarray(scale, float).reshape(-1, 1)


# (input, normalize, rows rescaled, largest deviation of a norm from 1)
UNIT_NORM_CASES = {
    "unit already": (_rows(1.0), False, 0, 1e-15),
    "within tolerance": (_rows([1 - 5e-7, 1, 1, 1 + 8e-7, 1]), False, 2, 8e-7),
    "normalize=True": (_rows([3, 1, 0.5, 1, 2]), True, 3, 2.0),
}


@pytest.mark.parametrize("case", sorted(UNIT_NORM_CASES))
def test_ensure_unit_norm_rescales_and_reports(case):
    x, normalize, n_rescaled, dev = UNIT_NORM_CASES[case]
    out, rep = ni.data.ensure_unit_norm(x, "x_train", normalize=normalize)
    assert rep == ni.data.UnitNormReport("x_train", 5, n_rescaled, rep.max_deviation, normalize)
    if n_rescaled:
        assert rep.max_deviation == pytest.approx(dev, rel=1e-6)
    else:
        assert rep.max_deviation < dev
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=0, atol=4e-16)
    np.testing.assert_allclose(out, ni.data.unit_normalize(x), rtol=0, atol=4e-16)
    assert rep.describe()["n_renormalized"] == n_rescaled
    if n_rescaled == 0:
        assert np.array_equal(out, x)


# (input, normalize, message)
UNIT_NORM_ERRORS = {
    "beyond tolerance": (_rows([1, 1 + 2e-6, 1, 1, 1]), False,
                         r"x_train\[1\] has norm 1.000002.*normalize=True"),
    "far off": (_rows(3.0), False, "normalize=True or normalise the data"),
    "zero row": (np.zeros((2, 3)), True, r"x_train\[0\] is all zeros"),
    "zero row, no normalize": (np.zeros((2, 3)), False, "all zeros"),
    "complex": (np.ones((2, 3)) * (1 + 1j) / np.sqrt(6), False, "complex"),
}


@pytest.mark.parametrize("case", sorted(UNIT_NORM_ERRORS))
def test_ensure_unit_norm_rejects(case):
    x, normalize, msg = UNIT_NORM_ERRORS[case]
    with pytest.raises(ni.InputError, match=msg):
        ni.data.ensure_unit_norm(x, "x_train", normalize=normalize)


def test_complex_inputs_rejected_everywhere(xy):
    x, y, xt, yt = xy
    for args in ((x + 0j, y, xt, yt), (x, y + 1e-3j, xt, yt)):
        with pytest.raises(ni.InputError, match="complex"):
            ni.ntk_influence(*args)
    with pytest.raises(ni.InputError, match="complex"):
        ni.kernels.kernel_matrix("paper", x.astype(complex))
