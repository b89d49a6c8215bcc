"""The ``ntk-influence`` command line: a thin layer over the importable functions.

The subcommands are listed once, in :data:`COMMANDS`; each lives in one module of this package
(``core``: influence; ``nets``: compare; ``analysis``: the paper's figures; ``attribution``: the
attribution benchmark; ``clean``: data cleaning verified by retraining; ``reproduce``: the
paper's subcommands, its ``PART_COMMANDS``, in one report), imported directly, so a missing
module is an ImportError, never a silently absent subcommand. Every subcommand takes ``--out
DIR``, ``--config FILE.toml``, ``--resume`` and ``--quiet``, writes its results atomically and
ends with a line naming where the results are. Exit codes: 0 success, 2 bad usage or input, 3
numerical failure (singular kernel, solver not converged), 1 any other failure, 130
interrupted (Ctrl-C or SIGTERM, from the moment :func:`main` starts; a signal is never lost).
Every option value is checked before any work: against its type when parsed, against the data
(sizes, indices) as soon as the data are loaded.
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
from . import analysis, attribution, clean, core, nets, reproduce
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
    clean.CLEAN,
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


class _Signals:
    """SIGINT/SIGTERM handlers that record every signal and raise it as an interruption.

    A handler's exception is lost when the signal lands while Python runs a garbage-collector
    callback (JAX installs one), so each signal is also recorded in :attr:`received`; the
    command line checks the record before the run and after it, and a recorded signal ends the
    run with exit 130 whatever happened to the exception. :attr:`forward` (once set) records it
    for the chunked sweeps as well (:func:`ntk_influence.training.request_interrupt`).
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.raising = True
        self.forward: Any = None

    def handle(self, signum: int, frame: Any) -> None:
        """The handler: record the signal, forward it, and (while running) raise it."""
        self.received.append(signum)
        kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        if self.forward is not None:
            self.forward(kind)
        if self.raising:
            raise kind

    def first(self) -> KeyboardInterrupt:
        """The interruption of the first recorded signal."""
        return Terminated() if self.received[0] == signal.SIGTERM else KeyboardInterrupt()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGTERM, and SIGINT where Python's own handler is in place, within the block.

        A SIGINT that the process inherited as ignored (``nohup``) or a caller's own SIGINT
        handler is left alone. Handlers an entry point installed before the library's imports
        (any handler with a ``received`` list) are replaced, and the signals they recorded are
        carried over. Main thread only (a no-op elsewhere). The previous handlers are restored
        on exit.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for h in {id(h): h for h in previous.values()}.values():
            self.received.extend(getattr(h, "received", ()))
        for s, h in previous.items():
            if s == signal.SIGTERM or h is signal.default_int_handler or hasattr(h, "received"):
                signal.signal(s, self.handle)
        try:
            yield
        finally:
            for s, h in previous.items():
                if signal.getsignal(s) == self.handle and h is not None:
                    signal.signal(s, h)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; no-op elsewhere).

    SIGTERM and Ctrl-C are also recorded with :func:`ntk_influence.training.request_interrupt`,
    so that a chunked sweep stops at its next wait even when the handler's own exception is
    lost (a signal landing in a garbage-collector callback).

    Returns:
      A context manager; the previous handlers are restored on exit.
    """
    # deferred for start-up speed
    from ..training import clear_interrupt, request_interrupt

    state = _Signals()
    state.forward = request_interrupt
    try:
        with state.installed():
            yield
    finally:
        clear_interrupt()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Python warnings raised while a subcommand runs are printed as
    ``ntk-influence: warning: <message>``. Ctrl-C and SIGTERM stop the run (exit 130) from the
    moment ``main`` starts: a signal is never lost, even where its exception is (a signal that
    lands in a garbage-collector callback); it is recorded and ends the run with exit 130.

    Args:
      argv: arguments (default: ``sys.argv[1:]``).

    Returns:
      0 success, 2 bad usage/input, 3 numerical failure, 1 other failure, 130 interrupted.
    """
    sig = _Signals()
    with sig.installed():
        try:
            try:
                code = _main(argv, sig)
            finally:
                sig.raising = False  # a signal from here on is recorded only
        except KeyboardInterrupt as e:
            code = _interrupted(e)
        if sig.received and code != EXIT_INTERRUPTED:
            code = _interrupted(sig.first())
        if sig.forward is not None:
            # deferred for start-up speed
            from ..training import clear_interrupt

            clear_interrupt()
    return code


def _interrupted(e: BaseException) -> int:
    why = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
    print(f"ntk-influence: {why}; run again with --resume to continue.", file=sys.stderr)
    return EXIT_INTERRUPTED


def _main(argv: list[str] | None, sig: _Signals) -> int:
    """:func:`main` with its signal handlers in place."""
    if sig.received:  # before main started (an entry point's own handlers recorded it)
        raise sig.first()
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
    # deferred for start-up speed
    from ..training import request_interrupt

    sig.forward = request_interrupt
    if sig.received:  # a signal whose exception was lost: stop before any work
        raise sig.first()
    try:
        with warnings.catch_warnings(), precision("float64"):
            warnings.showwarning = report_warning
            out = run_in_folder(args, _checked(args.func, sig))
    except (NumericalError, NotConvergedError) as e:
        print(f"ntk-influence: numerical failure: {e}", file=sys.stderr)
        return EXIT_NUMERICAL
    except InputError as e:
        print(f"ntk-influence: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        if sig.received:  # an interruption that surfaced as another error
            raise sig.first() from None
        traceback.print_exc()
        print("ntk-influence: failed (see the traceback above).", file=sys.stderr)
        return EXIT_FAILURE
    if sig.received:
        raise sig.first()
    print(f"results in {Path(out).resolve()}")
    return EXIT_OK


def _checked(func: Any, sig: _Signals) -> Any:
    """``func`` that first stops on a signal recorded while the output folder was prepared."""
    def run(args: argparse.Namespace) -> Path:
        if sig.received:
            raise sig.first()
        return func(args)

    return run


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
