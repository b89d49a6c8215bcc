"""Packaging: what the documentation tells users to run is installed by the extras."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dev_extra() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = meta["project"]["optional-dependencies"]["dev"]
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}


def test_dev_extra_runs_the_tests_and_the_notebooks():
    # pytest and mpmath for the tests; nbclient/nbformat/ipykernel run the notebooks in the
    # tests and nbconvert runs them from the command line (jupyter nbconvert --execute)
    need = {"pytest", "ruff", "mpmath", "nbclient", "nbformat", "ipykernel", "nbconvert"}
    assert need <= _dev_extra(), sorted(need - _dev_extra())
