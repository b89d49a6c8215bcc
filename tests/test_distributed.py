"""Scale: sharded paths on 4 simulated CPU devices equal the single-device results; memory plan;
float32 policy; the LAPACK and JAX backends agree.

The 4-device checks run in a subprocess, because ``--xla_force_host_platform_device_count``
must be set before JAX initialises and this test session has already imported JAX.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import linalg as krr
from ntk_influence import scale as dd

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(r'''
    import json, os, sys
    import jax, jax.numpy as jnp, numpy as np
    if os.environ.get("NTK_INFLUENCE_TEST_X64") == "1":
        jax.config.update("jax_enable_x64", True)
    import ntk_influence as ni
    from ntk_influence import scale as dd

    out = {"devices": jax.device_count()}
    rng = np.random.default_rng(0)
    n, t, d, lam = 90, 21, 5, 0.1
    x = ni.data.unit_normalize(rng.normal(size=(n, d)))
    xt = ni.data.unit_normalize(rng.normal(size=(t, d)))
    y, yt = np.sign(rng.normal(size=n)), np.sign(rng.normal(size=t))
    ref = ni.ntk_influence(x, y, xt, yt, lam)  # single device (host LAPACK backend)
    mesh = dd.make_mesh()
    got = dd.large_influence(x, y, xt, yt, lam, mesh=mesh, backend="jax", test_block=2,
                             kernel_block=8).result
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    out["sharded"] = {f: rel(getattr(got, f), getattr(ref, f)) for f in
                      ("influence", "ihvp", "alpha", "leverage", "f_test", "self_influence")}
    out["lambda"] = [got.lambda_min, ref.lambda_min, got.lambda_max, ref.lambda_max]
    # one device of the same process, JAX backend: the mesh changes nothing
    one = dd.large_influence(x, y, xt, yt, lam, mesh=dd.make_mesh(jax.devices()[:1]),
                             backend="jax", test_block=5).result
    out["one_vs_four"] = rel(got.influence, one.influence)
    # kernel rows sharded over the mesh, gathered on device 0
    k4 = np.asarray(dd.sharded_kernel_rows("paper", x, x, mesh, block_rows=7))
    out["kernel"] = float(np.max(np.abs(k4 - ni.kernels.kernel_matrix("paper", x))))
    out["kernel_device"] = str(next(iter(dd.sharded_kernel_rows("paper", x, xt, mesh).devices())))

    # The memory plan refuses before any large allocation.
    calls = []
    import ntk_influence.scale as lg
    real = lg.sharded_kernel_rows
    lg.sharded_kernel_rows = lambda *a, **kw: calls.append(1) or real(*a, **kw)
    try:
        dd.large_influence(x, y, xt, yt, lam, mesh=mesh, backend="jax", device_memory=10_000)
        out["plan_error"] = None
    except ni.errors.MemoryPlanError as e:
        out["plan_error"] = str(e)
    out["kernel_calls_after_plan_error"] = len(calls)
    print("RESULT " + json.dumps(out))
''')


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    script = tmp_path_factory.mktemp("dist") / "child.py"
    script.write_text(CHILD)
    store = tmp_path_factory.mktemp("store")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get(
                   "PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(script), str(store)], capture_output=True,
                       text=True, env=env, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-4000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_sharded_influence_equals_single_device(four_devices):
    r = four_devices
    assert r["devices"] == 4
    for field, err in r["sharded"].items():
        assert err <= 1e-11, (field, err)
    assert r["one_vs_four"] <= 1e-12
    lmin, lmin_ref, lmax, lmax_ref = r["lambda"]
    assert lmax == pytest.approx(lmax_ref, rel=1e-6)
    assert lmin == pytest.approx(lmin_ref, rel=1e-3)


def test_sharded_kernel_rows_gathered_on_one_device(four_devices):
    # NT's eq. (4) is accurate to ~3e-9 in float64, and its rounding depends on the block shape
    assert four_devices["kernel"] <= 1e-8
    assert four_devices["kernel_device"].endswith("0")


def test_memory_plan_error_fires_before_allocation(four_devices):
    msg = four_devices["plan_error"]
    assert msg is not None and "GB" in msg
    assert four_devices["kernel_calls_after_plan_error"] == 0


def test_memory_plan_figures_and_advice():
    plan = ni.linalg.memory_plan(60000, 10000, 784, backend="jax", device_memory=80 * 10**9,
                          host_memory=10**12)
    assert plan.fits
    assert plan.stages["K (n x n)"] == 60000**2 * 8  # 28.8 GB
    assert plan.factor_device_bytes <= 2.2 * 60000**2 * 8  # about two n x n arrays
    assert plan.inverse_diagonal == "blocked"  # a third n x n does not fit in 80 GB
    big = ni.linalg.memory_plan(60000, 10000, 784, backend="jax", device_memory=141 * 10**9,
                         host_memory=10**12)
    assert big.inverse_diagonal == "recursive"
    with pytest.raises(ni.errors.MemoryPlanError, match=r"at least \d+ GB.*float32"):
        ni.linalg.memory_plan(60000, 10000, 784, backend="jax", device_memory=40 * 10**9,
                       host_memory=10**12)
    with pytest.raises(ni.errors.MemoryPlanError, match="test_block="):
        ni.linalg.memory_plan(15000, 10000, 784, backend="jax", device_memory=4.5e9,
                       host_memory=10**12, test_block=4096)
    with pytest.raises(ni.errors.MemoryPlanError, match=r"needs .* GB"):
        ni.linalg.memory_plan(60000, 100, 784, backend="lapack", host_memory=20 * 10**9)
    with pytest.raises(ni.InputError):
        ni.linalg.memory_plan(0, 10, 5)


def _problem(n=120, t=15, seed=0):
    rng = np.random.default_rng(seed)
    x = ni.data.unit_normalize(rng.normal(size=(n, 8)))
    xt = ni.data.unit_normalize(rng.normal(size=(t, 8)))
    return x, np.sign(rng.normal(size=n)), xt, np.sign(rng.normal(size=t))


def test_lapack_and_jax_backends_agree():
    x, y, xt, yt = _problem()
    k = ni.kernels.kernel_matrix("paper", x)
    kt = ni.kernels.kernel_matrix("paper", x, xt)
    fl = krr.factorize(k, y, 0.05, backend="lapack", spectrum_method="iterative")
    fj = krr.factorize(k, y, 0.05, backend="jax", spectrum_method="iterative")
    assert isinstance(fl.chol, np.ndarray) and not isinstance(fj.chol, np.ndarray)
    np.testing.assert_allclose(np.asarray(fj.a_diag), fl.a_diag, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(fj.beta), fl.beta, rtol=1e-11)
    assert fl.a_diag.dtype == fj.a_diag.dtype == fj.beta.dtype == np.float64
    rl = ni.influence.influence_from_factor(fl, kt, yt)
    rj = ni.influence.influence_from_factor(fj, kt, yt)
    np.testing.assert_allclose(rj.influence, rl.influence, rtol=1e-10, atol=1e-16)
    dense = np.linalg.inv(k + 0.05 * np.eye(len(y)))
    np.testing.assert_allclose(fl.a_diag, np.diag(dense), rtol=1e-11)
    np.testing.assert_allclose(np.asarray(fj.solve(kt)), dense @ kt, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(fl.a_columns([3, 7])), dense[:, [3, 7]], rtol=1e-10)
    ev = np.linalg.eigvalsh(k)
    assert fj.spectrum.lambda_max == pytest.approx(ev[-1], rel=1e-8)
    for f in (fl, fj):  # ARPACK on the backend's products, against dense eigvalsh
        assert f.spectrum.method == "iterative" and f.spectrum.converged
        assert f.spectrum.lambda_max == pytest.approx(ev[-1], rel=1e-9)
        assert f.spectrum.lambda_min == pytest.approx(ev[0], rel=1e-6, abs=1e-9)


def test_blocked_inverse_diagonal_matches_dense():
    x, y, _, _ = _problem(n=70)
    k = ni.kernels.kernel_matrix("paper", x) + 0.1 * np.eye(70)
    with ni.precision("float64"):
        import jax.numpy as jnp

        chol = jnp.linalg.cholesky(jnp.asarray(k))
        dense = np.diag(np.linalg.inv(k))
        for mode, block in (("blocked", 16), ("blocked", 70), ("recursive", 0)):
            got = np.asarray(krr.inverse_diagonal(chol, mode=mode, block=block or 1))
            np.testing.assert_allclose(got, dense, rtol=1e-12)


def test_refine_solve_reaches_float64_and_reports_stagnation():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    m = (q * np.logspace(0, 4, 60)) @ q.T  # cond 1e4: cond * eps32 ~ 1e-3 < 1
    b = rng.normal(size=(60, 3))
    m32 = np.linalg.inv(m.astype(np.float32)).astype(np.float64)
    x, steps, res = ni.linalg.refine_solve(lambda r: m32 @ r, lambda v: m @ v, b, rtol=1e-14)
    exact = np.linalg.solve(m, b)
    plain = m32 @ b
    assert np.max(np.abs(plain - exact)) / np.max(np.abs(exact)) > 1e-6
    assert np.max(np.abs(x - exact)) / np.max(np.abs(exact)) <= 1e-11
    assert 1 <= steps <= 5 and res <= 1e-13
    bad = (q * np.logspace(0, 9, 60)) @ q.T  # cond 1e9: float32 cannot refine it
    bad32 = np.linalg.pinv(bad.astype(np.float32)).astype(np.float64)
    _, _, res_bad = ni.linalg.refine_solve(lambda r: bad32 @ r, lambda v: bad @ v, b, rtol=1e-14)
    assert res_bad > 1e-13


def test_float32_policy_accuracy_and_warning():
    x, y, xt, yt = _problem(n=150, t=10)
    ref = ni.ntk_influence(x, y, xt, yt, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ni.errors.PrecisionWarning)
        plain = dd.large_influence(x, y, xt, yt, 0.1, precision_policy="float32", rtol=1e-2)
        refined = dd.large_influence(x, y, xt, yt, 0.1, precision_policy="float32-refined",
                                     rtol=1e-2)
    err = lambda a, b: np.max(np.abs(a - b)) / np.max(np.abs(b))  # noqa: E731
    assert err(refined.result.beta, ref.beta) <= 1e-11  # refined solves reach float64
    assert err(refined.result.alpha, ref.alpha) <= 1e-11
    assert err(plain.result.beta, ref.beta) > 1e-9
    # diag(A), hence the influence, keeps float32's error, within the reported estimate
    assert err(refined.result.a_diag, ref.a_diag) <= 10 * refined.precision.diag_error_estimate
    assert err(refined.result.influence, ref.influence) <= 1e-4
    with pytest.warns(ni.errors.PrecisionWarning, match="cannot be met"):
        dd.large_influence(x, y, xt, yt, 1e-4, precision_policy="float32-refined", rtol=1e-9)
    assert dd.resolve_policy("auto") == "float64"  # the CPU has float64
    with pytest.raises(ni.InputError):
        dd.resolve_policy("float16")


def test_lapack_plan_path_equals_ntk_influence_and_initialize_noop():
    x, y, xt, yt = _problem(n=100, t=30)
    ref = ni.ntk_influence(x, y, xt, yt, 0.1)
    got = dd.large_influence(x, y, xt, yt, 0.1, backend="lapack", test_block=7)
    np.testing.assert_allclose(got.result.influence, ref.influence, rtol=1e-10, atol=1e-18)
    assert got.plan.backend == "lapack" and got.plan.fits
    info = dd.initialize()  # one process: nothing to start
    assert info["process_count"] == 1 and info["devices"] >= 1
