"""Infinite-width kernels: the paper's eq. (4) in closed form, any stax net, blocked.

A :class:`Kernel` wraps a jit-able function ``(x1, x2) -> (n1, n2)`` together with its name and
whether it assumes unit-norm inputs. :func:`kernel_matrix` evaluates it in row blocks so that
memory stays ``O(n1 * n2 + block * n2)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import precision
from .._validate import as_array, check_dtype, check_positive, check_whole, ensure_unit_norm
from ..errors import InputError
from . import _nt

KernelFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A kernel function with its description.

    Attributes:
      fn: jit-able ``(x1, x2) -> (n1, n2)`` array function.
      name: a short description, written into results.
      unit_norm: whether the kernel assumes ``||x|| = 1`` (eq. 4 does).
      flatten: whether inputs are flattened to ``(n, d)`` before ``fn`` (False for conv nets).
      host_fn: the same kernel on NumPy arrays (the same formula, evaluated by NumPy/BLAS),
        which :func:`kernel_matrix` uses on a CPU backend, where BLAS outruns XLA's CPU products;
        None when the kernel exists only in JAX.
    """

    fn: KernelFn
    name: str
    unit_norm: bool = False
    flatten: bool = True
    host_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    @functools.cached_property
    def jitted(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """``fn`` under ``jax.jit``: compiled once per input shape and owned by this kernel."""
        return jax.jit(self.fn)

    def __call__(self, x1: Any, x2: Any | None = None, *, block_size: int = 2048,
                 dtype: Any = np.float64) -> np.ndarray:
        """Evaluate the kernel matrix; see :func:`kernel_matrix`."""
        return kernel_matrix(self, x1, x2, block_size=block_size, dtype=dtype)


#: Pairs with ``|x.x'| > 1 - NEAR_PARALLEL`` take their angle from chord lengths.
NEAR_PARALLEL = 1e-3


def eq4_from_gram(g: Any, xp: Any = jnp) -> Any:
    """Eq. (4) from the Gram matrix ``x.x'``: ``g (pi - arccos g) / (2 pi)`` (``g`` clipped).

    Accurate where ``|x.x'| <= 1 - NEAR_PARALLEL``; the other pairs are recomputed by
    :func:`chord_paper_kernel`.

    Args:
      g: Gram matrix of unit-norm inputs.
      xp: the array namespace (``jax.numpy`` or ``numpy``).

    Returns:
      The kernel values, shaped like ``g``.
    """
    gc = xp.clip(g, -1.0, 1.0)
    return gc * (xp.pi - xp.arccos(gc)) / (2.0 * xp.pi)


def chord_paper_kernel(u: Any, v: Any, xp: Any = jnp) -> Any:
    """Eq. (4) for paired rows ``u[i], v[i]`` with the angle taken from chord lengths.

    With ``a = ||u - v||`` and ``b = ||u + v||`` the angle is ``theta = 2 atan2(a, b)``, so
    ``cos(theta) = (b^2 - a^2) / (a^2 + b^2)`` and ``pi - theta = 2 atan2(b, a)`` carry full
    relative precision for near-parallel and near-antipodal pairs, and ``K(x, x) = 1/2``
    exactly. Costs ``O(d)`` per pair.

    Args:
      u: ``(m, d)`` unit-norm inputs.
      v: ``(m, d)`` unit-norm inputs.
      xp: the array namespace (``jax.numpy`` or ``numpy``).

    Returns:
      ``(m,)`` values ``K(u[i], v[i])``.
    """
    a2 = xp.sum(xp.square(u - v), axis=-1)
    b2 = xp.sum(xp.square(u + v), axis=-1)
    cos = (b2 - a2) / (a2 + b2)
    return cos * xp.arctan2(xp.sqrt(b2), xp.sqrt(a2)) / xp.pi


def closed_form_paper_kernel(x1: jax.Array, x2: jax.Array) -> jax.Array:
    """The two-layer ReLU NTK with only the first layer trained, in closed form (eq. 4).

    ``K(x, x') = x.x' (pi - theta) / (2 pi)`` with ``theta`` the angle between unit-norm
    ``x, x'``. The Gram matrix ``x.x'`` comes from one matrix product and ``theta = arccos(x.x')``
    where that is well conditioned (``|x.x'| <= 1 - NEAR_PARALLEL``); the near-parallel and
    near-antipodal pairs, where ``arccos`` would turn rounding of ``x.x'`` into errors of its
    square root, are recomputed from chord lengths by :func:`chord_paper_kernel`. The result
    is accurate to a few units of rounding of the inputs' Gram matrix, with ``K(x, x) = 1/2``.

    Args:
      x1: ``(n1, d)`` unit-norm inputs.
      x2: ``(n2, d)`` unit-norm inputs.

    Returns:
      ``(n1, n2)`` kernel matrix.
    """
    n1, n2 = x1.shape[0], x2.shape[0]
    g = jnp.matmul(x1, x2.T, precision=jax.lax.Precision.HIGHEST)
    k = eq4_from_gram(g).reshape(-1)
    near = (jnp.abs(g) > 1.0 - NEAR_PARALLEL).reshape(-1)
    size, end = n1 + n2, n1 * n2  # pairs recomputed per pass; the index of "no pair"

    def fix(state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        k, near = state
        flat = jnp.flatnonzero(near, size=size, fill_value=end)
        i, j = jnp.minimum(flat // n2, n1 - 1), flat % n2
        k = k.at[flat].set(chord_paper_kernel(x1[i], x2[j]), mode="drop")
        return k, near.at[flat].set(False, mode="drop")

    k, _ = jax.lax.while_loop(lambda s: jnp.any(s[1]), fix, (k, near))
    return k.reshape(n1, n2)


def closed_form_paper_kernel_host(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """:func:`closed_form_paper_kernel` on NumPy arrays (BLAS Gram matrix, same formulas).

    Args:
      x1: ``(n1, d)`` unit-norm inputs.
      x2: ``(n2, d)`` unit-norm inputs.

    Returns:
      ``(n1, n2)`` kernel matrix.
    """
    g = x1 @ x2.T
    k = eq4_from_gram(g, np)
    i, j = np.nonzero(np.abs(g) > 1.0 - NEAR_PARALLEL)
    if i.size:
        k[i, j] = chord_paper_kernel(x1[i], x2[j], np)
    return k


def paper_stax(d: int, width: int = 1, kappa: float = 1.0) -> tuple[Any, Any, Any]:
    """Neural Tangents' stax triple for the net of eq. (1): Dense(no bias) -> ReLU -> Dense(1).

    The first layer uses ``W_std = kappa * sqrt(d)`` so that its pre-activations are ``w.x`` with
    ``w ~ N(0, kappa^2 I)``, as in eq. (1); the readout has ``W_std = 1``.

    Args:
      d: input dimension.
      width: hidden width (irrelevant for the infinite-width kernel).
      kappa: initialisation scale of the first layer.

    Returns:
      ``(init_fn, apply_fn, kernel_fn)`` from ``neural_tangents.stax.serial``.
    """
    d, width = check_whole(d, "d"), check_whole(width, "width")
    kappa = check_positive(kappa, "kappa")
    stax = _nt.stax()
    return stax.serial(
        stax.Dense(width, W_std=kappa * math.sqrt(d), b_std=None),
        stax.Relu(),
        stax.Dense(1, W_std=1.0, b_std=None),
    )


def paper_kernel(trained: Literal["first", "both"] = "first", kappa: float = 1.0,
                 implementation: Literal["closed_form", "nt"] | None = None) -> Kernel:
    """The infinite-width NTK of the paper's two-layer ReLU net (eq. 4).

    With ``trained="first"`` (the paper's setting: the readout ``a`` is fixed) the default is
    the closed form :func:`closed_form_paper_kernel`, accurate to ~1e-15; ``implementation="nt"``
    gives Neural Tangents' ``ntk - nngp`` for :func:`paper_stax` instead, which agrees with it to
    ~1e-8 (NT takes the angle from ``arccos``). With ``trained="both"`` the kernel is NT's plain
    ``ntk``: eq. (4) plus ``kappa^2`` times the NNGP (arc-cosine) kernel contributed by training
    the readout.

    Args:
      trained: which layers are trained.
      kappa: first-layer initialisation scale (only matters for ``trained="both"``).
      implementation: ``"closed_form"`` (eq. 4 directly; first layer only) or ``"nt"`` (Neural
        Tangents); None picks ``"closed_form"`` for ``trained="first"`` and ``"nt"`` otherwise.

    Returns:
      A :class:`Kernel` that assumes unit-norm inputs.
    """
    if not isinstance(trained, str) or trained not in ("first", "both"):
        raise InputError(f"trained must be 'first' or 'both', got {trained!r}.")
    kappa_f = check_positive(kappa, "kappa", " The paper uses kappa=1.")
    if implementation is None:
        implementation = "closed_form" if trained == "first" else "nt"
    if not isinstance(implementation, str) or implementation not in ("closed_form", "nt"):
        raise InputError(f"implementation must be 'closed_form' or 'nt', got {implementation!r}.")
    if implementation == "closed_form" and trained != "first":
        raise InputError("the closed form covers trained='first' only; use implementation='nt'.")
    return _paper_kernel(trained, kappa_f, implementation)


@functools.lru_cache(maxsize=32)
def _paper_kernel(trained: str, kappa: float, implementation: str) -> Kernel:
    """:func:`paper_kernel` for checked arguments, one :class:`Kernel` (and jit) per setting."""
    if implementation == "closed_form":
        return Kernel(closed_form_paper_kernel, "paper eq.(4) closed form", unit_norm=True,
                      host_fn=closed_form_paper_kernel_host)

    def fn(x1: jax.Array, x2: jax.Array) -> jax.Array:
        kernel_fn = paper_stax(x1.shape[1], kappa=kappa)[2]
        ntk, nngp = kernel_fn(x1, x2, ("ntk", "nngp"))
        return ntk - nngp if trained == "first" else ntk

    name = "paper eq.(4) via NT (first layer)" if trained == "first" else (
        f"paper net via NT (both layers, kappa={kappa:g})")
    return Kernel(fn, name, unit_norm=True)


def stax_kernel(kernel_fn: Any, get: Literal["ntk", "nngp"] = "ntk", flatten: bool = True,
                name: str | None = None) -> Kernel:
    """Wrap any Neural Tangents stax ``kernel_fn`` (MLPs, conv nets) as a :class:`Kernel`.

    Args:
      kernel_fn: the third element of a ``stax.serial(...)`` triple.
      get: ``"ntk"`` (all layers trained) or ``"nngp"``.
      flatten: flatten inputs to ``(n, d)``; set False for conv nets on ``(n, H, W, C)`` images.
      name: description for results.

    Returns:
      A :class:`Kernel` (no unit-norm assumption).
    """
    if get not in ("ntk", "nngp"):
        raise InputError(f"get must be 'ntk' or 'nngp', got {get!r}.")
    if not callable(kernel_fn):
        raise InputError("kernel_fn must be the callable kernel_fn of a stax.serial(...) triple.")

    def fn(x1: jax.Array, x2: jax.Array) -> jax.Array:
        k = kernel_fn(x1, x2, get)
        return k.reshape(k.shape[0], k.shape[1]) if k.ndim > 2 else k

    return Kernel(fn, name or f"stax {get}", unit_norm=False, flatten=flatten)


def resolve_kernel(kernel: Kernel | str | Callable[..., Any]) -> Kernel:
    """Turn a kernel argument (a :class:`Kernel`, a name, or a stax ``kernel_fn``) into a Kernel.

    Args:
      kernel: ``"paper"`` (eq. 4 in closed form; ``"paper-closed-form"`` is the same kernel),
        ``"paper-nt"`` (eq. 4 through Neural Tangents), ``"paper-both"`` (both layers),
        a :class:`Kernel`, or a stax ``kernel_fn``.

    Returns:
      A :class:`Kernel`.
    """
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        table = {
            "paper": lambda: paper_kernel("first"),
            "paper-closed-form": lambda: paper_kernel("first"),
            "paper-nt": lambda: paper_kernel("first", implementation="nt"),
            "paper-both": lambda: paper_kernel("both"),
        }
        if kernel not in table:
            raise InputError(f"unknown kernel {kernel!r}; choose one of {sorted(table)}, "
                             "or pass ni.stax_kernel(kernel_fn).")
        return table[kernel]()
    if callable(kernel):
        return stax_kernel(kernel)
    raise InputError(f"kernel must be a name, a Kernel or a stax kernel_fn, got {type(kernel)}.")


def kernel_matrix(kernel: Kernel | str | Callable[..., Any], x1: Any, x2: Any | None = None, *,
                  block_size: int = 2048, dtype: Any = np.float64,
                  names: tuple[str, str] = ("x1", "x2")) -> np.ndarray:
    """Evaluate a kernel matrix in jit-compiled row blocks.

    Memory is ``O(n1 * n2 + block_size * n2)``; every block but the last has the same shape, and
    the last is padded, so one compilation serves all blocks and later calls with equal shapes.

    Args:
      kernel: a :class:`Kernel`, a kernel name, or a stax ``kernel_fn``.
      x1: ``(n1, ...)`` inputs. For a kernel that assumes unit norm (eq. 4), rows within
        ``UNIT_NORM_TOL`` of unit norm are rescaled to it and others raise; see
        :func:`ensure_unit_norm`.
      x2: ``(n2, ...)`` inputs; ``None`` means ``x1``.
      block_size: rows of ``x1`` per block.
      dtype: float64 (default) or float32.
      names: what ``x1`` and ``x2`` are called in messages (a caller passes its own argument
        names, e.g. ``("x_train", "x_test")``).

    Returns:
      ``(n1, n2)`` host array of ``dtype``.
    """
    n1_name, n2_name = names
    dt = check_dtype(dtype)
    block_size = check_whole(block_size, "block_size")
    k = resolve_kernel(kernel)
    a = as_array(x1, n1_name, (2, 3, 4))
    b = a if x2 is None else as_array(x2, n2_name, (2, 3, 4))
    if k.flatten:
        a = a.reshape(a.shape[0], -1)
        b = b.reshape(b.shape[0], -1)
    if a.shape[1:] != b.shape[1:]:
        raise InputError(f"{n1_name} points have shape {a.shape[1:]} but {n2_name} points "
                         f"{b.shape[1:]}; both must describe points of the same shape.")
    if k.unit_norm:
        fix = ("scale every point to unit norm first with ni.unit_normalize (the influence "
               "functions do it when passed normalize=True)")
        a = ensure_unit_norm(a, n1_name, fix=fix)[0]
        b = a if x2 is None else ensure_unit_norm(b, n2_name, fix=fix)[0]
    n1 = a.shape[0]
    bs = min(block_size, n1)
    if k.host_fn is not None and jax.default_backend() == "cpu":
        out = np.empty((n1, b.shape[0]), dtype=dt)
        for start in range(0, n1, bs):
            out[start:start + bs] = k.host_fn(a[start:start + bs], b)
        return out
    fn = k.jitted
    with precision(dtype) as dt:
        out = np.empty((n1, b.shape[0]), dtype=dt)
        b_dev = jnp.asarray(b, dtype=dt)
        for start in range(0, n1, bs):
            blk = a[start:start + bs]
            pad = bs - blk.shape[0]
            if pad:
                blk = np.concatenate([blk, np.repeat(blk[-1:], pad, axis=0)], axis=0)
            res = np.asarray(fn(jnp.asarray(blk, dtype=dt), b_dev))
            out[start:start + bs] = res[: bs - pad]
    return out
