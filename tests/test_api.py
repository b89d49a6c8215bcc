"""The public API: every exported name imports, and every public callable is documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import ntk_influence as ni


def test_all_names_import():
    assert len(ni.__all__) == len(set(ni.__all__)), "duplicate names in __all__"
    missing = [n for n in ni.__all__ if not hasattr(ni, n)]
    assert not missing, f"names in __all__ that do not exist: {missing}"
    ns: dict = {}
    exec("from ntk_influence import *", ns)
    assert set(ni.__all__) <= set(ns)


def _public_members(obj):
    for name, member in inspect.getmembers(obj):
        if name.startswith("_") or not callable(member):
            continue
        if inspect.isclass(obj) and name not in vars(obj):
            continue  # inherited (tuple/dataclass/Exception machinery)
        yield name, member


SUBPACKAGES = ("errors", "io", "data", "kernels", "linalg", "influence", "scale", "nets", "training",
               "attribution", "experiments", "plots")
PUBLIC = sorted({("", n) for n in ni.__all__}
                | {(s, n) for s in SUBPACKAGES for n in getattr(ni, s).__all__})


@pytest.mark.parametrize(("sub", "name"), PUBLIC, ids=[f"{s}.{n}".lstrip(".") for s, n in PUBLIC])
def test_public_callables_have_docstrings(sub, name):
    obj = getattr(getattr(ni, sub) if sub else ni, name)
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return  # constants and typing aliases (``Literal[...]``) carry no docstring of their own
    assert inspect.getdoc(obj), f"ntk_influence.{sub}.{name} has no docstring"
    if inspect.isclass(obj):
        undocumented = [m for m, f in _public_members(obj) if not inspect.getdoc(f)]
        assert not undocumented, f"{name} methods without docstrings: {undocumented}"


def test_public_functions_say_what_they_take_and_return():
    """Functions with parameters document them in an Args section and the result in Returns."""
    lacking = []
    for name in ni.__all__:
        obj = getattr(ni, name)
        if not inspect.isfunction(obj):
            continue
        params = [p for p in inspect.signature(obj).parameters if p not in ("self",)]
        doc = inspect.getdoc(obj) or ""
        if params and "Args:" not in doc:
            lacking.append(f"{name} (no Args)")
        if "Returns:" not in doc and "Yields:" not in doc:
            lacking.append(f"{name} (no Returns)")
    assert not lacking, f"docstrings missing sections: {lacking}"


def test_every_module_imports_and_documents_itself():
    for info in pkgutil.iter_modules(ni.__path__):
        mod = importlib.import_module(f"ntk_influence.{info.name}")
        assert inspect.getdoc(mod), f"module ntk_influence.{info.name} has no docstring"


def test_version():
    assert isinstance(ni.__version__, str) and ni.__version__.count(".") >= 2


def test_every_public_function_of_every_module_is_documented():
    """Not only the exported names: users reach submodules (``ni.dynamics``, ``ni.compare``...)."""
    missing = []
    for info in pkgutil.iter_modules(ni.__path__):
        mod = importlib.import_module(f"ntk_influence.{info.name}")
        for name, obj in inspect.getmembers(mod):
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if not inspect.getdoc(obj):
                    missing.append(f"{mod.__name__}.{name}")
                if inspect.isclass(obj):
                    missing += [f"{mod.__name__}.{name}.{m}" for m, f in vars(obj).items()
                                if not m.startswith("_") and inspect.isfunction(f)
                                and not inspect.getdoc(f)]
    assert not missing, f"public callables without docstrings: {missing}"
