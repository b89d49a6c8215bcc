"""Every notebook runs top to bottom (at the ``tiny`` size) and matches the script that builds it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
# Training and retraining finite nets (notebook 1) compiles for about half a minute even tiny.
SLOW = {"01_quickstart_table1_figure1"}

nbformat = pytest.importorskip("nbformat")


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NB_DIR / "build_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_notebooks_are_built_from_the_script_and_have_no_outputs(tmp_path):
    built = _builder().build(tmp_path)
    assert sorted(p.name for p in built) == [p.name for p in NOTEBOOKS], \
        "run python notebooks/build_notebooks.py"
    for p in built:
        ours = nbformat.read(NB_DIR / p.name, as_version=4)
        fresh = nbformat.read(p, as_version=4)
        assert [c.source for c in ours.cells] == [c.source for c in fresh.cells], \
            f"{p.name} differs from build_notebooks.py; rebuild it"
        for c in ours.cells:
            if c.cell_type == "code":
                assert not c.outputs and c.execution_count is None, f"{p.name} has outputs"


@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else [])
    for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("NTK_INFLUENCE_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert images >= 1, f"{path.name} drew no inline figure"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
