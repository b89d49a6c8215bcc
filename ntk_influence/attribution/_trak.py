"""TRAK (Park et al., 2023) for the squared loss of eq. (2), and the first-order score it shares.

For ``l = 1/2 (f - y)^2`` the loss gradient of a point is ``r J(x)`` with ``r = f - y`` and
``J(x)`` the output gradient, and the Hessian of eq. (2) is (for the net of eq. 1, exactly)
``J^T J + lam I``. Removing training point ``i`` moves the trained weights by
``H^-1 grad l_i`` to first order, so the test loss changes by

    ``I(i, te) ~ r_te r_i J_te (J^T J + lam I)^-1 J_i^T = r_i r_te [(K + lam I)^-1 K_te]_i``

(positive: removing ``i`` raises the test loss, this library's sign; the second form is the
push-through identity with ``K = J J^T``). This is eq. (12) on the trained net:
:func:`first_order_scores` computes it from Gram matrices, factorising ``K + lam I`` with
:func:`ntk_influence.linalg.factorize` (so a singular kernel raises
:class:`~ntk_influence.errors.SingularKernelError`).

TRAK (:func:`trak_scores`, :func:`trak_ensemble_scores`) replaces ``J`` by a random projection
``Phi = J R`` (:func:`projected_gradients`; ``R`` is ``P x k`` with i.i.d. entries of variance
``1/k``, Gaussian or Rademacher), keeps the ridge of eq. (2), and averages over an ensemble of
nets trained from different ``W(0)``. The residual weight ``r_i`` plays the role of TRAK's
``Q`` term (``1 - p_i`` for the logistic loss); ``r_te`` turns an output change into a loss
change. ``R`` is never formed: it is drawn chunk by chunk of parameters on the host from NumPy's
PCG64 seeded by ``(seed, c)`` for chunk ``c`` (:func:`projection_chunk`; Gaussian entries drawn
in float32 by the ziggurat method, Rademacher entries as int8), so every point sees the same
``R``. Drawing ``R`` is a large part of TRAK's cost (``P k`` numbers per projection): on a CPU
this draws about twice as fast as JAX's counter-based PRNG in float64, and on the host while the
previous chunk is multiplied. A model with a closed-form Jacobian chunk
(:meth:`~ntk_influence.nets.FunctionalNet.jacobian_chunk`, e.g. eq. 1) forms only each chunk's
columns; any other net's Jacobian is formed once and sliced.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import precision
from .._validate import check_lam, check_whole
from ..errors import InputError, MemoryPlanError
from ..linalg import factorize
from ..nets import FunctionalNet

PROJECTIONS = ("gaussian", "rademacher")


def first_order_scores(k_train: Any, k_cross: Any, r_train: Any, r_test: Any,
                       lam: float) -> np.ndarray:
    """First-order influence ``r_i r_te [(K + lam I)^-1 K_te]_i`` from (projected) Gram matrices.

    With ``K = Phi Phi^T`` this is ``r_i r_te phi_i^T (Phi^T Phi + lam I)^-1 phi_te`` (eq. 12 when
    ``Phi = J``; TRAK's score when ``Phi`` is a projection of ``J``).

    Args:
      k_train: ``(n, n)`` Gram matrix of the training features.
      k_cross: ``(n, t)`` Gram matrix between training and test features.
      r_train: ``(n,)`` training residuals ``f(x_i) - y_i``.
      r_test: ``(t,)`` test residuals.
      lam: the ridge of eq. (2), ``> 0``.

    Returns:
      ``(n, t)`` float64 scores (positive: removing ``i`` raises the test loss).
    """
    lam = check_lam(lam)
    if lam <= 0:
        raise InputError("lam must be > 0 for first-order scores (Phi^T Phi is singular).")
    k = np.asarray(k_train, np.float64)
    kc = np.asarray(k_cross, np.float64)
    n = k.shape[0]
    if k.shape != (n, n) or kc.ndim != 2 or kc.shape[0] != n:
        raise InputError(f"k_train must be (n, n) and k_cross (n, t), got {k.shape}, {kc.shape}.")
    factor = factorize(k, np.zeros(n), lam, backend="lapack", spectrum_method="none",
                       check_symmetry=False)  # a Gram matrix: the Cholesky reads one triangle
    sol = factor.solve(kc)
    return np.asarray(r_train, np.float64)[:, None] * sol * np.asarray(r_test, np.float64)[None]


def projection_chunk(seed: int, chunk: int, rows: int, dim: int, kind: str,
                     dtype: Any = np.float64) -> np.ndarray:
    """Rows of the projection ``R`` for parameter chunk ``chunk``: ``(rows, dim)``, variance ``1/dim``.

    Args:
      seed: the projection's seed.
      chunk: chunk number (the rows are drawn from PCG64 seeded by ``(seed, chunk)``).
      rows: parameters in the chunk.
      dim: projection dimension ``k``.
      kind: ``"gaussian"`` or ``"rademacher"``.
      dtype: dtype of the result.

    Returns:
      The chunk of ``R`` (host array).
    """
    return _draw(seed, chunk, rows, dim, kind).astype(dtype) / np.sqrt(dim)


def _draw(seed: int, chunk: int, rows: int, dim: int, kind: str) -> np.ndarray:
    """Unscaled entries of a chunk of ``R``: float32 N(0, 1) or int8 +-1."""
    rng = np.random.default_rng([int(seed), int(chunk)])
    if kind == "gaussian":
        return rng.standard_normal((rows, dim), dtype=np.float32)
    return (rng.integers(0, 2, (rows, dim), dtype=np.int8) * 2 - 1).astype(np.int8)


def _scaled(cols: jax.Array, r: jax.Array) -> jax.Array:
    """``cols @ R_chunk``: ``r`` holds the chunk's unscaled entries (:func:`_draw`), ``(rows, dim)``."""
    return (cols @ r.astype(cols.dtype)) / jnp.sqrt(jnp.asarray(r.shape[1], cols.dtype))


@jax.jit
def _held_chunk(jac: jax.Array, r: jax.Array, start: jax.Array) -> jax.Array:
    """``J[:, start:start + rows] @ R_chunk`` from the whole Jacobian ``jac`` (zero past ``P``)."""
    rows = r.shape[0]
    cols = jax.lax.dynamic_slice(jnp.pad(jac, ((0, 0), (0, rows))), (0, start),
                                 (jac.shape[0], rows))
    return _scaled(cols, r)


def _closed_form_chunk(net: FunctionalNet, rows: int) -> Any:
    """``(theta, x, r, start) -> J[:, start:start + rows] @ R_chunk`` from the model's closed form.

    Jitted once per ``rows`` and kept on the net (:meth:`FunctionalNet.program`), so it lives as
    long as the net and no longer.
    """
    def build() -> Any:
        @jax.jit
        def run(theta: jax.Array, x: jax.Array, r: jax.Array, start: jax.Array) -> jax.Array:
            return _scaled(net.jacobian_chunk(theta, x, start, rows), r)

        return run

    return net.program(("trak_projection", rows), build)


def projected_gradients(net: FunctionalNet, theta: Any, x: Any, dim: int | None, *, seed: int = 0,
                        projection: str = "gaussian", chunk_params: int = 2**15,
                        memory_bytes: int = 2**30) -> np.ndarray:
    """Output gradients ``J(x)`` projected to ``dim`` dimensions, ``Phi = J R`` (TRAK's features).

    ``R`` (``P x dim``) is drawn ``chunk_params`` rows at a time (:func:`projection_chunk`) and
    never held whole; ``dim=None`` returns ``J`` itself (no projection; needs ``n P`` floats).

    Args:
      net: the network.
      theta: flat parameters.
      x: ``(n, d)`` inputs.
      dim: projection dimension ``k >= 1``, or None for no projection.
      seed: projection seed.
      projection: ``"gaussian"`` or ``"rademacher"``.
      chunk_params: parameters per chunk of ``R``.
      memory_bytes: budget for the whole ``J``, formed when ``dim`` is None or the model
        has no closed-form Jacobian chunk.

    Returns:
      ``(n, dim)`` (or ``(n, P)``) float64 host array.
    """
    return _project([(net, theta)], x, dim, seed, projection, chunk_params, memory_bytes)[0]


def _project(members: list[tuple[FunctionalNet, Any]], x: Any, dim: int | None, seed: int,
             projection: str, chunk_params: int, memory_bytes: int) -> list[np.ndarray]:
    """``J_e(x) R`` for every member ``(net_e, theta_e)`` with one ``R``, each chunk drawn once."""
    if projection not in PROJECTIONS:
        raise InputError(f"projection must be one of {PROJECTIONS}, got {projection!r}.")
    if dim is not None:
        dim = check_whole(dim, "the projection dimension")
    chunk_params = check_whole(chunk_params, "chunk_params")
    net0 = members[0][0]
    p, dtype = net0.n_params, net0.dtype
    if any(net.n_params != p or net.dtype != dtype for net, _ in members):
        raise InputError("the nets of a TRAK ensemble must have the same size and dtype.")
    with precision(dtype):
        xa = jnp.asarray(np.asarray(x), dtype)
        n = xa.shape[0]
        chunks = []  # per member: (r, start) -> J[:, start:start + rows] @ R_chunk
        rows = min(chunk_params, p)
        for net, theta in members:
            th = jnp.asarray(theta, dtype)
            if dim is not None and net.closed_form_jacobian:  # only the chunk's columns formed
                chunks.append(functools.partial(_closed_form_chunk(net, rows), th, xa))
                continue
            if n * p * 8 > memory_bytes:  # J itself, projected by chunks when dim is given
                raise MemoryPlanError(
                    f"the Jacobian of this net needs {n * p * 8 / 2**30:.1f} GiB; "
                    + ("pass a projection dimension." if dim is None
                       else "project fewer points at a time."))
            jac = net.jacobian_columns(th, xa, 0, p)
            chunks.append(jac if dim is None else functools.partial(_held_chunk, jac))
        if dim is None:
            return [np.asarray(j, np.float64) for j in chunks]
        starts = range(0, p, rows)
        outs = [jnp.zeros((n, dim), dtype) for _ in chunks]
        r = _draw(int(seed), 0, rows, dim, projection)
        for c, start in enumerate(starts):
            rj = jnp.asarray(r, dtype)  # converted once for every member
            acc = [out + chunk(rj, jnp.asarray(start))  # dispatched asynchronously
                   for chunk, out in zip(chunks, outs, strict=True)]
            if c + 1 < len(starts):  # draw the next chunk while this one is multiplied
                r = _draw(int(seed), c + 1, rows, dim, projection)
            outs = [o.block_until_ready() for o in acc]  # at most two chunks of R alive
        return [np.asarray(o, np.float64) for o in outs]


def trak_scores(net: FunctionalNet, theta: Any, x_train: Any, y_train: Any, x_test: Any,
                y_test: Any, lam: float, *, dim: int | None = 1024, seed: int = 0,
                projection: str = "gaussian") -> np.ndarray:
    """TRAK scores of one trained net for the squared loss (see the module docstring).

    Args:
      net: the network.
      theta: its trained flat parameters.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      lam: the ridge of eq. (2).
      dim: projection dimension (None: no projection, which is eq. 12 exactly for eq. 1).
      seed: projection seed.
      projection: ``"gaussian"`` or ``"rademacher"``.

    Returns:
      ``(n, t)`` scores, positive when removing the point raises the test loss.
    """
    return trak_ensemble_scores([(net, theta)], x_train, y_train, x_test, y_test, lam, dim=dim,
                                seed=seed, projection=projection)


def trak_ensemble_scores(members: Any, x_train: Any, y_train: Any, x_test: Any, y_test: Any,
                         lam: float, *, dim: int | None = 1024, seed: int = 0,
                         projection: str = "gaussian") -> np.ndarray:
    """TRAK scores averaged over an ensemble of trained nets, all projected with one ``R``.

    As in the reference implementation (one projector for every model of the ensemble); each
    chunk of ``R`` is drawn once for all the nets.

    Args:
      members: ``(net, theta)`` pairs: nets of the same size and their trained parameters.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` labels.
      x_test: ``(t, d)`` test inputs (the training inputs for self-influence: projected once).
      y_test: ``(t,)`` labels.
      lam: the ridge of eq. (2).
      dim: projection dimension (None: no projection).
      seed: projection seed.
      projection: ``"gaussian"`` or ``"rademacher"``.

    Returns:
      ``(n, t)`` mean of the members' scores, positive when removing the point raises the test
      loss.
    """
    members = list(members)
    if not members:
        raise InputError("a TRAK ensemble needs at least one (net, theta) pair.")
    xtr, xte = np.asarray(x_train), np.asarray(x_test)
    n = xtr.shape[0]
    same = xte.shape == xtr.shape and np.array_equal(xte, xtr)  # self-influence: project once
    pts = xtr if same else np.concatenate([xtr, xte])
    phis = _project(members, pts, dim, seed, projection, 2**15, 2**30)
    ytr, yte = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    acc = np.zeros((n, xte.shape[0]))
    for (net, theta), phi in zip(members, phis, strict=True):
        with precision(net.dtype):
            th = jnp.asarray(theta, net.dtype)
            f = np.asarray(net.apply(th, jnp.asarray(pts, net.dtype)), np.float64)
        pt, pe = phi[:n], (phi[:n] if same else phi[n:])
        r_te = (f[:n] if same else f[n:]) - yte
        acc += first_order_scores(pt @ pt.T, pt @ pe.T, f[:n] - ytr, r_te, lam)
    return acc / len(members)
