"""Formatting helpers of the documentation renderer (:mod:`render_docs`): run records, numbers,
tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MissingRunError(RuntimeError):
    """A section's run (or one of its JSON files) is not in the results folder."""


def load(results: Path, run: str, name: str) -> Any:
    """The decoded JSON file ``name`` of run ``run``.

    Args:
      results: the results folder.
      run: the run's folder name.
      name: the file's path inside the run's folder.

    Returns:
      The decoded JSON.
    """
    path = results / run / name
    if not path.exists():
        raise MissingRunError(f"{path} is missing: record the run with "
                              f"'python benchmarks/render_docs.py record {run} ...'.")
    return json.loads(path.read_text())


def g(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (``n/a`` for None, ``inf`` for null times)."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.{max(digits - 1, 0)}e}"
    return f"{x:.{digits}g}"


def fx(x: float, decimals: int = 2) -> str:
    """A number with a fixed number of decimals."""
    return f"{float(x):.{decimals}f}"


def seconds(s: float) -> str:
    """A duration: ``12.3 s`` or ``5 min 18 s``."""
    s = float(s)
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, r = divmod(round(s), 60)
    return f"{m} min {r} s"


def load_text(rec: dict[str, Any]) -> str:
    """The load averages of a run record (1, 5 and 15 minutes, at the start and the end)."""
    a, b = rec.get("load_avg_start"), rec.get("load_avg_end")
    if not a or not b:
        return "load average not recorded"
    return (f"load average (1/5/15 min) {'/'.join(f'{v:.1f}' for v in a)} at the start and "
            f"{'/'.join(f'{v:.1f}' for v in b)} at the end")


def source(results: Path, run: str, link: str = "benchmarks/runs") -> str:
    """The line that names a section's run: command, date, machine, load and wall time.

    Args:
      results: the results folder.
      run: the run's folder name.
      link: the results folder relative to the document the line goes into.

    Returns:
      One Markdown paragraph.
    """
    rec = load(results, run, "run.json")
    date = rec["date"].replace("T", " ")[:16]
    zone = rec["date"][19:]
    zone = "UTC" if zone in ("", "+00:00", "Z") else f"UTC{zone}"
    wall = f", wall time {seconds(rec['wall_s'])}" if "wall_s" in rec else ""
    return (f"*Source: `{rec['command']}`, run {date} {zone} on "
            f"{rec['machine']} with {rec['cpus']} CPU cores shared with other jobs "
            f"({load_text(rec)}){wall}; JSON in "
            f"[`benchmarks/runs/{run}/`]({link}/{run}).*")


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (numeric columns right-aligned)."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def times(ts: list[Any]) -> list[str]:
    """Times ``t`` as text (``inf`` for infinite or null)."""
    return ["inf" if t is None or t in ("inf", float("inf")) else g(float(t)) for t in ts]


def verdict(value: float, target: float) -> str:
    """``met (...)`` or ``**missed** (..., N% above ...)`` for a figure with an upper target."""
    if value <= target:
        return f"met ({fx(value)} <= {g(target)})"
    return f"**missed** ({fx(value)}, {100 * (value / target - 1):.0f}% above {g(target)})"
