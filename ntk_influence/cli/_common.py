"""Shared pieces of the command line: exit codes, the command record, the parser builder, option
groups, config files and the progress reporter.

Every subcommand takes ``--out DIR``, ``--config FILE.toml`` (values the command line overrides),
``--resume`` and ``--quiet``, writes its results atomically and ends with a line naming where the
results are. Exit codes: 0 success, 2 bad usage or input, 3 numerical failure (singular kernel,
solver diverged), 1 any other failure, 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NUMERICAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = ("exit codes: 0 success, 2 bad usage or input, 3 numerical failure, 1 other failure, "
          "130 interrupted (Ctrl-C or SIGTERM; finished work is kept, continue with --resume). "
          "--out is locked while a run uses it; its fingerprint.json records the settings and "
          "data, and --resume into a folder of other settings is refused (--force starts "
          "afresh).")


#: The largest seed: seeds are 32-bit (a larger one would be truncated by JAX's PRNG key).
MAX_SEED = 2**32 - 1


def _whole(text: Any, lo: int, hi: int | None = None) -> int:
    """``text`` as a whole number in ``[lo, hi]`` for ``argparse`` (bools and fractions refused)."""
    want = f"a whole number >= {lo}" if hi is None else f"a whole number in [{lo}, {hi}]"
    msg = f"must be {want}, got {text!r}"
    if isinstance(text, bool):
        raise argparse.ArgumentTypeError(msg)
    try:
        v = int(text) if isinstance(text, int) else int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(msg) from None
    if v < lo or (hi is not None and v > hi):
        raise argparse.ArgumentTypeError(f"must be {want}, got {v}")
    return v


def count(text: Any) -> int:
    """A count option's value: a whole number >= 1 (``argparse`` type for every count option).

    Args:
      text: the command-line text (or an int from a config file).

    Returns:
      The count.
    """
    return _whole(text, 1)


def seed(text: Any) -> int:
    """A seed option's value: a whole number in ``[0, MAX_SEED]`` (``argparse`` type of ``--seed``).

    Args:
      text: the command-line text (or an int from a config file).

    Returns:
      The seed.
    """
    return _whole(text, 0, MAX_SEED)


def count_or_zero(text: Any) -> int:
    """A count option where 0 means "skip this part": a whole number >= 0.

    Args:
      text: the command-line text (or an int from a config file).

    Returns:
      The count.
    """
    return _whole(text, 0)


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its name, help, argument builder and runner (returns the output folder)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Path]


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose unrecognised arguments are reported by the chosen subcommand.

    ``argparse`` reports arguments that no parser took through the top-level parser, so
    ``ntk-influence compare --bogus`` would show the top-level usage; here the subcommand's own
    usage is shown (exit 2).
    """

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            actions = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
            chosen = actions[0].choices.get(getattr(ns, "command", None)) if actions else None
            (chosen or self).error(f"unrecognized arguments: {' '.join(extra)}")
        return ns


def parser_for(commands: Sequence[Command]) -> argparse.ArgumentParser:
    """The ``ntk-influence`` argument parser with one subcommand per entry of ``commands``.

    A usage error in a subcommand's arguments (including an unknown option) prints that
    subcommand's usage.

    Args:
      commands: the subcommands, in the order ``--help`` lists them.

    Returns:
      The ``argparse`` parser; each subcommand's ``func`` default is its runner.
    """
    parser = _Parser(
        prog="ntk-influence",
        description="Influence functions of wide neural networks through the NTK "
                    "(Zhang & Zhang, AAAI 2022).", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for c in commands:
        p = sub.add_parser(c.name, help=c.help, description=c.help, epilog=EPILOG)
        c.add_arguments(p)
        add_run_arguments(p, c.name)
        p.set_defaults(func=c.run)
    return parser


def add_data_arguments(p: argparse.ArgumentParser, n_train: int = 200, n_test: int = 50) -> None:
    """Add the shared data options (``--data``, ``--n-train``, ``--n-test``, ``--seed``...).

    Args:
      p: the subcommand's parser.
      n_train: default number of training points.
      n_test: default number of test points.
    """
    g = p.add_argument_group("data")
    g.add_argument("--data", default="digits:3,8", metavar="SPEC",
                   help="digits | digits:3,8 | mnist:DIR[:3,8] | cifar10:DIR[:3,5] | npz:PATH "
                        "(default: %(default)s; nothing is downloaded)")
    g.add_argument("--n-train", type=count, default=n_train,
                   help="training points, stratified by class (default: %(default)s)")
    g.add_argument("--n-test", type=count, default=n_test,
                   help="test points, stratified by class (default: %(default)s)")
    g.add_argument("--seed", type=seed, default=0,
                   help=f"subsampling seed, 0 to {MAX_SEED} (default: %(default)s)")
    g.add_argument("--center", action="store_true",
                   help="centre inputs on the training mean before unit-normalising")
    g.add_argument("--label-noise", type=float, default=0.0,
                   help="fraction of training labels to flip (default: %(default)s)")


def log(args: argparse.Namespace, msg: str) -> None:
    """Print a progress message to stderr unless ``--quiet``.

    Args:
      args: parsed arguments (``quiet`` is read).
      msg: the message.
    """
    if not getattr(args, "quiet", False):
        print(f"[ntk-influence] {msg}", file=sys.stderr, flush=True)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a command ran with, for the JSON summary.

    Args:
      args: parsed arguments.

    Returns:
      Option name -> value, without the runner and the config path.
    """
    return {k: v for k, v in vars(args).items() if k not in ("func", "config")}


def add_run_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """Add the options every subcommand shares (``--out``, ``--config``, ``--resume``, ``--quiet``).

    Args:
      p: the subcommand's parser.
      name: the subcommand (names the default output folder).
    """
    g = p.add_argument_group("run")
    g.add_argument("--out", default=f"results/{name}", metavar="DIR",
                   help="output folder (default: %(default)s)")
    g.add_argument("--config", metavar="FILE.toml",
                   help="TOML file (UTF-8) of option values (keys as on the command line, e.g. "
                        "n-train = 100); the command line overrides it (default: none)")
    g.add_argument("--resume", action="store_true",
                   help="reuse finished work in --out after an interruption (refused if --out "
                        "holds results of other settings)")
    g.add_argument("--force", action="store_true",
                   help="with --resume, start afresh when --out holds results of other settings "
                        "instead of refusing")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Read ``--config FILE.toml`` (if given) into the chosen subcommand's defaults.

    Keys are option names as on the command line (``n-train = 100``). Top-level keys apply to
    every subcommand; a table named after the subcommand (``[compare]``) adds to them and wins
    where both give a key; the command line wins over both. Tables named after other
    subcommands are left for them; any other table, and any key the subcommand does not take,
    is refused. Values are checked as the command line would.

    Args:
      parser: the full parser (from :func:`ntk_influence.cli.build_parser`).
      argv: the command line.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("command", nargs="?")
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return
    path = Path(known.config)
    if not path.is_file():
        raise InputError(f"config file {path} not found.")
    try:
        cfg = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"config file {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                         "save it as UTF-8.") from e
    except OSError as e:
        raise InputError(f"config file {path} cannot be read ({e.strerror}).") from e
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config file {path} is not valid TOML: {e}") from e
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sp = sub.choices.get(known.command)
    if sp is None:
        return
    tables = [k for k, v in cfg.items() if isinstance(v, dict)]
    unknown = [t for t in tables if t not in sub.choices]
    if unknown:
        raise InputError(f"unknown table(s) {unknown} in {path}; a table is named after a "
                         f"subcommand ({sorted(sub.choices)}) and holds its options.")
    own = cfg.get(known.command, {})
    nested = [k for k, v in own.items() if isinstance(v, dict)]
    if nested:
        raise InputError(f"table [{known.command}] in {path} holds the table(s) {nested}; give "
                         "option values only (e.g. n-train = 100).")
    merged = {k: v for k, v in cfg.items() if not isinstance(v, dict)}
    merged.update(own)  # the subcommand's table over the top level
    by_option = {o: a for a in sp._actions for o in a.option_strings}
    by_dest: dict[str, list[argparse.Action]] = {}
    for a in sp._actions:
        by_dest.setdefault(a.dest, []).append(a)
    valid = sorted(o[2:] for o in by_option if o.startswith("--") and o not in ("--help", "--config"))
    values: dict[str, Any] = {}
    for key, val in merged.items():
        where = f"[{known.command}]" if key in own else "the top level"
        action = by_option.get("--" + key)
        if action is None or key in ("help", "config"):
            consts = [a for a in by_dest.get(key.replace("-", "_"), [])
                      if isinstance(a, argparse._StoreConstAction) and a.const == val]
            if not consts:
                raise InputError(f"unknown option {key!r} (or value {val!r}) at {where} of {path}:"
                                 f" '{known.command}' does not take it; valid keys: {valid}.")
            values[consts[0].dest] = val
            continue
        values[action.dest] = _config_value(action, key, val, path)
    sp.set_defaults(**values)


def _config_value(action: argparse.Action, key: str, val: Any, path: Path) -> Any:
    """Check and convert one config value the way the command line would."""
    where = f"{key!r} in {path}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(val, bool):
            raise InputError(f"{where} must be true or false, got {val!r}.")
        return val
    if isinstance(action, argparse._StoreConstAction):
        if val is True:
            return action.const
        raise InputError(f"{where} must be true (it selects {action.const!r}), got {val!r}.")
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many and not isinstance(val, list):
        val = [val]
    if not many and isinstance(val, list):
        raise InputError(f"{where} takes one value, got the list {val!r}.")

    def one(v: Any) -> Any:
        whole = action.type in (int, count, count_or_zero, seed)
        if whole and (isinstance(v, bool) or not isinstance(v, int)):
            raise InputError(f"{where} must be a whole number, got {v!r}.")
        if action.type is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise InputError(f"{where} must be a number, got {v!r}.")
        if action.type is not None and not isinstance(v, bool):
            try:
                v = action.type(v)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                raise InputError(f"{where}: {v!r} is not a valid value ({e}).") from e
        if action.choices is not None and v not in action.choices:
            raise InputError(f"{where}: {v!r} is not one of {list(action.choices)}.")
        return v

    return [one(v) for v in val] if many else one(val)


def check_sample_size(size: int, what: str) -> None:
    """Refuse, before the work that would produce it, a sample too small for a correlation.

    The rule is the library's own: :func:`ntk_influence.attribution.pearson` is asked to
    correlate ``size`` values.

    Args:
      size: the number of values the correlation would get.
      what: the start of the message (which options give too few values, and the fix).

    Returns:
      None.
    """
    # deferred for start-up speed
    import numpy as np

    from ..attribution import pearson

    try:
        pearson(np.arange(size, dtype=float), np.arange(size, dtype=float))
    except InputError as e:
        raise InputError(f"{what} ({e})") from e


def report_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   file: Any = None, line: str | None = None) -> None:
    """Print a Python warning as ``ntk-influence: warning: <message>`` (no source line).

    Installed as ``warnings.showwarning`` while a subcommand runs.

    Args:
      message: the warning (or its text).
      category: its class.
      filename: where it was raised (not shown).
      lineno: the line (not shown).
      file: the stream (default: stderr).
      line: the source line (not shown).
    """
    text = " ".join(str(message).split())
    print(f"ntk-influence: warning: {text}", file=file or sys.stderr, flush=True)
