"""Kernel-route influence of a user's own model: the eNTK against a dense Jacobian, the influence
against brute-force ridge refits (linear models, where the linearisation is exact), against the
structured eNTK, and against actual leave-one-out retraining of a wide net."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TanhNet
from flax import nnx

import ntk_influence as ni
from ntk_influence import nets as deep

LAM = 0.1


def _jacobian(fn, params, x):
    """Dense reference Jacobian ``(n, P)`` of the outputs from ``jax.jacrev``, in float64."""
    with ni.precision(np.float64):
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        x = jnp.asarray(x, jnp.float64)
        j = jax.jit(jax.jacrev(lambda q, a: fn(q, a).reshape(a.shape[0])))(p, x)
        return np.concatenate([np.asarray(a).reshape(x.shape[0], -1)
                               for a in jax.tree_util.tree_leaves(j)], axis=1)


def _linen_style():
    """A two-layer tanh net as a linen-style ``apply(params, x)``: dict pytree, (n, 3, 4) inputs."""
    rng = np.random.default_rng(5)
    params = {"dense": {"kernel": rng.normal(size=(12, 16)), "bias": rng.normal(size=(16,))},
              "out": {"kernel": rng.normal(size=(16, 1))}}

    def apply(p, x):
        h = jnp.tanh(x.reshape(x.shape[0], -1) @ p["dense"]["kernel"] / np.sqrt(12)
                     + p["dense"]["bias"])
        return h @ p["out"]["kernel"] / 4.0  # (n, 1)

    return apply, params, rng.normal(size=(7, 3, 4)), rng.normal(size=(4, 3, 4))


def test_nt_entk_equals_dense_jacobian_gram():
    model = deep.mlp(8, 16, 2)
    graphdef, state = nnx.split(model)
    fn = lambda p, x: nnx.merge(graphdef, p)(x)  # noqa: E731
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(7, 8)), rng.normal(size=(5, 8))
    j1, j2 = _jacobian(fn, state, x1), _jacobian(fn, state, x2)
    scale = np.abs(j1 @ j1.T).max()
    for implementation in ("auto", "jacobian"):
        for b, ref in ((None, j1 @ j1.T), (x2, j1 @ j2.T)):
            for bs in (None, 3):  # one block, and padded blocks
                k = ni.influence.model_entk(fn, state, x1, b, block_size=bs, implementation=implementation)
                assert k.dtype == np.float64 and k.shape == ref.shape
                np.testing.assert_allclose(k, ref, rtol=0, atol=1e-12 * scale)
    # the nnx.Module itself, and the library's structured eNTK (layer Grams, no Jacobian)
    np.testing.assert_allclose(ni.influence.model_entk(model, None, x1), j1 @ j1.T, rtol=0,
                               atol=1e-12 * scale)
    net = ni.nets.functional(model)
    np.testing.assert_allclose(ni.influence.model_entk(net.apply, net.theta0, x1, x2),
                               np.asarray(ni.nets.entk(net, x1, x2), np.float64), rtol=0,
                               atol=1e-12 * scale)


def test_nt_entk_of_a_dict_pytree_and_image_shaped_inputs():
    apply, params, x1, x2 = _linen_style()
    j1, j2 = _jacobian(apply, params, x1), _jacobian(apply, params, x2)
    for implementation in ("auto", "jacobian"):
        for b, ref in ((None, j1 @ j1.T), (x2, j1 @ j2.T)):
            with warnings.catch_warnings():  # no deprecated JAX calls on this path
                warnings.simplefilter("error", DeprecationWarning)
                k = ni.influence.model_entk(apply, params, x1, b, block_size=2,
                                  implementation=implementation)
            np.testing.assert_allclose(k, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
            if b is None:
                np.testing.assert_array_equal(k, k.T)
    k32 = ni.influence.model_entk(apply, params, x1, x2, dtype=np.float32)
    assert k32.dtype == np.float32
    np.testing.assert_allclose(k32, j1 @ j2.T, rtol=1e-4, atol=1e-4)


def _ridge_loo(feats, y, feats_te, y_te, lam, centre):
    """Brute force: refit ``1/2 ||F w - y||^2 + lam/2 ||w - centre||^2`` without each point."""
    def fit(f, t):
        a = f.T @ f + lam * np.eye(f.shape[1])
        return centre + np.linalg.solve(a, f.T @ (t - f @ centre))

    w = fit(feats, y)
    f_te = feats_te @ w
    delta = np.empty((len(y), len(y_te)))
    loo_f = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        wi = fit(feats[keep], y[keep])
        delta[i] = feats_te @ wi - f_te
        loo_f[i] = feats[i] @ wi
    return f_te, delta, ni.linalg.loss_change(delta, f_te - y_te), feats @ w, loo_f


@pytest.mark.parametrize("case", ["centre=params", "params0", "ignore", "(n,1) outputs"])
def test_linear_model_equals_brute_force_ridge_loo(case):
    """A model linear in its parameters is its own linearisation: eq. (8-9) must be exact."""
    rng = np.random.default_rng(1)
    n, t = 15, 6
    x, xt = rng.normal(size=(n, 2, 3)), rng.normal(size=(t, 2, 3))
    y, yt = np.tanh(rng.normal(size=n)), np.tanh(rng.normal(size=t))
    p1 = {"w": rng.normal(size=6), "b": rng.normal(size=1)}  # the linearisation point
    p0 = {"w": rng.normal(size=6), "b": rng.normal(size=1)}  # another regulariser centre
    two_d = case == "(n,1) outputs"

    def apply(p, xx):
        out = xx.reshape(xx.shape[0], -1) @ p["w"] + p["b"][0]
        return out[:, None] if two_d else out

    feats = np.concatenate([np.ones((n, 1)), x.reshape(n, -1)], axis=1)  # leaves: b, then w
    feats_te = np.concatenate([np.ones((t, 1)), xt.reshape(t, -1)], axis=1)
    kw, centre = {}, np.concatenate([p1["b"], p1["w"]])
    if case == "params0":
        kw, centre = {"params0": p0}, np.concatenate([p0["b"], p0["w"]])
    elif case == "ignore":
        kw, centre = {"f0": "ignore"}, np.zeros(7)
    yy, yyt = (y[:, None], yt[:, None]) if two_d else (y, yt)
    res = ni.entk_influence(apply, p1, x, yy, xt, yyt, LAM, **kw)
    f_te, delta, infl, f_tr, loo_f = _ridge_loo(feats, y, feats_te, yt, LAM, centre)
    scale = np.abs(infl).max()
    assert res.influence.dtype == np.float64
    np.testing.assert_allclose(res.influence, infl, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(res.delta.reshape(n, t), delta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.f_test.reshape(t), f_te, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.f_train.reshape(n), f_tr, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.loo_f_train.reshape(n), loo_f, rtol=0, atol=1e-10)
    assert res.y_test.shape == yyt.shape and res.f_test.shape == yyt.shape
    np.testing.assert_array_equal(res.y_test, yyt)


def _sphere(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_deep_net_at_init_equals_structured_kernel_route():
    """At ``W(0)`` of a symmetric-pair net ``f_0 = 0``: subtracting it changes nothing, and the
    result is ``influence_from_kernels`` on the library's structured eNTK."""
    rng = np.random.default_rng(2)
    x, xt = _sphere(rng, 12, 8), _sphere(rng, 5, 8)
    y, yt = np.tanh(x @ rng.normal(size=8)), np.tanh(xt @ rng.normal(size=8))
    net = ni.nets.functional(deep.mlp(8, 32, 2))
    res = ni.entk_influence(net.apply, net.theta0, x, y, xt, yt, LAM)
    ign = ni.entk_influence(net.apply, net.theta0, x, y, xt, yt, LAM, f0="ignore")
    ref = ni.influence.influence_from_kernels(np.asarray(ni.nets.entk(net, x), np.float64),
                                    np.asarray(ni.nets.entk(net, x, xt), np.float64), y, yt, LAM)
    scale = np.abs(ref.influence).max()
    for r in (res, ign):
        np.testing.assert_allclose(r.influence, ref.influence, rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(r.f_test, ref.f_test, rtol=0, atol=1e-10)


def test_params0_reproduces_the_trained_model():
    """Linearised at the trained ``theta*`` with the ridge centred at ``W(0)``, the kernel fit's
    full-data predictions are the trained net's own outputs (``theta*`` is stationary)."""
    rng = np.random.default_rng(1)
    x, xt = rng.normal(size=(12, 6)), rng.normal(size=(5, 6))
    y, yt = np.tanh(x[:, 0]), np.tanh(xt[:, 0])
    net = ni.nets.functional(TanhNet(6, 32))
    tr = ni.training.train(net, x, y, LAM, x_test=xt)  # stops at prediction changes below 1e-9
    assert tr.converged
    res = ni.entk_influence(net.apply, tr.theta, x, y, xt, yt, LAM, params0=net.theta0)
    np.testing.assert_allclose(res.f_test, tr.f_test, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.f_train, tr.f_train, rtol=0, atol=1e-8)
    # centred at theta* instead, the fit takes one more step away from the trained outputs
    own = ni.entk_influence(net.apply, tr.theta, x, y, xt, yt, LAM)
    assert np.abs(own.f_test - tr.f_test).max() > 1e3 * np.abs(res.f_test - tr.f_test).max()


def _agreement(width, depth, n, k, seed):
    rng = np.random.default_rng(seed)
    x, xt = _sphere(rng, n, 8), _sphere(rng, 8, 8)
    w = rng.normal(size=8)
    y, yt = np.tanh(x @ w), np.tanh(xt @ w)
    net = ni.nets.functional(deep.mlp(8, width, depth))
    res = ni.entk_influence(net.apply, net.theta0, x, y, xt, yt, LAM)
    idx = np.arange(0, n, n // k)[:k]
    loo = ni.loo_retrain(net, x, y, xt, yt, LAM, train_index=idx, show_progress=False)
    a, b = res.influence[idx].ravel(), loo.influence.ravel()
    trained = ni.entk_influence(net.apply, loo.full.theta, x, y, xt, yt, LAM,
                                params0=net.theta0).influence[idx].ravel()
    return a, b, trained


def _check_agreement(a, b, min_corr):
    corr = np.corrcoef(a, b)[0, 1]
    slope = (a @ b) / (a @ a)  # least-squares slope of actual on predicted
    assert corr >= min_corr, corr
    assert 0.8 <= slope <= 1.25, slope


def test_agrees_with_leave_one_out_retraining_small():
    a, b, trained = _agreement(width=128, depth=2, n=12, k=3, seed=6)
    _check_agreement(a, b, 0.95)
    _check_agreement(trained, b, 0.95)


@pytest.mark.slow
def test_agrees_with_leave_one_out_retraining():
    a, b, trained = _agreement(width=512, depth=2, n=20, k=5, seed=0)
    _check_agreement(a, b, 0.95)
    _check_agreement(trained, b, 0.95)


def _bad_cases():
    apply = lambda p, x: x @ p  # noqa: E731
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), np.tanh(rng.normal(size=6))
    xt, yt = rng.normal(size=(2, 3)), np.zeros(2)
    p = rng.normal(size=3)
    nan_x = x.copy()
    nan_x[2, 1] = np.nan
    base = dict(apply_fn=apply, params=p, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return [
        (dict(base, lam=-1.0), "lam must be finite and >= 0"),
        (dict(base, x_train=nan_x), r"x_train contains NaN/Inf values, the first at index \[2, 1\]"),
        (dict(base, y_train=np.r_[y[:-1], np.inf]), "y_train contains"),
        (dict(base, y_train=y[:4]), "y_train has 4 rows but there are 6 points"),
        (dict(base, y_train=np.stack([y, y], 1)), "the model has one output"),
        (dict(base, x_test=rng.normal(size=(2, 4))), "per-example shape"),
        (dict(base, x_train=x[:, 0]), "must be \\(n, ...\\)"),
        (dict(base, apply_fn=lambda q, xx: jnp.stack([xx @ q] * 2, 1)), r"\(6, 2\)"),
        (dict(base, apply_fn=lambda q, xx: jnp.sum(xx @ q)), r"got \(\)"),
        (dict(base, apply_fn=lambda q, xx: xx @ q[:2]), "apply_fn\\(params, x_train\\) failed"),
        (dict(base, apply_fn="model"), "apply_fn must be a function"),
        (dict(base, params=None), "params is None"),
        (dict(base, params=np.arange(3)), "floating arrays only"),
        (dict(base, params=np.r_[np.nan, 1.0, 2.0]), "params contains NaN"),
        (dict(base, f0="zero"), "f0 must be 'subtract' or 'ignore'"),
        (dict(base, f0="ignore", params0=p), "Drop params0"),
        (dict(base, params0={"w": p}), "same structure"),
        (dict(base, implementation="structured"), "implementation must be"),
        (dict(base, block_size=0), "block_size must be"),
    ]


@pytest.mark.parametrize("kwargs,match", _bad_cases())
def test_bad_inputs_raise_input_error(kwargs, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ni.errors.TheoryAssumptionWarning)
        with pytest.raises(ni.InputError, match=match):
            ni.entk_influence(**kwargs)


def test_non_finite_model_raises_numerical_error():
    rng = np.random.default_rng(0)
    x, y = np.abs(rng.normal(size=(5, 3))), np.zeros(5)
    with pytest.raises(ni.NumericalError, match="NaN/Inf"):
        ni.entk_influence(lambda p, xx: jnp.sqrt(xx @ p), -np.ones(3), x, y, x[:2], y[:2])


def test_float32_model_warns():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), np.zeros(5)
    apply = lambda p, xx: (xx @ p).astype(jnp.float32)  # noqa: E731
    with pytest.warns(ni.errors.PrecisionWarning, match="float32"):
        res = ni.entk_influence(apply, np.ones(3), x, y, x[:2], y[:2])
    assert res.influence.dtype == np.float64
