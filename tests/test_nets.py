"""Flax models of eq. (1) and the deeper MLP; the empirical NTK against independent references."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import closed_form_kernel
from flax import nnx

import ntk_influence as ni
from ntk_influence import nets as E
from ntk_influence import nets as N


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_symmetric_init_gives_exact_zero_output():
    x = _unit(9, 6)
    net = N.two_layer_net(6, 64, symmetric=True, seed=3)
    assert np.all(N.initial_output(net, x) == 0.0)
    std = N.two_layer_net(6, 64, symmetric=False, seed=3)
    assert np.abs(N.initial_output(std, x)).max() > 1e-3


def test_readout_is_fixed_and_model_matches_functional():
    model = N.TwoLayerReLU(5, 32, kappa=0.7, seed=1)
    net = N.functional(model)
    assert net.n_params == 32 * 5  # a is not a trainable parameter
    a = np.asarray(model.a[...])
    assert set(np.unique(a)) <= {-1.0, 1.0}
    x = _unit(7, 5)
    w = np.asarray(model.w[...])
    ref = np.maximum(x @ w.T, 0) @ a / np.sqrt(32)  # eq. (1) in NumPy
    with ni.precision("float64"):  # calling the model directly computes in the caller's mode
        np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), ref, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(net.apply(net.theta0, jnp.asarray(x))), ref,
                                   rtol=1e-12)
    np.testing.assert_allclose(np.std(w), 0.7, rtol=0.15)


def test_param_dtype_float32():
    net = N.two_layer_net(4, 16, param_dtype=np.float32)
    assert net.dtype == np.float32
    assert N.initial_output(net, _unit(3, 4)).dtype == np.float32


@pytest.mark.parametrize("kwargs, match", [
    ({"width": 0}, "width"), ({"width": 2.5}, "width"), ({"kappa": 0.0}, "kappa"),
    ({"kappa": -1.0}, "kappa"), ({"width": 7, "symmetric": True}, "even"),
    ({"param_dtype": np.int32}, "param_dtype")])
def test_bad_model_settings(kwargs, match):
    args = {"width": 8, **kwargs}
    with pytest.raises(ni.InputError, match=match):
        N.two_layer_net(4, args.pop("width"), **args)


def test_mlp_bad_depth():
    with pytest.raises(ni.InputError, match="depth"):
        N.mlp(4, 8, depth=0)


def test_entk_structured_equals_contraction_and_brute_force():
    x1, x2 = _unit(6, 5, 1), _unit(4, 5, 2)
    net = N.two_layer_net(5, 48, seed=2)
    with ni.precision("float64"):  # the brute-force reference, in float64
        theta = net.theta0 + 0.1 * jax.random.normal(jax.random.PRNGKey(1), net.theta0.shape,
                                                     jnp.float64)
        j1 = np.asarray(jax.jacobian(lambda t: net.apply(t, jnp.asarray(x1)))(theta))
        j2 = np.asarray(jax.jacobian(lambda t: net.apply(t, jnp.asarray(x2)))(theta))
    ks = E.entk(net, x1, x2, theta, method="structured")
    kj = E.entk(net, x1, x2, theta, method="jacobian")
    assert ks.dtype == kj.dtype == np.float64
    np.testing.assert_allclose(ks, j1 @ j2.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kj, j1 @ j2.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(E.entk_jacobian(net, x1, block_size=2, theta=theta),
                               j1 @ j1.T, rtol=1e-12, atol=1e-14)


def test_entk_mlp_equals_brute_force():
    x = _unit(5, 4)
    net = N.functional(N.mlp(4, 16, depth=2, seed=0))
    with ni.precision("float64"):
        jac = np.asarray(jax.jacobian(lambda t: net.apply(t, jnp.asarray(x)))(net.theta0))
    np.testing.assert_allclose(E.entk(net, x), jac @ jac.T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(E.entk(net, x, method="structured"), jac @ jac.T, rtol=1e-12,
                               atol=1e-13)


def _entk_error(width, x, seeds):
    ref = closed_form_kernel(x, x)
    return np.mean([E.relative_frobenius_error(E.entk(N.two_layer_net(x.shape[1], width,
                                                                      seed=s), x), ref)
                    for s in seeds])


def test_entk_approaches_analytic_kernel_with_width():
    x = _unit(6, 8)
    e_small, e_big = _entk_error(2**10, x, range(4)), _entk_error(2**14, x, range(4))
    # m^-1/2: a 16x wider net is about 4x closer.
    assert 2.0 < e_small / e_big < 8.0
    assert e_big < 0.03


@pytest.mark.slow
def test_entk_error_rate_over_widths():
    x = _unit(10, 16)
    widths = 2 ** np.arange(10, 17)
    errs = [_entk_error(int(m), x, range(3)) for m in widths]
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.65 < slope < -0.35
    assert all(a > b for a, b in zip(errs[::2], errs[2::2], strict=False))


def test_mlp_entk_approaches_nt_kernel():
    x = _unit(5, 6)
    ref = np.asarray(ni.kernels.kernel_matrix(ni.nets.mlp(1, 1, 2).limit_kernel(), x))
    errs = [np.mean([E.relative_frobenius_error(
        E.entk(N.functional(N.mlp(6, m, depth=2, seed=s)), x), ref) for s in range(2)])
        for m in (64, 1024)]
    assert errs[1] < errs[0] / 2
    assert errs[1] < 0.1


def test_two_layer_jacobian_columns_equal_jacrev_across_neuron_boundaries():
    """The closed-form columns of eq. (1) against ``jax.jacrev``, away from ``W(0)``, for column
    ranges that start and stop inside a neuron's block of ``d`` weights."""
    net = N.two_layer_net(5, 16, symmetric=True, seed=2)
    assert net.cols_fn is not None
    with ni.precision("float64"):  # flat-parameter calls compute in the caller's mode
        theta = net.theta0 + 0.3 * jax.random.normal(jax.random.PRNGKey(1), net.theta0.shape,
                                                     net.dtype)
        xa = jnp.asarray(_unit(9, 5), net.dtype)
        full = np.asarray(jax.jacrev(lambda t: net.apply(t, xa))(theta))
        assert full.dtype == np.float64 and np.abs(full).max() > 0.1
        for start, stop in [(0, 80), (3, 17), (12, 13), (41, 80)]:
            got = np.asarray(net.jacobian_columns(theta, xa, start, stop))
            np.testing.assert_allclose(got, full[:, start:stop], rtol=0, atol=1e-14)


def test_reseeded_is_the_same_model_from_another_seed():
    """``reseeded(s)`` equals building the model with seed ``s`` (bit-exact), for every class."""
    x = _unit(4, 6)
    pairs = [(N.two_layer_net(6, 32, kappa=0.5, symmetric=True, seed=1),
              lambda s: N.two_layer_net(6, 32, kappa=0.5, symmetric=True, seed=s)),
             (ni.nets.functional(N.mlp(6, 16, 2, seed=1)),
              lambda s: ni.nets.functional(N.mlp(6, 16, 2, seed=s)))]
    for net, build in pairs:
        other = net.reseeded(7)
        ref = build(7)
        np.testing.assert_array_equal(np.asarray(other.theta0), np.asarray(ref.theta0))
        assert not np.array_equal(np.asarray(other.theta0), np.asarray(net.theta0))
        assert other.description == ref.description
        with ni.precision("float64"):
            np.testing.assert_array_equal(np.asarray(other.apply(other.theta0, jnp.asarray(x))),
                                          np.asarray(ref.apply(ref.theta0, jnp.asarray(x))))


def test_reseeded_without_the_hook_says_how_to_fix_it():
    from flax import nnx

    class Plain(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones((3,)))

        def __call__(self, x):
            return x @ self.w[...]

    with pytest.raises(ni.InputError, match="reseeded"):
        ni.nets.functional(Plain()).reseeded(1)


def _program_sizes(net):
    """Compiled-program cache sizes of the programs a net owns."""
    return {k: v._cache_size() for k, v in net._programs.items() if hasattr(v, "_cache_size")}


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_entk_programs_live_on_the_net_and_compile_once(method):
    """A second eNTK call with the same shapes reuses the net's compiled program, and the
    program does not keep the net alive once it is dropped."""
    import gc
    import weakref

    net = N.two_layer_net(4, 8, seed=0)
    x = _unit(5, 4)
    first = np.asarray(E.entk(net, x, method=method))
    sizes = _program_sizes(net)
    assert sizes and all(v == 1 for v in sizes.values())
    np.testing.assert_array_equal(np.asarray(E.entk(net, x, method=method)), first)
    assert _program_sizes(net) == sizes
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None


def test_model_protocol_hooks_are_recorded():
    """The hooks a model supplies are found through their protocols; a plain model has none."""
    two = N.TwoLayerReLU(3, 4)
    assert isinstance(two, N.ModelProtocol) and isinstance(two, N.EntkGramHook)
    assert isinstance(two, N.JacobianChunkHook) and isinstance(two, N.ExactGaussNewtonHook)
    net = N.functional(two)
    assert net.kind == "two_layer" and net.exact_gauss_newton and net.closed_form_jacobian
    assert net.gn_step is N.TwoLayerReLU.gauss_newton_step

    class Plain(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones((3,), jnp.float32))

        def __call__(self, x):
            return x @ self.w[...]

    plain = N.functional(Plain())
    assert not isinstance(Plain(), N.EntkGramHook)
    assert plain.kind == "Plain" and plain.gram_fn is None and plain.gn_step is None
    assert not plain.exact_gauss_newton and not plain.closed_form_jacobian


def test_jacobian_chunk_matches_columns_from_a_traced_start():
    """The closed-form chunk of eq. (1) equals the Jacobian's columns, zero past ``P``, and the
    fallback for nets without the hook gives the same."""
    net = N.two_layer_net(5, 6, seed=3)
    generic = dataclasses.replace(net, chunk_fn=None)
    with ni.precision("float64"):
        xa = jnp.asarray(_unit(4, 5), net.dtype)
        full = np.asarray(net.jacobian_columns(net.theta0, xa, 0, net.n_params))
        for start in (0, 7, 25):
            want = np.zeros((4, 9))
            got_cols = full[:, start:start + 9]
            want[:, :got_cols.shape[1]] = got_cols
            for n_ in (net, generic):
                run = jax.jit(lambda s, n_=n_: n_.jacobian_chunk(n_.theta0, xa, s, 9))
                np.testing.assert_allclose(np.asarray(run(jnp.asarray(start))), want,
                                           rtol=1e-12, atol=1e-14)
