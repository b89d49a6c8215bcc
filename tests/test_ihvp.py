"""The four IHVP methods against each other and against the dense Hessian / finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import attribution as H
from ntk_influence import nets as N
from ntk_influence import training as T
from ntk_influence.nets import entk

LAM = 0.3


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=10))
    xt = x[:2] * 0.8 + 0.2 * x[2:4]
    yt = np.array([1.0, -1.0])
    net = N.two_layer_net(4, 24, seed=0)
    r = T.train(net, x, y, LAM, settings=T.SolverSettings("gn", f_tol=1e-12))
    with ni.precision("float64"):  # the reference vectors in float64 whatever the x64 flag
        v = jax.random.normal(jax.random.PRNGKey(0), (3, net.n_params), jnp.float64)
    return net, r.theta, x, y, xt, yt, v


def test_dense_hessian_is_gauss_newton_and_matches_finite_differences(tiny):
    net, theta, x, y, *_ , v = tiny
    h = H.hessian_dense(net, theta, x, y, LAM)
    assert h.dtype == np.float64
    with ni.precision("float64"):  # the independent references, in float64
        jac = np.asarray(jax.jacobian(lambda t: net.apply(t, jnp.asarray(x)))(theta))
        # Finite differences of the gradient at W(0): the trained point sits on ReLU kinks,
        # where the gradient jumps, so the quotient is taken where no pre-activation is ~0.
        t0 = net.theta0
        grad = jax.grad(lambda t: T.objective(net, t, jnp.asarray(x), jnp.asarray(y), LAM))
        eps = 1e-6
        fd = np.asarray((grad(t0 + eps * v[0]) - grad(t0 - eps * v[0])) / (2 * eps))
    np.testing.assert_allclose(h, jac.T @ jac + LAM * np.eye(net.n_params), atol=1e-12)
    h0 = H.hessian_dense(net, t0, x, y, LAM)
    np.testing.assert_allclose(fd, np.asarray(h0) @ np.asarray(v[0], np.float64), rtol=1e-6, atol=1e-7)


def test_woodbury_dense_cg_agree(tiny):
    net, theta, x, y, *_ , v = tiny
    d = H.ihvp(net, theta, x, y, v, LAM, method="dense")
    w = H.ihvp(net, theta, x, y, v, LAM, method="woodbury")
    c = H.ihvp(net, theta, x, y, v, LAM, method="cg", tol=1e-12)
    ref = np.linalg.solve(np.asarray(H.hessian_dense(net, theta, x, y, LAM)), np.asarray(v).T).T
    for res in (d, w, c):
        np.testing.assert_allclose(res.value, ref, rtol=1e-9, atol=1e-10)
        assert res.residual < 1e-9 and res.converged
    assert w.hessian == "exact" and c.iterations > 0


def test_lissa_deterministic_and_damped(tiny):
    net, theta, x, y, *_ , v = tiny
    ref = np.asarray(H.ihvp(net, theta, x, y, v[0], LAM, method="dense").value)
    det = H.ihvp(net, theta, x, y, v[0], LAM, method="lissa", depth=4000)
    np.testing.assert_allclose(det.value, ref, rtol=1e-6, atol=1e-7)
    assert det.converged and det.settings["damping"] == 0.0
    damped = H.ihvp(net, theta, x, y, v[0], LAM, method="lissa", depth=4000, damping=0.01)
    s = damped.settings["scale"]
    hmat = np.asarray(H.hessian_dense(net, theta, x, y, LAM))
    biased = np.linalg.solve(hmat + 0.01 * s * np.eye(len(ref)), np.asarray(v[0]))
    np.testing.assert_allclose(damped.value, biased, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_lissa_stochastic(tiny):
    net, theta, x, y, *_ , v = tiny
    ref = np.asarray(H.ihvp(net, theta, x, y, v[0], LAM, method="dense").value)
    det = H.ihvp(net, theta, x, y, v[0], LAM, method="lissa", depth=4000)
    sto = H.ihvp(net, theta, x, y, v[0], LAM, method="lissa", depth=3000, batch_size=5,
                 repeats=8, seed=1)
    rel = np.linalg.norm(np.asarray(sto.value) - ref) / np.linalg.norm(ref)
    assert rel < 0.25  # stochastic Hessian samples: a noisy estimate, stated in the result
    assert sto.residual > det.residual


def test_mlp_cg_exact_and_woodbury_is_gauss_newton():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3))
    y = np.sign(rng.normal(size=6))
    net = N.functional(N.mlp(3, 8, depth=2, seed=0))
    theta = T.train(net, x, y, LAM, settings=T.SolverSettings("gn", f_tol=1e-12)).theta
    v = np.ones(net.n_params)
    d = H.ihvp(net, theta, x, y, v, LAM, method="dense")
    c = H.ihvp(net, theta, x, y, v, LAM, method="cg", tol=1e-12)
    w = H.ihvp(net, theta, x, y, v, LAM, method="woodbury")
    np.testing.assert_allclose(c.value, d.value, rtol=1e-8, atol=1e-9)
    assert w.hessian == "gauss-newton"


def test_ihvp_influence_equals_entk_formula(tiny):
    net, theta, x, y, xt, yt, _ = tiny
    a = H.ihvp_influence(net, theta, x, y, xt, yt, LAM, method="woodbury")
    b = H.ihvp_influence(net, theta, x, y, xt, yt, LAM, method="cg", tol=1e-12)
    np.testing.assert_allclose(a.influence, b.influence, rtol=1e-8, atol=1e-12)
    k, kt = np.asarray(entk(net, x, theta=theta)), np.asarray(entk(net, x, xt, theta=theta))
    alpha = np.linalg.solve(k + LAM * np.eye(len(y)), kt)  # (n, t)
    ref = alpha * np.outer(a.f_train - y, a.f_test - yt)
    np.testing.assert_allclose(a.influence, ref, rtol=1e-8, atol=1e-12)


def test_bad_ihvp_input(tiny):
    net, theta, x, y, *_ , v = tiny
    with pytest.raises(ni.InputError, match="lam"):
        H.ihvp(net, theta, x, y, v, 0.0)
    with pytest.raises(ni.InputError, match="method"):
        H.ihvp(net, theta, x, y, v, LAM, method="newton")
    with pytest.raises(ni.InputError, match="v must be"):
        H.ihvp(net, theta, x, y, v[:, :3], LAM)
    big = N.two_layer_net(4, 4096)
    with pytest.raises(ni.errors.MemoryPlanError):
        H.hessian_dense(big, big.theta0, x, y, LAM)
    with pytest.raises(ni.InputError, match="train_index"):
        H.ihvp_influence(net, theta, x, y, x[:1], y[:1], LAM, train_index=[10])
    for kw, name in (({"method": "cg", "maxiter": 2.0}, "maxiter"),
                     ({"method": "lissa", "depth": 0}, "depth"),
                     ({"method": "lissa", "batch_size": 11}, "batch_size")):
        with pytest.raises(ni.InputError, match=name):
            H.ihvp(net, theta, x, y, v, LAM, **kw)


def test_cg_reports_its_iterations_and_an_honest_convergence(tiny):
    net, theta, x, y, *_ , v = tiny
    short = H.ihvp(net, theta, x, y, v, LAM, method="cg", tol=1e-12, maxiter=2)
    assert short.iterations == 2 and not short.converged and short.residual > 1e-6
    full = H.ihvp(net, theta, x, y, v, LAM, method="cg", tol=1e-12)
    assert 2 < full.iterations <= net.n_params and full.converged
