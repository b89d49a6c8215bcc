"""The ``ntk-influence`` command line end to end, on tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence.cli import COMMANDS, EXIT_NUMERICAL, EXIT_OK, EXIT_USAGE, build_parser, main
from ntk_influence.cli import _report as report_module
from ntk_influence.cli import reproduce as rep

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "digits:3,8", "--n-train", "24", "--n-test", "6", "--quiet"]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _names():
    return [c.name for c in COMMANDS]


EXPECTED = ["influence", "compare", "lambda-sweep", "density", "examples", "complexity", "dynamics",
            "label-noise", "reproduce", "attribution", "clean"]


def test_command_table_is_complete_and_listed(capsys):
    assert _names() == EXPECTED
    code, out, _ = _run(["--help"], capsys)
    assert code == EXIT_OK
    listed = out[out.index("COMMAND"):]
    for name in EXPECTED:
        assert f"    {name} " in listed or f"    {name}\n" in listed, name
    assert "SIGTERM" in out and "130" in out
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert list(sub) == EXPECTED
    for part in rep.PARTS:  # every part of the reproduction runs a registered subcommand
        assert part.command in EXPECTED, part.name


# ------------------------------------------------------------------ help and usage

@pytest.mark.parametrize("name", _names())
def test_help_for_every_subcommand(name, capsys):
    code, out, _ = _run([name, "--help"], capsys)
    assert code == EXIT_OK
    assert "--out DIR" in out and "--config FILE.toml" in out and "--resume" in out
    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices[name]
    undocumented = [a.option_strings for a in sub._actions if a.option_strings and not a.help]
    assert not undocumented, f"options without help in {name}: {undocumented}"


def test_console_script_entry_point():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "ntk_influence.cli", "--help"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "influence" in r.stdout and "reproduce" in r.stdout


@pytest.mark.parametrize("argv", [
    [],
    ["no-such-command"],
    ["influence", "--no-such-option"],
    ["influence", "--lam", "abc"],
    ["influence", "--kernel", "rbf"],
    ["influence", "--data", "imagenet:/x", "--quiet"],
    ["influence", "--data", "mnist:/definitely/not/here", "--quiet"],
    ["influence", "--lam", "-1", "--quiet"],
    ["influence", "--config", "/definitely/not/here.toml"],
    ["reproduce", "--parts", "no-such-part", "--quiet"],
])
def test_bad_usage_exits_2(argv, capsys, tmp_path):
    if argv and argv[0] in _names():
        argv = [*argv, "--out", tmp_path / "o"]
    code, out, err = _run(argv, capsys)
    assert code == EXIT_USAGE
    assert "results in" not in out
    assert err or "usage:" in out  # says why


def test_numerical_failure_exits_3(tmp_path, capsys):
    x = ni.data.unit_normalize(np.random.default_rng(0).normal(size=(6, 3)))
    x = np.concatenate([x, x])  # duplicate points: K singular
    y = np.sign(x[:, 0])
    np.savez(tmp_path / "dup.npz", x_train=x, y_train=y, x_test=x[:3], y_test=y[:3])
    code, out, err = _run(["influence", "--data", f"npz:{tmp_path / 'dup.npz'}", "--lam", "0",
                           "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == EXIT_NUMERICAL
    assert "numerical failure" in err and "lam > 0" in err
    assert "results in" not in out


# ------------------------------------------------------------------ influence

def test_influence_end_to_end(tmp_path, capsys):
    out_dir = tmp_path / "inf"
    code, out, _ = _run(["influence", *TINY, "--lam", "0.2", "--out", out_dir], capsys)
    assert code == EXIT_OK
    assert out.strip().splitlines()[-1] == f"results in {out_dir.resolve()}"
    from ntk_influence.io import load_json, load_npz

    z = load_npz(out_dir / "influence.npz")
    for k in ("influence", "ihvp", "leverage", "f_test"):
        assert k in z
    ds = ni.load_dataset("digits:3,8", n_train=24, n_test=6)
    ref = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=0.2)
    np.testing.assert_allclose(z["influence"], ref.influence, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(z["leverage"], ref.leverage, rtol=1e-10)
    s = load_json(out_dir / "summary.json")
    assert s["lam"] == 0.2 and s["data"]["n_train"] == 24 and len(s["per_test"]) == 6
    j0 = s["per_test"][0]["helpful"][0]
    assert j0["influence"] == pytest.approx(ref.influence[:, 0].max())


def test_config_file_and_command_line_precedence(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data = "digits:3,8"\nn-train = 30\nn-test = 5\nlam = 0.5\nquiet = true\n')
    code, _, _ = _run(["influence", "--config", cfg, "--n-train", "20", "--out", tmp_path / "a"],
                      capsys)
    assert code == EXIT_OK
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["settings"]["n_train"] == 20  # command line wins
    assert s["settings"]["lam"] == 0.5 and s["lam"] == 0.5  # file fills the rest
    assert s["data"]["n_test"] == 5
    # a section named after the command is used for that command
    cfg.write_text('lam = 9.0\n[influence]\nlam = 0.25\nn-train = 22\nn-test = 4\nquiet = true\n')
    assert _run(["influence", "--config", cfg, "--out", tmp_path / "b"], capsys)[0] == EXIT_OK
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s["lam"] == 0.25 and s["data"]["n_train"] == 22
    # values are checked like the command line's
    for bad in ('lam = "x"\n', 'kernel = "rbf"\n', 'unknown-key = 1\n', 'quiet = 3\n', "lam = [\n"):
        cfg.write_text(bad)
        code, _, err = _run(["influence", "--config", cfg, "--out", tmp_path / "c"], capsys)
        assert code == EXIT_USAGE, bad
        assert str(cfg) in err


def test_influence_resume_skips_finished(tmp_path, capsys):
    out_dir = tmp_path / "r"
    assert _run(["influence", *TINY, "--out", out_dir], capsys)[0] == EXIT_OK
    before = (out_dir / "influence.npz").stat().st_mtime_ns
    assert _run(["influence", *TINY, "--out", out_dir, "--resume"], capsys)[0] == EXIT_OK
    assert (out_dir / "influence.npz").stat().st_mtime_ns == before
    # other settings are never mistaken for finished work: refused under --resume, computed
    # afresh with --force or without --resume
    assert _run(["influence", *TINY, "--lam", "0.4", "--out", out_dir, "--resume"],
                capsys)[0] == EXIT_USAGE
    assert (out_dir / "influence.npz").stat().st_mtime_ns == before
    assert _run(["influence", *TINY, "--lam", "0.4", "--out", out_dir, "--resume", "--force"],
                capsys)[0] == EXIT_OK
    assert json.loads((out_dir / "summary.json").read_text())["lam"] == 0.4
    assert _run(["influence", *TINY, "--lam", "0.3", "--out", out_dir], capsys)[0] == EXIT_OK
    assert json.loads((out_dir / "summary.json").read_text())["lam"] == 0.3


# ------------------------------------------------------------------ compare and the analyses

ANALYSIS = {
    "compare": ["--widths", "16", "32", "--n-points", "4"],
    "lambda-sweep": ["--lams", "0.1", "1"],
    "density": ["--mixture-n", "40", "--mixture-d", "8"],
    "examples": ["--test-index", "0", "1", "--k", "3"],
    "complexity": ["--groups", "4"],
    "dynamics": ["--times", "0.1", "1", "inf"],
    "label-noise": ["--times", "0.1", "1", "inf"],
}


# Finite-net training compiles for about half a minute even at width 16: slow-marked here; the
# fast suite covers the rest, and the reproduce test below covers compare with -m slow.
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n == "compare"
                                               else []) for n in ANALYSIS])
def test_analysis_subcommands_end_to_end(name, tmp_path, capsys):
    out_dir = tmp_path / name
    code, out, err = _run([name, *TINY, *ANALYSIS[name], "--out", out_dir], capsys)
    assert code == EXIT_OK, err
    assert out.strip().splitlines()[-1] == f"results in {out_dir.resolve()}"
    summary = json.loads((out_dir / ("compare.json" if name == "compare" else "summary.json"))
                         .read_text())
    assert summary["command"] == name and summary["data"]["n_train"] == 24
    assert list(out_dir.glob("*.npz")), "no arrays written"
    assert list(out_dir.glob("*.png")), "no figure written"
    assert not list(out_dir.rglob("*.tmp")), "a temporary file was left behind"
    assert (out_dir / "fingerprint.json").exists() and not (out_dir / ".ntk-influence.lock").exists()


# ------------------------------------------------------------------ reproduce

def _tiny_reproduce(out_dir, *extra):
    return ["reproduce", "--data", "digits:3,8", "--n-train", "24", "--n-test", "6", "--quiet",
            "--out", out_dir, *extra]


def test_reproduce_tiny_report(tmp_path, capsys):
    out_dir = tmp_path / "rep"
    code, out, _ = _run(_tiny_reproduce(out_dir, "--parts", "kernel"), capsys)
    assert code == EXIT_OK
    assert out.strip().splitlines()[-1] == f"results in {out_dir.resolve()}"
    report = (out_dir / "report.md").read_text()
    assert "# Reproduction report" in report and "kernel/kernel_ihvp_vs_exact.png" in report
    assert (out_dir / "kernel" / "kernel_ihvp_vs_exact.png").stat().st_size > 1000
    status = json.loads((out_dir / "reproduce.json").read_text())
    assert status["parts"]["kernel"]["status"] == "done"
    assert status["mode"] == "quick"
    assert status["environment"]["jax"] and status["environment"]["backend"]
    assert "JAX " in report


@pytest.mark.parametrize("with_nets", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_reproduce_every_part_tiny(with_nets, tmp_path, capsys):
    out_dir = tmp_path / "all"
    extra = ["--widths", "16", "32", "--n-points", "4"] if with_nets else ["--skip", "table1"]
    code, out, err = _run(_tiny_reproduce(out_dir, *extra), capsys)
    assert code == EXIT_OK, err
    status = json.loads((out_dir / "reproduce.json").read_text())["parts"]
    names = _names()
    report = (out_dir / "report.md").read_text()
    for part in rep.PARTS:
        if part.name == "table1" and not with_nets:
            assert "table1" not in status
            continue
        assert part.command in names
        assert status[part.name]["status"] == "done", part.name
        pngs = list((out_dir / part.name).glob("*.png"))
        assert pngs, f"{part.name} drew no figure"
        for p in pngs:  # every figure is linked from the report
            assert f"{part.name}/{p.name}" in report
        assert list((out_dir / part.name).glob("*.json"))
    assert "could not summarise" not in report


def _two_part_plan(monkeypatch):
    """Two kernel parts at different lambdas: enough to interrupt between and inside parts."""
    k = rep.PARTS[0]
    second = rep.Part("kernel2", "second", "influence",
                      lambda a, m: ["influence", *rep._data_argv(a, m), "--lam", "0.3"],
                      "second part", rep.kernel_report)
    monkeypatch.setattr(rep, "PARTS", [k, second])


def test_reproduce_resume_after_interruption(tmp_path, capsys, monkeypatch):
    _two_part_plan(monkeypatch)
    clean = tmp_path / "clean"
    assert _run(_tiny_reproduce(clean), capsys)[0] == EXIT_OK

    # interrupted while the second part runs
    real = rep._run_part
    calls = []

    def flaky(part, argv, resume, quiet=False):
        calls.append(part.name)
        if part.name == "kernel2" and calls.count("kernel2") == 1:
            raise KeyboardInterrupt
        return real(part, argv, resume, quiet)

    monkeypatch.setattr(rep, "_run_part", flaky)
    broken = tmp_path / "broken"
    code, _, err = _run(_tiny_reproduce(broken), capsys)
    assert code == 130 and "--resume" in err
    assert (broken / "kernel" / "part.json").exists()
    assert json.loads((broken / "kernel" / "part.json").read_text())["status"] == "done"
    assert json.loads((broken / "kernel2" / "part.json").read_text())["status"] == "running"
    # the report already shows what finished, and says how to continue
    status = json.loads((broken / "reproduce.json").read_text())["parts"]
    assert status["kernel"]["status"] == "done" and status["kernel2"]["status"] == "interrupted"
    assert "--resume" in (broken / "report.md").read_text()
    first = (broken / "kernel" / "influence.npz").stat().st_mtime_ns

    code, out, _ = _run(_tiny_reproduce(broken, "--resume"), capsys)
    assert code == EXIT_OK and "results in" in out
    assert calls == ["kernel", "kernel2", "kernel2"]  # the finished part was not run again
    assert (broken / "kernel" / "influence.npz").stat().st_mtime_ns == first
    from ntk_influence.io import load_npz

    for part in ("kernel", "kernel2"):
        a, b = load_npz(clean / part / "influence.npz"), load_npz(broken / part / "influence.npz")
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # resuming with other settings is refused; with --force, only the parts whose arguments
    # changed are run again
    code, _, err = _run(_tiny_reproduce(broken, "--resume", "--lam", "0.2"), capsys)
    assert code == EXIT_USAGE and "lam: 0.1 stored, 0.2 requested" in err
    assert calls[3:] == []
    code, _, _ = _run(_tiny_reproduce(broken, "--resume", "--force", "--lam", "0.2"), capsys)
    assert code == EXIT_OK
    assert calls[3:] == ["kernel"]  # kernel2 (fixed lam 0.3) is unchanged and reused
    lam = json.loads((broken / "kernel" / "summary.json").read_text())["lam"]
    assert lam == 0.2


def test_reproduce_missing_subcommand_is_skipped_with_a_message(tmp_path, capsys, monkeypatch):
    ghost = rep.Part("ghost", "A part whose subcommand is absent", "no-such-subcommand",
                     lambda a, m: ["no-such-subcommand"], "absent", report_module.generic_report)
    monkeypatch.setattr(rep, "PARTS", [rep.PARTS[0], ghost])
    code, _, _ = _run(_tiny_reproduce(tmp_path / "g"), capsys)
    assert code == EXIT_OK
    report = (tmp_path / "g" / "report.md").read_text()
    assert "skipped: the 'no-such-subcommand' subcommand is not available" in report


def test_reproduce_keep_going_records_failure(tmp_path, capsys, monkeypatch):
    def boom(args, mode):
        return ["influence", *rep._data_argv(args, mode), "--kernel", "paper", "--lam", "0",
                "--data", f"npz:{tmp_path / 'dup.npz'}"]

    x = ni.data.unit_normalize(np.random.default_rng(0).normal(size=(5, 3)))
    x = np.concatenate([x, x])
    np.savez(tmp_path / "dup.npz", x_train=x, y_train=np.sign(x[:, 0]), x_test=x[:2],
             y_test=np.sign(x[:2, 0]))
    bad = rep.Part("bad", "A failing part", "influence", boom, "fails", report_module.generic_report)
    monkeypatch.setattr(rep, "PARTS", [bad, rep.PARTS[0]])
    code, _, _ = _run(_tiny_reproduce(tmp_path / "k"), capsys)
    assert code == EXIT_NUMERICAL  # without --keep-going the failure stops the run
    status = json.loads((tmp_path / "k" / "reproduce.json").read_text())["parts"]
    assert status["bad"]["status"] == "failed" and "kernel" not in status
    code, _, _ = _run(_tiny_reproduce(tmp_path / "k2", "--keep-going"), capsys)
    assert code != EXIT_OK
    status = json.loads((tmp_path / "k2" / "reproduce.json").read_text())
    assert status["parts"]["bad"]["status"] == "failed"
    assert status["parts"]["kernel"]["status"] == "done"
    assert "SingularKernelError" in (tmp_path / "k2" / "report.md").read_text()


def test_atomic_writes_have_ordinary_permissions(tmp_path):
    from ntk_influence.io import save_json

    p = save_json(tmp_path / "x.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("mode", ["--quick", "--full"])
def test_reproduce_dry_run_every_part_parses(mode, tmp_path, capsys):
    code, out, _ = _run(["reproduce", mode, "--dry-run", "--out", tmp_path / "d"], capsys)
    assert code == EXIT_OK
    names = _names()
    for part in rep.PARTS:  # every part's arguments were accepted by its subcommand
        assert part.command in names
        assert f"ntk-influence {part.command} " in out
    # the mode's sizes are capped at the pool: digits 3 vs 8 has 250 training points
    if mode == "--full":
        assert "--n-train 250" in out
    assert not (tmp_path / "d" / "report.md").exists()


def test_reproduce_bad_data_fails_before_any_part(tmp_path, capsys):
    code, _, err = _run(["reproduce", "--data", f"mnist:{tmp_path / 'none'}", "--out",
                         tmp_path / "o"], capsys)
    assert code == EXIT_USAGE and "mnist directory" in err
    assert not list((tmp_path / "o").glob("*/part.json"))


def test_reproduce_multiclass_skips_table1_with_a_reason(tmp_path, capsys):
    code, out, _ = _run(["reproduce", "--data", "digits:0,1,7", "--dry-run", "--out",
                         tmp_path / "m"], capsys)
    assert code == EXIT_OK
    assert "# table1: skipped (Table 1 retrains scalar-output nets" in out
    assert "ntk-influence label-noise --data digits:0,1,7" in out


def test_warnings_are_reported_without_source_lines(tmp_path, capsys, monkeypatch):
    import warnings

    import ntk_influence.influence as influence_module

    real = influence_module.ntk_influence

    def warns(*args, **kwargs):
        warnings.warn("solver stopped early:\n  residual 1e-3", ni.errors.NotConvergedWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(influence_module, "ntk_influence", warns)
    code, _, err = _run(["influence", *TINY, "--out", tmp_path / "w"], capsys)
    assert code == EXIT_OK
    lines = err.strip().splitlines()
    assert "ntk-influence: warning: solver stopped early: residual 1e-3" in lines
    assert not [ln for ln in lines if "warnings.warn" in ln or ".py:" in ln], err


def test_sigterm_stops_like_ctrl_c(tmp_path, capsys, monkeypatch):
    import signal

    import ntk_influence.influence as influence_module

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(influence_module, "ntk_influence", killed)
    code, out, err = _run(["influence", *TINY, "--out", tmp_path / "t"], capsys)
    assert code == 130
    assert "terminated (SIGTERM)" in err and "--resume" in err and "results in" not in out
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


# ------------------------------------------------------------------ output folders: fingerprint, lock

def _refused(code, err, name):
    assert code == EXIT_USAGE, err
    msg = err.strip().splitlines()[-1]
    assert msg.startswith("ntk-influence: error: ") and len(msg) < 300, msg
    assert f"{name}: " in msg and "--force" in msg and "--out" in msg, msg
    return msg


@pytest.mark.parametrize("first, second, name, shown", [
    (["--lam", "0.1"], ["--lam", "0.5"], "lam", "0.1 stored, 0.5 requested"),
    (["--data", "digits:3,8"], ["--data", "digits:1,7"], "data",
     "digits:3,8 stored, digits:1,7 requested"),
    (["--seed", "0"], ["--seed", "1"], "seed", "0 stored, 1 requested"),
])
def test_resume_with_other_settings_is_refused(first, second, name, shown, tmp_path, capsys):
    out_dir = tmp_path / "r"
    assert _run(["influence", *TINY, *first, "--out", out_dir], capsys)[0] == EXIT_OK
    stamp = (out_dir / "influence.npz").stat().st_mtime_ns
    code, out, err = _run(["influence", *TINY, *second, "--out", out_dir, "--resume"], capsys)
    assert f"{name}: {shown}" in _refused(code, err, name)
    assert "results in" not in out
    assert (out_dir / "influence.npz").stat().st_mtime_ns == stamp  # nothing was touched
    # --force starts afresh with the new settings
    code, _, err = _run(["influence", *TINY, *second, "--out", out_dir, "--resume", "--force"],
                        capsys)
    assert code == EXIT_OK, err
    s = json.loads((out_dir / "summary.json").read_text())["settings"]
    assert str(s[name]) == second[1]


def test_resume_with_changed_data_arrays_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = ni.data.unit_normalize(rng.normal(size=(12, 4)))
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:9], y_train=np.sign(x[:9, 0]), x_test=x[9:], y_test=np.sign(x[9:, 0]))
    argv = ["influence", "--data", f"npz:{path}", "--out", tmp_path / "o", "--quiet"]
    assert _run(argv, capsys)[0] == EXIT_OK
    np.savez(path, x_train=x[:9][::-1], y_train=np.sign(x[:9, 0])[::-1], x_test=x[9:],
             y_test=np.sign(x[9:, 0]))  # same spec, other arrays
    code, _, err = _run([*argv, "--resume"], capsys)
    _refused(code, err, "data_sha256")


def test_compare_resume_with_other_lam_is_refused_before_any_training(tmp_path, capsys,
                                                                        monkeypatch):
    import ntk_influence.experiments as compare_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_module, "width_sweep", interrupted)
    argv = ["compare", *TINY, "--widths", "16", "--n-points", "4", "--out", tmp_path / "c"]
    assert _run([*argv, "--lam", "0.1"], capsys)[0] == 130
    code, _, err = _run([*argv, "--lam", "0.5", "--resume"], capsys)
    assert "lam: 0.1 stored, 0.5 requested" in _refused(code, err, "lam")
    # other widths are not refused: each width_W.json checks its own settings on resume
    code, _, err = _run([*argv, "--lam", "0.1", "--widths", "16", "32", "--resume"], capsys)
    assert code == 130 and "stored" not in err, err


def test_lambda_sweep_refusal_is_short(tmp_path, capsys):
    argv = ["lambda-sweep", *TINY, "--out", tmp_path / "s"]
    assert _run([*argv, "--lams", "0.1", "1"], capsys)[0] == EXIT_OK
    code, _, err = _run([*argv, "--lams", "0.1", "2", "--resume"], capsys)
    assert "lams: [0.1, 1.0] stored, [0.1, 2.0] requested" in _refused(code, err, "lams")


def _hold_lock(folder):
    """Another process holding ``folder``'s lock, as a running ``ntk-influence`` would."""
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, str(os.getpid()).encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder / ".ntk-influence.lock")],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys):
    out_dir = tmp_path / "busy"
    holder = _hold_lock(out_dir)
    try:
        code, out, err = _run(["influence", *TINY, "--out", out_dir], capsys)
        assert code == EXIT_USAGE and "results in" not in out
        assert f"in use by another run (pid {holder.pid})" in err
        assert not (out_dir / "summary.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed: its lock file is left behind): the next run takes over
    assert (out_dir / ".ntk-influence.lock").read_text().strip() == str(holder.pid)
    code, _, err = _run(["influence", *TINY[:-1], "--out", out_dir], capsys)
    assert code == EXIT_OK, err
    assert f"took over the lock of pid {holder.pid}" in err
    assert not (out_dir / ".ntk-influence.lock").exists()  # released at the end


def test_resume_removes_partial_files_of_a_killed_run(tmp_path, capsys):
    out_dir = tmp_path / "dyn"
    argv = ["dynamics", *TINY, "--times", "0.5", "inf", "--chunk-size", "8", "--out", out_dir]
    assert _run(argv, capsys)[0] == EXIT_OK
    (out_dir / "summary.json").unlink()
    (out_dir / "work" / "item_8.npz").unlink()
    partial = [out_dir / "work" / ".item_8.npz.ntk-partial-k3j2h1ab.tmp",
               out_dir / ".summary.json.ntk-partial-x9y8_7zz.tmp"]
    for p in partial:
        p.write_bytes(b"half a file")
    (out_dir / "notes.tmp").write_text("kept: not a partial file of ours")
    assert _run([*argv, "--resume"], capsys)[0] == EXIT_OK
    assert not any(p.exists() for p in partial)
    assert (out_dir / "notes.tmp").exists() and (out_dir / "work" / "item_8.npz").exists()


@pytest.mark.parametrize("where", ["file", "under-file", "read-only"])
def test_unusable_out_is_refused_before_computing(where, tmp_path, capsys, monkeypatch):
    import ntk_influence.influence as influence_module
    from ntk_influence.cli import _outdir

    def never(*args, **kwargs):
        raise AssertionError("computed before checking --out")

    monkeypatch.setattr(influence_module, "ntk_influence", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    if where == "file":
        out_dir, expect = blocker, "is a file, not a folder"
    elif where == "under-file":
        out_dir, expect = blocker / "sub" / "dir", f"lies under {blocker}, which is a file"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        if os.geteuid() == 0:  # root writes anywhere: simulate a read-only mount instead
            real = os.access
            monkeypatch.setattr(_outdir.os, "access",
                                lambda p, mode: False if Path(p) == ro else real(p, mode))
        out_dir, expect = ro / "out", f"{ro} is not writable"
    code, out, err = _run(["influence", *TINY, "--out", out_dir], capsys)
    assert code == EXIT_USAGE and "results in" not in out
    assert expect in err and "Traceback" not in err
