"""The factorisation's backends against dense NumPy references, the lazy spectrum, the
conditioning checks and the memory plan, with JAX's global x64 flag as the session has it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ntk_influence as ni


def _problem(n=60, t=9, d=12, k=1, seed=0, lam=0.05):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    xt = rng.normal(size=(t, d))
    xt /= np.linalg.norm(xt, axis=1, keepdims=True)
    g = np.clip(x @ x.T, -1, 1)
    kk = g * (np.pi - np.arccos(g)) / (2 * np.pi)
    kk = 0.5 * (kk + kk.T)
    gt = np.clip(x @ xt.T, -1, 1)
    kt = gt * (np.pi - np.arccos(gt)) / (2 * np.pi)
    y = rng.uniform(-1, 1, size=(n, k)) if k > 1 else np.sign(rng.normal(size=n))
    yt = rng.uniform(-1, 1, size=(t, k)) if k > 1 else np.sign(rng.normal(size=t))
    return kk, kt, y, yt, lam


def _dense_reference(kk, kt, y, yt, lam):
    """Leave-one-out by refitting KRR without each point (dense solves)."""
    n = kk.shape[0]
    y2, yt2 = y.reshape(n, -1), yt.reshape(kt.shape[1], -1)
    a = np.linalg.inv(kk + lam * np.eye(n))
    f = kt.T @ a @ y2
    out = np.empty((n, kt.shape[1]))
    for i in range(n):
        keep = np.arange(n) != i
        fi = kt[keep].T @ np.linalg.solve(kk[np.ix_(keep, keep)] + lam * np.eye(n - 1), y2[keep])
        d = fi - f
        out[i] = np.sum(d * (f - yt2) + 0.5 * d * d, axis=1)
    return a, a @ y2, out


@pytest.mark.parametrize("backend", ["lapack", "jax", "float32-refined"])
@pytest.mark.parametrize("k", [1, 3])
def test_backends_match_dense_refits(backend, k):
    kk, kt, y, yt, lam = _problem(k=k)
    a, beta, ref = _dense_reference(kk, kt, y, yt, lam)
    f = ni.factorize(kk, y, lam, backend=backend)
    assert f.backend == backend and f.a_diag.dtype == f.beta.dtype == np.float64
    assert isinstance(f.a_diag, np.ndarray) and isinstance(f.beta, np.ndarray)
    rtol = 1e-11 if backend != "float32-refined" else 1e-5  # diag(A) keeps float32's error
    np.testing.assert_allclose(f.a_diag, np.diag(a), rtol=rtol)
    np.testing.assert_allclose(f.beta, beta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f.solve(kt), a @ kt, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.leverage, 1 - lam * np.diag(a), rtol=rtol)
    res = ni.influence.influence_from_factor(f, kt, yt)
    assert res.influence.dtype == np.float64
    scale = np.abs(ref).max()
    tol = 1e-10 if backend != "float32-refined" else 1e-4
    assert np.abs(res.influence - ref).max() <= tol * scale


def test_float32_dtype_is_float32():
    kk, kt, y, yt, lam = _problem()
    res = ni.influence.influence_from_kernels(kk, kt, y, yt, lam, dtype=np.float32)
    assert res.influence.dtype == res.a_diag.dtype == np.float32
    ref = ni.influence.influence_from_kernels(kk, kt, y, yt, lam)
    assert np.abs(res.influence - ref.influence).max() <= 1e-4 * np.abs(ref.influence).max()


def test_spectrum_is_lazy_and_default_call_is_silent():
    rng = np.random.default_rng(3)
    n, d = 1100, 784  # isotropic inputs above the dense limit: the iterative path
    x = rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=n))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ni.ntk_influence(x, y, x[:5], y[:5], lam=0.1)
        assert "spectrum" not in res.factor.__dict__  # not computed by the call
        sp = res.spectrum  # computed now, without a warning
    assert "spectrum" in res.factor.__dict__
    assert sp.method == "iterative" and sp.converged
    ev = np.linalg.eigvalsh(res.factor.dense()) - 0.1
    assert sp.lambda_max == pytest.approx(ev[-1], rel=1e-10)
    assert sp.lambda_min == pytest.approx(ev[0], rel=1e-6)
    assert res.theorem3_lower == pytest.approx(ev[0] / (ev[0] + 0.1), rel=1e-6)


def test_keep_factor_false_keeps_the_spectrum():
    kk, kt, y, yt, lam = _problem()
    res = ni.influence.influence_from_kernels(kk, kt, y, yt, lam, keep_factor=False)
    ev = np.linalg.eigvalsh(kk)
    assert res.factor is None and res.lambda_min == pytest.approx(ev[0], rel=1e-9)
    none = ni.influence.influence_from_kernels(kk, kt, y, yt, lam, keep_factor=False, spectrum="none")
    with pytest.raises(ni.InputError, match="keep_factor"):
        _ = none.lambda_min


def test_conditioning_checks_are_the_same_everywhere():
    kk, kt, y, yt, _ = _problem(n=40)
    # point 1 an exact duplicate of point 0: one zero eigenvalue
    sel = np.r_[0, 0, 2:40]
    kd, ktd = kk[np.ix_(sel, sel)], kt[sel]
    for backend in ("lapack", "jax"):
        with pytest.warns(ni.errors.PrecisionWarning, match="cond"):  # cond ~ 1e12: warned
            ni.influence.influence_from_kernels(kd, ktd, y, yt, 1e-11, backend=backend)
        with pytest.raises(ni.SingularKernelError, match="lam"):  # cond ~ 1e15: refused
            ni.influence.influence_from_kernels(kd, ktd, y, yt, 1e-14, backend=backend)
        with pytest.raises(ni.SingularKernelError, match="lam"):  # Cholesky breaks down
            ni.influence.influence_from_kernels(np.ones((5, 5)), np.ones((5, 2)), np.ones(5), np.ones(2),
                                      0.0, backend=backend)
    assert issubclass(ni.SingularKernelError, ValueError)
    assert not issubclass(ni.SingularKernelError, ni.InputError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ni.influence.influence_from_kernels(kk, kt, y, yt, 0.1)  # well conditioned: silent


def test_memory_plan_refuses_before_allocating():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60000, 2))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with pytest.raises(ni.errors.MemoryPlanError, match="GB"):
        ni.ntk_influence(x, np.ones(60000), x[:10], np.ones(10), 0.1)


def test_bad_backend_and_spectrum_names():
    kk, kt, y, yt, lam = _problem(n=10)
    with pytest.raises(ni.InputError, match="backend"):
        ni.factorize(kk, y, lam, backend="cuda")
    with pytest.raises(ni.InputError, match="spectrum"):
        ni.factorize(kk, y, lam, spectrum_method="arnoldi")


def test_near_unit_inputs_are_rescaled_and_recorded():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=30))
    off = x.copy()
    off[4] *= 1 - 5e-7  # near unit: rescaled exactly, not used as it is
    res = ni.ntk_influence(off, y, x[:4], y[:4], lam=0.1)
    ref = ni.ntk_influence(x, y, x[:4], y[:4], lam=0.1)
    assert res.input_norms["x_train"]["n_renormalized"] == 1
    assert res.input_norms["x_train"]["max_deviation"] == pytest.approx(5e-7, rel=1e-6)
    np.testing.assert_allclose(res.influence, ref.influence, rtol=1e-12,
                               atol=1e-14 * np.abs(ref.influence).max())
    assert res.factor.dense()[4, 4] == pytest.approx(0.5 + 0.1, abs=1e-15)
    off[4] *= 0.9
    with pytest.raises(ni.InputError, match="normalize=True"):
        ni.ntk_influence(off, y, x[:4], y[:4], lam=0.1)
