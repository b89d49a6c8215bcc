"""Run record shared by the benchmark scripts: command line, date, machine, load, wall time.

Every script calls :func:`start` first and :func:`write` (which calls :func:`finish`) on the
dict it saves, so each JSON says
what ran, where, under what load (``os.getloadavg`` at start and end) and for how long. The
documentation renderer (``render_docs.py``) quotes these fields next to every number.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _command(argv: list[str] | None) -> str:
    """The command line as typed from the repository root (``python benchmarks/x.py ...``)."""
    args = list(sys.argv if argv is None else argv)
    script = Path(args[0]).resolve() if args else Path("?")
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(args[0]) if args else "?"
    return shlex.join(["python", shown, *args[1:]])


def start(argv: list[str] | None = None) -> dict[str, Any]:
    """A run record at the start of a benchmark.

    Args:
      argv: the command line (``sys.argv`` when None).

    Returns:
      ``{"run": {...}}``: command, ISO date, machine, CPU count, load average at start, and the
      start time (removed by :func:`finish`).
    """
    return {"run": {"command": _command(argv),
                    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "machine": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_start": [round(v, 2) for v in os.getloadavg()],
                    "_t0": time.perf_counter()}}


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """Complete the run record of ``info`` (from :func:`start`) with the load at the end.

    Args:
      info: the dict the benchmark writes, holding ``info["run"]`` from :func:`start`.

    Returns:
      ``info``, with ``run.load_avg_end`` and ``run.wall_s`` filled in.
    """
    run = info["run"]
    t0 = run.pop("_t0", None)
    run["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    if t0 is not None:
        run["wall_s"] = round(time.perf_counter() - t0, 2)
    return info


def write(info: dict[str, Any], out: str | Path) -> None:
    """Finish the run record of ``info``, write it as JSON to ``out`` atomically and say where.

    A script may call it after each finished part (the record then covers the run so far).

    Args:
      info: the dict the benchmark writes, holding ``info["run"]`` from :func:`start`.
      out: the JSON path (its folder is created).
    """
    import json

    from ntk_influence.io import atomic_write_bytes

    record = finish({**info, "run": dict(info["run"])})  # info keeps its start time
    text = json.dumps(record, indent=2, default=float) + "\n"  # numpy scalars as floats
    atomic_write_bytes(out, text.encode())
    print(f"wrote {out}")
