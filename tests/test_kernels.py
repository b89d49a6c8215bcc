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
    return ni.data.unit_normalize(np.random.default_rng(seed).normal(size=(n, d)))


def _hard_pairs(d: int = 12, seed: int = 7) -> np.ndarray:
    """Rows that stress eq. (4): duplicates, near-parallel, antipodal, orthogonal pairs."""
    rng = np.random.default_rng(seed)
    b = _sphere(4, d, seed)
    unit = lambda v: ni.data.unit_normalize(v[None])[0]  # noqa: E731
    return np.array([
        b[0], b[0].copy(),                               # exact duplicates
        unit(b[0] + 1e-9 * rng.normal(size=d)),          # near-parallel
        unit(b[0] + 1e-12 * rng.normal(size=d)),
        -b[0],                                           # antipodal
        unit(-(b[0] + 1e-9 * rng.normal(size=d))),       # near-antipodal
        np.eye(d)[0], np.eye(d)[1],                      # exactly orthogonal
        unit(b[1] - (b[1] @ b[0]) * b[0]),               # orthogonal to b[0] up to rounding
        b[2], b[3],
    ])


def _assert_eq4(k, ref, rtol):
    """``|K - ref| <= rtol / 2`` everywhere (K's scale is K(x, x) = 1/2), relative where |ref| > 1e-3."""
    err = np.abs(k - ref)
    assert err.max() <= rtol * 0.5, err.max()
    big = np.abs(ref) > 1e-3
    assert (err[big] / np.abs(ref[big])).max() <= rtol


def test_closed_form_matches_extended_precision_reference():
    x = _hard_pairs()
    z = np.concatenate([x, _sphere(9, 12, 8)])
    ref = closed_form_kernel(x, z)
    assert np.all(ref[:4, :4] > 0.5 - 1e-9) and ref[0, 4] == pytest.approx(0, abs=1e-20)
    for name in ("paper", "paper-closed-form"):
        k = ni.kernels.kernel_matrix(name, x, z)
        assert k.dtype == np.float64
        _assert_eq4(k, ref, 1e-13)
    k = ni.kernels.kernel_matrix("paper", x)
    assert np.all(np.diag(k) == 0.5) and k[0, 1] == 0.5 and np.array_equal(k, k.T)
    # The arccos form of eq. (4) loses half the digits on the near-parallel pairs.
    g = np.clip(x @ z.T, -1, 1)
    with pytest.raises(AssertionError):
        _assert_eq4(g * (np.pi - np.arccos(g)) / (2 * np.pi), ref, 1e-13)


def test_closed_form_on_sphere_and_in_float32():
    x, z = _sphere(40, 30, 0), _sphere(17, 30, 1)
    ref = closed_form_kernel(x, z)
    _assert_eq4(ni.kernels.kernel_matrix("paper", x, z), ref, 1e-13)
    k32 = ni.kernels.kernel_matrix("paper", _hard_pairs(), dtype=np.float32)
    assert k32.dtype == np.float32 and np.all(np.diag(k32) == 0.5)
    _assert_eq4(k32, closed_form_kernel(_hard_pairs(), _hard_pairs()), 1e-6)


def test_many_near_parallel_pairs_take_several_passes():
    # 30 near-copies of one point: 900 near-parallel pairs, more than one pass (n1 + n2) fixes.
    rng = np.random.default_rng(3)
    base = _sphere(1, 8, 2)
    x = ni.data.unit_normalize(base + 1e-8 * rng.normal(size=(30, 8)))
    _assert_eq4(ni.kernels.kernel_matrix("paper", x, block_size=7), closed_form_kernel(x, x), 1e-13)


def test_nt_route_agrees_to_its_own_limit():
    x = np.concatenate([_hard_pairs(), _sphere(20, 12, 9)])
    z = _sphere(7, 12, 10)
    for a, b in ((x, x), (x, z)):
        knt = ni.kernels.kernel_matrix("paper-nt", a, b)
        np.testing.assert_allclose(knt, ni.kernels.kernel_matrix("paper", a, b), atol=1e-8, rtol=0)
        np.testing.assert_allclose(knt, closed_form_kernel(a, b), atol=1e-8, rtol=0)
    assert ni.kernels.paper_kernel(implementation="nt").name != ni.kernels.paper_kernel().name


def _arccos1(x1, x2):
    """Arc-cosine kernel of order 1: E[relu(w.x) relu(w.x')] for w ~ N(0, I)."""
    g = np.clip(x1 @ x2.T, -1, 1)
    th = np.arccos(g)
    return (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)


def test_both_layers_equals_nt_plain_ntk_and_closed_form():
    x = _sphere(12, 6, 2)
    both = ni.kernels.kernel_matrix("paper-both", x)
    np.testing.assert_allclose(both, closed_form_kernel(x, x) + _arccos1(x, x), atol=1e-8)
    kernel_fn = ni.kernels.paper_stax(6)[2]
    with ni.precision("float64"):
        plain = np.asarray(kernel_fn(x, x, "ntk"))
    np.testing.assert_allclose(both, plain, atol=1e-12)


def test_blocking_gives_identical_matrix_and_no_recompile():
    x = _sphere(37, 8, 3)
    full = ni.kernels.kernel_matrix("paper", x, block_size=1000)
    blocked = ni.kernels.kernel_matrix("paper", x, block_size=8)
    np.testing.assert_allclose(blocked, full, atol=1e-15)
    fn = ni.kernels.paper_kernel().jitted
    before = fn._cache_size()
    ni.kernels.kernel_matrix("paper", _sphere(37, 8, 4), block_size=8)
    assert fn._cache_size() == before


def test_stax_deep_mlp_and_conv_kernels():
    stax = ni.kernels.stax()
    x = _sphere(10, 6, 5)
    k = ni.kernels.kernel_matrix(ni.nets.mlp(1, 1, 3).limit_kernel(), x)
    assert k.shape == (10, 10)
    assert np.allclose(k, k.T, atol=1e-12)
    assert np.linalg.eigvalsh(k).min() > 0
    kfn = stax.serial(stax.Conv(1, (3, 3), padding="SAME"), stax.Relu(), stax.Flatten(),
                      stax.Dense(1))[2]
    imgs = np.random.default_rng(0).normal(size=(5, 6, 6, 2))
    kc = ni.kernels.kernel_matrix(ni.kernels.stax_kernel(kfn, flatten=False), imgs)
    with ni.precision("float64"):
        ref = np.asarray(kfn(imgs, imgs, "ntk"))
    np.testing.assert_allclose(kc, ref, rtol=1e-8)


def test_non_unit_norm_rejected_with_fix():
    x = np.random.default_rng(0).normal(size=(5, 3))
    for name in ("paper", "paper-nt", "paper-both"):
        with pytest.raises(ni.InputError, match="normalize=True"):
            ni.kernels.kernel_matrix(name, x)


def test_near_unit_rows_rescaled_before_the_kernel():
    x = _sphere(6, 5, 11)
    k = ni.kernels.kernel_matrix("paper", x * (1 - 5e-7), x * (1 + 9e-7))
    assert np.all(np.diag(k) == 0.5)
    _assert_eq4(k, closed_form_kernel(x, x), 1e-13)
    with pytest.raises(ni.InputError, match=r"x2\[\d\] has norm 1.000002"):
        ni.kernels.kernel_matrix("paper", x, x * (1 + 2e-6))


def test_import_does_not_load_tensorflow_and_keeps_x64_off():
    code = ("import sys, numpy as np, jax; import ntk_influence as ni; "
            "x = ni.data.unit_normalize(np.random.default_rng(0).normal(size=(8, 3))); "
            "y = np.sign(x[:, 0]); r = ni.ntk_influence(x, y, x[:2], y[:2]); "
            "assert r.influence.dtype == np.float64, r.influence.dtype; "
            "assert not jax.config.jax_enable_x64; "
            "assert 'tensorflow' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_compat_is_noop_when_names_exist():
    from ntk_influence.kernels import _nt

    _nt.neural_tangents()
    assert _nt._install_aliases() == []
    assert hasattr(jax.core, "Jaxpr")
