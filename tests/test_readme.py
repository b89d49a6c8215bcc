"""The README runs as written: every Python block executes, every command line parses.

Each ```python block of README.md is executed in a fresh namespace, under the suite's x64
setting (off by default, on in the x64 pass), and must leave that setting as it found it. Each
```bash block is read line by line: an ``ntk-influence ...`` command is parsed (not run) by the
real command-line parser, so every option the README shows exists on that subcommand, and a
``pip install`` line may only name extras that ``pyproject.toml`` defines.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.S | re.M)
PYTHON = [b for lang, b in BLOCKS if lang == "python"]
BASH = [b for lang, b in BLOCKS if lang == "bash"]


def _commands(block: str) -> list[list[str]]:
    """The command lines of a bash block, continuations joined, each split at ``&&``."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        cmd: list[str] = []
        for w in [*words, "&&"]:
            if w == "&&":
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


COMMANDS = [c for b in BASH for c in _commands(b)]
CLI = [c for c in COMMANDS if c[0] == "ntk-influence"]
PIP = [c for c in COMMANDS if c[:2] == ["pip", "install"]]


def test_readme_has_the_blocks_this_test_checks():
    assert len(PYTHON) >= 2 and len(CLI) >= 5 and PIP


@pytest.mark.parametrize("block", PYTHON, ids=[f"python block {i + 1}" for i in range(len(PYTHON))])
def test_python_block_runs_as_written(block, monkeypatch, tmp_path):
    import jax

    x64 = bool(jax.config.jax_enable_x64)
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(block, "README.md", "exec"), namespace)
    assert bool(jax.config.jax_enable_x64) == x64, "a README block changed JAX's x64 flag"


@pytest.mark.parametrize("argv", CLI, ids=[" ".join(c[1:3]) for c in CLI])
def test_cli_line_parses_with_the_real_parser(argv, capsys):
    from ntk_influence.cli import build_parser

    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as e:  # argparse: an unknown option or a bad value
        pytest.fail(f"`{' '.join(argv)}` does not parse: {capsys.readouterr().err.strip()} ({e})")
    assert args.command == argv[1]


@pytest.mark.parametrize("argv", PIP, ids=[" ".join(c[2:4]) for c in PIP])
def test_pip_install_names_existing_extras(argv):
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                 ["optional-dependencies"])
    for target in argv[2:]:
        m = re.fullmatch(r"\.\[([\w,-]+)\]", target)
        if m:
            missing = set(m.group(1).split(",")) - extras
            assert not missing, f"`{' '.join(argv)}`: no extra {sorted(missing)} in pyproject.toml"


def test_first_two_commands_are_unchanged():
    assert BASH[0] == ("pip install . && ntk-influence reproduce --quick --out results/digits\n"
                       'pip install ".[dev]" && python -m pytest -q\n'), BASH[0]
    assert README.index("```bash") < README.index("\n## "), "the commands come first"


def _names(reqs) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r.strip('"'), maxsplit=1)[0].lower().replace("_", "-")
            for r in reqs}


def test_install_without_tensorflow_names_every_other_requirement():
    from importlib.metadata import requires

    lean = next(c for c in PIP if "--no-deps" not in c and not any(".[" in w for w in c)
                and "jax>=0.4.30" in " ".join(c))
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = [r for r in requires("neural-tangents") if "extra ==" not in r]  # not its extras
    nt = _names(runtime) - {"tensorflow", "tf2jax"}
    need = (_names(deps) - {"neural-tangents"}) | nt
    assert need <= _names(lean[2:]), sorted(need - _names(lean[2:]))
    no_deps = next(c for c in PIP if "--no-deps" in c)
    assert "neural-tangents==0.6.5" in no_deps and "." in no_deps, no_deps
