"""The ``ntk-influence`` console script: signal handlers first, then the library (and JAX).

Importing the library takes seconds (JAX, Flax, Neural Tangents). Until
:func:`ntk_influence.cli.main` installs its own handlers, Ctrl-C and SIGTERM are only recorded
here: raising inside an extension module's import can crash the interpreter, and JAX's
garbage-collector callback would swallow the exception. ``main`` takes the record over (any
handler with a ``received`` list) and ends the run at once with exit 130.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


class _Recorder:
    """A signal handler that only records the signals it receives."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, signum: int, frame: Any) -> None:
        """Record ``signum``."""
        self.received.append(signum)


def main() -> int:
    """Record SIGINT/SIGTERM, import the command line and run it.

    Returns:
      The exit code of :func:`ntk_influence.cli.main`.
    """
    record = _Recorder()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, record)
    signal.signal(signal.SIGTERM, record)
    from .cli import main as cli_main  # after the handlers: this import loads JAX

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
