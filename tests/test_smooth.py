"""Deep nets with smooth activations (erf, GELU): NT limit, Monte Carlo, taps, steps, relu default."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erf as jerf
from scipy.special import erf as np_erf

import ntk_influence as ni
from ntk_influence import nets as N
from ntk_influence.nets._activations import ACTIVATIONS, activation


def _unit(n, shape, seed=0, scale=1.0):
    x = np.random.default_rng(seed).normal(size=(n, int(np.prod(shape))))
    x *= scale / np.linalg.norm(x, axis=1, keepdims=True)
    return x.reshape(n, *shape)


def _perturbed(net, scale=0.3, seed=1):
    noise = np.random.default_rng(seed).normal(size=net.theta0.shape)
    with ni.precision(net.dtype):
        return net.theta0 + scale * jnp.asarray(noise, net.dtype)


# plain formulas, written here independently of the library (NumPy and JAX autodiff)
NP_PHI = {"erf": np_erf, "gelu": lambda u: u * (1 + np_erf(u / np.sqrt(2))) / 2}
NP_DPHI = {"erf": lambda u: 2 / np.sqrt(np.pi) * np.exp(-u * u),
           "gelu": lambda u: (1 + np_erf(u / np.sqrt(2))) / 2 + u * np.exp(-u * u / 2) / np.sqrt(2 * np.pi)}
JAX_PHI = {"erf": jerf, "gelu": lambda z: z * (1 + jerf(z / math.sqrt(2))) / 2}


# ------------------------------------------------------------------- activations themselves

@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_activation_values_and_closed_form_derivatives(name):
    """Values match the formulas; the closed-form derivative matches autodiff of the formula."""
    act = activation(name)
    with ni.precision("float64"):
        z = jnp.linspace(-6.0, 6.0, 241)
        np.testing.assert_allclose(np.asarray(act.fn(z)), NP_PHI[name](np.asarray(z)), rtol=1e-14,
                                   atol=1e-15)
        auto = jax.vmap(jax.grad(JAX_PHI[name]))(z)
        np.testing.assert_allclose(np.asarray(act.derivative(z)), np.asarray(auto), rtol=1e-13,
                                   atol=1e-15)
        # the net's activation differentiates through the closed form
        np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(act.fn))(z)), np.asarray(auto),
                                   rtol=1e-13, atol=1e-15)


def test_gelu_is_neural_tangents_exact_gelu():
    """NT's stax.Gelu() applies the exact erf form (not the tanh approximation); ours is the same."""
    st = ni.kernels.stax()
    with ni.precision("float64"):
        z = jnp.linspace(-4.0, 4.0, 81)
        nt = np.asarray(st.Gelu()[1]((), z))
        np.testing.assert_allclose(np.asarray(ACTIVATIONS["gelu"].fn(z)), nt, rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(nt, np.asarray(jax.nn.gelu(z, approximate=False)), rtol=1e-14,
                                   atol=1e-16)
        tanh_form = np.asarray(jax.nn.gelu(z, approximate=True))
        assert np.abs(nt - tanh_form).max() > 1e-5  # the two conventions do differ
        np.testing.assert_allclose(np.asarray(ACTIVATIONS["erf"].fn(z)),
                                   np.asarray(st.Erf()[1]((), z)), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("spec, match", [("mlp:2:tanh", "unknown activation 'tanh'"),
                                         ("cnn:1:", "unknown activation"),
                                         ("mlp:2:erf:x", "unknown architecture"),
                                         ("mlp:x:erf", "unknown architecture")])
def test_bad_activation_specs(spec, match):
    with pytest.raises(ni.InputError, match=match):
        ni.architecture(spec)


def test_activation_names():
    assert ni.architecture("MLP:2:ERF").name == "mlp:2:erf"
    assert ni.architecture("cnn:1:gelu").name == "cnn:1:gelu"
    net = ni.architecture("mlp:2:gelu").net(np.zeros((2, 3)), 4)
    assert net.description["arch"] == "mlp:2:gelu" and net.description["activation"] == "gelu"
    with pytest.raises(ni.InputError, match="unknown activation"):
        N.mlp(3, 4, 1, activation="sigmoid")


# ------------------------------------------------------- (a) finite nets approach NT's kernel

@pytest.mark.parametrize("arch, widths, seeds, tol", [
    ("mlp:1:erf", (64, 2048), 4, 0.04), ("mlp:2:gelu", (64, 1024), 4, 0.04),
    ("mlp:2:erf", (64, 1024), 3, 0.05)])
def test_entk_averaged_over_inits_approaches_neural_tangents(arch, widths, seeds, tol):
    """The eNTK at W(0), averaged over inits, approaches NT's kernel, faster at larger width."""
    fam = ni.architecture(arch)
    x = fam.prepare(_unit(6, (16,), 4, scale=2.0))
    kern = np.asarray(ni.kernels.kernel_matrix(fam.kernel(), x))
    err_one, err_mean = {}, {}
    for w in widths:
        ks = [np.asarray(N.entk(fam.net(x, w, seed=s), x)) for s in range(seeds)]
        err_one[w] = np.mean([N.relative_frobenius_error(k, kern) for k in ks])
        err_mean[w] = N.relative_frobenius_error(np.mean(ks, axis=0), kern)
    small, large = widths
    # ~ width^-1/2: 16-32x the width, at least 2.5x smaller
    assert err_one[large] < err_one[small] / 2.5, err_one
    assert err_mean[large] < tol, err_mean


# ------------------------------------------ (b) NT's limit kernel against a Monte Carlo of it

@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_limit_kernel_equals_monte_carlo_of_the_recursion(name):
    """One hidden layer with bias: NNGP ``W_o^2 E[phi phi'] + b^2`` and NTK
    ``NNGP + W_o^2 E[phi' phi''] K1`` with ``(u, u') ~ N(0, K1)``, sampled in float64."""
    d, ws, wo, bs = 4, 1.5, 1.2, 0.3
    x = _unit(5, (d,), 11, scale=3.0)  # pre-activation variance ~ 5: erf saturates
    model = N.mlp(d, 1, 1, W_std=ws, W_std_out=wo, b_std=bs, activation=name)
    ntk = np.asarray(ni.kernels.kernel_matrix(model.limit_kernel(), x))
    st = ni.kernels.stax()
    kernel_fn = st.serial(*[s for lay in model.layers for s in lay.stax()])[2]
    with ni.precision("float64"):
        nngp = np.asarray(kernel_fn(jnp.asarray(x), jnp.asarray(x), "nngp"))
    k1 = ws ** 2 / d * x @ x.T + bs ** 2
    u = np.random.default_rng(0).normal(size=(400_000, 5)) @ np.linalg.cholesky(k1).T
    phi, dphi = NP_PHI[name](u), NP_DPHI[name](u)
    s_pp = np.einsum("si,sj->sij", phi, phi)
    s_dd = np.einsum("si,sj->sij", dphi, dphi)
    mc_nngp = wo ** 2 * s_pp.mean(0) + bs ** 2
    mc_ntk = mc_nngp + wo ** 2 * s_dd.mean(0) * k1
    se_nngp = wo ** 2 * s_pp.std(0) / np.sqrt(len(u))
    se_ntk = np.sqrt(se_nngp ** 2 + (wo ** 2 * k1 * s_dd.std(0) / np.sqrt(len(u))) ** 2)
    assert np.all(np.abs(nngp - mc_nngp) < 5 * se_nngp + 1e-12), np.abs(nngp - mc_nngp) / se_nngp
    assert np.all(np.abs(ntk - mc_ntk) < 5 * se_ntk + 1e-12), np.abs(ntk - mc_ntk) / se_ntk
    assert se_ntk.max() < 2e-3 * np.abs(ntk).max()  # the check is a sharp one


# -------------------------------------------------- (c) structured eNTK == Jacobian contraction

MODELS = [("mlp-erf", lambda: N.mlp(5, 12, 2, b_std=0.3, seed=2, activation="erf"), (5,), "erf"),
          ("mlp-gelu", lambda: N.mlp(5, 12, 2, b_std=0.3, seed=2, activation="gelu"), (5,), "gelu"),
          ("cnn-erf", lambda: N.cnn((3, 3, 2), 4, 2, b_std=0.2, seed=3, activation="erf"),
           (3, 3, 2), "erf"),
          ("cnn-gelu", lambda: N.cnn((3, 3, 2), 4, 1, b_std=0.2, seed=3, activation="gelu"),
           (3, 3, 2), "gelu"),
          ("cnn-erf-flatten", lambda: N.cnn((3, 3, 2), 4, 2, b_std=0.2, seed=3, activation="erf",
                                            readout="flatten"), (3, 3, 2), "erf")]


def _reference_entk(model, x1, x2, name):
    """J(x1) J(x2)^T with jax.jacrev through the plain formula (no taps, no custom derivative)."""
    params = ([w[...] for w in model.weights], [b[...] for b in model.biases])

    def f(params, x):
        ws, bs = params

        def single(m):
            h, it = x, iter(bs)
            for i, lay in enumerate(model.layers):
                h = lay.inputs(h)
                b = next(it)[m] if lay.b_std is not None else None
                z = lay.affine(ws[i][m], b, h)
                h = JAX_PHI[name](z) if lay.activation is not None else z
            return h[:, 0]

        return (single(0) - single(1)) / math.sqrt(2.0)

    @jax.jit
    def kernel(params, x1, x2):
        def jac(x):
            leaves = jax.tree_util.tree_leaves(jax.jacrev(f)(params, x))
            return jnp.concatenate([a.reshape(x.shape[0], -1) for a in leaves], axis=1)

        return jac(x1) @ jac(x2).T

    return np.asarray(kernel(params, jnp.asarray(x1), jnp.asarray(x2)))


@pytest.mark.parametrize("label, make, shape, name", MODELS, ids=[m[0] for m in MODELS])
def test_structured_entk_equals_jacobian_contraction(label, make, shape, name):
    net = N.functional(make())
    x1, x2 = _unit(6, shape, 0, scale=2.0), _unit(3, shape, 1, scale=2.0)
    th = _perturbed(net)
    k = np.asarray(N.entk(net, x1, theta=th))
    kx = np.asarray(N.entk(net, x1, x2, theta=th))
    with ni.precision("float64"):
        ref = _reference_entk(net.model(th), x1, x1, name)
        refx = _reference_entk(net.model(th), x1, x2, name)
    assert k.dtype == np.float64
    scale = np.abs(ref).max()
    np.testing.assert_allclose(k, ref, rtol=1e-11, atol=1e-12 * scale)
    np.testing.assert_allclose(kx, refx, rtol=1e-11, atol=1e-12 * scale)


@pytest.mark.parametrize("label, make, shape, name", MODELS, ids=[m[0] for m in MODELS])
def test_symmetric_pair_gives_zero_initial_output(label, make, shape, name):
    net = N.functional(make())
    x = _unit(4, shape, 3, scale=2.0)
    assert np.all(N.initial_output(net, x) == 0.0)
    assert np.abs(N.initial_output(net, x)).max() == 0.0
    with ni.precision("float64"):
        assert np.abs(np.asarray(net.apply(_perturbed(net), jnp.asarray(x)))).max() > 1e-3


# ---------------------------------------------- (d) the taps' Gauss-Newton step == autodiff's

def test_tap_gauss_newton_step_follows_the_autodiff_step_on_a_smooth_net():
    net = N.functional(N.mlp(5, 8, 2, b_std=0.3, seed=4, activation="gelu"))
    generic = dataclasses.replace(net, gn_step=None)
    x, xt = _unit(12, (5,), 8, scale=2.0), _unit(3, (5,), 9, scale=2.0)
    y = np.sign(np.random.default_rng(8).normal(size=12))
    w = np.ones(12)
    w[3] = 0.0
    s = ni.SolverSettings(f_tol=1e-10, max_steps=8)
    a = ni.training.train(net, x, y, 0.3, x_test=xt, settings=s, weights=w, warn=False)
    b = ni.training.train(generic, x, y, 0.3, x_test=xt, settings=s, weights=w, warn=False)
    assert a.iterations == b.iterations and a.evaluations == b.evaluations
    assert a.loss < 0.5 * np.sum(w * y * y)
    np.testing.assert_allclose(np.asarray(a.theta), np.asarray(b.theta), atol=1e-10)
    np.testing.assert_allclose(a.f_test, b.f_test, atol=1e-11)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)


# ------------------------------------------------------ (e) ReLU is the default, bit for bit

@pytest.mark.parametrize("plain, explicit, x", [
    ("mlp:3", "mlp:3:relu", _unit(5, (6,), 2)), ("cnn:2", "cnn:2:relu", _unit(4, (9,), 2))])
def test_relu_spec_is_the_default_bit_for_bit(plain, explicit, x):
    a, b = ni.architecture(plain), ni.architecture(explicit)
    assert a.name == b.name == plain and a.image == b.image
    xa = a.prepare(x)
    na, nb = a.net(xa, 4, seed=1), b.net(xa, 4, seed=1)
    assert np.array_equal(np.asarray(na.theta0), np.asarray(nb.theta0))
    assert na.description == nb.description and "activation" not in na.description
    assert na.model().layers == nb.model().layers
    assert np.array_equal(np.asarray(N.entk(na, xa)), np.asarray(N.entk(nb, xa)))
    ka = np.asarray(ni.kernels.kernel_matrix(a.kernel(), xa))
    assert np.array_equal(ka, np.asarray(ni.kernels.kernel_matrix(b.kernel(), xa)))
    assert a.kernel().name == b.kernel().name


# -------------------------------------------- the final gradient relative to the ridge term

def _ratio(grad, lam, theta, theta0):
    return np.linalg.norm(grad) / max(np.linalg.norm(lam * (theta - theta0)), np.finfo(float).tiny)


RATIO_CASES = [("two-layer", lambda dt: ni.two_layer_net(4, 6, seed=1, param_dtype=dt), 0.2),
               ("mlp-gelu", lambda dt: N.functional(N.mlp(4, 5, 1, b_std=0.2, seed=1,
                                                             activation="gelu", param_dtype=dt)), 0.2),
               ("mlp-relu", lambda dt: N.functional(N.mlp(4, 5, 2, seed=1, param_dtype=dt)), 0.5)]


@pytest.mark.parametrize("label, make, lam", RATIO_CASES, ids=[c[0] for c in RATIO_CASES])
def test_ridge_relative_grad_norm_matches_autodiff_and_finite_differences(label, make, lam):
    x, y = _unit(7, (4,), 12), np.sign(np.random.default_rng(12).normal(size=7))
    w = np.ones(7)
    w[2] = 0.5
    net = make(np.float64)
    s = ni.SolverSettings(f_tol=1e-12, max_steps=3)  # stopped early: far from stationary
    res = ni.training.train(net, x, y, lam, settings=s, weights=w, warn=False)
    assert not res.converged and not res.settled  # stopped after 3 steps: neither
    th, th0 = np.asarray(res.theta), np.asarray(net.theta0)
    with ni.precision("float64"):
        xa, ya, wa = jnp.asarray(x), jnp.asarray(y), jnp.asarray(w)

        def obj(t):
            return ni.training.objective(net, t, xa, ya, lam, weights=wa)

        grad = np.asarray(jax.grad(obj)(jnp.asarray(th)))
        h = 1e-6
        eye = np.eye(th.size)
        fd = np.array([(float(obj(jnp.asarray(th + h * e))) - float(obj(jnp.asarray(th - h * e))))
                       / (2 * h) for e in eye])
    np.testing.assert_allclose(res.ridge_rel_grad_norm, _ratio(grad, lam, th, th0), rtol=1e-10)
    np.testing.assert_allclose(res.ridge_rel_grad_norm, _ratio(fd, lam, th, th0), rtol=1e-5)
    assert res.ridge_rel_grad_norm > 1e-3
    assert res.summary()["ridge_rel_grad_norm"] == res.ridge_rel_grad_norm


def test_ridge_relative_grad_norm_of_a_float32_net_is_taken_in_float64():
    """A float32 net's ratio is the float64 gradient at its (exactly cast) parameters."""
    x, y = _unit(6, (4,), 13), np.sign(np.random.default_rng(13).normal(size=6))
    n32 = N.functional(N.mlp(4, 5, 1, seed=2, activation="erf", param_dtype=np.float32))
    n64 = N.functional(N.mlp(4, 5, 1, seed=2, activation="erf", param_dtype=np.float64))
    with ni.precision("float64"):
        n64 = dataclasses.replace(n64, theta0=jnp.asarray(np.asarray(n32.theta0, np.float64)))
    res = ni.training.train(n32, x, y, 0.3, settings=ni.SolverSettings(max_steps=2), warn=False)
    assert res.theta.dtype == np.float32
    th = np.asarray(res.theta, np.float64)
    with ni.precision("float64"):
        grad = np.asarray(jax.grad(lambda t: ni.training.objective(
            n64, t, jnp.asarray(np.asarray(x, np.float32), jnp.float64), jnp.asarray(y), 0.3))(
            jnp.asarray(th)))
    ref = _ratio(grad, 0.3, th, np.asarray(n64.theta0))
    np.testing.assert_allclose(res.ridge_rel_grad_norm, ref, rtol=1e-10)


def test_ridge_relative_grad_norm_at_theta0_and_without_ridge_is_huge_not_nan():
    x, y = _unit(5, (3,), 14), np.ones(5)
    net = ni.two_layer_net(3, 4, seed=0)
    with ni.precision("float64"):
        xa, ya, w = jnp.asarray(x), jnp.asarray(y), jnp.ones(5)
        at_start = ni.training.ridge_relative_grad_norm(net, net.theta0, xa, ya, w, 0.1)
        no_ridge = ni.training.ridge_relative_grad_norm(net, _perturbed(net), xa, ya, w, 0.0)
    assert at_start > 1e100 and no_ridge > 1e100 and np.isfinite(at_start)
    r = ni.training.train(net, x, y, 0.0, warn=False,
                          settings=ni.SolverSettings(method="gd", max_steps=5))
    assert np.isfinite(r.ridge_rel_grad_norm) and r.ridge_rel_grad_norm > 1e100
