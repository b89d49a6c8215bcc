"""Data cleaning: the exact greedy removal path against brute-force dense refits, each ranking
against the scores it comes from, the retrained figures against direct training, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import attribution as attr
from ntk_influence.errors import InputError

LAM = 0.1


def eq4(a, b):
    g = np.clip(a @ b.T, -1.0, 1.0)
    return g * (np.pi - np.arccos(g)) / (2 * np.pi)


def test_greedy_removal_path_is_the_brute_force_greedy_path():
    ds = ni.load_dataset("digits:3,8", n_train=30, n_test=10, seed=3)
    x, y, xv, yv = ds.x_train, ds.y_train.copy(), ds.x_test, ds.y_test
    y[:4] = -y[:4]  # four wrong labels
    k, kv = eq4(x, x), eq4(x, xv)
    res = ni.influence.influence_from_kernels(k, kv, y, yv, LAM)

    def val_loss(removed, cols):
        s = np.setdiff1d(np.arange(30), removed)
        f = kv[s].T @ np.linalg.solve(k[np.ix_(s, s)] + LAM * np.eye(s.size), y[s])
        return 0.5 * np.mean((f[cols] - yv[cols]) ** 2)

    fit, held = np.arange(6), np.arange(6, 10)
    order, fit_l, held_l = attr.greedy_removal_path(res, yv, 5, fit=fit)
    removed: list[int] = []
    for step in range(5):
        cand = [c for c in range(30) if c not in removed]
        removed.append(cand[int(np.argmin([val_loss([*removed, c], fit) for c in cand]))])
        assert fit_l[step + 1] == pytest.approx(val_loss(removed, fit), abs=1e-12)
        assert held_l[step + 1] == pytest.approx(val_loss(removed, held), abs=1e-12)
    np.testing.assert_array_equal(order, removed)
    assert np.all(np.diff(fit_l) < 0)  # the fitted loss falls at every step
    assert fit_l[0] == pytest.approx(val_loss([], fit), abs=1e-12)
    _, _, none_held = attr.greedy_removal_path(res, yv, 1)
    assert np.isnan(none_held).all()


def test_clean_orders_figures_and_choice_of_k():
    ds = ni.load_dataset("digits:3,8", n_train=50, n_test=16, seed=0)
    x, y, xv, yv = ds.x_train[:40], ds.y_train[:40], ds.x_train[40:], ds.y_train[40:]
    s = ni.SolverSettings(f_tol=1e-8, max_steps=400)
    r = attr.clean(x, y, xv, yv, ds.x_test, ds.y_test, noise=0.2, width=64, max_fraction=0.3,
                   grid=3, methods=("ntk", "ihvp", "loss", "random"), settings=s,
                   show_progress=False)
    assert set(r.orders) == {"ntk_refit", "ntk", "ihvp", "loss", "random"}
    assert r.noisy_mask.sum() == 8 and r.info["max_k"] == 12
    assert r.k_star == int(np.argmin(r.cv_val_losses)) and r.k_star in r.ks
    assert r.ks[0] == 0 and r.ks[-1] == 12
    # the rankings come from the scores on the validation set of the net trained on noisy labels
    y_noisy, _ = ni.data.flip_labels(y, 0.2, seed=0)
    net = ni.two_layer_net(64, 64, symmetric=True, seed=0)
    full = ni.training.train(net, x, y_noisy, LAM, x_test=np.concatenate([xv, ds.x_test]),
                             settings=s)
    scores, _, _ = attr.method_scores(net, full, x, y_noisy, xv, yv, LAM, methods=("ntk",))
    np.testing.assert_array_equal(r.orders["ntk"], np.argsort(scores["ntk"].sum(1),
                                                              kind="stable")[:12])
    loss = (np.asarray(full.f_train) - y_noisy) ** 2
    assert loss[r.orders["loss"][0]] == pytest.approx(loss.max())
    # the figures at the largest k are those of the net trained without the points
    kk = int(r.ks[-1])
    keep = np.ones(40)
    keep[r.orders["ihvp"][:kk]] = 0
    direct = ni.training.train(net, x, y_noisy, LAM, x_test=ds.x_test, weights=keep, settings=s)
    f = np.asarray(direct.f_test)
    assert r.test_loss["ihvp"][-1] == pytest.approx(0.5 * np.mean((f - ds.y_test) ** 2),
                                                    abs=1e-7)
    assert r.test_acc["ihvp"][-1] == pytest.approx(np.mean(np.sign(f) == ds.y_test))
    assert r.precision["ihvp"][-1] == pytest.approx(r.noisy_mask[r.orders["ihvp"][:kk]].mean())
    for name in r.orders:  # k = 0 is the net trained on every point
        assert r.test_loss[name][0] == r.summary[name]["test_loss_before"]
    with pytest.raises(InputError, match="unknown methods"):
        attr.clean(x, y, xv, yv, ds.x_test, ds.y_test, methods=("magic",))
    with pytest.raises(InputError, match="4 validation points"):
        attr.clean(x, y, xv[:3], yv[:3], ds.x_test, ds.y_test)


def test_cli_clean_writes_its_files(tmp_path):
    from ntk_influence.cli import main

    out = tmp_path / "c"
    argv = ["clean", "--n-train", "30", "--n-val", "10", "--n-test", "8", "--width", "32",
            "--grid", "2", "--trak-ensemble", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    j = ni.io.load_json(out / "clean.json")
    assert set(j["methods"]) == set(attr.CLEAN_METHODS)
    assert j["k_star"] in j["ks"] and len(j["cv_val_losses"]) == 13  # 0.4 * 30 + 1
    z = ni.io.load_npz(out / "clean.npz")
    assert z["noisy_mask"].sum() == 6 and z["order_ntk_refit"].shape == (12,)
    assert (out / "clean.png").stat().st_size > 0


def test_summarise_trials_by_hand():
    def trial(acc_before, accs, losses, noisy):
        return {m: {"test_acc_before": acc_before, "test_acc_after": a, "test_loss_before": 0.2,
                    "test_loss_after": lo, "noisy_removed": k, "val_loss_after": 0.0,
                    "seconds_ranking": 0.0}
                for m, a, lo, k in zip(("ntk_refit", "trak", "loss"), accs, losses, noisy)}

    t = [trial(0.90, (0.95, 0.94, 0.95), (0.10, 0.12, 0.11), (5, 4, 3)),
         trial(0.80, (0.90, 0.92, 0.85), (0.13, 0.12, 0.15), (6, 6, 2)),
         trial(0.85, (0.93, 0.90, 0.90), (0.09, 0.10, 0.12), (4, 5, 4))]
    s = attr.summarise_trials(t)
    assert s["trials"] == 3
    gains = np.array([0.05, 0.10, 0.08])
    m = s["methods"]["ntk_refit"]
    assert m["test_acc_gain_mean"] == pytest.approx(gains.mean(), abs=1e-15)
    assert m["test_acc_gain_sem"] == pytest.approx(np.sqrt(np.sum((gains - gains.mean()) ** 2) / 2 / 3))
    assert s["methods"]["trak"]["noisy_removed_mean"] == pytest.approx(5.0)
    assert s["methods"]["loss"]["test_loss_after_mean"] == pytest.approx((0.11 + 0.15 + 0.12) / 3)
    v = s["exact_vs"]["trak"]
    assert (v["acc_wins"], v["acc_ties"], v["acc_losses"]) == (2, 0, 1)
    assert v["loss_diff_mean"] == pytest.approx((-0.02 + 0.01 - 0.01) / 3)
    w = s["exact_vs"]["loss"]
    assert (w["acc_wins"], w["acc_ties"], w["acc_losses"]) == (2, 1, 0)
    assert "ntk_refit" not in s["exact_vs"]
    one = attr.summarise_trials(t[:1])
    assert np.isnan(one["methods"]["trak"]["test_acc_gain_sem"])
    with pytest.raises(InputError, match="same methods"):
        attr.summarise_trials([t[0], {k: v for k, v in t[1].items() if k != "loss"}])
    with pytest.raises(InputError, match="no cleaning trials"):
        attr.summarise_trials([])


def test_cli_clean_trials_pool_independent_runs_and_resume(tmp_path, capsys):
    """Each extra trial is clean() on its own split and flips (seed + r), retrained at k* only;
    clean.json pools them with summarise_trials, and --resume reuses finished trials."""
    from ntk_influence.cli import main

    out = tmp_path / "t"
    argv = ["clean", "--n-train", "24", "--n-val", "8", "--n-test", "8", "--width", "32",
            "--grid", "2", "--methods", "ntk_refit", "ntk", "loss", "--trials", "2",
            "--seed", "3", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    j = ni.io.load_json(out / "clean.json")
    extra = ni.io.load_json(out / "trials" / "trial_1.json")
    assert j["trials"]["extra"] == [extra] and extra["seed"] == 4
    ds = ni.load_dataset("digits:3,8", n_train=32, n_test=8, seed=3)
    perm = np.random.default_rng([4, 97]).permutation(32)
    tr, va = perm[:24], perm[24:]
    direct = attr.clean(ds.x_train[tr], ds.y_train[tr], ds.x_train[va], ds.y_train[va],
                        ds.x_test, ds.y_test, width=32, max_fraction=0.4, grid=1,
                        methods=("ntk_refit", "ntk", "loss"), seed=4, show_progress=False,
                        options=attr.ScoreOptions(trak_ensemble=4))
    assert direct.k_star == extra["k_star"] and list(direct.ks) == sorted({0, direct.k_star})
    for name, m in direct.summary.items():
        for key in ("test_acc_after", "test_loss_after", "noisy_removed"):
            assert extra["methods"][name][key] == pytest.approx(m[key], abs=1e-9), (name, key)
    pooled = attr.summarise_trials([j["methods"], extra["methods"]])
    for part in ("methods", "exact_vs"):
        for name, v in pooled[part].items():
            assert j["trials"][part][name] == pytest.approx(v), (part, name)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "trial 1/2: reused" in err and "trial 2/2: reused" in err  # nothing trained again
    again = ni.io.load_json(out / "clean.json")
    for key in ("methods", "k_star", "ks", "curves", "refit_val_losses", "trials"):
        assert again[key] == j[key], key
    assert again["info"] == ni.io.load_json(out / "trials" / "trial_0.json")["info"]
    # a saved trial that is a link (or damaged) is computed again, the outside file untouched
    outside = tmp_path / "elsewhere.json"
    outside.write_text('{"seed": 4, "k_star": 0, "methods": {}}')
    (out / "trials" / "trial_1.json").unlink()
    (out / "trials" / "trial_1.json").symlink_to(outside)
    (out / "trials" / "trial_0.json").write_text("{ damaged")
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "trial_1.json is not a regular file; computing it again" in err
    assert "trial_0.json is damaged (JSONDecodeError); computing it again" in err
    assert "trial 2/2 (seed 4)" in err and "trial 1/2: reused" not in err
    assert outside.read_text() == '{"seed": 4, "k_star": 0, "methods": {}}'
    assert not (out / "trials" / "trial_1.json").is_symlink()
    redone = ni.io.load_json(out / "clean.json")["trials"]["extra"][0]
    assert redone["k_star"] == extra["k_star"]
    for name, m in extra["methods"].items():
        for key in ("test_acc_after", "test_loss_after", "noisy_removed"):
            assert redone["methods"][name][key] == pytest.approx(m[key], abs=1e-9), (name, key)
    # more trials under --resume: the finished one is reused, the new one computed
    more = [a if a != "2" or argv[i - 1] != "--trials" else "3" for i, a in enumerate(argv)]
    assert main([*more, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "trial 2/3: reused" in err and "trial 3/3 (seed 5)" in err
    assert ni.io.load_json(out / "clean.json")["trials"]["trials"] == 3
    assert main([*more, "--resume", "--noise", "0.3"]) == 2  # other content is still refused
