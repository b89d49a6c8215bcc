"""Bad input gets a clear InputError (never a silent wrong result or a raw traceback).

Table-driven: each case is one line, ``(name, call, message pattern)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import ntk_influence as ni


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=20))
    k, kt = ni.kernels.kernel_matrix("paper", x), ni.kernels.kernel_matrix("paper", x, x[:3])
    return x, y, k, kt, ni.influence.influence_from_kernels(k, kt, y, y[:3], 0.1)


CASES = [
    ("ranking k<0", lambda s: s[4].ranking(0, k=-3), "k must be >= 1"),
    ("ranking k float", lambda s: s[4].ranking(0, k=2.9), "whole number"),
    ("ranking index float", lambda s: s[4].ranking(1.7), "whole number"),
    ("ranking index bool", lambda s: s[4].ranking(True), "whole number"),
    ("ranking index out of range", lambda s: s[4].ranking(3), "test_index must be in"),
    ("ranking kind", lambda s: s[4].ranking(0, kind="best"), "kind must be"),
    ("group_influence scalar", lambda s: s[4].group_influence(5), "index array"),
    ("group index out of range", lambda s: s[4].group_influence([[0, 99]]), "outside"),
    ("remove every point", lambda s: s[4].group_influence(np.arange(20)), "leave at least"),
    ("lam negative", lambda s: ni.influence.influence_from_kernels(s[2], s[3], s[1], s[1][:3], -1.0),
     "lam must be"),
    ("lam nan", lambda s: ni.influence.influence_from_kernels(s[2], s[3], s[1], s[1][:3], float("nan")),
     "lam must be"),
    ("k_test transposed", lambda s: ni.influence.influence_from_kernels(s[2], s[3].T, s[1], s[1][:3]),
     "transpose"),
    ("k_train not square", lambda s: ni.factorize(s[2][:, :5], s[1], 0.1), "square"),
    ("k_train not symmetric", lambda s: ni.factorize(s[2] + np.triu(s[2], 1), s[1], 0.1),
     "symmetric"),
    ("k_train NaN", lambda s: ni.factorize(np.where(s[2] > 0.4, np.nan, s[2]), s[1], 0.1),
     "NaN"),
    ("y_test outputs", lambda s: ni.influence.influence_from_kernels(s[2], s[3], s[1], np.ones((3, 2))),
     "outputs"),
    ("backend", lambda s: ni.ntk_influence(s[0], s[1], s[0], s[1], backend="gpu"), "backend"),
    ("dtype", lambda s: ni.factorize(s[2], s[1], 0.1, dtype=np.float16), "dtype"),
]


@pytest.mark.parametrize("name,call,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_input_error(small, name, call, pattern):
    with pytest.raises(ni.InputError, match=pattern):
        call(small)


def test_tiny_kernel_scale_is_not_nan(small):
    """KRR with lam = 0 is invariant to the kernel's scale: 1e-300 K gives the same influence."""
    x, y, k, kt, _ = small
    ref = ni.influence.influence_from_kernels(k, kt, y, y[:3], 0.0)
    tiny = ni.influence.influence_from_kernels(1e-300 * k, 1e-300 * kt, y, y[:3], 0.0)
    assert np.all(np.isfinite(tiny.influence))
    np.testing.assert_allclose(tiny.influence, ref.influence, rtol=1e-8,
                               atol=1e-10 * np.abs(ref.influence).max())
