"""Command-line options and config files: every bad value exits 2 naming what is wrong.

Table-driven: each case is one line.
"""

from __future__ import annotations

import pytest

from ntk_influence.cli import EXIT_USAGE, build_parser, main

TINY = ["--data", "digits:3,8", "--n-train", "24", "--n-test", "6", "--quiet"]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# (command, config text, the key the message names, what it says)
CONFIG_CASES = [
    ("influence", "n-train = true\n", "'n-train'", "whole number"),
    ("influence", "n-train = 40.7\n", "'n-train'", "whole number"),
    ("influence", "n-train = 40.0\n", "'n-train'", "whole number"),
    ("influence", 'n-train = "40"\n', "'n-train'", "whole number"),
    ("influence", "n-train = 0\n", "'n-train'", ">= 1"),
    ("influence", "top = -3\n", "'top'", ">= 1"),
    ("influence", "seed = 1.5\n", "'seed'", "whole number"),
    ("influence", "lam = true\n", "'lam'", "number"),
    ("influence", 'lam = "0.1"\n', "'lam'", "number"),
    ("compare", "widths = [64, 0]\n", "'widths'", ">= 1"),
    ("compare", "widths = [64, 128.5]\n", "'widths'", "whole number"),
    ("compare", "n-points = false\n", "'n-points'", "whole number"),
    ("density", "mixture-p = [0.5, true]\n", "'mixture-p'", "number"),
]


@pytest.mark.parametrize("command,text,key,says", CONFIG_CASES,
                         ids=[f"{c[0]}:{c[1].strip()}" for c in CONFIG_CASES])
def test_bad_config_value_exits_2_naming_the_key(command, text, key, says, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    code, out, err = _run([command, "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert code == EXIT_USAGE, err
    assert key in err and str(cfg) in err and says in err, err
    assert "Traceback" not in err and "results in" not in out


def test_good_config_numbers_are_kept_exactly(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("n-train = 20\nlam = 1\ntop = 2\n")  # an integer is a fine float
    p = build_parser()
    from ntk_influence.cli._common import apply_config

    apply_config(p, ["influence", "--config", str(cfg)])
    args = p.parse_args(["influence", "--config", str(cfg)])
    assert (args.n_train, args.lam, args.top) == (20, 1, 2)
    assert type(args.n_train) is int and type(args.top) is int


def test_config_that_is_not_utf8_exits_2_naming_the_file(tmp_path, capsys):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('data = "digits:3,8"\n# caf\u00e9\n'.encode("latin-1"))
    code, _, err = _run(["influence", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert code == EXIT_USAGE
    assert str(cfg) in err and "UTF-8" in err and "Traceback" not in err


# (argv, option named in the message): every count refuses zero and negative values
COUNT_CASES = [
    (["influence", "--top", "-3"], "--top"),
    (["influence", "--top", "0"], "--top"),
    (["influence", "--n-train", "0"], "--n-train"),
    (["influence", "--n-test", "-1"], "--n-test"),
    (["influence", "--block-size", "0"], "--block-size"),
    (["compare", "--n-points", "0"], "--n-points"),
    (["compare", "--widths", "64", "-8"], "--widths"),
    (["compare", "--test-points", "0"], "--test-points"),
    (["attribution", "--subsets", "0"], "--subsets"),
    (["compare", "--chunk-size", "0"], "--chunk-size"),
    (["compare", "--max-steps", "0"], "--max-steps"),
    (["examples", "--k", "0"], "--k"),
    (["complexity", "--groups", "0"], "--groups"),
    (["density", "--mixture-n", "-5"], "--mixture-n"),
    (["density", "--dim", "0"], "--dim"),
    (["dynamics", "--chunk-size", "-1"], "--chunk-size"),
    (["label-noise", "--top-k", "0"], "--top-k"),
    (["reproduce", "--n-points", "0"], "--n-points"),
    (["reproduce", "--widths", "0"], "--widths"),
    (["reproduce", "--test-points", "-2"], "--test-points"),
    (["influence", "--top", "2.5"], "--top"),
]


@pytest.mark.parametrize("argv,option", COUNT_CASES, ids=[" ".join(c[0]) for c in COUNT_CASES])
def test_zero_or_negative_counts_exit_2(argv, option, tmp_path, capsys):
    code, out, err = _run([*argv, "--out", tmp_path / "o"], capsys)
    assert code == EXIT_USAGE
    assert f"argument {option}" in err and "whole number >= 1" in err, err
    assert "results in" not in out and not (tmp_path / "o").exists()


def _subparsers():
    return next(a for a in build_parser()._actions if a.dest == "command").choices


@pytest.mark.parametrize("name", list(_subparsers()))
def test_every_option_help_states_its_default(name):
    sub = _subparsers()[name]
    missing = [a.option_strings[0] for a in sub._actions
               if a.option_strings and a.nargs != 0 and "default" not in (a.help or "")]
    assert not missing, f"{name}: options whose help gives no default: {missing}"
    text = sub.format_help()
    assert "%(default)" not in text


@pytest.mark.parametrize("extra,shown", [([], None), (["--test-points", "5"], "--test-points 5")])
def test_reproduce_passes_test_points_to_table1(extra, shown, tmp_path, capsys):
    code, out, _ = _run(["reproduce", "--dry-run", "--parts", "table1", *extra, "--out",
                         tmp_path / "d"], capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("ntk-influence compare"))
    assert code == 0
    assert (shown in line) if shown else "--test-points" not in line


@pytest.mark.parametrize("argv,option", [(["attribution", "--loo-points", "-1"], "--loo-points"),
                                         (["attribution", "--trak-dim", "-5"], "--trak-dim")])
def test_negative_counts_where_zero_skips_exit_2(argv, option, capsys):
    code, _, err = _run(argv, capsys)
    assert code == EXIT_USAGE
    assert f"argument {option}" in err and "whole number >= 0" in err, err
