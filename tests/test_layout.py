"""The package's shape: layers without back arrows, a curated top level, one home per name.

Run ``python tests/test_layout.py --write`` to regenerate the README's organisation section from
the package after adding a module or a public name.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import warnings
from pathlib import Path

import pytest

import ntk_influence as ni

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ntk_influence"
README = ROOT / "README.md"
START, END = "<!-- layout:start -->", "<!-- layout:end -->"

#: The subpackages, lowest layer first: each may import only those before it.
LAYERS = ("io", "data", "kernels", "linalg", "influence", "scale", "nets", "training",
          "attribution", "experiments", "plots", "cli")
#: The root's private foundation, importable from every layer.
FOUNDATION = ("errors", "_precision", "_validate")
MAX_LINES = 500
MAX_TOP_LEVEL = 25


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _owner(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else Path(rel[0]).stem


def _imports(path: Path) -> list[tuple[ast.ImportFrom, bool]]:
    """Relative imports in ``path`` and whether each sits inside a function (deferred)."""
    tree = ast.parse(path.read_text())
    out: list[tuple[ast.ImportFrom, bool]] = []

    def walk(node: ast.AST, in_fn: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom) and child.level > 0:
                out.append((child, in_fn))
            walk(child, in_fn or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    walk(tree, False)
    return out


def _target(path: Path, node: ast.ImportFrom) -> list[str]:
    """The top-level units (subpackage or root module) a relative import reaches."""
    base = list(path.relative_to(PKG).parts[:-1])
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    parts = base + (node.module.split(".") if node.module else [])
    if parts:
        return [parts[0]]
    return [a.name for a in node.names]  # ``from .. import data``


def test_no_module_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_layers_import_only_downwards_and_through_the_front_door():
    """A subpackage imports only lower layers (through their ``__init__``) and the foundation."""
    bad = []
    for path in _modules():
        unit = _owner(path)
        if unit not in LAYERS:
            continue
        for node, _ in _imports(path):
            for tgt in _target(path, node):
                if tgt == unit or tgt in FOUNDATION or tgt in ("__version__",):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if tgt not in LAYERS:
                    bad.append(f"{where} imports {tgt}")
                elif LAYERS.index(tgt) > LAYERS.index(unit):
                    bad.append(f"{where}: {unit} imports the higher layer {tgt}")
                elif node.module and "." in node.module and tgt != unit:
                    bad.append(f"{where} reaches into {node.module} (import through {tgt}/__init__)")
    assert not bad, "\n".join(bad)


def test_deferred_imports_only_in_the_cli():
    """Library code imports at module level: a function-level import would hide a cycle.

    The exceptions import on purpose when called: the command line (start-up speed), the
    console-script entry (signal handlers before JAX) and the deprecation aliases.
    """
    deferred = [f"{p.relative_to(ROOT)}:{node.lineno}" for p in _modules()
                if _owner(p) not in ("cli", "_compat", "_entry") for node, in_fn in _imports(p) if in_fn]
    assert not deferred, f"function-level package imports outside the CLI: {deferred}"


def test_no_import_cycles_between_modules():
    """Module-level imports form a DAG (the CLI's deferred start-up imports included)."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        name = ".".join(path.relative_to(PKG).with_suffix("").parts)
        deps = graph.setdefault(name, set())
        for node, _ in _imports(path):
            base = list(path.relative_to(PKG).parts[:-1])
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            mod = base + (node.module.split(".") if node.module else [])
            cands = [".".join(mod)] if node.module else [".".join([*mod, a.name]) for a in node.names]
            for c in cands:
                c = c.removesuffix(".__init__")
                if (PKG / (c.replace(".", "/") + ".py")).exists() or (PKG / c.replace(".", "/")).is_dir():
                    deps.add(c if (PKG / (c.replace(".", "/") + ".py")).exists() else f"{c}.__init__")
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if d == n:
                continue
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, n, d]))
            if d not in state:
                visit(d, [*stack, n])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])


def test_top_level_is_curated():
    assert len(ni.__all__) <= MAX_TOP_LEVEL, f"{len(ni.__all__)} top-level names"
    for name in ni.__all__:
        obj = getattr(ni, name)
        home = obj.__module__.split(".")[1]
        assert home in LAYERS or home in FOUNDATION, (name, obj.__module__)


def _homes() -> dict[str, list[str]]:
    homes: dict[str, list[str]] = {}
    for sub in [*LAYERS[:-1], "errors"]:
        mod = importlib.import_module(f"ntk_influence.{sub}")
        for name in getattr(mod, "__all__", ()):
            homes.setdefault(name, []).append(sub)
    return homes


def test_every_public_name_has_exactly_one_home():
    twice = {n: h for n, h in _homes().items() if len(h) > 1}
    assert not twice, f"names exported by more than one subpackage: {twice}"
    homes = _homes()
    orphans = [n for n in ni.__all__ if n not in homes
               and getattr(ni, n).__module__ != "ntk_influence._precision"]
    assert not orphans, f"top-level names without a subpackage home: {orphans}"


def test_every_subpackage_name_imports_and_is_documented():
    lacking = []
    for sub in [*LAYERS[:-1], "errors"]:
        mod = importlib.import_module(f"ntk_influence.{sub}")
        assert inspect.getdoc(mod) and "TODO" not in inspect.getdoc(mod), sub
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj) or ""
            if not doc:
                lacking.append(f"{sub}.{name} (no docstring)")
            elif inspect.isfunction(obj):
                params = list(inspect.signature(obj).parameters)
                if params and "Args:" not in doc:
                    lacking.append(f"{sub}.{name} (no Args)")
                if "Returns:" not in doc and "Yields:" not in doc:
                    lacking.append(f"{sub}.{name} (no Returns)")
    assert not lacking, f"public names with incomplete docstrings: {lacking}"


def test_old_names_and_module_paths_warn_and_resolve():
    from ntk_influence import _compat

    for old in [*_compat.OLD_NAMES, *_compat.RENAMED]:
        home, _, new_name = _compat.home_of(old).partition(":")
        with pytest.warns(DeprecationWarning, match=f"ntk_influence.{home}.{new_name}"):
            obj = getattr(ni, old)
        assert obj is getattr(importlib.import_module(f"ntk_influence.{home}"), new_name)
    with pytest.warns(DeprecationWarning, match="ntk_influence.linalg"):
        import ntk_influence.krr as old_krr
    assert old_krr is ni.linalg
    with pytest.warns(DeprecationWarning, match="ntk_influence.nets.mlp"):
        net = ni.ReLUMLP(3, 4, 2, seed=1)
    assert net.width == 4
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = ni.nonsense
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ = ni.ntk_influence, ni.linalg.factorize  # current names do not warn


def _markdown(doc: str | None) -> str:
    """A docstring's summary (first paragraph) as Markdown: ``x`` and :role:`~a.b.x` become `x`."""
    rst = " ".join((doc or "").split("\n\n")[0].split())
    rst = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"`\1`", rst)
    return rst.replace("``", "`")


def render_layout() -> str:
    """The README's organisation section, generated from the package."""
    top = set(ni.__all__)
    lines = [START, "", "| layer | module | what it holds | public names (**bold**: also at the top level) |",
             "|---|---|---|---|"]
    for sub in ("errors", *LAYERS):
        mod = importlib.import_module(f"ntk_influence.{sub}")
        summary = _markdown(inspect.getdoc(mod))
        names = ", ".join(f"**`{n}`**" if n in top else f"`{n}`"
                          for n in sorted(getattr(mod, "__all__", ())))
        where = f"{sub}/" if hasattr(mod, "__path__") else f"{sub}.py"
        lines.append(f"| `{sub}` | `{where}` | {summary} | {names} |")
        if hasattr(mod, "__path__"):
            for p in sorted(Path(mod.__path__[0]).glob("*.py")):
                if p.name.startswith("__"):
                    continue
                sm = importlib.import_module(f"ntk_influence.{sub}.{p.stem}")
                first = _markdown(inspect.getdoc(sm))
                lines.append(f"| | `{p.name}` | {first} | |")
    lines += ["", END]
    return "\n".join(lines)


def test_readme_organisation_section_matches_the_package():
    text = README.read_text()
    assert START in text and END in text, "README lacks the layout markers"
    current = text[text.index(START): text.index(END) + len(END)]
    assert current == render_layout(), "README organisation is stale: run python tests/test_layout.py --write"


if __name__ == "__main__" and "--write" in sys.argv:
    text = README.read_text()
    new = text[: text.index(START)] + render_layout() + text[text.index(END) + len(END):]
    README.write_text(new)
    print("README organisation section rewritten")
