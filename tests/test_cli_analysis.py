"""The analysis subcommands end to end on tiny settings: files, summaries, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence import io
from ntk_influence.cli import EXIT_OK, EXIT_USAGE, main
from ntk_influence.influence import influence_over_time

TINY = ["--data", "digits:3,8", "--n-train", "30", "--n-test", "8", "--quiet"]
TIMES = ["--times", "0.1", "2", "inf"]


def _run(argv):
    return main([str(a) for a in argv])


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_lambda_sweep(tmp_path):
    out = tmp_path / "sweep"
    assert _run(["lambda-sweep", *TINY, "--lams", "0.25", "1", "4", "--out", out]) == EXIT_OK
    z = io.load_npz(out / "lambda_sweep.npz")
    s = _summary(out)
    assert z["mean_error_rate"].shape == (3,) and z["leverage"].shape == (3, 30)
    assert all(r["eq16_violations"] == 0 for r in s["per_lambda"])
    assert (out / "fig2_lambda_sweep.png").stat().st_size > 1000
    # the numbers are the library's
    ds = ni.load_dataset("digits:3,8", n_train=30, n_test=8)
    km = ni.kernels.kernel_matrix
    k, kt = km("paper", ds.x_train), km("paper", ds.x_train, ds.x_test)
    from ntk_influence.experiments import lambda_sweep

    ref = lambda_sweep(k, kt, ds.y_train, ds.y_test, [0.25, 1, 4])
    np.testing.assert_allclose(z["mean_error_rate"], ref.mean_error_rate, rtol=1e-10)


def test_density_complexity_examples(tmp_path):
    d, c, e = tmp_path / "d", tmp_path / "c", tmp_path / "e"
    assert _run(["density", *TINY, "--mixture-n", "60", "--mixture-repeats", "1",
                 "--out", d]) == EXIT_OK
    s = _summary(d)
    assert s["kde"]["pca"] and s["kde"]["dim"] == 10 and "spearman_density_error" in s
    assert len(s["mixture"]["component_error"]) == 6
    assert (d / "fig3_density.png").exists() and (d / "theorem4_mixture.png").exists()
    assert _run(["complexity", *TINY, "--groups", "5", "--out", c]) == EXIT_OK
    s = _summary(c)
    assert len(s["groups"]) == 5
    lam_used = s["lam_used"]
    assert s["B"] == ("K^-1" if lam_used == 0 else f"(K + {lam_used:.3g} I)^-1")
    z = io.load_npz(c / "complexity.npz")
    assert z["complexity"].shape == (5,) and (c / "fig5_complexity.png").exists()
    # eq. (19) by dense solves on the reduced kernels, with the ridge the command reports
    ds = ni.load_dataset("digits:3,8", n_train=30, n_test=8)
    k = ni.kernels.kernel_matrix("paper", ds.x_train)
    y = ds.y_train

    def norm(idx):
        kk = k[np.ix_(idx, idx)] + lam_used * np.eye(idx.size)
        return np.sqrt(y[idx] @ np.linalg.solve(kk, y[idx]))

    everything = np.arange(30)
    for g, size in enumerate(r["size"] for r in s["groups"]):
        rest = everything[z["group_of_point"] != g]
        assert rest.size == 30 - size
        np.testing.assert_allclose(z["complexity"][g], norm(everything) - norm(rest), rtol=1e-6)
    assert _run(["examples", *TINY, "--test-index", "0", "2", "--k", "3", "--out", e]) == EXIT_OK
    z = io.load_npz(e / "examples.npz")
    assert z["helpful"].shape == (2, 3) and (e / "fig4_examples.png").exists()


def test_dynamics_and_resume(tmp_path):
    out = tmp_path / "dyn"
    argv = ["dynamics", *TINY, *TIMES, "--chunk-size", "8", "--out", out]
    assert _run(argv) == EXIT_OK
    z = io.load_npz(out / "dynamics.npz")
    assert z["influence"].shape == (3, 30, 8) and z["first_order"].shape == (3, 30, 8)
    s = _summary(out)
    assert len(s["agreement_first_order_vs_exact"]["rel_error"]) == 3
    assert (out / "fig6_most_influential.png").exists() and (out / "time_agreement.png").exists()
    # the exact influence equals the library's
    ds = ni.load_dataset("digits:3,8", n_train=30, n_test=8)
    ref = influence_over_time(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0.1,
                              [0.1, 2, np.inf])
    np.testing.assert_allclose(z["influence"], ref, rtol=1e-9, atol=1e-15)
    # interrupted run: summary and one finished chunk gone; --resume redoes only that chunk
    (out / "summary.json").unlink()
    (out / "work" / "item_8.npz").unlink()
    before = (out / "work" / "item_0.npz").stat().st_mtime_ns
    assert _run([*argv, "--resume"]) == EXIT_OK
    assert (out / "work" / "item_0.npz").stat().st_mtime_ns == before
    assert (out / "work" / "item_8.npz").exists()
    np.testing.assert_allclose(io.load_npz(out / "dynamics.npz")["influence"], ref, rtol=1e-9,
                               atol=1e-15)
    # finished: --resume skips everything
    stamp = (out / "summary.json").stat().st_mtime_ns
    assert _run([*argv, "--resume"]) == EXIT_OK
    assert (out / "summary.json").stat().st_mtime_ns == stamp


def test_dynamics_first_order_only(tmp_path):
    out = tmp_path / "fo"
    assert _run(["dynamics", *TINY, *TIMES, "--method", "first-order", "--out", out]) == EXIT_OK
    z = io.load_npz(out / "dynamics.npz")
    assert "influence" not in z and z["first_order"].shape == (3, 30, 8)
    assert _summary(out)["influence"] == "first-order"
    np.testing.assert_array_equal(z["most_influential"], np.argmax(np.abs(z["first_order"]), 1))


def test_label_noise(tmp_path):
    out = tmp_path / "noise"
    assert _run(["label-noise", *TINY, *TIMES, "--out", out]) == EXIT_OK
    z = io.load_npz(out / "label_noise.npz")
    s = _summary(out)
    assert s["n_noisy"] == 12 and z["noisy_index"].size == 12
    np.testing.assert_allclose(z["share_clean"] + z["share_noisy"], 1.0)
    expect = np.isin(z["most_influential"], z["noisy_index"]).mean(axis=1)
    np.testing.assert_allclose(z["share_noisy"], expect)
    assert (out / "fig7_label_noise.png").exists()
    # the numbers are the library driver's
    ds = ni.load_dataset("digits:3,8", n_train=30, n_test=8)
    ref = ni.experiments.label_noise_experiment(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0.1,
                                                [0.1, 2, np.inf], fraction=0.4, seed=0)
    np.testing.assert_allclose(z["influence"], ref.influence, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(z["noisy_index"], ref.noisy_index)
    # interrupted: --resume redoes only the missing chunk of the exact influence
    (out / "summary.json").unlink()
    chunks = sorted((out / "work").glob("item_*.npz"))
    assert len(chunks) >= 1
    stamps = {c: c.stat().st_mtime_ns for c in chunks[1:]}
    chunks[0].unlink()
    assert _run(["label-noise", *TINY, *TIMES, "--out", out, "--resume"]) == EXIT_OK
    assert chunks[0].exists() and all(c.stat().st_mtime_ns == t for c, t in stamps.items())
    np.testing.assert_array_equal(io.load_npz(out / "label_noise.npz")["influence"], z["influence"])


@pytest.mark.parametrize("argv", [
    ["label-noise", "--noise", "1.0"],
    ["label-noise", "--noise", "-0.2"],
    ["dynamics", "--times", "1", "-3"],
    ["lambda-sweep", "--lams", "0", "1"],
    ["complexity", "--groups", "0"],
])
def test_bad_input_exits_with_usage_error(tmp_path, argv, capsys):
    code = _run([*argv, *TINY, "--out", tmp_path / "bad"])
    assert code == EXIT_USAGE
    assert "error" in capsys.readouterr().err
