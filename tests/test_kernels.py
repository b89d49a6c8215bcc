"""Kernels through the Neural Tangents compatibility module against closed forms."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import closed_form_kernel

import ntk_influence as ni


def _sphere(n, d, seed):
    return ni.unit_normalize(np.random.default_rng(seed).normal(size=(n, d)))


def test_paper_kernel_equals_closed_form_eq4():
    x, z = _sphere(30, 10, 0), _sphere(17, 10, 1)
    k = ni.kernel_matrix("paper", x, z)
    assert k.dtype == np.float64
    np.testing.assert_allclose(k, closed_form_kernel(x, z), atol=1e-8, rtol=0)
    kc = ni.kernel_matrix("paper-closed-form", x, z)
    np.testing.assert_allclose(kc, closed_form_kernel(x, z), atol=1e-14)


def _arccos1(x1, x2):
    """Arc-cosine kernel of order 1: E[relu(w.x) relu(w.x')] for w ~ N(0, I)."""
    g = np.clip(x1 @ x2.T, -1, 1)
    th = np.arccos(g)
    return (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)


def test_both_layers_equals_nt_plain_ntk_and_closed_form():
    x = _sphere(12, 6, 2)
    both = ni.kernel_matrix("paper-both", x)
    np.testing.assert_allclose(both, closed_form_kernel(x, x) + _arccos1(x, x), atol=1e-8)
    kernel_fn = ni.paper_stax(6)[2]
    with ni.precision("float64"):
        plain = np.asarray(kernel_fn(x, x, "ntk"))
    np.testing.assert_allclose(both, plain, atol=1e-12)


def test_blocking_gives_identical_matrix_and_no_recompile():
    x = _sphere(37, 8, 3)
    full = ni.kernel_matrix("paper", x, block_size=1000)
    blocked = ni.kernel_matrix("paper", x, block_size=8)
    np.testing.assert_allclose(blocked, full, atol=1e-15)
    fn = ni.kernels._block_fn(ni.paper_kernel())
    before = fn._cache_size()
    ni.kernel_matrix("paper", _sphere(37, 8, 4), block_size=8)
    assert fn._cache_size() == before


def test_stax_deep_mlp_and_conv_kernels():
    stax = ni._nt.stax()
    x = _sphere(10, 6, 5)
    k = ni.kernel_matrix(ni.relu_mlp_kernel(depth=3), x)
    assert k.shape == (10, 10)
    assert np.allclose(k, k.T, atol=1e-12)
    assert np.linalg.eigvalsh(k).min() > 0
    kfn = stax.serial(stax.Conv(1, (3, 3), padding="SAME"), stax.Relu(), stax.Flatten(),
                      stax.Dense(1))[2]
    imgs = np.random.default_rng(0).normal(size=(5, 6, 6, 2))
    kc = ni.kernel_matrix(ni.stax_kernel(kfn, flatten=False), imgs)
    with ni.precision("float64"):
        ref = np.asarray(kfn(imgs, imgs, "ntk"))
    np.testing.assert_allclose(kc, ref, rtol=1e-8)


def test_non_unit_norm_rejected_with_fix():
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ni.InputError, match="normalize=True"):
        ni.kernel_matrix("paper", x)


def test_import_does_not_load_tensorflow_and_keeps_x64_off():
    code = ("import sys, numpy as np, jax; import ntk_influence as ni; "
            "x = ni.unit_normalize(np.random.default_rng(0).normal(size=(8, 3))); "
            "y = np.sign(x[:, 0]); r = ni.ntk_influence(x, y, x[:2], y[:2]); "
            "assert r.influence.dtype == np.float64, r.influence.dtype; "
            "assert not jax.config.jax_enable_x64; "
            "assert 'tensorflow' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_compat_is_noop_when_names_exist():
    from ntk_influence import _nt

    _nt.neural_tangents()
    assert _nt._install_aliases() == []
    assert hasattr(jax.core, "Jaxpr")
