"""Predictions and influence of the linearised network along training (eq. 20, Figures 6-7).

Holds :func:`check_times` and :func:`flow_time` (times and their unit), :func:`linearized_predictions`,
:func:`time_influence_from_kernels` (exact and first-order influence at each time, chunked, resumable
through a :class:`~ntk_influence.io.ResultStore`) with its shortcut :func:`influence_over_time` and
:func:`auto_chunk_size`, :func:`time_agreement` and :func:`most_influential` (Figures 6 and 7).

**Time unit.** Eq. (2) is ``L(W) = 1/2 sum_i (f(x_i) - y_i)^2 + lam/2 ||W - W(0)||^2`` and training
is the gradient flow ``dW/dt = -grad L``; ``t`` is therefore "learning rate x number of steps" of
gradient descent on that *sum* loss (``time_unit="flow"``, the default). Linearising the network
around ``W(0)`` with ``f_0 = 0`` gives, with ``M = K + lam I``,

    ``f_te(t) = K_te^T M^-1 (I - exp(-t M)) y = K_te^T g_t(M) y``,   ``g_t(mu) = (1 - e^{-t mu})/mu``.

The paper's eq. (20) is the ridgeless case written for the *mean* loss
``(1/n) sum_i (f(x_i) - y_i)^2``, whose flow runs ``2/n`` times slower:
``time_unit="paper"`` maps a paper time ``t`` to the flow time ``2 t / n`` (applied to the whole
matrix ``K + lam I``). ``t = inf`` (``np.inf``) is the end of training: kernel ridge regression.

**Influence at time t.** Removing training point ``i`` gives the predictor
``f^(i)_te(t) = K_te,-i^T g_t(M_-i,-i) y_-i`` of the reduced problem, and the influence is the
change of the time-``t`` test loss, ``I_t = Delta (f_te(t) - y_te) + Delta^2 / 2`` with
``Delta = f^(i)_te(t) - f_te(t)`` (summed over outputs; never a difference of two losses).

- *Exact* (``method="exact"``): one ``eigh`` of ``K + lam I`` gives the full predictions, then one
  ``eigh`` per left-out point, ``O(n^4)`` in total, in chunks of points. The ``"jax"`` backend
  batches a chunk with ``vmap`` (for GPU/TPU); to keep one shape per batch, row and column ``i``
  of ``K`` are zeroed, ``M_ii`` is set to a positive constant and ``y_i``, ``K_te[i]`` to zero:
  that decoupled ``n x n`` problem has exactly the predictions of the ``(n-1) x (n-1)`` one. The
  ``"lapack"`` backend (the default on CPU) loops LAPACK's ``eigh`` (``syevd``) over the reduced
  ``(n-1) x (n-1)`` matrices.
- *First order* (``method="first-order"``): weight the loss of point ``i`` by ``w_i``; the flow
  of the weighted eq. (2) predicts ``F(w) = K_te^T S g_t(S K S + lam I) S y`` with
  ``S = diag(sqrt(w))``, and ``w_i = 0`` is exactly the leave-one-out problem. The first-order
  change is ``Delta_hat = -dF/dw_i`` at ``w = 1``, whose matrix part is the Frechet derivative
  of ``g_t`` at ``M`` (Daleckii-Krein: ``U (G o (U^T E U)) U^T`` with the divided differences
  ``G_jl = g_t[mu_j, mu_l]``), so the one eigendecomposition serves every point and every time.
  The first-order influence is ``Delta_hat (f_te(t) - y_te)``, the time-``t`` analogue of the
  classic estimate: at ``t = inf`` it *is* the kernel IHVP of eq. (13), and for ``t -> 0`` it is
  exact to leading order in ``t``.

The matrix function ``g_t`` and the two routes' per-chunk kernels live in ``_flow.py`` of this
subpackage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from .._precision import precision
from .._validate import as_array, check_features, check_labels, check_lam
from ..data import unit_normalize
from ..errors import InputError, SingularKernelError
from ..io import ResultStore
from ..io import progress as _progress
from ..kernels import Kernel, kernel_matrix, resolve_kernel
from ..linalg import loss_change
from ._flow import first_order_delta, g_flow, loo_delta_jax, loo_delta_lapack

TimeUnit = Literal["flow", "paper"]
Method = Literal["exact", "first-order", "both"]
ByKind = Literal["abs", "helpful", "harmful"]
Backend = Literal["auto", "lapack", "jax"]


def check_times(times: Any) -> np.ndarray:
    """Check training times: a non-empty 1-D array of finite-or-inf values ``>= 0``.

    Args:
      times: scalar or sequence of times (``np.inf`` allowed: the end of training).

    Returns:
      ``(T,)`` float64 array.
    """
    try:
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise InputError(f"times must be numbers, got {times!r}.") from e
    if t.ndim != 1 or t.size == 0:
        raise InputError(f"times must be a non-empty 1-D sequence, got shape {t.shape}.")
    if np.isnan(t).any():
        raise InputError("times contains NaN; pass times >= 0 (np.inf for the end of training).")
    if (t < 0).any():
        raise InputError(f"times must be >= 0, got {float(t[t < 0][0]):g}; time runs forward "
                         "from the start of training at t = 0.")
    return t


def flow_time(times: Any, n_train: int, time_unit: TimeUnit = "flow") -> np.ndarray:
    """Convert times to gradient-flow time on eq. (2) (sum loss).

    ``"flow"``: unchanged. ``"paper"``: eq. (20)'s mean-loss time, ``t_flow = 2 t / n``.

    Args:
      times: times in ``time_unit``.
      n_train: number of training points ``n``.
      time_unit: ``"flow"`` or ``"paper"``.

    Returns:
      ``(T,)`` flow times.
    """
    t = check_times(times)
    if time_unit == "flow":
        return t
    if time_unit == "paper":
        return 2.0 * t / float(n_train)
    raise InputError(f"time_unit must be 'flow' or 'paper', got {time_unit!r}.")


def _check_kernels(k_train: Any, k_test: Any, y_train: Any, y_test: Any | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    k = as_array(k_train, "k_train", (2,))
    if k.shape[0] != k.shape[1]:
        raise InputError(f"k_train must be square, got shape {k.shape}.")
    n = k.shape[0]
    asym = np.abs(k - k.T).max()
    if asym > 1e-8 * max(np.abs(k).max(), 1.0):
        raise InputError(f"k_train is not symmetric (max |K - K^T| = {asym:.3g}); pass K(x, x).")
    kt = as_array(k_test, "k_test", (2,))
    if kt.shape[0] != n:
        hint = " (transpose it: k_test is (n_train, n_test))" if kt.shape[1] == n else ""
        raise InputError(f"k_test has shape {kt.shape} but there are {n} training points{hint}.")
    y = check_labels(y_train, n, "y_train")
    yt = None
    if y_test is not None:
        yt = check_labels(y_test, kt.shape[1], "y_test")
        if yt.reshape(yt.shape[0], -1).shape[1] != y.reshape(n, -1).shape[1]:
            raise InputError("y_test and y_train have different numbers of outputs.")
    return k, kt, y, yt


@dataclasses.dataclass(frozen=True)
class LinearizedDynamics:
    """Predictions of the linearised network at several training times (eq. 20 with ``lam``).

    Attributes:
      times: the times as given.
      flow_times: the same as gradient-flow times on eq. (2) (sum loss).
      time_unit: ``"flow"`` or ``"paper"``.
      lam: the ridge.
      f_test: ``(T, n_test)`` (or ``(T, n_test, k)``) predictions.
      f_train: ``(T, n_train)`` (or ``(T, n_train, k)``) predictions on the training points.
      eigenvalues: ``(n,)`` eigenvalues of ``K + lam I`` (ascending).
    """

    times: np.ndarray
    flow_times: np.ndarray
    time_unit: str
    lam: float
    f_test: np.ndarray
    f_train: np.ndarray
    eigenvalues: np.ndarray


def _eigh(k: np.ndarray, lam: float, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, u = np.linalg.eigh(k + lam * np.eye(k.shape[0]))
    if np.isinf(times).any() and mu[0] <= 1e-12 * max(mu[-1], 1e-300):
        raise SingularKernelError(
            f"t = inf needs K + lam I positive definite, but its least eigenvalue is {mu[0]:.3g} "
            f"(largest {mu[-1]:.3g}); use lam > 0 or finite times.")
    return mu, u


def linearized_predictions(k_train: Any, k_test: Any, y_train: Any, lam: float, times: Any, *,
                           time_unit: TimeUnit = "flow") -> LinearizedDynamics:
    """Predictions at training times ``t``: ``f_te(t) = K_te^T (K+lam I)^-1 (I - e^{-t(K+lam I)}) y``.

    Eq. (20) generalised to ``lam >= 0``, from one eigendecomposition of
    ``K + lam I``. See the module docstring for the time unit.

    Args:
      k_train: ``(n, n)`` kernel on the training points.
      k_test: ``(n, n_test)`` kernel between training and test points.
      y_train: ``(n,)`` or ``(n, k)`` labels.
      lam: ridge ``>= 0``.
      times: training times (``np.inf`` = end of training, the KRR predictor of eq. 6).
      time_unit: ``"flow"`` (eq. 2, sum loss) or ``"paper"`` (eq. 20, ``t_flow = 2t/n``).

    Returns:
      :class:`LinearizedDynamics`.
    """
    lam = check_lam(lam)
    k, kt, y, _ = _check_kernels(k_train, k_test, y_train, None)
    n = k.shape[0]
    tt = check_times(times)
    ft = flow_time(tt, n, time_unit)
    mu, u = _eigh(k, lam, ft)
    y2 = y.reshape(n, -1)
    yt, ktt, ktr = u.T @ y2, u.T @ kt, u.T @ k
    f_te, f_tr = [], []
    for t in ft:
        c = g_flow(t, mu)[:, None] * yt
        f_te.append(ktt.T @ c)
        f_tr.append(ktr.T @ c)
    sq = (lambda a: a[..., 0]) if y.ndim == 1 else (lambda a: a)
    return LinearizedDynamics(tt, ft, time_unit, lam, sq(np.stack(f_te)), sq(np.stack(f_tr)), mu)


@dataclasses.dataclass(frozen=True)
class TimeAgreement:
    """Agreement of the first-order with the exact time-``t`` influence, one value per time.

    Attributes:
      rel_error: ``||I_first - I_exact||_F / ||I_exact||_F``.
      pearson: Pearson correlation over all (train, test) pairs.
      spearman: Spearman rank correlation over all pairs.
      slope: least-squares slope of ``I_first`` against ``I_exact`` (1 is unbiased).
      top1_match: share of test points whose most influential training point (largest ``|I|``)
        is the same under both.
    """

    rel_error: np.ndarray
    pearson: np.ndarray
    spearman: np.ndarray
    slope: np.ndarray
    top1_match: np.ndarray


def time_agreement(exact: Any, first_order: Any) -> TimeAgreement:
    """Compare first-order and exact influences time by time.

    Args:
      exact: ``(T, n, m)`` exact influences.
      first_order: ``(T, n, m)`` first-order influences.

    Returns:
      :class:`TimeAgreement`.
    """
    from scipy import stats

    ex, fo = np.asarray(exact, float), np.asarray(first_order, float)
    if ex.shape != fo.shape or ex.ndim != 3:
        raise InputError(f"exact and first_order must both be (T, n, m), got {ex.shape} and "
                         f"{fo.shape}.")
    rel, pr, sr, sl, top = [], [], [], [], []
    for e, f in zip(ex, fo):
        ne = np.linalg.norm(e)
        rel.append(np.linalg.norm(f - e) / ne if ne > 0 else (0.0 if not f.any() else np.inf))
        a, b = e.ravel(), f.ravel()
        ok = np.std(a) > 0 and np.std(b) > 0 and a.size > 2
        pr.append(stats.pearsonr(a, b)[0] if ok else np.nan)
        sr.append(stats.spearmanr(a, b)[0] if ok else np.nan)
        den = float(np.dot(a - a.mean(), a - a.mean()))
        sl.append(float(np.dot(a - a.mean(), b - b.mean())) / den if den > 0 else np.nan)
        top.append(np.mean(np.argmax(np.abs(e), 0) == np.argmax(np.abs(f), 0)))
    return TimeAgreement(*(np.asarray(v, float) for v in (rel, pr, sr, sl, top)))


@dataclasses.dataclass(frozen=True)
class TimeInfluenceResult:
    """Influence of training points on test losses at several training times.

    Sign convention as in the core engine: ``influence > 0`` means removing the point raises the
    time-``t`` test loss (helpful).

    Attributes:
      times: the times as given.
      flow_times: gradient-flow times on eq. (2).
      time_unit: ``"flow"`` or ``"paper"``.
      lam: the ridge.
      train_index: ``(n_sel,)`` the left-out training points (rows of the influence arrays).
      influence: ``(T, n_sel, n_test)`` exact influences, or None if not computed.
      first_order: ``(T, n_sel, n_test)`` first-order influences, or None.
      f_test: ``(T, n_test)`` (or ``(T, n_test, k)``) predictions at each time.
      y_test: test labels.
      agreement: :class:`TimeAgreement` when both were computed, else None.
      n_train: number of training points.
    """

    times: np.ndarray
    flow_times: np.ndarray
    time_unit: str
    lam: float
    train_index: np.ndarray
    influence: np.ndarray | None
    first_order: np.ndarray | None
    f_test: np.ndarray
    y_test: np.ndarray
    agreement: TimeAgreement | None
    n_train: int


def auto_chunk_size(n: int, n_times: int, n_test: int, k: int, budget_bytes: float = 2.5e8
                    ) -> int:
    """Left-out points per batch of the exact time-``t`` influence that fit a memory budget.

    Each point in a batch holds three ``n x n`` float64 matrices (the downdated ``K + lam I``, its
    eigenvectors and a work copy) and its ``Delta`` of ``n_times x n_test x k`` values.

    Args:
      n: training points.
      n_times: training times.
      n_test: test points.
      k: outputs per point.
      budget_bytes: memory budget for one batch (default about 250 MB).

    Returns:
      The batch size, in ``[1, n]``.
    """
    per = 8.0 * (3 * n * n + n_times * n_test * k + n * n_test)
    return int(max(1, min(n, budget_bytes // per)))


def time_influence_from_kernels(k_train: Any, k_test: Any, y_train: Any, y_test: Any,
                                lam: float, times: Any, *, time_unit: TimeUnit = "flow",
                                method: Method = "exact", train_index: Any = None,
                                chunk_size: int | None = None, show_progress: bool = False,
                                backend: Backend = "auto", store: ResultStore | None = None,
                                ) -> TimeInfluenceResult:
    """Influence of every (or each selected) training point on every test loss at times ``t``.

    Exact: the leave-one-out change of the time-``t`` test loss with the downdated kernel, one
    ``eigh`` per left-out point, batched over chunks (``O(n^4)`` in all; a few thousand points
    are feasible). First order: the Frechet derivative of ``g_t`` from one eigendecomposition
    (see the module docstring). Both share the one eigendecomposition of ``K + lam I``. Runs in
    float64.

    Args:
      k_train: ``(n, n)`` kernel on the training points.
      k_test: ``(n, n_test)`` kernel between training and test points.
      y_train: ``(n,)`` or ``(n, k)`` labels.
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      lam: ridge ``>= 0``.
      times: training times (``np.inf`` = end of training).
      time_unit: ``"flow"`` (eq. 2, sum loss) or ``"paper"`` (eq. 20, ``t_flow = 2t/n``).
      method: ``"exact"``, ``"first-order"`` or ``"both"`` (then ``agreement`` is filled in).
      train_index: left-out points to compute (default: all); rows of the result follow it.
      chunk_size: left-out points per batched ``eigh`` (default: fit about 250 MB).
      show_progress: progress bar over chunks.
      backend: exact route's ``eigh``: ``"jax"`` (jit + vmap over a chunk; GPU/TPU),
        ``"lapack"`` (a host loop of NumPy/LAPACK ``eigh`` on the ``(n-1) x (n-1)`` matrices;
        faster on CPU) or ``"auto"`` (``"lapack"`` when JAX's default backend is the CPU).
      store: optional store of finished exact chunks (key: the chunk's first row, item
        ``influence`` of shape ``(T, b, n_test)``): finished chunks are loaded instead of
        computed, new ones saved as they finish. Its ``meta`` must fix everything the chunks
        depend on, ``chunk_size`` included.

    Returns:
      :class:`TimeInfluenceResult`.
    """
    lam = check_lam(lam)
    if method not in ("exact", "first-order", "both"):
        raise InputError(f"method must be 'exact', 'first-order' or 'both', got {method!r}.")
    if backend not in ("auto", "lapack", "jax"):
        raise InputError(f"backend must be 'auto', 'lapack' (host NumPy/LAPACK eigh) or 'jax' "
                         f"(jit + vmap), got {backend!r}.")
    if backend == "auto":
        backend = "lapack" if jax.default_backend() == "cpu" else "jax"
    k, kt, y, yt = _check_kernels(k_train, k_test, y_train, y_test)
    n, m = kt.shape
    tt = check_times(times)
    ft = flow_time(tt, n, time_unit)
    if train_index is None:
        sel = np.arange(n)
    else:
        sel = np.asarray(train_index).reshape(-1)
        if sel.size == 0 or not np.issubdtype(sel.dtype, np.integer) or sel.min() < 0 \
                or sel.max() >= n:
            raise InputError(f"train_index must be non-empty integer indices in [0, {n}).")
    if n < 2:
        raise InputError("need at least 2 training points to leave one out.")
    y2, yt2 = y.reshape(n, -1), yt.reshape(m, -1)
    nk = y2.shape[1]
    mu, u = _eigh(k, lam, ft)
    ktt, ytil = u.T @ kt, u.T @ y2
    f_full = np.stack([ktt.T @ (g_flow(t, mu)[:, None] * ytil) for t in ft])  # (T, m, k)
    r = f_full - yt2[None]
    exact = first = None
    if method in ("exact", "both"):
        bs = int(chunk_size) if chunk_size else auto_chunk_size(n, ft.size, m, nk)
        if bs < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}.")
        exact = np.empty((ft.size, sel.size, m))
        starts = range(0, sel.size, bs)
        with precision(np.float64):
            args = [jnp.asarray(a, jnp.float64) for a in (k, kt, y2)]
            lam_j = jnp.asarray(lam, jnp.float64)
            t_j = jnp.asarray(ft, jnp.float64)
            fill = jnp.asarray(max(float(np.mean(np.diag(k))) + lam, 1.0), jnp.float64)
            ff = jnp.asarray(f_full, jnp.float64)
            for s in _progress(starts, total=len(starts), desc="exact influence over time",
                               enabled=show_progress):
                idx = sel[s:s + bs]
                if store is not None and store.done(s):
                    exact[:, s:s + idx.size] = store.load(s)["influence"]
                    continue
                if backend == "lapack":
                    d = loo_delta_lapack(k, kt, y2, lam, ft, f_full, idx)
                else:
                    pad = bs - idx.size
                    idx_p = np.concatenate([idx, np.repeat(idx[-1:], pad)]) if pad else idx
                    d = np.asarray(loo_delta_jax(*args, lam_j, t_j, fill, ff,
                                              jnp.asarray(idx_p)))[: idx.size]  # (b, T, m, k)
                infl = np.transpose(loss_change(d, r[None], axis=-1), (1, 0, 2))  # (T, b, m)
                exact[:, s:s + idx.size] = infl
                if store is not None:
                    store.save(s, influence=infl)
    if method in ("first-order", "both"):
        dh = first_order_delta(k, kt, y2, lam, ft, mu, u)[:, sel]  # (T, n_sel, m, k)
        first = np.sum(dh * r[:, None], axis=-1)
    agr = time_agreement(exact, first) if method == "both" else None
    sq = (lambda a: a[..., 0]) if y.ndim == 1 else (lambda a: a)
    return TimeInfluenceResult(tt, ft, time_unit, lam, sel.astype(np.int64), exact, first,
                               sq(f_full), yt, agr, n)


def _kernels_for(x_train: Any, x_test: Any, kernel: Kernel | str | Any, normalize: bool,
                 k_train: Any, k_test: Any) -> tuple[np.ndarray, np.ndarray]:
    if (k_train is None) != (k_test is None):
        raise InputError("pass both k_train and k_test, or neither.")
    if k_train is not None:
        return as_array(k_train, "k_train", (2,)), as_array(k_test, "k_test", (2,))
    xtr, xte = check_features(x_train, x_test)
    if normalize:
        xtr, xte = unit_normalize(xtr, "x_train"), unit_normalize(xte, "x_test")
    kern = resolve_kernel(kernel)
    return (kernel_matrix(kern, xtr, names=("x_train", "x_train")),
            kernel_matrix(kern, xtr, xte, names=("x_train", "x_test")))


def influence_over_time(x_train: Any, y_train: Any, x_test: Any, y_test: Any, lam: float,
                        times: Any, *, kernel: Kernel | str | Any = "paper",
                        normalize: bool = False, k_train: Any = None, k_test: Any = None,
                        time_unit: TimeUnit = "flow", method: Literal["exact", "first-order"]
                        = "exact", chunk_size: int | None = None,
                        show_progress: bool = False, backend: Backend = "auto",
                        store: ResultStore | None = None) -> np.ndarray:
    """Exact influence of every training point on every test loss at each training time.

    Eq. (20) with ``lam``: the leave-one-out change of the time-``t`` test loss
    of the linearised network, with the downdated kernel. ``t -> inf`` gives the core engine's
    ``ntk_influence(...).influence``; ``t = 0`` gives zero. For the full result (first order,
    agreement, predictions) use :func:`time_influence_from_kernels`.

    Args:
      x_train: ``(n, d)`` unit-norm inputs (ignored when kernels are given).
      y_train: ``(n,)`` or ``(n, k)`` labels.
      x_test: ``(n_test, d)`` inputs (ignored when kernels are given).
      y_test: ``(n_test,)`` or ``(n_test, k)`` labels.
      lam: ridge ``>= 0``.
      times: training times (``np.inf`` = end of training).
      kernel: kernel for the inputs (default: eq. 4).
      normalize: unit-normalise the inputs first.
      k_train: optional precomputed ``(n, n)`` kernel (with ``k_test``).
      k_test: optional precomputed ``(n, n_test)`` kernel.
      time_unit: ``"flow"`` (eq. 2, sum loss) or ``"paper"`` (eq. 20, ``t_flow = 2t/n``).
      method: ``"exact"`` (default) or ``"first-order"``.
      chunk_size: left-out points per batched ``eigh``.
      show_progress: progress bar.
      backend: ``"auto"``, ``"lapack"`` or ``"jax"`` (see :func:`time_influence_from_kernels`).
      store: optional store of finished exact chunks (see :func:`time_influence_from_kernels`).

    Returns:
      ``(len(times), n_train, n_test)`` influences.

    Example:
      >>> infl = ni.influence_over_time(x_tr, y_tr, x_te, y_te, 0.1, [1.0, 10.0, np.inf])
    """
    if method not in ("exact", "first-order"):
        raise InputError(f"method must be 'exact' or 'first-order', got {method!r}.")
    check_times(times)
    k, kt = _kernels_for(x_train, x_test, kernel, normalize, k_train, k_test)
    res = time_influence_from_kernels(k, kt, y_train, y_test, lam, times, time_unit=time_unit,
                                      method=method, chunk_size=chunk_size,
                                      show_progress=show_progress, backend=backend,
                                      store=store)
    return res.influence if method == "exact" else res.first_order


def most_influential(influence: Any, by: ByKind = "abs", k: int = 1) -> np.ndarray:
    """Index of the most influential training point(s) for each test point at each time.

    Args:
      influence: ``(T, n, m)`` (or ``(n, m)``) influences.
      by: ``"abs"`` (largest ``|I|``, default), ``"helpful"`` (largest ``I``) or ``"harmful"``
        (most negative ``I``).
      k: how many per test point.

    Returns:
      ``(T, m)`` indices for ``k = 1``, ``(T, k, m)`` otherwise (``T`` dropped for 2-D input).
    """
    a = np.asarray(influence, float)
    if a.ndim not in (2, 3):
        raise InputError(f"influence must be (T, n, m) or (n, m), got shape {a.shape}.")
    two = a.ndim == 2
    a = a[None] if two else a
    keys = {"abs": -np.abs(a), "helpful": -a, "harmful": a}
    if by not in keys:
        raise InputError(f"by must be 'abs', 'helpful' or 'harmful', got {by!r}.")
    if not 1 <= int(k) <= a.shape[1]:
        raise InputError(f"k must be in [1, {a.shape[1]}], got {k}.")
    order = np.argsort(keys[by], axis=1, kind="stable")[:, : int(k)]
    out = order[:, 0] if int(k) == 1 else order
    return out[0] if two else out
