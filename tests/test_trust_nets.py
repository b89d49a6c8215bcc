"""Net builders refuse bad widths and nets that cannot fit in memory, before any work."""

from __future__ import annotations

import time

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence.errors import InputError, MemoryPlanError
from ntk_influence.nets import _budget

X_FLAT = np.full((3, 4), 0.5)

FAMILIES = ["two-layer", "mlp:2", "cnn:1", "mlp:1:erf", "cnn:2:gelu"]

BAD_WIDTHS = [(2.5, "width must be a whole number"), (8.0, "width must be a whole number"),
              (True, "width must be a whole number"), ("8", "width must be a whole number"),
              (0, "width must be >= 1"), (-4, "width must be >= 1")]


@pytest.mark.parametrize("spec", FAMILIES)
@pytest.mark.parametrize("width, fragment", BAD_WIDTHS, ids=[repr(w) for w, _ in BAD_WIDTHS])
def test_family_net_refuses_non_whole_width(spec, width, fragment):
    """``architecture(spec).net(x, 2.5)`` used to build width 2; every family now refuses."""
    fam = ni.architecture(spec)
    with pytest.raises(InputError, match=fragment):
        fam.net(fam.prepare(X_FLAT), width)


@pytest.mark.parametrize("seed", [1.5, -1, "0"])
def test_family_net_refuses_bad_seed(seed):
    fam = ni.architecture("mlp:2")
    with pytest.raises(InputError, match="seed must be"):
        fam.net(X_FLAT, 4, seed=seed)


def test_family_net_accepts_numpy_integer_width():
    net = ni.architecture("mlp:2").net(X_FLAT, np.int64(4), seed=np.int32(1))
    assert net.width == 4


HUGE = [("two_layer_net", lambda: ni.two_layer_net(6, 10**10), 10**10),
        ("two_layer_net symmetric", lambda: ni.two_layer_net(6, 2 * 10**9, symmetric=True),
         2 * 10**9),
        ("mlp", lambda: ni.nets.mlp(6, 10**6, 2), 10**6),
        ("mlp float32", lambda: ni.nets.mlp(6, 10**6, 2, param_dtype=np.float32), 10**6),
        ("mlp gelu", lambda: ni.nets.mlp(6, 10**6, 2, activation="gelu"), 10**6),
        ("cnn", lambda: ni.nets.cnn((8, 8, 1), 10**6, 2), 10**6),
        ("architecture two-layer", lambda: ni.architecture("two-layer").net(X_FLAT, 10**11),
         10**11),
        ("architecture mlp", lambda: ni.architecture("mlp:3").net(X_FLAT, 10**6), 10**6),
        ("architecture cnn", lambda: ni.architecture("cnn:2").net(np.zeros((2, 4, 4, 1)), 10**6),
         10**6)]


@pytest.mark.parametrize("name, build, width", HUGE, ids=[h[0] for h in HUGE])
def test_huge_width_refused_fast_before_allocating(name, build, width):
    """``two_layer_net(6, 10**10)`` used to map 480 GB lazily; now a MemoryPlanError, at once."""
    t0 = time.perf_counter()
    with pytest.raises(MemoryPlanError) as info:
        build()
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert f"width={width}" in msg and "bytes" in msg and "available" in msg
    assert "smaller width" in msg
    assert isinstance(info.value, InputError)  # the CLI's exit code 2


def test_memory_check_names_needed_and_available_bytes(monkeypatch):
    """The check compares parameters plus initialisation with ni.linalg.host_memory_bytes()."""
    monkeypatch.setattr(_budget, "host_memory_bytes", lambda: 10_000)
    monkeypatch.setattr(_budget, "device_memory_bytes", lambda: None)
    need = _budget.param_memory_bytes(6 * 200 + 200, 8)
    assert need > 10_000
    with pytest.raises(MemoryPlanError, match=f"{need:,} bytes.*10,000 bytes.*host memory"):
        ni.two_layer_net(6, 200)
    ni.two_layer_net(6, 20)  # 4 * 140 * 8 = 4,480 bytes fit
    monkeypatch.setattr(_budget, "host_memory_bytes", lambda: 10**12)
    monkeypatch.setattr(_budget, "device_memory_bytes", lambda: 1_000)
    with pytest.raises(MemoryPlanError, match="device memory"):
        ni.nets.mlp(3, 8, 1)


def test_small_nets_still_build():
    assert ni.two_layer_net(6, 10).n_params == 60
    assert ni.nets.functional(ni.nets.mlp(6, 4, 2)).n_params == 2 * (24 + 16 + 4)
