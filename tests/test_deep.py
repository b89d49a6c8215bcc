"""Deep MLPs and conv nets (NTK parameterisation, symmetric pair): eNTK, NT limit, training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_influence as ni
import ntk_influence.nets._deep as deep_impl
from ntk_influence import nets as D
from ntk_influence import nets as E
from ntk_influence import nets as N


def _unit(n, shape, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, int(np.prod(shape))))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.reshape(n, *shape)


def _perturbed(net, scale=0.3, seed=1):
    noise = np.random.default_rng(seed).normal(size=net.theta0.shape)
    with ni.precision(net.dtype):
        return net.theta0 + scale * jnp.asarray(noise, net.dtype)


MODELS = [("mlp", lambda: D.mlp(6, 24, 3, b_std=0.3, seed=2), (6,)),
          ("cnn", lambda: D.cnn((4, 5, 2), 6, 2, b_std=0.2, seed=3), (4, 5, 2)),
          ("cnn-flatten", lambda: D.cnn((4, 5, 2), 6, 2, b_std=0.2, seed=3, readout="flatten"),
           (4, 5, 2))]


@pytest.mark.parametrize("name, make, shape", MODELS, ids=[m[0] for m in MODELS])
def test_structured_entk_equals_jacobian_contraction(name, make, shape):
    """Layer-wise Grams of inputs and cotangents == J J^T from jax.jacrev, away from W(0)."""
    net = N.functional(make())
    x1, x2 = _unit(7, shape, 0), _unit(4, shape, 1)
    th = _perturbed(net)
    k = np.asarray(E.entk(net, x1, theta=th))
    ref = np.asarray(E.entk_jacobian(net, x1, theta=th))
    assert k.dtype == np.float64
    np.testing.assert_allclose(k, ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())
    kx = np.asarray(E.entk(net, x1, x2, theta=th))
    np.testing.assert_allclose(kx, np.asarray(E.entk_jacobian(net, x1, x2, theta=th)),
                               rtol=1e-11, atol=1e-12 * np.abs(ref).max())


def test_conv_gram_in_channel_blocks_is_exact(monkeypatch):
    """The per-example conv gradients summed over output-channel blocks give the same eNTK."""
    monkeypatch.setattr(deep_impl, "GRAD_BLOCK_BYTES", 2000)  # a block of one or two channels
    net = N.functional(D.cnn((4, 5, 2), 6, 2, b_std=0.2, seed=3))
    x = _unit(7, (4, 5, 2), 2)
    ref = np.asarray(E.entk_jacobian(net, x))
    np.testing.assert_allclose(np.asarray(E.entk(net, x)), ref, rtol=1e-11,
                               atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("name, make, shape", MODELS, ids=[m[0] for m in MODELS])
def test_tap_products_equal_autodiff_jvp_and_vjp(name, make, shape):
    """J v from layer taps and its transpose == jax.jvp / jax.vjp of the net, away from W(0)."""
    net = N.functional(make())
    x = _unit(7, shape, 4)
    th = _perturbed(net)
    rng = np.random.default_rng(5)
    with ni.precision("float64"):
        v = jnp.asarray(rng.normal(size=th.shape))
        u = jnp.asarray(rng.normal(size=7))
        xa = jnp.asarray(x)

        @jax.jit
        def products(th, v, u):
            f, h, d = net.model(th).taps(xa)
            jv = net.model(v).tap_jvp(h, d)
            jtv = jax.linear_transpose(lambda t: net.model(t).tap_jvp(h, d), th)(u)[0]
            return f, jv, jtv

        @jax.jit
        def reference(th, v, u):
            ref_f, ref_jv = jax.jvp(lambda t: net.apply(t, xa), (th,), (v,))
            return ref_f, ref_jv, jax.vjp(lambda t: net.apply(t, xa), th)[1](u)[0]

        f, jv, jtv = products(th, v, u)
        ref_f, ref_jv, ref_jtv = reference(th, v, u)
    np.testing.assert_allclose(np.asarray(f), np.asarray(ref_f), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(jv), np.asarray(ref_jv), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jtv), np.asarray(ref_jtv), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name, make, shape, newton_cg",
                         [(*MODELS[0], 0), (*MODELS[1], 2)], ids=["mlp-gn", "cnn-newton-cg"])
def test_tap_gauss_newton_step_follows_the_autodiff_step(name, make, shape, newton_cg):
    """The deep nets' own step (products from layer taps) and the generic autodiff step take
    the same iterates to rounding: same step count, line-search trials, loss and weights."""
    import dataclasses

    net = N.functional(make())
    generic = dataclasses.replace(net, gn_step=None)
    x, xt = _unit(12, shape, 8), _unit(3, shape, 9)
    y = np.sign(np.random.default_rng(8).normal(size=12))
    w = np.ones(12)
    w[3] = 0.0
    s = ni.SolverSettings(f_tol=1e-10, max_steps=15, newton_cg=newton_cg)
    a = ni.training.train(net, x, y, 0.3, x_test=xt, settings=s, weights=w, warn=False)
    b = ni.training.train(generic, x, y, 0.3, x_test=xt, settings=s, weights=w, warn=False)
    assert a.iterations == b.iterations and a.evaluations == b.evaluations
    assert a.loss < 0.5 * np.sum(w * y * y)  # it trained
    np.testing.assert_allclose(np.asarray(a.theta), np.asarray(b.theta), atol=1e-10)
    np.testing.assert_allclose(a.f_test, b.f_test, atol=1e-11)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_allclose(a.grad_norm, b.grad_norm, rtol=1e-8)


@pytest.mark.parametrize("name, make, shape", MODELS, ids=[m[0] for m in MODELS])
def test_pair_gives_exact_zero_output_and_each_half_is_one_net(name, make, shape):
    model = make()
    net = N.functional(model)
    x = _unit(5, shape)
    assert np.all(N.initial_output(net, x) == 0.0)
    # one half of the pair, written out in NumPy, is the stax network (NTK parameterisation)
    with ni.precision("float64"):
        ws = [np.asarray(w[...])[0] for w in model.weights]
        bs = [np.asarray(b[...])[0] for b in model.biases]
        h = jnp.asarray(x)
        for i, lay in enumerate(model.layers):
            h = lay.inputs(h)
            z = lay.affine(jnp.asarray(ws[i]), jnp.asarray(bs[i]), h)
            h = jax.nn.relu(z) if lay.activation == "relu" else z
        g = np.asarray(h[:, 0])
    if name == "mlp":  # dense layers by hand
        a = x
        for i, w in enumerate(ws):
            a = a @ w * (model.layers[i].W_std / np.sqrt(w.shape[0])) + model.layers[i].b_std * bs[i]
            a = np.maximum(a, 0) if i < len(ws) - 1 else a
        np.testing.assert_allclose(g, a[:, 0], rtol=1e-12)
    assert np.abs(g).max() > 1e-3  # each half is a real network; only the difference is zero


@pytest.mark.parametrize("readout", ["gap", "flatten"])
def test_one_half_of_a_conv_pair_is_neural_tangents_apply_fn(readout):
    """One network of the pair, run by NT's own ``apply_fn`` with the same weights: the conv
    scale ``W_std / sqrt(9 C_in)``, SAME padding, and the readout's pooling or flattening
    (``fan_in = H W C``) are NT's."""
    model = D.cnn((4, 5, 2), 6, 2, b_std=0.2, seed=3, readout=readout)
    net = N.functional(model)
    st = ni.kernels.stax()
    lay = model.layers
    pool = st.GlobalAvgPool() if readout == "gap" else st.Flatten()
    apply_fn = st.serial(st.Conv(6, (3, 3), padding="SAME", W_std=lay[0].W_std, b_std=0.2),
                         st.Relu(), st.Conv(6, (3, 3), padding="SAME", W_std=lay[1].W_std,
                                            b_std=0.2), st.Relu(), pool,
                         st.Dense(1, W_std=lay[2].W_std, b_std=0.2))[1]
    x = _unit(5, (4, 5, 2), 6)
    with ni.precision("float64"):
        pair = net.model(_perturbed(net))
        ws = [w[...][0] for w in pair.weights]
        bs = [b[...][0] for b in pair.biases]
        params = [(ws[0], bs[0]), (), (ws[1], bs[1]), (), (), (ws[2], bs[2])]
        g_nt = np.asarray(apply_fn(params, jnp.asarray(x)))[:, 0]
        for p in (*pair.weights, *pair.biases):  # silence the second network: f = g_1 / sqrt 2
            p[...] = p[...].at[1].set(0.0)
        g = np.sqrt(2.0) * np.asarray(pair(jnp.asarray(x)))
    assert ws[2].shape == ((6 if readout == "gap" else 4 * 5 * 6), 1)
    np.testing.assert_allclose(g, g_nt, rtol=1e-12, atol=1e-14)
    assert np.abs(g).max() > 1e-2


def test_pooling_washes_out_digits_and_flattening_keeps_them():
    """Why ``cnn:L:ACT:flatten`` exists: on 8x8 digits the pooled conv NTK is nearly constant
    (off-diagonal entries within 1% of the diagonal), the flattened one is not."""
    ds = ni.load_dataset("digits:3,8", n_train=30, n_test=1)
    ratio = {}
    for spec in ("cnn:2:erf", "cnn:2:erf:flatten"):
        fam = D.architecture(spec)
        k = np.asarray(ni.kernels.kernel_matrix(fam.kernel(), fam.prepare(ds.x_train)))
        d = np.sqrt(np.diag(k))
        c = k / np.outer(d, d)
        ratio[spec] = c[~np.eye(len(c), dtype=bool)].mean()
    assert ratio["cnn:2:erf"] > 0.99 and ratio["cnn:2:erf:flatten"] < 0.9, ratio


def test_readout_specs_and_names():
    assert D.architecture("cnn:2:erf:flatten").name == "cnn:2:erf:flatten"
    assert D.architecture("cnn:2:flatten").name == "cnn:2:relu:flatten"
    assert D.architecture("cnn:2:erf:gap").name == "cnn:2:erf"
    assert D.architecture("CNN:1:GAP").name == "cnn:1"
    fam = D.architecture("cnn:1:gelu:flatten")
    assert fam.smooth and fam.image
    net = fam.net(np.zeros((2, 4, 4, 1)), 3)
    assert net.description["readout"] == "flatten" and net.description["activation"] == "gelu"
    assert "readout" not in D.architecture("cnn:1").net(np.zeros((2, 4, 4, 1)), 3).description
    assert net.n_params == 2 * (9 * 3 + 4 * 4 * 3)  # conv 3x3x1x3, readout over 16 positions
    for bad in ("mlp:2:flatten", "mlp:2:erf:flatten", "cnn:2:erf:max", "cnn:2:erf:flatten:gap"):
        with pytest.raises(ni.InputError, match="unknown"):
            D.architecture(bad)
    with pytest.raises(ni.InputError, match="readout must be one of"):
        D.cnn((4, 4, 1), 3, 1, readout="max")


@pytest.mark.parametrize("arch, width, seeds, tol", [
    ("mlp:2", 1024, 6, 0.05), ("cnn:1", 128, 6, 0.04), ("cnn:1:relu:flatten", 128, 6, 0.04),
    pytest.param("cnn:2", 512, 4, 0.03, marks=pytest.mark.slow)])
def test_entk_averaged_over_inits_approaches_neural_tangents(arch, width, seeds, tol):
    """The eNTK at W(0), averaged over inits, is NT's kernel_fn (its infinite-width limit)."""
    fam = D.architecture(arch)
    x = fam.prepare(_unit(6, (16,), 4))
    kern = np.asarray(ni.kernels.kernel_matrix(fam.kernel(), x))
    ks = [np.asarray(E.entk(fam.net(x, width, seed=s), x)) for s in range(seeds)]
    err_mean = ni.nets.relative_frobenius_error(np.mean(ks, axis=0), kern)
    err_one = np.mean([ni.nets.relative_frobenius_error(k, kern) for k in ks])
    assert err_mean < tol, err_mean
    assert err_mean < err_one  # averaging removes the finite-width fluctuation


def test_entk_error_falls_with_width():
    fam = D.architecture("mlp:2")
    x = fam.prepare(_unit(8, (10,), 5))
    kern = np.asarray(ni.kernels.kernel_matrix(fam.kernel(), x))
    err = {w: np.mean([ni.nets.relative_frobenius_error(np.asarray(E.entk(fam.net(x, w, seed=s), x)),
                                                   kern) for s in range(3)])
           for w in (64, 1024)}
    # about 1/sqrt(width): 16x the width, ~4x smaller (at least 2.5x)
    assert err[1024] < err[64] / 2.5, err


def test_gauss_newton_minimiser_of_a_deep_net_is_near_the_kernel_regime_and_settled():
    """A deep net trained by the generic step: its loss is what its own linearisation at W(0)
    predicts (kernel regime), and continued descent (annealed GD) barely moves it: the point is
    a minimiser up to the ReLU kinks, where the gradient norm plateaus (DESIGN item 5)."""
    x, y = _unit(30, (8,), 6), np.sign(np.random.default_rng(6).normal(size=30))
    net = N.functional(D.mlp(8, 256, 2, seed=1))
    res = ni.training.train(net, x, y, 0.1, settings=ni.SolverSettings(f_tol=1e-9, max_steps=400))
    assert res.settled and not res.stalled
    k0 = np.asarray(E.entk(net, x))
    alpha = np.linalg.solve(k0 + 0.1 * np.eye(30), y)
    lin_loss = 0.5 * np.sum((k0 @ alpha - y) ** 2) + 0.05 * alpha @ k0 @ alpha
    with ni.precision("float64"):
        loss = float(ni.training.objective(net, res.theta, jnp.asarray(x), jnp.asarray(y), 0.1))
    assert loss == pytest.approx(res.loss, rel=1e-10)
    assert abs(loss - lin_loss) / lin_loss < 0.05
    more = ni.training.train(net, x, y, 0.1, theta_init=res.theta, warn=False,
                        settings=ni.SolverSettings(method="gd", anneal=True, max_steps=3000))
    assert more.loss <= res.loss * (1 + 1e-12)
    assert (res.loss - more.loss) / res.loss < 1e-4
    assert np.abs(more.f_train - res.f_train).max() < 1e-3


def test_retraining_driver_runs_deep_nets_like_direct_training():
    """Leave-one-out of a conv net through the vmapped driver == train(weights=mask)."""
    fam = D.architecture("cnn:1")
    x = fam.prepare(_unit(16, (9,), 7))
    y = np.sign(np.random.default_rng(7).normal(size=16))
    xt = fam.prepare(_unit(3, (9,), 8))
    yt = np.ones(3)
    net = fam.net(x, 16, seed=0)
    s = ni.SolverSettings(f_tol=1e-10, max_steps=400)
    ret = ni.retrain_without(net, x, y, xt, yt, 0.1, remove=[[2], [5, 9]], settings=s,
                             chunk_size=2, show_progress=False)
    for j, rem in enumerate([[2], [5, 9]]):
        w = np.ones(16)
        w[rem] = 0
        direct = ni.training.train(net, x, y, 0.1, x_test=xt, settings=s, weights=w)
        np.testing.assert_allclose(ret.f_retrain_test[j], direct.f_test, atol=1e-8)


def test_compare_width_runs_any_architecture(digits38):
    ds = digits38
    c = ni.compare_width(ds.x_train[:40], ds.y_train[:40], ds.x_test, ds.y_test, 2048, 0.1,
                         arch="mlp:1", n_points=5, test_points=4, show_progress=False,
                         rel_tol=0.005)
    assert c.info["arch"] == "mlp:1" and c.settings["arch"] == "mlp:1"
    assert c.info["f0_max_abs"] == 0.0
    assert c.info["entk0_kernel_rel_diff"] < 0.1
    assert c.stats["ntk"]["pearson"] > 0.95, c.stats["ntk"]


@pytest.mark.parametrize("spec, match", [("mlp", "mlp:L"), ("mlp:0", "L >= 1"),
                                         ("resnet:3", "unknown architecture"), ("cnn:x", "cnn:L")])
def test_bad_architecture(spec, match):
    with pytest.raises(ni.InputError, match=match):
        D.architecture(spec)


def test_bad_deep_inputs():
    with pytest.raises(ni.InputError, match="square"):
        D.architecture("cnn:2").prepare(np.ones((3, 10)))
    with pytest.raises(ni.InputError, match="image shape"):
        D.cnn((8, 8), 4)
    with pytest.raises(ni.InputError, match="width"):
        D.mlp(4, 0)
    net = N.functional(D.cnn((4, 4, 1), 4, 1))
    with pytest.raises(ni.InputError, match=r"reshape the inputs"):
        ni.training.train(net, np.ones((5, 16)), np.ones(5), 0.1)
    with pytest.raises(ni.InputError, match=r"\(n, 4, 4, 1\)"):
        E.entk(net, np.ones((5, 4, 4, 2)))


def test_cli_compare_arch_and_overlay(tmp_path):
    import json

    from ntk_influence.cli import main

    base = ["compare", "--n-train", "16", "--n-test", "3", "--n-points", "3", "--test-points",
            "3", "--rel-tol", "0.02", "--warm-start", "--quiet"]
    c = ["--arch", "cnn:1", "--widths", "4", "--out", str(tmp_path / "c")]
    assert main([*base, *c]) == 0
    # a second run reuses the stored width and draws the first run's curve with its own
    assert main([*base, *c, "--resume", "--overlay", str(tmp_path / "c")]) == 0
    d = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert d["arch"] == "cnn:1" and d["widths"][0]["arch"] == "cnn:1"
    assert d["widths"][0]["n_params"] == 2 * (9 * 4 + 4)  # conv 3x3x1x4 and readout, a pair
    assert 0 < d["widths"][0]["entk0_kernel_rel_diff"] < 1
    assert (tmp_path / "c" / "width_curves.png").stat().st_size > 0
    assert main([*base, "--arch", "resnet:2", "--widths", "4", "--out",
                 str(tmp_path / "bad")]) == 2
    assert main([*base, "--arch", "mlp:1", "--widths", "4", "--out", str(tmp_path / "bad2"),
                 "--overlay", str(tmp_path / "nowhere")]) == 2


def test_cli_compare_newton_cg_is_recorded_and_checked(tmp_path):
    import json

    from ntk_influence.cli import main

    base = ["compare", "--n-train", "16", "--n-test", "3", "--n-points", "3", "--rel-tol",
            "0.02", "--warm-start", "--quiet", "--arch", "mlp:1", "--widths", "8"]
    assert main([*base, "--newton-cg", "3", "--out", str(tmp_path / "c")]) == 0
    text = (tmp_path / "c" / "compare.json").read_text()
    assert '"newton_cg": 3' in text, "the truncated-Newton setting is not in the results"
    json.loads(text)
    assert main([*base, "--solver", "gd", "--newton-cg", "3", "--out",
                 str(tmp_path / "bad")]) == 2


def test_cli_compare_resume_adds_and_drops_widths_but_refuses_other_settings(tmp_path):
    """Each width_W.json checks its own settings, so a --resume may change the widths; a changed
    content setting (lam) is still refused."""
    import json

    from ntk_influence.cli import main

    out = tmp_path / "w"
    base = ["compare", "--arch", "mlp:1", "--n-train", "12", "--n-test", "3", "--n-points", "2",
            "--test-points", "2", "--rel-tol", "0.02", "--quiet", "--out", str(out)]
    assert main([*base, "--widths", "8"]) == 0
    first = (out / "width_8.json").read_bytes()
    assert main([*base, "--widths", "8", "16", "--resume"]) == 0
    assert (out / "width_8.json").read_bytes() == first  # reused, not recomputed
    d = json.loads((out / "compare.json").read_text())
    assert [r["width"] for r in d["widths"]] == [8, 16]
    assert main([*base, "--widths", "16", "--resume"]) == 0
    assert [r["width"] for r in json.loads((out / "compare.json").read_text())["widths"]] == [16]
    assert main([*base, "--widths", "16", "--resume", "--lam", "0.2"]) == 2
