"""Kernel-route influence (eq. 8-9) of any JAX/Flax model, from its empirical NTK at given parameters.

This module holds :func:`model_entk` (the empirical NTK of a user's model, in blocks) and
:func:`entk_influence` (the exact influences of the model's linearisation), with the input and
model checks they share. The model is a function ``apply_fn(params, x) -> (n,)`` (or ``(n, 1)``)
of a parameter pytree of any shape and inputs of any per-example shape: Flax linen's
``model.apply``, a plain JAX function, or an NNX model (``graphdef, state = nnx.split(model)``
and ``apply_fn = lambda p, x: nnx.merge(graphdef, p)(x)``; an ``nnx.Module`` is also accepted as
``apply_fn`` directly, with ``params=None`` for its own ``nnx.Param`` s).

The empirical NTK ``K(x, x') = J(x) J(x')^T`` at ``params`` comes from Neural Tangents'
``empirical_ntk_fn`` (``vmap_axes=0``, no traced output axes), built in blocks of points. The
model is then replaced by its linearisation around ``params``,

    ``f_lin(x; theta) = f(x; params) + J(x) (theta - params)``,

trained on eq. (2) to convergence. That is kernel ridge regression (eq. 5-6) on the residual
labels ``y - g(X)``: ``f_lin(x) = g(x) + K(x, X) (K + lam I)^-1 (y - g(X))``, where ``g`` is the
linear model's output at the regulariser's centre (``g = f(.; params)`` when the centre is
``params``; see :func:`entk_influence` for ``params0``). Its leave-one-out changes are exact
(eq. 9), and so are its influences (eq. 8).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._precision import precision
from .._validate import check_dtype, check_labels, check_lam, check_whole, to_numpy
from ..errors import InputError, NumericalError, PrecisionWarning, TheoryAssumptionWarning
from ..kernels import neural_tangents as nt_import
from ._exact import InfluenceResult, influence_from_kernels

Implementation = Literal["auto", "jacobian"]


#: Names of the Neural Tangents eNTK implementations offered (NT 0.6.5's ``NtkImplementation``).
#: ``STRUCTURED_DERIVATIVES`` and NT's own ``AUTO`` fail on current JAX, and
#: ``NTK_VECTOR_PRODUCTS`` calls ``jnp.size`` on shape structs (deprecated in current JAX), so
#: only Jacobian contraction is offered.
IMPLEMENTATIONS = {"jacobian": "JACOBIAN_CONTRACTION"}


#: Memory budget of one block's Jacobian when ``block_size`` is not given.
BLOCK_BYTES = 2**28


@dataclasses.dataclass(frozen=True)
class _Compiled:
    """One model's jitted programs: the eNTK of one block, of two blocks, and centre outputs."""

    k_same: Callable[..., jax.Array]
    k_cross: Callable[..., jax.Array]
    centre: Callable[..., jax.Array]


def _compile(apply_fn: Callable[[Any, jax.Array], jax.Array], implementation: str) -> _Compiled:
    """Wrap ``apply_fn`` to ``(n,)`` outputs and jit its eNTK blocks (Neural Tangents)."""
    nt = nt_import()

    def fn(q: Any, x: jax.Array) -> jax.Array:
        return apply_fn(q, x).reshape(x.shape[0])

    impl = getattr(nt.NtkImplementation, IMPLEMENTATIONS[implementation])
    kfn = nt.empirical_ntk_fn(fn, trace_axes=(), vmap_axes=0, implementation=impl)

    def centre(q: Any, shift: Any, a: jax.Array) -> jax.Array:
        f, jv = jax.jvp(lambda t: fn(t, a), (q,), (shift,))
        return f - jv

    return _Compiled(jax.jit(lambda a, q: kfn(a, None, q)),
                     jax.jit(lambda a, b, q: kfn(a, b, q)), jax.jit(centre))


#: :func:`_compile`, kept for the last 8 ``(apply_fn, implementation)`` pairs: the key is the
#: user's function (hashed by identity, no parameters) and a name; never an ``nnx.Module``.
_compile_cached = functools.lru_cache(maxsize=8)(_compile)


def _compiled(apply_fn: Any, implementation: str, cache: bool = True) -> _Compiled:
    """:func:`_compile`, reused across calls with the same (hashable) ``apply_fn``.

    Args:
      apply_fn: the model function.
      implementation: the eNTK implementation name.
      cache: look ``apply_fn`` up in the bounded cache; False for a function made per call
        (an ``nnx.Module``'s closure, which holds the module's state and would never match).

    Returns:
      The jitted programs.
    """
    if not cache:
        return _compile(apply_fn, implementation)
    try:
        return _compile_cached(apply_fn, implementation)
    except TypeError:  # an unhashable callable
        return _compile(apply_fn, implementation)


@dataclasses.dataclass(frozen=True)
class _Model:
    """A checked model: its jitted programs, its float parameters, and the settings."""

    prog: _Compiled
    params: Any
    n_params: int
    dtype: np.dtype
    implementation: str
    block_size: int


def _as_inputs(x: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """``x`` as a host array ``(n, ...)``: floats cast to ``dtype`` and checked finite."""
    arr = to_numpy(x, name)
    if arr.ndim < 2:
        raise InputError(f"{name} must be (n, ...) with one row per point, got shape {arr.shape}"
                         "; for one feature per point pass x[:, None].")
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); pass at least one point.")
    if arr.dtype.kind in "fb" or arr.dtype == object:
        try:
            arr = arr.astype(dtype) if arr.dtype.kind != "b" else arr
        except (TypeError, ValueError) as e:
            raise InputError(f"{name} cannot be converted to {dtype.name}: {e}") from e
    elif arr.dtype.kind not in "iu":
        raise InputError(f"{name} must hold real numbers (or integer tokens), got dtype "
                         f"{arr.dtype}.")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        where = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise InputError(f"{name} contains NaN/Inf values, the first at index {where}; remove "
                         "or impute them before calling.")
    return arr


def _float_params(params: Any, name: str, dtype: np.dtype) -> tuple[Any, int]:
    """Every leaf of ``params`` as a finite ``dtype`` JAX array; the number of scalars."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise InputError(f"{name} has no arrays; pass the model's parameter pytree.")
    size = 0
    for leaf in leaves:
        a = np.asarray(leaf)
        if a.dtype.kind != "f":
            raise InputError(f"{name} must hold floating arrays only (the trained parameters), "
                             f"got a leaf of dtype {a.dtype}; keep integer state out of params.")
        if not np.all(np.isfinite(a)):
            raise InputError(f"{name} contains NaN/Inf values; the eNTK is not defined there.")
        size += a.size
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params), size


def _resolve_model(apply_fn: Any, params: Any, params0: Any
                   ) -> tuple[Callable[[Any, jax.Array], jax.Array], Any, Any]:
    """Turn an ``nnx.Module`` into ``(apply_fn, params, params0)``; pass functions through."""
    if isinstance(apply_fn, nnx.Module):
        graphdef, own, rest = nnx.split(apply_fn, nnx.Param, ...)

        def fn(p: Any, x: jax.Array) -> jax.Array:
            return nnx.merge(graphdef, p, rest)(x)

        p = own if params is None else params
        p = nnx.state(p, nnx.Param) if isinstance(p, nnx.Module) else p
        p0 = nnx.state(params0, nnx.Param) if isinstance(params0, nnx.Module) else params0
        return fn, p, p0
    if not callable(apply_fn):
        raise InputError(f"apply_fn must be a function apply_fn(params, x) -> (n,) outputs (or "
                         f"an nnx.Module), got {type(apply_fn).__name__}.")
    if params is None:
        raise InputError("params is None; pass the parameter pytree apply_fn takes (params=None "
                         "is for an nnx.Module passed as apply_fn).")
    return apply_fn, params, params0


def _check_outputs(apply_fn: Any, params: Any, x: np.ndarray, name: str,
                   dtype: np.dtype) -> None:
    """Check ``apply_fn(params, x)`` traces and returns ``(n,)`` or ``(n, 1)`` floats."""
    try:
        out = jax.eval_shape(apply_fn, params, jnp.asarray(x))
    except Exception as e:  # the user's function: report what failed and how it was called
        raise InputError(f"apply_fn(params, {name}) failed with {type(e).__name__}: {e}. It must "
                         "take (params, x) with x of shape (n, ...) and return (n,) or (n, 1) "
                         "outputs.") from e
    n = x.shape[0]
    shape = getattr(out, "shape", None)
    if shape not in ((n,), (n, 1)):
        got = shape if shape is not None else type(out).__name__
        raise InputError(f"apply_fn(params, {name}) must return ({n},) or ({n}, 1) outputs for "
                         f"{n} points, got {got}. Models with several outputs are not supported: "
                         "take one output (e.g. a logit difference) per call.")
    if np.dtype(out.dtype).itemsize < dtype.itemsize:
        warnings.warn(f"apply_fn computes in {np.dtype(out.dtype).name} although {dtype.name} "
                      "was asked (a dtype fixed inside the model?); the kernel has "
                      f"{np.dtype(out.dtype).name} accuracy.", PrecisionWarning, stacklevel=4)


#: Points evaluated together and one at a time to check that outputs do not depend on the batch.
BATCH_PROBE = 4


def _check_per_example(apply_fn: Any, params: Any, xs: list[tuple[np.ndarray, str]]) -> None:
    """Refuse a model whose outputs depend on the batch (batch statistics, means over points).

    The eNTK is built per example (``vmap_axes=0``), so such a model would get a wrong kernel
    (for ``f(x) = x w - mean_batch(x w)``, an all-zero one). A few points are evaluated as one
    batch and one at a time, and their outputs compared.
    """
    parts, used = [], []
    for x, nm in xs:
        take = x[:BATCH_PROBE - sum(len(p) for p in parts)]
        if len(take):
            parts.append(take)
            used.append(nm)
    probe = np.concatenate(parts)
    if probe.shape[0] < 2:
        return
    names = " and ".join(dict.fromkeys(used))
    try:
        together = np.asarray(apply_fn(params, jnp.asarray(probe))).reshape(-1)
        alone = np.concatenate([np.asarray(apply_fn(params, jnp.asarray(probe[i:i + 1]))).reshape(-1)
                                for i in range(probe.shape[0])])
    except Exception as e:  # the user's function: report what failed and how it was called
        raise InputError(f"apply_fn(params, x) failed on a batch of one point of {names} "
                         f"({type(e).__name__}: {e}); the eNTK evaluates every point on its own, "
                         "so the model must accept batches of any size.") from e
    if together.shape != alone.shape or not (np.all(np.isfinite(together))
                                             and np.all(np.isfinite(alone))):
        return  # shapes were checked already; non-finite outputs are reported later
    rtol = 1e-6 if together.dtype == np.float64 else 1e-2
    scale = max(float(np.abs(together).max()), float(np.abs(alone).max()), 1e-30)
    diff = float(np.abs(together - alone).max())
    if diff > rtol * scale:
        raise InputError(
            f"apply_fn's outputs depend on the batch: {probe.shape[0]} points of {names} "
            f"evaluated together and one at a time give outputs that differ by up to {diff:.3g} "
            f"(outputs up to {scale:.3g}). The eNTK takes each point's output as a function of "
            "that point alone, so such a model would get a wrong kernel. Remove batch statistics "
            "(batch normalisation in training mode, means over the batch) or evaluate them in "
            "inference mode (e.g. use_running_average=True).")


def _setup(apply_fn: Any, params: Any, xs: list[tuple[np.ndarray, str]], implementation: str,
           block_size: int | None, dtype: np.dtype, cache: bool = True) -> _Model:
    """Check the model on every input set and settle the block size."""
    impl = "jacobian" if implementation == "auto" else implementation
    if impl not in IMPLEMENTATIONS:
        raise InputError(f"implementation must be 'auto' or 'jacobian', got "
                         f"{implementation!r}.")
    block_size = check_whole(block_size, "block_size", allow_none=True)
    p, size = _float_params(params, "params", dtype)
    for x, name in xs:
        _check_outputs(apply_fn, p, x, name, dtype)
    _check_per_example(apply_fn, p, xs)
    bs = max(1, BLOCK_BYTES // (size * dtype.itemsize)) if block_size is None else block_size
    bs = min(bs, max(x.shape[0] for x, _ in xs))
    return _Model(_compiled(apply_fn, impl, cache), p, size, dtype, impl, bs)


def _blocks(x: np.ndarray, bs: int) -> list[jax.Array]:
    """Row blocks of ``bs`` points, the last padded with copies of the last row."""
    pad = (-x.shape[0]) % bs
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    return [jnp.asarray(x[s:s + bs]) for s in range(0, x.shape[0], bs)]


def _kernels(m: _Model, x1: np.ndarray, x2: np.ndarray | None, symmetric: bool
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``K(x1, x1)`` (when ``symmetric``) and ``K(x1, x2)`` (when given), in blocks.

    Each block pair is one Neural Tangents call (``x2=None`` on the diagonal blocks); the upper
    triangle of ``K(x1, x1)`` is computed and mirrored, so it is exactly symmetric.
    """
    k_same, k_cross = m.prog.k_same, m.prog.k_cross
    bs = m.block_size
    b1 = _blocks(x1, bs)
    b2 = _blocks(x2, bs) if x2 is not None else []
    n1 = len(b1) * bs
    out = np.empty((n1 if symmetric else 0, n1), m.dtype)
    cross = np.empty((n1, len(b2) * bs), m.dtype)
    for i, a in enumerate(b1):
        rows = slice(i * bs, (i + 1) * bs)
        if symmetric:
            for j in range(i, len(b1)):
                cols = slice(j * bs, (j + 1) * bs)
                blk = np.asarray(k_same(a, m.params) if j == i else k_cross(a, b1[j], m.params))
                out[rows, cols] = blk
                out[cols, rows] = blk.T
        for j, b in enumerate(b2):
            cross[rows, j * bs:(j + 1) * bs] = np.asarray(k_cross(a, b, m.params))
    n = x1.shape[0]
    k = None
    if symmetric:
        k = out[:n, :n]
        k = 0.5 * (k + k.T)  # diagonal blocks are J J^T up to rounding of the product
    kx = cross[:n, :x2.shape[0]] if x2 is not None else None
    for arr, what in ((k, "K(x_train, x_train)"), (kx, "K(x_train, x_test)")):
        if arr is not None and not np.all(np.isfinite(arr)):
            raise NumericalError(f"the empirical NTK {what} has NaN/Inf entries: the gradients "
                                 "of apply_fn are not finite at these parameters and inputs.")
    return k, kx


def _centre_outputs(m: _Model, x: np.ndarray, shift: Any | None) -> np.ndarray:
    """``g(x) = f(x; params) - J(x) shift``: the linear model's outputs at ``params - shift``."""
    if shift is None:
        shift = jax.tree_util.tree_map(jnp.zeros_like, m.params)
    blocks = _blocks(x, m.block_size)
    out = np.concatenate([np.asarray(m.prog.centre(m.params, shift, b))
                          for b in blocks])[:x.shape[0]]
    if not np.all(np.isfinite(out)):
        raise NumericalError("apply_fn returned NaN/Inf outputs (or output derivatives) at these "
                             "parameters.")
    return out.astype(m.dtype)


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    arr = check_labels(y, n, name)
    if arr.ndim == 2 and arr.shape[1] != 1:
        raise InputError(f"{name} has shape {arr.shape} but the model has one output; pass "
                         f"({n},) or ({n}, 1) labels.")
    return arr


def model_entk(apply_fn: Any, params: Any, x1: Any, x2: Any | None = None, *,
               implementation: Implementation = "auto", block_size: int | None = None,
               dtype: Any = np.float64) -> np.ndarray:
    """Empirical NTK ``J(x1) J(x2)^T`` of any model at ``params``, through Neural Tangents.

    ``J`` is the Jacobian of the scalar outputs with respect to every leaf of ``params``.
    Computed in blocks of points with ``empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)``,
    so each example's output must depend on that example only (no batch statistics).

    Args:
      apply_fn: ``apply_fn(params, x) -> (n,)`` or ``(n, 1)`` outputs (e.g. Flax linen's
        ``model.apply``), or an ``nnx.Module`` (then ``params=None`` uses its ``nnx.Param`` s).
      params: the parameter pytree (any structure; floating leaves only).
      x1: ``(n1, ...)`` inputs.
      x2: ``(n2, ...)`` inputs (default ``x1``, computed symmetric).
      implementation: ``"jacobian"`` (Jacobian contraction; ``"auto"`` picks it).
      block_size: points per block (default: a Jacobian block of at most 256 MiB).
      dtype: float64 (default, whatever JAX's x64 flag) or float32.

    Returns:
      ``(n1, n2)`` host array of ``dtype``.
    """
    dt = check_dtype(dtype)
    with precision(dt):
        fn, p, _ = _resolve_model(apply_fn, params, None)
        a = _as_inputs(x1, "x1", dt)
        b = None if x2 is None else _as_inputs(x2, "x2", dt)
        if b is not None and b.shape[1:] != a.shape[1:]:
            raise InputError(f"x2 has per-example shape {b.shape[1:]} but x1 has "
                             f"{a.shape[1:]}.")
        sets = [(a, "x1")] + ([(b, "x2")] if b is not None else [])
        m = _setup(fn, p, sets, implementation, block_size, dt,
                   cache=not isinstance(apply_fn, nnx.Module))
        k, kx = _kernels(m, a, b, symmetric=b is None)
    return k if b is None else kx


def entk_influence(apply_fn: Any, params: Any, x_train: Any, y_train: Any, x_test: Any,
                   y_test: Any, lam: float = 0.1, *,
                   f0: Literal["subtract", "ignore"] = "subtract", params0: Any | None = None,
                   implementation: Implementation = "auto", block_size: int | None = None,
                   dtype: Any = np.float64) -> InfluenceResult:
    """Exact kernel-route influence (eq. 8-9) of a model linearised at ``params`` (its eNTK).

    Builds the empirical NTK at ``params`` on the training and test points
    (:func:`model_entk`), and returns the exact leave-one-out influence of every training point
    on every test loss (eq. 8 via eq. 9), the IHVP (eq. 13), the leverage and the rest of
    :class:`InfluenceResult`, for the model's linearisation around ``params`` trained on eq. (2).

    The outputs enter as in eq. (6) with the initial outputs put back: with ``f0="subtract"``
    the regression is on ``y - g(X)`` and every prediction is ``g(x) + K(x, X) (K + lam I)^-1
    (y - g(X))``, where ``g`` is the linear model's output at the regulariser's centre:

    - ``params0=None``: the centre is ``params`` and ``g(x) = f(x; params)``. At the
      initialisation this is exactly the paper's setting (eq. 2 from ``W(0) = params``); for a
      symmetric-pair net ``g = 0``.
    - ``params0`` given (the initialisation the model was trained from, with ``params`` the
      trained parameters): the model is still linearised at ``params``, with eq. (2)'s ridge
      ``lam/2 ||theta - params0||^2``, so ``g(x) = f(x; params) - J(x) (params - params0)``
      (one JVP). When ``params`` minimises eq. (2), the linearised fit reproduces the trained
      model's outputs and the influences are those of the Gauss-Newton model at the trained
      point. When ``params = params0`` both readings agree.

    ``f0="ignore"`` regresses on ``y`` itself (the model's outputs are taken to be 0).

    What it assumes: the model behaves like its linearisation around ``params``, trained on
    eq. (2) (sum of squared errors plus ``lam/2 ||theta - centre||^2``) to convergence, i.e.
    the kernel (lazy) regime. That is exact for a model linear in its parameters and in the
    infinite-width limit; for a finite network it is an approximation whose agreement with
    actual leave-one-out retraining is measured in the README, "Beyond the paper". Each
    example's output must depend on that example only (``vmap_axes=0``). One output per
    example: for several outputs take one (e.g. a logit difference) per call.

    Args:
      apply_fn: ``apply_fn(params, x) -> (n,)`` or ``(n, 1)`` outputs (Flax linen's
        ``model.apply``, any JAX function). For an NNX model use ``graphdef, state =
        nnx.split(model)`` and ``lambda p, x: nnx.merge(graphdef, p)(x)``, or pass the
        ``nnx.Module`` itself with ``params=None`` (its ``nnx.Param`` s; other state fixed).
      params: the parameter pytree at which the eNTK is taken (floating leaves only).
      x_train: ``(n_train, ...)`` training inputs (any per-example shape).
      y_train: ``(n_train,)`` or ``(n_train, 1)`` labels.
      x_test: ``(n_test, ...)`` test inputs.
      y_test: ``(n_test,)`` or ``(n_test, 1)`` labels.
      lam: ridge of eq. (2), ``>= 0``.
      f0: ``"subtract"`` (default) or ``"ignore"`` (see above).
      params0: the regulariser's centre (the initialisation), a pytree like ``params`` (or an
        ``nnx.Module``); only with ``f0="subtract"``.
      implementation: ``"auto"`` or ``"jacobian"`` (Neural Tangents' Jacobian contraction).
      block_size: points per eNTK block (default: a Jacobian block of at most 256 MiB).
      dtype: float64 (default, whatever JAX's x64 flag) or float32.

    Returns:
      :class:`InfluenceResult` on host arrays of ``dtype``; ``f_test``, ``f_train`` and
      ``loo_f_train`` are the linearised model's predictions (``g`` added back) and ``y_test``
      the labels as given.
    """
    lam = check_lam(lam)
    if f0 not in ("subtract", "ignore"):
        raise InputError(f"f0 must be 'subtract' or 'ignore', got {f0!r}.")
    if f0 == "ignore" and params0 is not None:
        raise InputError("params0 sets the centre whose outputs are subtracted; with "
                         "f0='ignore' nothing is subtracted. Drop params0 or use f0='subtract'.")
    dt = check_dtype(dtype)
    with precision(dt):
        fn, p, p0 = _resolve_model(apply_fn, params, params0)
        xtr = _as_inputs(x_train, "x_train", dt)
        xte = _as_inputs(x_test, "x_test", dt)
        if xte.shape[1:] != xtr.shape[1:]:
            raise InputError(f"x_test has per-example shape {xte.shape[1:]} but x_train has "
                             f"{xtr.shape[1:]}; both must describe points of the same shape.")
        ytr = _labels(y_train, xtr.shape[0], "y_train")
        yte = _labels(y_test, xte.shape[0], "y_test")
        m = _setup(fn, p, [(xtr, "x_train"), (xte, "x_test")], implementation, block_size, dt,
                   cache=not isinstance(apply_fn, nnx.Module))
        shift = None
        if p0 is not None:
            q0, _ = _float_params(p0, "params0", dt)
            if jax.tree_util.tree_structure(q0) != jax.tree_util.tree_structure(m.params) or any(
                    np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(q0),
                                                              jax.tree_util.tree_leaves(m.params))):
                raise InputError("params0 must have the same structure and shapes as params.")
            shift = jax.tree_util.tree_map(lambda a, b: a - b, m.params, q0)
        k, kx = _kernels(m, xtr, xte, symmetric=True)
        if f0 == "subtract":
            g_tr = _centre_outputs(m, xtr, shift).reshape(-1, *ytr.shape[1:])
            g_te = _centre_outputs(m, xte, shift).reshape(-1, *yte.shape[1:])
        else:
            g_tr, g_te = np.zeros_like(ytr), np.zeros_like(yte)
    with warnings.catch_warnings():  # |y| <= 1 was checked on the labels, not the residuals
        warnings.simplefilter("ignore", TheoryAssumptionWarning)
        res = influence_from_kernels(
            k, kx, ytr - g_tr, yte - g_te, lam, dtype=dt, overwrite_k=True, check_symmetry=False,
            kernel_name=f"empirical NTK of the model at params ({m.implementation}, "
                        f"{m.n_params} parameters, f0={f0!r})")
    cast = lambda a: np.asarray(a, dt)  # noqa: E731
    return dataclasses.replace(res, f_test=res.f_test + cast(g_te), y_test=cast(yte),
                               f_train=res.f_train + cast(g_tr),
                               loo_f_train=res.loo_f_train + cast(g_tr))
