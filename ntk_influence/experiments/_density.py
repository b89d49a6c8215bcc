"""Data density and the IHVP's error (Theorem 4, Figure 3), and the mixture of Definition 1.

**Density.** Each training point's density is a Gaussian kernel density estimate (KDE) over the
training set. When the input dimension ``d`` exceeds ``dim`` (default 10), the centred training
inputs are first projected on their top ``dim`` principal components (PCA by SVD); the KDE then
uses the full sample covariance of the projected points scaled by Scott's factor
``n^(-1/(dim+4))`` (``bandwidth="scott"``, as ``scipy.stats.gaussian_kde``), or Silverman's
``(n (dim+2) / 4)^(-1/(dim+4))``, or a given number. The log-density is computed with
``logsumexp`` (no underflow in high dimension); with ``leave_one_out=True`` each point's own
kernel is left out of its estimate.

**Error rate.** A training point's IHVP error rate is the *median* over test points of
``|I - Ihat| / |I|`` (:func:`ntk_influence.influence.pair_error_rate`, NaN for pairs with
``I = 0`` exactly, which are skipped); the median rather than the mean
because single pairs with ``I`` near 0 have arbitrarily large rates. Spearman correlations of
density, error rate and the ridge leverage ``h_i`` (the exact explanation of term I's error) are
reported.

**Theorem 4.** :func:`finite_mixture` draws data from Definition 1 on the unit sphere;
:func:`mixture_experiment` shows the error rate of points of component ``k`` growing as its
proportion ``p_k`` shrinks.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal

import numpy as np

from .._validate import as_array, check_lam
from ..errors import InputError
from ..influence import InfluenceResult, ntk_influence, pair_error_rate

Bandwidth = Literal["scott", "silverman"] | float


@dataclasses.dataclass(frozen=True)
class KDEResult:
    """Gaussian KDE of the training points at themselves.

    Attributes:
      log_density: ``(n,)`` log-density of each point (in the projected space).
      dim: dimension the KDE ran in (after PCA, or ``d``).
      pca: whether PCA was applied.
      explained_variance: share of the variance kept by the PCA (1.0 without PCA).
      bandwidth_factor: the factor multiplying the data covariance's square root.
      bandwidth_rule: ``"scott"``, ``"silverman"`` or ``"given"``.
      leave_one_out: whether each point's own kernel was left out.
    """

    log_density: np.ndarray
    dim: int
    pca: bool
    explained_variance: float
    bandwidth_factor: float
    bandwidth_rule: str
    leave_one_out: bool


def kde_log_density(x: Any, *, dim: int = 10, bandwidth: Bandwidth = "scott",
                    leave_one_out: bool = False) -> KDEResult:
    """Log-density of each point under a Gaussian KDE of all points (PCA first when ``d > dim``).

    Args:
      x: ``(n, d)`` points (flattened if higher rank).
      dim: PCA dimension used when ``d > dim``.
      bandwidth: ``"scott"`` (default), ``"silverman"`` or a positive factor.
      leave_one_out: leave each point's own kernel out of its estimate.

    Returns:
      :class:`KDEResult`.
    """
    a = as_array(x, "x", (2, 3, 4))
    a = a.reshape(a.shape[0], -1)
    n, d = a.shape
    if n < 3:
        raise InputError(f"need at least 3 points for a density estimate, got {n}.")
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise InputError(f"dim must be a positive integer, got {dim!r}.")
    c = a - a.mean(axis=0)
    pca = d > dim
    explained = 1.0
    if pca:
        _, sv, vt = np.linalg.svd(c, full_matrices=False)
        c = c @ vt[:dim].T
        explained = float(np.sum(sv[:dim] ** 2) / np.sum(sv**2))
    q = c.shape[1]
    if bandwidth == "scott":
        fac, rule = n ** (-1.0 / (q + 4)), "scott"
    elif bandwidth == "silverman":
        fac, rule = (n * (q + 2) / 4.0) ** (-1.0 / (q + 4)), "silverman"
    else:
        try:
            fac, rule = float(bandwidth), "given"
        except (TypeError, ValueError) as e:
            raise InputError(f"bandwidth must be 'scott', 'silverman' or a number, got "
                             f"{bandwidth!r}.") from e
        if not np.isfinite(fac) or fac <= 0:
            raise InputError(f"bandwidth factor must be > 0, got {bandwidth!r}.")
    cov = np.atleast_2d(np.cov(c, rowvar=False))
    try:
        chol = np.linalg.cholesky(cov + 1e-12 * np.trace(cov) / q * np.eye(q))
    except np.linalg.LinAlgError as e:
        raise InputError("the points' covariance is singular; lower dim.") from e
    z = np.linalg.solve(chol, c.T).T / fac
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    logk = -0.5 * d2
    if leave_one_out:
        np.fill_diagonal(logk, -np.inf)
    mx = logk.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.sum(np.exp(logk - mx), axis=1))
    m = n - 1 if leave_one_out else n
    log_norm = np.log(m) + 0.5 * q * np.log(2 * np.pi) + q * np.log(fac) + \
        np.sum(np.log(np.diag(chol)))
    return KDEResult(lse - log_norm, q, pca, explained, float(fac), rule, bool(leave_one_out))


def point_error_rate(res: InfluenceResult, statistic: Literal["median", "mean"] = "median"
                     ) -> np.ndarray:
    """Each training point's IHVP error rate: median (or mean) over test points of ``|I-Ihat|/|I|``.

    The pair rates are :func:`~ntk_influence.influence.pair_error_rate`'s; its NaN for a pair
    with ``I = 0`` is left out of the point's median or mean.

    Args:
      res: an :class:`~ntk_influence.InfluenceResult`.
      statistic: ``"median"`` (default) or ``"mean"``.

    Returns:
      ``(n_train,)`` error rates (NaN for a point whose influence is 0 on every test point).
    """
    rate = pair_error_rate(res)
    if statistic not in ("median", "mean"):
        raise InputError(f"statistic must be 'median' or 'mean', got {statistic!r}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(rate, axis=1) if statistic == "median" else np.nanmean(rate, axis=1)


@dataclasses.dataclass(frozen=True)
class DensityAnalysis:
    """Figure 3: density of each training point against its IHVP error rate, with leverage.

    Attributes:
      log_density: ``(n,)`` KDE log-density.
      error_rate: ``(n,)`` per-point IHVP error rate (median over test points).
      leverage: ``(n,)`` ridge leverage ``h_i``.
      spearman_density_error: Spearman rho of density and error rate (Theorem 4: negative).
      pvalue_density_error: its p-value.
      spearman_leverage_error: Spearman rho of leverage and error rate.
      spearman_density_leverage: Spearman rho of density and leverage.
      kde: the :class:`KDEResult` (dimension, bandwidth).
      statistic: how the per-point error rate was reduced over test points.
      lam: the ridge.
    """

    log_density: np.ndarray
    error_rate: np.ndarray
    leverage: np.ndarray
    spearman_density_error: float
    pvalue_density_error: float
    spearman_leverage_error: float
    spearman_density_leverage: float
    kde: KDEResult
    statistic: str
    lam: float


def density_vs_error(x_train: Any, res: InfluenceResult, *, dim: int = 10,
                     bandwidth: Bandwidth = "scott", leave_one_out: bool = False,
                     statistic: Literal["median", "mean"] = "median") -> DensityAnalysis:
    """Figure 3: Spearman correlation between each training point's density and IHVP error rate.

    Args:
      x_train: ``(n, d)`` training inputs the influence was computed on.
      res: their :class:`~ntk_influence.InfluenceResult`.
      dim: PCA dimension for the KDE when ``d > dim``.
      bandwidth: ``"scott"``, ``"silverman"`` or a factor.
      leave_one_out: leave-one-out KDE.
      statistic: ``"median"`` or ``"mean"`` over test points.

    Returns:
      :class:`DensityAnalysis`.
    """
    from scipy import stats

    kde = kde_log_density(x_train, dim=dim, bandwidth=bandwidth, leave_one_out=leave_one_out)
    if kde.log_density.shape[0] != res.n_train:
        raise InputError(f"x_train has {kde.log_density.shape[0]} points but the influence "
                         f"result {res.n_train}.")
    err = point_error_rate(res, statistic)
    ok = np.isfinite(err)
    rho, p = stats.spearmanr(kde.log_density[ok], err[ok])
    rho_h = stats.spearmanr(res.leverage[ok], err[ok])[0]
    rho_dh = stats.spearmanr(kde.log_density, res.leverage)[0]
    return DensityAnalysis(kde.log_density, err, np.asarray(res.leverage), float(rho), float(p),
                           float(rho_h), float(rho_dh), kde, statistic, res.lam)


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Data from the finite mixture of Definition 1, on the unit sphere.

    Attributes:
      x: ``(n, d)`` unit-norm points.
      y: ``(n,)`` labels in {+1, -1}.
      component: ``(n,)`` the component each point came from.
      means: ``(K, d)`` unit-norm component centres.
      p: ``(K,)`` proportions.
      counts: ``(K,)`` points per component (``n_k = round(p_k n)``, assumption A1).
      r: radius bound (assumption A2): every component lies within ``r`` of its mean.
      labels: ``(K,)`` each component's label.
    """

    x: np.ndarray
    y: np.ndarray
    component: np.ndarray
    means: np.ndarray
    p: np.ndarray
    counts: np.ndarray
    r: float
    labels: np.ndarray


def _counts(p: np.ndarray, n: int) -> np.ndarray:
    raw = p * n
    c = np.floor(raw).astype(np.int64)
    c[np.argsort(-(raw - c), kind="stable")[: n - int(c.sum())]] += 1
    return c


def finite_mixture(n: int, p: Any, d: int = 20, r: float = 0.5, *, seed: int = 0,
                   means: Any = None, labels: Any = None) -> Mixture:
    """Sample ``n`` points from the finite mixture of Definition 1 on the unit sphere.

    Component ``k`` is a spherical cap around a unit centre ``mu_k``: ``x = cos(theta) mu_k +
    sin(theta) v`` with ``v`` a uniform unit vector orthogonal to ``mu_k`` and ``theta`` uniform
    in ``[0, theta_max]``, ``theta_max = 2 arcsin(r / 2)``. Then ``||x - E x|| <= ||x - mu_k|| <= r``
    is guaranteed for ``x`` in the cap's support (assumption A2), and ``n_k = round(p_k n)``
    (assumption A1, largest remainders). Labels are per component, alternating ``+1, -1`` unless
    given.

    Args:
      n: number of points.
      p: ``(K,)`` proportions, positive, summing to 1.
      d: dimension.
      r: radius bound, ``0 < r <= 2``.
      seed: random seed.
      means: optional ``(K, d)`` centres (normalised); default random Gaussian directions.
      labels: optional ``(K,)`` labels in [-1, 1].

    Returns:
      :class:`Mixture`.
    """
    pk = np.asarray(p, float).reshape(-1)
    if pk.size == 0 or (pk <= 0).any() or not np.isclose(pk.sum(), 1.0, atol=1e-9):
        raise InputError(f"p must be positive proportions summing to 1, got {pk.tolist()}.")
    if not isinstance(n, (int, np.integer)) or n < pk.size:
        raise InputError(f"n must be an integer >= the number of components {pk.size}, got {n!r}.")
    if not 0 < float(r) <= 2:
        raise InputError(f"r must be in (0, 2], got {r!r}.")
    if not isinstance(d, (int, np.integer)) or d < 2:
        raise InputError(f"d must be an integer >= 2, got {d!r}.")
    rng = np.random.default_rng(seed)
    kk = pk.size
    mu = rng.normal(size=(kk, d)) if means is None else as_array(means, "means", (2,))
    if mu.shape != (kk, d):
        raise InputError(f"means must have shape ({kk}, {d}), got {mu.shape}.")
    mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    lab = np.where(np.arange(kk) % 2 == 0, 1.0, -1.0) if labels is None else \
        np.asarray(labels, float).reshape(-1)
    if lab.shape != (kk,):
        raise InputError(f"labels must have {kk} entries, got {lab.shape}.")
    counts = _counts(pk, int(n))
    comp = np.repeat(np.arange(kk), counts)
    theta_max = 2.0 * np.arcsin(float(r) / 2.0)
    v = rng.normal(size=(int(n), d))
    m = mu[comp]
    v = v - np.sum(v * m, axis=1, keepdims=True) * m
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    theta = rng.uniform(0.0, theta_max, size=int(n))
    x = np.cos(theta)[:, None] * m + np.sin(theta)[:, None] * v
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(int(n))
    return Mixture(x[perm], lab[comp][perm], comp[perm], mu, pk, counts, float(r), lab)


@dataclasses.dataclass(frozen=True)
class MixtureExperiment:
    """Theorem 4 on Definition 1's mixture: error rate per component against ``p_k``.

    Attributes:
      p: ``(K,)`` proportions.
      component_error: ``(K,)`` median over the component's points of their error rates
        (averaged over repeats).
      component_leverage: ``(K,)`` mean leverage ``h_i`` of the component's points.
      spearman_p_error: Spearman rho of ``p_k`` and ``component_error`` (Theorem 4: negative).
      error_rate: ``(n,)`` per-point error rates.
      leverage: ``(n,)`` leverage.
      component: ``(n,)`` component of each training point.
      lam: the ridge.
      r: radius bound.
      component_error_per_repeat: ``(repeats, K)`` the per-draw component medians.
    """

    p: np.ndarray
    component_error: np.ndarray
    component_leverage: np.ndarray
    spearman_p_error: float
    error_rate: np.ndarray
    leverage: np.ndarray
    component: np.ndarray
    lam: float
    r: float
    component_error_per_repeat: np.ndarray


def mixture_experiment(p: Any = (0.4, 0.25, 0.15, 0.1, 0.06, 0.04), n: int = 300,
                       n_test: int = 100, d: int = 20, r: float = 0.6, lam: float = 0.1, *,
                       seed: int = 0, statistic: Literal["median", "mean"] = "median",
                       centres: Literal["orthogonal", "random"] = "orthogonal",
                       repeats: int = 1, kernel: Any = "paper") -> MixtureExperiment:
    """Theorem 4 experiment: IHVP error rate per mixture component as its proportion shrinks.

    Training and test points are drawn from the same mixture (test ``x_te ~ D``, centres shared);
    influences come from the core engine; each point's error rate is the median (or mean) over
    test points of ``|I - Ihat| / |I|``; each component reports the median over its points.

    Args:
      p: proportions ``p_k``.
      n: training points.
      n_test: test points.
      d: dimension.
      r: radius bound.
      lam: ridge.
      seed: seed (test data use ``seed + 1`` with the same centres).
      statistic: per-point reduction over test points.
      centres: ``"orthogonal"`` (default: a random orthonormal set, so components are
        separated as the theorem assumes; needs ``d >= K``) or ``"random"`` (Gaussian directions,
        components may overlap, which adds their neighbours' density to the comparison).
      repeats: independent draws (seeds ``seed + 1000 r``); the component error is the mean of
        the per-draw medians, which smooths the sampling noise of small components.
      kernel: kernel (default eq. 4).

    Returns:
      :class:`MixtureExperiment`.
    """
    from scipy import stats

    lam = check_lam(lam)
    pk = np.asarray(p, float).reshape(-1)
    if not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise InputError(f"repeats must be a positive integer, got {repeats!r}.")
    means = None
    if centres == "orthogonal":
        if d < pk.size:
            raise InputError(f"orthogonal centres need d >= K = {pk.size}, got d={d}.")
    elif centres != "random":
        raise InputError(f"centres must be 'orthogonal' or 'random', got {centres!r}.")
    kk = pk.size
    errs, levs, comps, per_rep = [], [], [], []
    for rep in range(int(repeats)):
        s_rep = seed + 1000 * rep
        if centres == "orthogonal":
            q, _ = np.linalg.qr(np.random.default_rng(s_rep).normal(size=(d, kk)))
            means = q.T
        tr = finite_mixture(n, p, d, r, seed=s_rep, means=means)
        te = finite_mixture(n_test, p, d, r, seed=s_rep + 1, means=tr.means, labels=tr.labels)
        res = ntk_influence(tr.x, tr.y, te.x, te.y, lam, kernel=kernel)
        err = point_error_rate(res, statistic)
        per_rep.append([np.nanmedian(err[tr.component == c]) for c in range(kk)])
        levs.append(np.asarray(res.leverage))
        errs.append(err)
        comps.append(tr.component)
    err, lev, comp = np.concatenate(errs), np.concatenate(levs), np.concatenate(comps)
    comp_err = np.mean(np.asarray(per_rep), axis=0)
    comp_lev = np.array([lev[comp == c].mean() for c in range(kk)])
    rho = float(stats.spearmanr(pk, comp_err)[0]) if kk > 2 else float("nan")
    return MixtureExperiment(pk, comp_err, comp_lev, rho, err, lev, comp, lam, float(r),
                             np.asarray(per_rep))
