"""The ``ntk-influence`` command line: a thin layer over the importable functions.

Every subcommand takes ``--out DIR``, ``--config FILE.toml`` (values the command line overrides),
``--resume`` and ``--quiet``, writes its results atomically and ends with a line naming where the
results are. Exit codes: 0 success, 2 bad usage or input, 3 numerical failure (singular kernel,
solver not converged), 1 any other failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import tomllib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._errors import InputError, NotConvergedError, NumericalError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NUMERICAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its name, help, argument builder and runner (returns the output folder)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Path]


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
    g.add_argument("--n-train", type=int, default=n_train,
                   help="training points, stratified by class (default: %(default)s)")
    g.add_argument("--n-test", type=int, default=n_test,
                   help="test points, stratified by class (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="subsampling seed (default: %(default)s)")
    g.add_argument("--center", action="store_true",
                   help="centre inputs on the training mean before unit-normalising")
    g.add_argument("--label-noise", type=float, default=0.0,
                   help="fraction of training labels to flip (default: %(default)s)")


def load_data_from_args(args: argparse.Namespace) -> Any:
    """Load the :class:`Dataset` the data options describe.

    Args:
      args: parsed arguments with the options of :func:`add_data_arguments`.

    Returns:
      The :class:`~ntk_influence.data.Dataset`.
    """
    from .data import load_dataset

    return load_dataset(args.data, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                        label_noise=args.label_noise, center=args.center)


def _influence_args(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--lam", type=float, default=0.1, help="ridge lambda >= 0 (default: %(default)s)")
    p.add_argument("--kernel", default="paper", choices=["paper", "paper-both", "paper-closed-form"],
                   help="paper: eq. (4), first layer trained; paper-both: both layers "
                        "(default: %(default)s)")
    p.add_argument("--top", type=int, default=5,
                   help="helpful/harmful points listed per test point in summary.json")
    p.add_argument("--spectrum", default="auto", choices=["auto", "exact", "lanczos", "none"],
                   help="how lambda_min/lambda_max are computed (default: %(default)s)")
    p.add_argument("--block-size", type=int, default=2048, help="kernel/test block size")


def _influence_run(args: argparse.Namespace) -> Path:
    from . import io
    from .influence import ntk_influence

    out = Path(args.out)
    if args.resume and (out / "influence.npz").exists() and (out / "summary.json").exists():
        old = io.load_json(out / "summary.json").get("settings", {})
        if _same_settings(old, settings_of(args)):
            log(args, f"influence already computed in {out}; skipping (--resume)")
            return out
        log(args, f"{out} holds results made with other settings; computing again")
    ds = load_data_from_args(args)
    t0 = time.perf_counter()
    res = ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=args.lam,
                        kernel=args.kernel, spectrum=args.spectrum, block_size=args.block_size)
    secs = time.perf_counter() - t0
    io.save_npz(out / "influence.npz", influence=res.influence, ihvp=res.ihvp,
                leverage=res.leverage, f_test=res.f_test, alpha=res.alpha, y_test=res.y_test,
                self_influence=res.self_influence, loo_f_train=res.loo_f_train,
                f_train=res.f_train, train_index=ds.train_index, test_index=ds.test_index)
    k = min(args.top, res.n_train)
    per_test = [{"test_index": j,
                 "helpful": [{"train_index": int(i), "influence": float(res.influence[i, j])}
                             for i in res.ranking(j, k, "helpful")],
                 "harmful": [{"train_index": int(i), "influence": float(res.influence[i, j])}
                             for i in res.ranking(j, k, "harmful")]}
                for j in range(res.n_test)]
    io.save_json(out / "summary.json", {
        "command": "influence", "settings": settings_of(args), "data": ds.describe(),
        "kernel": res.kernel, "lam": res.lam,
        "conditioning": {"lambda_min": res.lambda_min, "lambda_max": res.lambda_max,
                         "cond_K_plus_lam_I": res.cond, "spectrum_method": res.spectrum_method},
        "theorem3": {"lower": res.theorem3_lower, "upper": res.theorem3_upper,
                     "leverage_min": float(res.leverage.min()),
                     "leverage_max": float(res.leverage.max())},
        "seconds": secs, "sign_convention": "influence > 0: removing the point raises the test "
                                            "loss (helpful); < 0: harmful",
        "per_test": per_test})
    log(args, f"n_train={res.n_train} n_test={res.n_test} lam={res.lam:g} "
              f"cond(K+lam I)={res.cond:.3g} in {secs:.2f} s")
    return out


COMMANDS: list[Command] = [
    Command("influence", "exact NTK influence of every training point on every test loss "
            "(eq. 8-9), the IHVP estimate (eq. 13) and leverage", _influence_args, _influence_run),
]


def _load_extra_commands() -> None:
    """Register subcommands that live in other modules (each exposes ``COMMANDS``)."""
    import importlib

    for mod in ("ntk_influence._cli_nets", "ntk_influence._cli_analysis",
                "ntk_influence._cli_reproduce"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        names = {c.name for c in COMMANDS}
        COMMANDS.extend(c for c in getattr(m, "COMMANDS", []) if c.name not in names)


def _same_settings(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two runs' settings agree, ignoring how they were run (out, resume, quiet)."""
    from .io import _jsonable

    skip = ("out", "resume", "quiet")
    strip = lambda d: {k: v for k, v in _jsonable(d).items() if k not in skip}  # noqa: E731
    return strip(old) == strip(new)


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


def _common(p: argparse.ArgumentParser, name: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", default=f"results/{name}", metavar="DIR",
                   help="output folder (default: %(default)s)")
    g.add_argument("--config", metavar="FILE.toml",
                   help="TOML file of option values (keys as on the command line, e.g. "
                        "n-train = 100); the command line overrides it")
    g.add_argument("--resume", action="store_true",
                   help="reuse finished work in --out after an interruption")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand (those of other modules included).

    Returns:
      The ``argparse`` parser.
    """
    _load_extra_commands()
    parser = argparse.ArgumentParser(
        prog="ntk-influence",
        description="Influence functions of wide neural networks through the NTK "
                    "(Zhang & Zhang, AAAI 2022).")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, description=c.help)
        c.add_arguments(p)
        _common(p, c.name)
        p.set_defaults(func=c.run)
    return parser


def _apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> None:
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
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config file {path} is not valid TOML: {e}") from e
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sp = sub.choices.get(known.command)
    if sp is None:
        return
    cfg = cfg.get(known.command, cfg) if isinstance(cfg.get(known.command), dict) else cfg
    by_option = {o: a for a in sp._actions for o in a.option_strings}
    by_dest: dict[str, list[argparse.Action]] = {}
    for a in sp._actions:
        by_dest.setdefault(a.dest, []).append(a)
    valid = sorted(o[2:] for o in by_option if o.startswith("--") and o not in ("--help", "--config"))
    values: dict[str, Any] = {}
    for key, val in cfg.items():
        if isinstance(val, dict):
            continue
        action = by_option.get("--" + key)
        if action is None or key in ("help", "config"):
            consts = [a for a in by_dest.get(key.replace("-", "_"), [])
                      if isinstance(a, argparse._StoreConstAction) and a.const == val]
            if not consts:
                raise InputError(f"unknown option {key!r} (or value {val!r}) in {path}; valid "
                                 f"keys: {valid}.")
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
        if action.type is not None and not isinstance(v, bool):
            try:
                v = action.type(v)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                raise InputError(f"{where}: {v!r} is not a valid value ({e}).") from e
        if action.choices is not None and v not in action.choices:
            raise InputError(f"{where}: {v!r} is not one of {list(action.choices)}.")
        return v

    return [one(v) for v in val] if many else one(val)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Args:
      argv: arguments (default: ``sys.argv[1:]``).

    Returns:
      0 success, 2 bad usage/input, 3 numerical failure, 1 other failure, 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        _apply_config(parser, argv)
        args = parser.parse_args(argv)
    except InputError as e:
        print(f"ntk-influence: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_USAGE
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    from ._precision import precision

    try:
        with precision("float64"):
            out = args.func(args)
    except KeyboardInterrupt:
        print("ntk-influence: interrupted; run again with --resume to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (NumericalError, NotConvergedError) as e:
        print(f"ntk-influence: numerical failure: {e}", file=sys.stderr)
        return EXIT_NUMERICAL
    except InputError as e:
        print(f"ntk-influence: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        print("ntk-influence: failed (see the traceback above).", file=sys.stderr)
        return EXIT_FAILURE
    print(f"results in {Path(out).resolve()}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
