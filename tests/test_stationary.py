"""Stationary training of smooth nets: truncated Newton to a gradient tolerance, converged means
stationary, warm and cold retrains agree, and L-BFGS from the returned point finds nothing."""

from __future__ import annotations

import itertools
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import ntk_influence as ni
from ntk_influence import nets as N
from ntk_influence.errors import InputError, NotConvergedWarning
from ntk_influence.training import SolverSettings, retrain_without, train

LAM = 0.1


def _data(n=16, d=5, t=3, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + t, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(rng.normal(size=n + t))
    return x[:n], y[:n], x[n:], y[n:]


def _net(act, width=32, depth=2):
    return N.functional(N.mlp(5, width, depth, seed=1, activation=act))


def _ratio64(net, theta, x, y, weights=None):
    """``||grad|| / ||lam (theta - theta0)||`` by JAX autodiff of eq. (2) written out here."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    with ni.precision("float64"):
        def loss(t):
            r = net.apply(t, jnp.asarray(x)) - jnp.asarray(y)
            return 0.5 * jnp.sum(jnp.asarray(w) * r * r) + 0.5 * LAM * jnp.sum((t - net.theta0) ** 2)

        g = np.asarray(jax.grad(loss)(jnp.asarray(theta)))
    return np.linalg.norm(g) / np.linalg.norm(LAM * (np.asarray(theta) - np.asarray(net.theta0)))


@pytest.mark.parametrize("act", ["erf", "gelu"])
def test_newton_reaches_a_stationary_point_quadratically(act):
    x, y, _, _ = _data()
    net = _net(act)
    one = SolverSettings.stationary(max_steps=1, g_tol=1e-300)  # one Newton step per call
    theta, ratios = net.theta0, []
    for _ in range(20):
        r = train(net, x, y, LAM, settings=one, theta_init=theta, warn=False)
        theta = r.theta
        ratios.append(r.ridge_rel_grad_norm)
        if ratios[-1] < 1e-13:
            break
    assert ratios[-1] < 1e-12, ratios
    # quadratic near the end: r_next <= C r^2 once r < 1e-2 (a linear rate would leave
    # r_next / r fixed, which fails this bound as r shrinks)
    tail = [(a, b) for a, b in itertools.pairwise(ratios) if a < 1e-2 and b > 1e-13]
    assert len(tail) >= 2, ratios
    for a, b in tail:
        assert b <= 100 * a * a, ratios
    full = train(net, x, y, LAM, settings=SolverSettings.stationary())
    assert full.converged and full.ridge_rel_grad_norm <= 1e-8 and full.iterations < 20
    # the ratio from an autodiff gradient written out here agrees (to its float64 rounding)
    assert _ratio64(net, full.theta, x, y) <= 1e-8
    assert _ratio64(net, full.theta, x, y) == pytest.approx(full.ridge_rel_grad_norm, rel=1e-3,
                                                            abs=1e-13)


def test_lbfgs_from_the_newton_point_moves_nothing():
    """The reviewer's check, in reverse: L-BFGS (SciPy) started at the returned point neither
    lowers eq. (2) nor moves a test prediction, unlike at a ReLU net's kink stop."""
    x, y, xt, _ = _data()
    net = _net("erf")
    full = train(net, x, y, LAM, x_test=xt, settings=SolverSettings.stationary())
    with ni.precision("float64"):
        def fg(t):
            t = jnp.asarray(t)
            val, g = jax.value_and_grad(
                lambda v: ni.training.objective(net, v, jnp.asarray(x), jnp.asarray(y), LAM))(t)
            return float(val), np.asarray(g)

        th = np.asarray(full.theta)
        res = scipy.optimize.minimize(fg, th, jac=True, method="L-BFGS-B",
                                      options={"maxiter": 3000, "gtol": 1e-14, "ftol": 1e-16})
        moved = np.abs(np.asarray(net.apply(jnp.asarray(res.x), jnp.asarray(xt))) - full.f_test)
    assert full.loss - res.fun <= 1e-13 * full.loss
    assert moved.max() < 1e-8


def test_warm_and_cold_retrains_reach_the_same_stationary_point():
    """At width 128 the stationary point near the trained weights is the one reached from W(0).
    (At width 48 a removal of 3 points reached two stationary points of different loss from
    the two starts: narrow nets are not in this regime, and a comparison records its start.)"""
    x, y, xt, yt = _data(20)
    net = _net("erf", width=128)
    s = SolverSettings.stationary()
    full = train(net, x, y, LAM, x_test=xt, settings=s)
    kw = dict(remove=[[i] for i in (0, 3, 7, 11)] + [[2, 5, 9]], settings=s, full=full,
              show_progress=False)
    warm = retrain_without(net, x, y, xt, yt, LAM, warm_start=True, **kw)
    cold = retrain_without(net, x, y, xt, yt, LAM, warm_start=False, **kw)
    for r in (warm, cold):
        assert r.converged.all() and (r.ridge_rel_grad_norm <= 1e-8).all()
        assert r.summary()["all_converged"] and r.summary()["max_ridge_rel_grad_norm"] <= 1e-8
    scale = np.abs(cold.delta).max()
    assert scale > 1e-3  # the removals matter
    assert np.abs(warm.delta - cold.delta).max() <= 1e-6 * scale
    assert warm.iterations.mean() < cold.iterations.mean()
    # each retrain is stationary for its own weighted eq. (2), checked independently
    for j, removed in enumerate(kw["remove"]):
        w = np.ones(len(y))
        w[removed] = 0.0
        one = train(net, x, y, LAM, x_test=xt, settings=s, weights=w,
                    theta_init=full.theta)
        assert _ratio64(net, one.theta, x, y, w) <= 1e-8
        np.testing.assert_allclose(one.f_test - full.f_test, warm.delta[j], atol=1e-7 * scale)


def test_a_run_short_of_the_gradient_tolerance_is_not_called_converged():
    x, y, xt, yt = _data()
    net = _net("gelu")
    s = SolverSettings.stationary(max_steps=2)
    with pytest.warns(NotConvergedWarning, match="not a stationary point"):
        full = train(net, x, y, LAM, x_test=xt, settings=s)
    assert not full.converged and full.ridge_rel_grad_norm > 1e-8
    with pytest.warns(NotConvergedWarning, match="not stationary"):
        r = retrain_without(net, x, y, xt, yt, LAM, remove=[[0], [1]], settings=s, full=full,
                            show_progress=False)
    assert not r.converged.any() and (r.ridge_rel_grad_norm > 1e-8).all()
    assert not r.summary()["all_converged"]


@pytest.mark.parametrize("kwargs, message", [
    ({"stop": "loss"}, "stop must be one of"),
    ({"g_tol": 0.0}, "g_tol must be > 0"),
    ({"g_tol": float("nan")}, "g_tol must be > 0"),
    ({"method": "sgd", "stop": "gradient"}, "minibatch gradient"),
])
def test_bad_stopping_settings_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        SolverSettings(**kwargs).resolved()


def test_rel_tol_is_refused_with_the_gradient_rule():
    x, y, xt, yt = _data()
    with pytest.raises(InputError, match="rel_tol=None"):
        retrain_without(_net("erf"), x, y, xt, yt, LAM, remove=[[0]],
                        settings=SolverSettings.stationary(), rel_tol=0.01, delta_scale=[1.0],
                        show_progress=False)


def test_gd_can_stop_on_the_gradient():
    x, y, _, _ = _data(8)
    net = _net("erf", width=8, depth=1)
    s = SolverSettings("gd", stop="gradient", g_tol=1e-6, step_factor=1.0, max_steps=200000)
    r = train(net, x, y, LAM, settings=s)
    assert r.converged is False or r.ridge_rel_grad_norm <= 1e-6
    assert r.ridge_rel_grad_norm <= 1.01e-6 and _ratio64(net, r.theta, x, y) <= 1.01e-6


def test_compare_defaults_for_smooth_nets(tmp_path):
    from ntk_influence.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        args = ["compare", "--arch", "mlp:1:erf", "--widths", "32", "--n-train", "16",
                "--n-test", "3", "--n-points", "3", "--test-points", "2", "--quiet"]
        assert main([*args, "--out", str(tmp_path / "w")]) == 0
        assert main([*args, "--cold-start", "--out", str(tmp_path / "c")]) == 0
    rows = {}
    for name in ("w", "c"):
        d = json.loads((tmp_path / name / "compare.json").read_text())
        r = d["widths"][0]
        assert r["stop"] == "gradient" and r["newton_cg"] == 50 and r["rel_tol"] is None
        assert r["full_converged"] and r["retrain_all_converged"]
        assert r["max_rel_grad_norm"] <= 1e-8
        assert r["max_rel_grad_norm"] == pytest.approx(max(r["full_ridge_rel_grad_norm"],
                                                            r["retrain_max_ridge_rel_grad_norm"]))
        rows[name] = r
    assert rows["w"]["warm_start"] and not rows["c"]["warm_start"]
    md = (tmp_path / "w" / "compare.md").read_text()
    assert "stationary point" in md and "warm start" in md and "max rel. gradient" in md
    assert "max last steps' change" in md
    # the same stationary points from either start: the same statistics
    assert rows["w"]["pearson"] == pytest.approx(rows["c"]["pearson"], abs=1e-6)
    assert ni.experiments.comparison_solver("mlp:2") == (SolverSettings().resolved(), False)
    s, warm = ni.experiments.comparison_solver("cnn:2:gelu")
    assert warm and s.stop == "gradient" and s.newton_cg == 50
