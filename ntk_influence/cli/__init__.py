"""The ``ntk-influence`` command line: a thin layer over the importable functions.

The subcommands are listed once, in :data:`COMMANDS`; each lives in one module of this package
(``core``: influence; ``nets``: compare; ``analysis``: the paper's figures; ``attribution``: the
attribution benchmark; ``reproduce``: the paper's subcommands, its ``PART_COMMANDS``, in one
report), imported directly, so a missing module is an ImportError, never a silently absent
subcommand. Every subcommand takes ``--out DIR``, ``--config FILE.toml``, ``--resume`` and
``--quiet``, writes its results atomically and ends with a line naming where the results are.
Exit codes: 0 success, 2 bad usage or input, 3 numerical failure (singular kernel, solver not
converged), 1 any other failure, 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._precision import precision
from ..errors import InputError, NotConvergedError, NumericalError
from . import analysis, attribution, core, nets, reproduce
from ._common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NUMERICAL,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    add_data_arguments,
    apply_config,
    log,
    parser_for,
    report_warning,
    settings_of,
)
from ._outdir import load_data_from_args, run_in_folder

COMMANDS: tuple[Command, ...] = (
    core.INFLUENCE,
    nets.COMPARE,
    analysis.LAMBDA_SWEEP,
    analysis.DENSITY,
    analysis.EXAMPLES,
    analysis.COMPLEXITY,
    analysis.DYNAMICS,
    analysis.LABEL_NOISE,
    reproduce.REPRODUCE,
    attribution.ATTRIBUTION,
)
"""Every subcommand, in the order ``--help`` lists them."""

def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :data:`COMMANDS`.

    Returns:
      The ``argparse`` parser.
    """
    return parser_for(COMMANDS)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interruption so that a run stops as cleanly as on Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; no-op elsewhere).

    SIGTERM and Ctrl-C are also recorded with :func:`ntk_influence.training.request_interrupt`,
    so that a chunked sweep stops at its next wait even when the handler's own exception is
    lost (a signal landing in a garbage-collector callback).

    Returns:
      A context manager; the previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # deferred for start-up speed
    from ..training import clear_interrupt, request_interrupt

    def on_term(signum: int, frame: Any) -> None:
        request_interrupt(Terminated)
        raise Terminated

    def on_int(signum: int, frame: Any) -> None:
        request_interrupt(KeyboardInterrupt)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:  # leave a caller's own handler alone
        signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        clear_interrupt()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Python warnings raised while a subcommand runs are printed as
    ``ntk-influence: warning: <message>``; SIGTERM stops the run like Ctrl-C (exit 130).

    Args:
      argv: arguments (default: ``sys.argv[1:]``).

    Returns:
      0 success, 2 bad usage/input, 3 numerical failure, 1 other failure, 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        apply_config(parser, argv)
        args = parser.parse_args(argv)
    except InputError as e:
        print(f"ntk-influence: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_USAGE
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        with sigterm_as_interrupt(), warnings.catch_warnings(), precision("float64"):
            warnings.showwarning = report_warning
            out = run_in_folder(args, args.func)
    except KeyboardInterrupt as e:
        why = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"ntk-influence: {why}; run again with --resume to continue.", file=sys.stderr)
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


__all__ = [
    "COMMANDS",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NUMERICAL",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "add_data_arguments",
    "build_parser",
    "load_data_from_args",
    "log",
    "main",
    "settings_of",
]
