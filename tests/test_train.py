"""Training on eq. (2): GD and damped Gauss-Newton reach the same predictions; bad input."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TanhNet

import ntk_influence as ni
from ntk_influence import nets as N
from ntk_influence import training as T


def _data(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.sign(rng.normal(size=n)), x[:3] * 0.9 + 0.1


@pytest.fixture(scope="module")
def small():
    x, y, xt = _data(6)
    net = N.two_layer_net(5, 1024, symmetric=True, seed=1)
    gn = T.train(net, x, y, 5.0, x_test=xt, settings=T.SolverSettings("gn", f_tol=1e-12))
    gd = T.train(net, x, y, 5.0, x_test=xt,
                 settings=T.SolverSettings("gd", f_tol=1e-12, window=50, max_steps=20000,
                                           anneal=True))
    return net, x, y, xt, gn, gd


def test_gd_and_gn_reach_the_same_function(small):
    net, x, y, xt, gn, gd = small
    # The minimiser sits on ReLU kinks (relative gradient ~1e-2 at the end for both). Both meet
    # the function-space tolerance here (annealed GD halves its step at the kinks instead of
    # chattering). The two endpoints agree to ~1e-5, far below the leave-one-out changes.
    assert gn.settled and not gn.stalled and gn.f_change <= 1e-12
    assert gd.settled and not gd.stalled and gd.f_change <= 1e-12
    # settled on kinks, not stationary: neither is called converged
    assert not gn.converged and gn.ridge_rel_grad_norm > 1e-3
    assert not gd.converged and gd.ridge_rel_grad_norm > 1e-3
    gap = max(np.abs(gn.f_train - gd.f_train).max(), np.abs(gn.f_test - gd.f_test).max())
    assert gap < 1e-4
    assert gn.loss <= gd.loss + 1e-9
    from ntk_influence.training import loo_retrain

    loo = loo_retrain(net, x, y, xt, np.ones(len(xt)), 5.0, train_index=[0, 2, 4], full=gn,
                      settings=T.SolverSettings("gn", f_tol=1e-12), show_progress=False)
    assert gap < 0.05 * np.median(np.abs(loo.delta))
    assert gn.iterations < gd.iterations / 5  # the point of the fast solver


def test_stationary_point_and_reported_fields(small):
    net, x, y, xt, gn, gd = small
    # Stationarity checked independently: gradient of eq. (2) by autodiff at the end.
    import jax

    with ni.precision("float64"):
        g = jax.grad(lambda t: T.objective(net, t, jnp.asarray(x), jnp.asarray(y), 5.0))(
            gn.theta)
        loss = float(T.objective(net, gn.theta, jnp.asarray(x), jnp.asarray(y), 5.0))
    assert float(np.linalg.norm(np.asarray(g))) == pytest.approx(gn.grad_norm, rel=1e-6,
                                                                 abs=1e-12)
    assert gn.rel_grad_norm < 0.1  # kink-limited plateau, reported rather than hidden
    assert gn.loss == pytest.approx(loss, rel=1e-12)
    assert gd.step_size < 2.0 / (T.estimate_lambda_max(net, net.theta0, x) + 5.0)
    assert gn.summary()["method"] == "gn"


def test_zero_weight_equals_removing_the_point():
    x, y, xt = _data()
    net = N.two_layer_net(5, 128, symmetric=True, seed=2)
    s = T.SolverSettings("gn", f_tol=1e-12)
    w = np.ones(len(y))
    w[4] = 0.0
    a = T.train(net, x, y, 0.3, x_test=xt, settings=s, weights=w)
    keep = np.arange(len(y)) != 4
    b = T.train(net, x[keep], y[keep], 0.3, x_test=xt, settings=s)
    np.testing.assert_allclose(a.f_test, b.f_test, atol=1e-9)


def test_gn_on_relu_mlp_settles():
    x, y, xt = _data(8, 4)
    net = N.functional(N.mlp(4, 32, depth=2, seed=0))
    r = T.train(net, x, y, 0.2, x_test=xt, settings=T.SolverSettings("gn", f_tol=1e-12))
    assert r.settled and r.f_change <= 1e-12 and np.isfinite(r.grad_norm)
    assert r.converged == (r.ridge_rel_grad_norm <= 1e-8)


@pytest.mark.parametrize("make", [lambda: N.two_layer_net(5, 16, symmetric=True, seed=1),
                                  lambda: N.functional(N.mlp(5, 8, depth=2, seed=0))],
                         ids=["two-layer", "mlp"])
def test_final_step_is_the_last_accepted_line_search_step(make):
    # Reference: the damped Gauss-Newton direction from a dense solve at the k-th iterate; the
    # (k+1)-th iterate must be that direction times the reported final step, a power of 2.
    import jax

    x, y, xt = _data(6)
    net, lam = make(), 0.1
    s = lambda k: T.SolverSettings("gn", f_tol=1e-300, max_steps=k)  # noqa: E731
    runs = [T.train(net, x, y, lam, settings=s(k), warn=False) for k in (5, 6)]
    with ni.precision("float64"):
        th = jnp.asarray(runs[0].theta)
        jac = np.asarray(jax.jacrev(lambda t: net.apply(t, jnp.asarray(x)))(th))
        r = np.asarray(net.apply(th, jnp.asarray(x))) - y
    dtheta = np.asarray(th) - np.asarray(net.theta0)
    p = -np.linalg.solve(jac.T @ jac + lam * np.eye(jac.shape[1]), jac.T @ r + lam * dtheta)
    move = np.asarray(runs[1].theta) - np.asarray(th)
    t = runs[1].final_step
    assert t == 2.0 ** np.round(np.log2(t)) and 0 < t < 1 and 0 < runs[0].final_step <= 1
    np.testing.assert_allclose(move, t * p, rtol=1e-8, atol=1e-12 * np.abs(p).max())
    gd = T.train(net, x, y, lam, settings=T.SolverSettings("gd", max_steps=3), warn=False)
    assert gd.final_step == pytest.approx(gd.step_size, rel=1e-12)


def test_kink_stop_is_reported_by_the_final_step(small):
    net, x, y, xt, gn, gd = small
    # On ReLU kinks the f_change rule is met by a collapsing Armijo step, not at a stationary
    # point: the reported final step is tiny while the relative gradient stays ~1e-2.
    assert gn.settled and gn.final_step < 1e-3 and gn.rel_grad_norm > 1e-3
    assert not gn.converged


def test_divergence_names_step_size():
    x, y, xt = _data()
    net = N.two_layer_net(5, 64, seed=0)
    with pytest.raises(ni.NotConvergedError, match=r"step size 50.*smaller step"):
        T.train(net, x, y, 0.1, settings=T.SolverSettings("gd", step_size=50.0, max_steps=500,
                                                          anneal=False))


def test_nonconvergence_is_reported():
    x, y, xt = _data()
    net = N.two_layer_net(5, 64, seed=0)
    with pytest.warns(ni.errors.NotConvergedWarning, match="raise max_steps"):
        r = T.train(net, x, y, 0.1, settings=T.SolverSettings("gd", max_steps=5, window=2))
    assert not r.converged and r.iterations == 5


@pytest.mark.parametrize("kw, match", [
    ({"lam": -1.0}, "lam"), ({"weights": np.ones(3)}, "weights"),
    ({"settings": T.SolverSettings("adam")}, "method"),
    ({"settings": T.SolverSettings("gn", batch_size=4)}, "batch_size"),
    ({"settings": T.SolverSettings("sgd", anneal=True)}, "anneal"),
    ({"settings": T.SolverSettings("gd", step_factor=2.5)}, "step_factor")])
def test_bad_training_input(kw, match):
    x, y, xt = _data()
    net = N.two_layer_net(5, 16)
    args = {"lam": 0.1, **kw}
    with pytest.raises(ni.InputError, match=match):
        T.train(net, x, y, args.pop("lam"), **args)


def test_wrong_feature_count():
    x, y, _ = _data()
    with pytest.raises(ni.InputError, match="features"):
        T.train(N.two_layer_net(7, 16), x, y, 0.1)


@pytest.mark.parametrize("symmetric", [True, False])
def test_two_layer_gn_path_equals_generic_gn(symmetric):
    # The two-layer solver works on pre-activations (J dtheta by homogeneity, line search on
    # Z + t Z_p); the generic solver forms gradients and Jacobian products with autodiff. Same
    # iteration, so the iterates agree to rounding, after a few steps and at convergence.
    import dataclasses

    x, y, xt = _data(10)
    net = N.two_layer_net(5, 128, symmetric=symmetric, seed=2)
    generic = dataclasses.replace(net, kind="generic", gn_step=None)
    w = np.ones(10)
    w[3] = 0.0
    s = T.SolverSettings("gn", f_tol=1e-10)
    a = T.train(net, x, y, 0.3, x_test=xt, settings=s, weights=w, warn=False)
    b = T.train(generic, x, y, 0.3, x_test=xt, settings=s, weights=w, warn=False)
    assert a.settled and a.iterations >= 5
    assert a.iterations == b.iterations and a.evaluations == b.evaluations
    np.testing.assert_allclose(a.theta, b.theta, atol=1e-10)
    np.testing.assert_allclose(a.f_test, b.f_test, atol=1e-11)
    np.testing.assert_allclose(a.grad_norm, b.grad_norm, rtol=1e-8)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)


def test_float64_net_with_x64_flag_off():
    # A float64 net built and trained with JAX's global x64 flag off: the library enters its own
    # precision, returns float64 and gives the same numbers as with the flag on.
    import jax

    x, y, xt = _data(8)
    s = T.SolverSettings("gn", f_tol=1e-12)
    with jax.enable_x64(False):
        assert not jax.config.jax_enable_x64
        net = N.two_layer_net(5, 64, symmetric=True, seed=3)
        assert net.dtype == np.float64 and net.theta0.dtype == np.float64
        r = T.train(net, x, y, 0.3, x_test=xt, settings=s)
        loo = ni.loo_retrain(net, x, y, xt, np.ones(3), 0.3, train_index=[2], settings=s,
                             show_progress=False)
        gd = T.train(net, x, y, 0.3, x_test=xt, settings=T.SolverSettings("gd", max_steps=20),
                     warn=False)
    assert r.theta.dtype == np.float64 and r.f_test.dtype == np.float64
    assert loo.delta.dtype == np.float64 and gd.f_test.dtype == np.float64
    with jax.enable_x64(True):
        net64 = N.two_layer_net(5, 64, symmetric=True, seed=3)
        ref = T.train(net64, x, y, 0.3, x_test=xt, settings=s)
        w = np.ones(8)
        w[2] = 0.0
        ref_loo = T.train(net64, x, y, 0.3, x_test=xt, settings=s, weights=w)
    np.testing.assert_array_equal(np.asarray(r.theta), np.asarray(ref.theta))
    np.testing.assert_allclose(loo.f_loo_test[0], ref_loo.f_test, atol=1e-12)
    assert r.iterations == ref.iterations


def test_gd_is_the_optax_sgd_update_and_sgd_full_batch_equals_gd():
    # Fixed-step GD, written out by hand in NumPy, equals the solver's optax loop; SGD with the
    # whole training set as its minibatch is exactly GD; seeded SGD is reproducible.
    import jax

    x, y, xt = _data(6)
    net = N.two_layer_net(5, 32, seed=4)
    eta, steps, lam = 0.05, 7, 0.3
    gd = T.train(net, x, y, lam, x_test=xt, warn=False,
                 settings=T.SolverSettings("gd", step_size=eta, max_steps=steps))
    with ni.precision("float64"):
        grad = jax.jit(jax.grad(lambda t: T.objective(net, t, jnp.asarray(x), jnp.asarray(y),
                                                      lam)))
        theta = net.theta0
        for _ in range(steps):
            theta = theta - eta * grad(theta)
        theta = np.asarray(theta)
    assert gd.iterations == steps
    np.testing.assert_allclose(np.asarray(gd.theta), theta, rtol=1e-12, atol=1e-14)
    full = T.train(net, x, y, lam, x_test=xt, warn=False,
                   settings=T.SolverSettings("sgd", step_size=eta, max_steps=steps, batch_size=6))
    np.testing.assert_allclose(np.asarray(full.theta), theta, rtol=1e-12, atol=1e-14)
    mini = [T.train(net, x, y, lam, x_test=xt, warn=False, settings=T.SolverSettings(
        "sgd", step_size=eta, max_steps=steps, batch_size=2, seed=sd)) for sd in (0, 0, 1)]
    np.testing.assert_array_equal(np.asarray(mini[0].theta), np.asarray(mini[1].theta))
    assert np.abs(np.asarray(mini[0].theta) - np.asarray(mini[2].theta)).max() > 1e-6
    assert np.abs(np.asarray(mini[0].theta) - theta).max() > 1e-6


def test_sgd_approaches_the_minimiser_as_its_step_shrinks():
    # Minibatch SGD with a fixed step ends in a noise ball around the minimiser whose size
    # scales with the step: a 16x smaller step (run 4x longer) lands 4x closer to GN's end point.
    x, y, xt = _data(8)
    net = N.two_layer_net(5, 256, symmetric=True, seed=1)
    gn = T.train(net, x, y, 1.0, x_test=xt, settings=T.SolverSettings("gn", f_tol=1e-12))
    gaps, losses = [], []
    for factor, steps in ((0.2, 3000), (0.0125, 12000)):
        r = T.train(net, x, y, 1.0, x_test=xt, warn=False, settings=T.SolverSettings(
            "sgd", step_factor=factor, max_steps=steps, batch_size=4))
        gaps.append(np.abs(r.f_test - gn.f_test).max())
        losses.append(r.loss)
    assert gaps[1] < 0.4 * gaps[0] and gaps[1] < 0.02
    assert abs(losses[1] - gn.loss) < 1e-3 * gn.loss < abs(losses[0] - gn.loss)


def test_truncated_newton_reaches_the_minimiser_that_bfgs_finds():
    """Eq. (2) on a smooth net, where Gauss-Newton drops the curvature ``sum r_i d^2 f_i``:
    the truncated Newton step (``newton_cg``) reaches scipy's BFGS minimiser (NumPy loss and
    hand-written gradient) in a few steps; plain Gauss-Newton is still short of it after 200."""
    import scipy.optimize

    rng = np.random.default_rng(0)
    d, m, lam = 5, 8, 0.3
    x, xt = rng.normal(size=(20, d)), rng.normal(size=(4, d))
    y = np.sign(x[:, 0] * x[:, 1])
    model = TanhNet(d, m)
    net = ni.nets.functional(model)
    v0 = np.concatenate([np.asarray(model.w1[...]).ravel(), np.asarray(model.w2[...])])

    def outputs(v, xx):
        return np.tanh(xx @ v[:d * m].reshape(d, m) / np.sqrt(d)) @ v[d * m:] / np.sqrt(m)

    def loss_grad(v):
        w1, w2 = v[:d * m].reshape(d, m), v[d * m:]
        h = np.tanh(x @ w1 / np.sqrt(d))
        r = h @ w2 / np.sqrt(m) - y
        g1 = x.T @ (r[:, None] * w2[None] / np.sqrt(m) * (1 - h ** 2)) / np.sqrt(d)
        return (0.5 * r @ r + 0.5 * lam * (v - v0) @ (v - v0),
                np.concatenate([g1.ravel(), h.T @ r / np.sqrt(m)]) + lam * (v - v0))

    ref = scipy.optimize.minimize(loss_grad, v0, jac=True, method="BFGS",
                                  options={"gtol": 1e-11, "maxiter": 10000})
    assert np.linalg.norm(ref.jac) < 1e-8
    s = T.SolverSettings("gn", f_tol=1e-10, newton_cg=8)
    tn = T.train(net, x, y, lam, x_test=xt, settings=s)
    assert tn.converged and tn.iterations < 40 and tn.grad_norm < 1e-10
    np.testing.assert_allclose(tn.loss, ref.fun, rtol=1e-12)
    np.testing.assert_allclose(tn.f_test, outputs(ref.x, xt), atol=1e-7)
    gn = T.train(net, x, y, lam, x_test=xt, settings=dataclasses.replace(s, newton_cg=0),
                 warn=False)
    assert not gn.converged and gn.grad_norm > 1e3 * tn.grad_norm


@pytest.mark.parametrize("kw, match", [({"newton_cg": -1}, "whole number"),
                                       ({"newton_cg": 2.5}, "whole number"),
                                       ({"newton_cg": True}, "whole number"),
                                       ({"newton_cg": 4, "method": "gd"}, "method='gn'")])
def test_bad_newton_cg(kw, match):
    with pytest.raises(ni.InputError, match=match):
        T.SolverSettings(**kw).resolved()


def _program_sizes(net):
    """Compiled-program cache sizes of the programs a net owns."""
    return {k: v._cache_size() for k, v in net._programs.items() if hasattr(v, "_cache_size")}


@pytest.mark.parametrize("method", ["gn", "gd"])
def test_second_train_does_not_recompile_and_net_is_freed(method):
    """The compiled solver (and the GD step size's eNTK program) live on the net: a second run
    with the same shapes compiles nothing, and nothing keeps the net alive after ``del``."""
    import gc
    import weakref

    x, y, xt = _data(6)
    net = N.two_layer_net(5, 16, seed=2)
    s = T.SolverSettings(method, f_tol=1e-6, max_steps=50)
    a = T.train(net, x, y, 1.0, x_test=xt, settings=s, warn=False)
    sizes = _program_sizes(net)
    assert sizes and all(v == 1 for v in sizes.values())
    b = T.train(net, x, y, 1.0, x_test=xt, settings=s, warn=False)
    assert _program_sizes(net) == sizes
    np.testing.assert_array_equal(a.f_test, b.f_test)
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None


def test_objective_is_the_one_regularised_loss():
    """``training.objective`` is ``nets.regularised_loss`` of the net's residuals."""
    x, y, _ = _data(6)
    net = N.two_layer_net(5, 8, seed=0)
    with ni.precision("float64"):
        xa, ya = jnp.asarray(x), jnp.asarray(y)
        theta = net.theta0 + 0.1
        w = jnp.linspace(0.0, 1.0, 6)
        got = T.objective(net, theta, xa, ya, 0.3, w)
        r = np.asarray(net.apply(theta, xa)) - y
        want = 0.5 * np.sum(np.asarray(w) * r * r) + 0.5 * 0.3 * 0.01 * net.n_params
        assert float(got) == pytest.approx(want, rel=1e-12)
        assert float(got) == float(N.regularised_loss(net.apply(theta, xa) - ya,
                                                      theta - net.theta0, 0.3, w))


def test_cg_solve_matches_a_dense_solve_and_stops_at_negative_curvature():
    """The one CG: a preconditioned SPD solve to tolerance; an indefinite matrix stops it."""
    rng = np.random.default_rng(0)
    with ni.precision("float64"):
        q = rng.normal(size=(8, 8))
        a = jnp.asarray(q @ q.T + 8 * np.eye(8))
        b = jnp.asarray(rng.normal(size=8))
        pre = jnp.asarray(np.diag(1 / np.diag(np.asarray(a))))
        for m in (None, lambda v: pre @ v):
            x, it, ok = N.cg_solve(lambda v: a @ v, b, tol=1e-12, maxiter=50, M=m)
            assert bool(ok) and 0 < int(it) <= 50
            np.testing.assert_allclose(np.asarray(x), np.linalg.solve(np.asarray(a), b),
                                       rtol=1e-9)
        x, it, ok = N.cg_solve(lambda v: -v, b, tol=1e-12, maxiter=50)
        assert not bool(ok) and int(it) == 0 and not np.any(np.asarray(x))
