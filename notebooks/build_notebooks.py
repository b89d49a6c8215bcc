"""Write the notebooks of this folder from the cell sources below (without outputs).

Run ``python notebooks/build_notebooks.py`` after editing a cell here; the ``.ipynb`` files are
generated, so edit this script rather than the notebooks. Every notebook reads
``NTK_INFLUENCE_NOTEBOOK_SIZE`` (``small``, the default, runs in about a minute on a 2-core CPU;
``tiny`` is what the test suite runs).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import os
import warnings
{PLT}
import numpy as np

import ntk_influence as ni
from ntk_influence import plots

%matplotlib inline
warnings.filterwarnings("ignore", message="IProgress not found")  # plain-text progress bars
# "small" runs in {SMALL_TIME} on a 2-core CPU; the test suite runs "tiny".
SIZE = os.environ.get("NTK_INFLUENCE_NOTEBOOK_SIZE", "small")
S = {SIZES}[SIZE]
S'''


def _setup(sizes: str, pyplot: bool = False, small_time: str = "about a minute") -> str:
    plt = "\nimport matplotlib.pyplot as plt" if pyplot else ""
    return (SETUP.replace("{SIZES}", sizes).replace("{PLT}", plt)
            .replace("{SMALL_TIME}", small_time))


def md(text: str) -> nbformat.NotebookNode:
    """A Markdown cell."""
    return new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    """A code cell."""
    return new_code_cell(text.strip("\n"))


# ---------------------------------------------------------------------------------------------
# 1. Quickstart, Table 1 and Figure 1
# ---------------------------------------------------------------------------------------------

NB1 = [
    md("""
# 1. Quickstart: exact NTK influence, and Table 1 / Figure 1

Zhang & Zhang (AAAI 2022) show that, for a wide two-layer ReLU network trained on the regularised
squared loss (eq. 2), the influence of a training point on a test loss can be computed **exactly**
through the network's Neural Tangent Kernel: kernel ridge regression with the NTK has a closed-form
leave-one-out (eq. 8-9). This notebook

1. loads the embedded scikit-learn digits (3 vs 8; nothing is downloaded),
2. computes the exact NTK influence of every training point on every test loss,
3. checks one value against a brute-force refit,
4. trains finite networks of growing width, retrains them without the most influential points,
   and compares (Table 1 and Figure 1).
"""),
    code(_setup('{"tiny": dict(n_train=24, n_test=6, widths=[32, 128], n_points=4),\n'
                '     "small": dict(n_train=60, n_test=20, widths=[256, 1024], n_points=8)}',
                pyplot=True)),
    md("""
## Data

`load_dataset` subsamples stratified by class, flattens, and scales every input to unit norm (the
paper assumes `||x|| = 1`); a class pair gets labels +1/-1. What was done is recorded.
"""),
    code("""
ds = ni.load_dataset("digits:3,8", n_train=S["n_train"], n_test=S["n_test"], seed=0)
print(ds.describe())
"""),
    md("""
## Exact influence of every training point on every test loss

`ni.ntk_influence` builds the NTK of eq. (4), factorises `K + lam I` once (float64, inside a
context that leaves JAX's global flag alone) and returns an `InfluenceResult`.

**Sign convention**: `influence[i, j] > 0` means that removing training point `i` *raises* the loss
on test point `j` — the point is **helpful**; negative means **harmful**. Losses are *sums* of
squared errors, `1/2 sum (f - y)^2`, as in eq. (2).
"""),
    code("""
res = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=0.1)
print("influence", res.influence.shape, " cond(K + lam I) =", f"{res.cond:.3g}")
j = 0
print("most helpful for test point 0:", res.ranking(j, 5, "helpful"))
print("most harmful for test point 0:", res.ranking(j, 5, "harmful"))
"""),
    md("""
## Exact means exact: one brute-force refit

Refit kernel ridge regression without the most helpful point, in plain NumPy with eq. (4) in
closed form, and compare the change of the test loss with the library's value (which uses
Neural Tangents' kernel: the two kernels agree to about 1e-9).
"""),
    code("""
def eq4(a, b):
    g = np.clip(a @ b.T, -1.0, 1.0)
    return g * (np.pi - np.arccos(g)) / (2 * np.pi)

K, Kt = eq4(ds.x_train, ds.x_train), eq4(ds.x_train, ds.x_test)
i = int(res.ranking(j, 1, "helpful")[0])
keep = np.delete(np.arange(len(ds.y_train)), i)
f_full = Kt[:, j] @ np.linalg.solve(K + 0.1 * np.eye(len(K)), ds.y_train)
f_loo = Kt[keep, j] @ np.linalg.solve(K[np.ix_(keep, keep)] + 0.1 * np.eye(len(keep)),
                                      ds.y_train[keep])
brute = 0.5 * (f_loo - ds.y_test[j]) ** 2 - 0.5 * (f_full - ds.y_test[j]) ** 2
print(f"library {res.influence[i, j]:.12e}\\nrefit   {brute:.12e}")
"""),
    md("""
The classic IHVP estimate (eq. 13) in the same regime misses a fraction `h_i` (the ridge leverage)
of the first term of Prop. 2. Here is how far it is from the exact values for this test point:
"""),
    code("""
top = np.argsort(-np.abs(res.influence[:, j]))[:40]
fig = plots.influence_scatter(res.ihvp[top, j], res.influence[top, j],
                              xlabel="exact NTK influence (eq. 9)",
                              ylabel="IHVP estimate (eq. 13)", title="kernel regime")
"""),
    md("""
## Table 1 and Figure 1: against leave-one-out retraining of finite networks

For each width, a two-layer ReLU network (eq. 1) is trained by gradient flow on eq. (2), then
retrained from the same initialisation without each of the most influential training points for
one test point. The predicted influences (NTK, and the classic Hessian IHVP on the trained net)
are compared with these actual ones. The paper reports R and rho above 0.9 at widths 1e4-8e4 on
MNIST and CIFAR-10; larger widths need more time than a notebook should take.
"""),
    code("""
from IPython.display import Markdown


sweep = ni.width_sweep(ds.x_train, ds.y_train, ds.x_test, ds.y_test, S["widths"], 0.1,
                            n_points=S["n_points"], test_index=0, show_progress=False)
Markdown(ni.experiments.table_markdown(sweep))
"""),
    md("""
Figure 1 for the widest net: the NTK prediction lies on the diagonal; the classic IHVP on the
same trained net is well correlated but underestimates (slope about 0.5), which correlation alone
hides.
"""),
    code("""
big = sweep[-1]
fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2))
plots.influence_scatter(big.predicted["ntk"], big.actual, ax=axes[0],
                        title=f"NTK influence, width {big.width}")
plots.influence_scatter(big.predicted["ihvp"], big.actual, ax=axes[1],
                        ylabel="IHVP estimate on the trained net (eq. 12)",
                        title=f"classic IHVP, width {big.width}");
"""),
]

# ---------------------------------------------------------------------------------------------
# 2. Regularisation (Theorem 3, Figure 2) and density (Theorem 4, Figure 3)
# ---------------------------------------------------------------------------------------------

NB2 = [
    md("""
# 2. Regularisation and Theorem 3 (Figure 2); data density and Theorem 4 (Figure 3)

The classic IHVP estimate of influence (Koh & Liang) misses, for training point `i`, exactly the
fraction `h_i = 1 - lam [(K + lam I)^-1]_ii` of the first term of Prop. 2 — the ridge leverage of
the point. Theorem 3 bounds it: `lambda_min/(lambda_min+lam) <= h_i <= lambda_max/(lambda_max+lam)`.
So the IHVP is accurate only with strong regularisation, and it is worst for points in sparse
regions of the data (high leverage), which is Theorem 4.
"""),
    code(_setup('{"tiny": dict(n_train=50, n_test=10, mix_n=80),\n'
                '     "small": dict(n_train=200, n_test=40, mix_n=300)}')),
    code("""
from ntk_influence.kernels import kernel_matrix, paper_kernel

ds = ni.load_dataset("digits:3,8", n_train=S["n_train"], n_test=S["n_test"], seed=0)
K = kernel_matrix(paper_kernel(), ds.x_train)
Kt = kernel_matrix(paper_kernel(), ds.x_train, ds.x_test)
"""),
    md("""
## Figure 2: mean error rate of the IHVP against lambda

For each `lam` in `2^-4 ... 2^4`: the mean over all (train, test) pairs of `|I - Ihat| / |I|`, the
Theorem 3 lower bound, the upper quantity, and the mean leverage. The pairwise inequality (16) is
checked on every pair.
"""),
    code("""
sweep = ni.experiments.lambda_sweep(K, Kt, ds.y_train, ds.y_test)
for lam, err, lo, hi, v in zip(sweep.lams, sweep.mean_error_rate, sweep.lower, sweep.upper,
                               sweep.bound_violations):
    print(f"lam={lam:7.4f}  mean error {err:.3f}  bound [{lo:.3f}, {hi:.3f}]  violations {v}")
fig = plots.lambda_sweep_plot(sweep, title="digits 3 vs 8")
"""),
    md("""
## Figure 3: density of each training point against its IHVP error rate

Gaussian kernel density estimation, after PCA to 10 dimensions (Scott's bandwidth); the error
rate of a point is its median over the test points. Theorem 4 predicts a negative correlation:
points in dense regions are estimated better. The leverage `h_i` explains it exactly.
"""),
    code("""
res = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=0.1)
dens = ni.experiments.density_vs_error(ds.x_train, res)
print(f"Spearman(density, error) = {dens.spearman_density_error:.3f}")
print(f"Spearman(leverage, error) = {dens.spearman_leverage_error:.4f}")
fig = plots.density_plot(dens, title="digits 3 vs 8, lam = 0.1")
"""),
    md("""
## Theorem 4 on the finite mixture of Definition 1

Components with smaller proportions `p_k` have sparser points, so larger IHVP error rates.
"""),
    code("""
mix = ni.experiments.mixture_experiment(n=S["mix_n"], seed=0)
print("p_k:", mix.p, "\\nerror:", np.round(mix.component_error, 3))
print(f"Spearman(p_k, error) = {mix.spearman_p_error:.3f}")
fig = plots.mixture_plot(mix)
"""),
]

# ---------------------------------------------------------------------------------------------
# 3. Complexity (eq. 19, Figure 5) and influential examples (Figure 4)
# ---------------------------------------------------------------------------------------------

NB3 = [
    md("""
# 3. Influential examples (Figure 4) and the complexity of influential groups (Figure 5)

Which training images help or hurt a prediction the most, and which do not matter? And are the
influential ones "more complicated"? The paper measures the complexity of a group of training
points by how much the RKHS norm `y^T K^-1 y` of the fit drops when the group is removed (eq. 19).
"""),
    code(_setup('{"tiny": dict(n_train=60, n_test=10), "small": dict(n_train=240, n_test=50)}')),
    code("""
from ntk_influence.kernels import kernel_matrix, paper_kernel

ds = ni.load_dataset("digits:3,8", n_train=S["n_train"], n_test=S["n_test"], seed=0)
res = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=0.1)
"""),
    md("""
## Figure 4: most helpful, most harmful and least influential training images
"""),
    code("""
ex = ni.influence.influential_examples(res, test_index=[0, 1, 2], k=5)
fig = plots.influential_examples_plot(ex, ds.x_train, ds.x_test, ds.image_shape,
                                      title="helpful | harmful | uninfluential (#index (class), I)",
                                      class_train=ds.class_train, class_test=ds.class_test)
"""),
    md("""
## Figure 5: complexity of ten groups sorted by influence

Training points are sorted by their influence summed over all test points and split into ten
groups: group 0 is the most harmful, group 9 the most helpful. The complexity of each group comes
from one factorisation by a block downdate.
"""),
    code("""
K = kernel_matrix(paper_kernel(), ds.x_train)
groups = ni.influence.influence_groups(res.influence, n_groups=10)
cx = ni.influence.group_complexity(K, ds.y_train, groups, lam=0.0)
print("matrix used:", cx.matrix, f" cond = {cx.cond:.3g}")
print("complexity per group:", np.round(cx.values, 3))
fig = plots.complexity_plot(groups, cx)
"""),
]

# ---------------------------------------------------------------------------------------------
# 4. Influence along training (eq. 20, Figures 6 and 7)
# ---------------------------------------------------------------------------------------------

NB4 = [
    md("""
# 4. Influence along training (eq. 20): Figures 6 and 7

A wide network trained by gradient flow is linear in its parameters, so its predictions at
training time `t` have a closed form, and so does the influence of removing a training point *at
time t*.

**Time unit.** By default `t` is gradient-flow time on eq. (2) with the **sum** loss
(learning rate x steps of full-batch gradient descent). The paper's eq. (20) uses the mean loss;
pass `time_unit="paper"` to use its unit (`t_flow = 2 t / n`). `t = inf` is the end of training,
where everything equals the kernel ridge regression results.
"""),
    code(_setup('{"tiny": dict(n_train=40, n_test=8, times=[0.1, 1.0, 10.0, np.inf]),\n'
                '     "small": dict(n_train=150, n_test=40,\n'
                '                   times=[0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, np.inf])}')),
    code("""

ds = ni.load_dataset("digits:3,8", n_train=S["n_train"], n_test=S["n_test"], seed=0)
times = np.asarray(S["times"])
"""),
    md("""
## Exact and first-order influence over time

The exact influence at time `t` re-solves the flow without each point (one `eigh` per point,
batched); the first-order one uses a single eigendecomposition. At `t = inf` the exact one equals
the engine's leave-one-out influence.
"""),
    code("""
from ntk_influence.kernels import kernel_matrix, paper_kernel

K = kernel_matrix(paper_kernel(), ds.x_train)
Kt = kernel_matrix(paper_kernel(), ds.x_train, ds.x_test)
tr = ni.influence.time_influence_from_kernels(K, Kt, ds.y_train, ds.y_test, 0.1, times, method="both")
end = ni.influence.influence_from_kernels(K, Kt, ds.y_train, ds.y_test, 0.1).influence
print("max |I(t=inf) - I_engine| =", np.abs(tr.influence[-1] - end).max())
fig = plots.time_agreement_plot(tr)
"""),
    md("""
## Figure 6: the most influential training image for some test images, over time
"""),
    code("""
top = ni.influence.most_influential(tr.influence, by="abs")
fig = plots.most_influential_plot(top, times, ds.x_train, ds.x_test, ds.image_shape,
                                  test_index=[0, 1, 2, 3], class_train=ds.class_train,
                                  class_test=ds.class_test)
"""),
    md("""
## Figure 7: label noise

Flip 40% of the training labels, then follow, over training time, which training point is the
most influential for each test point: the share of clean and of noisy (flipped) points.
"""),
    code("""
ln = ni.experiments.label_noise_experiment(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0.1, times,
                                     fraction=0.4, seed=0)
print("noisy share over time:", np.round(ln.shares.share_noisy, 2))
fig = plots.label_noise_plot(ln)
"""),
]


# ---------------------------------------------------------------------------------------------
# 5. The field's yardsticks: LDS, leave-one-out correlation, mislabel detection
# ---------------------------------------------------------------------------------------------

NB5 = [
    md("""
# 5. Attribution yardsticks: NTK influence against TRAK, TracIn and the classic IHVP

Data-attribution methods are compared with three yardsticks: the **linear datamodeling score**
(LDS, from TRAK: retrain on many random subsets and ask, per test point, whether a method ranks the
subsets' test losses right), **leave-one-out correlation**, and **mislabel detection** (flip some
training labels and rank points by self-influence). This notebook runs all three on the paper's
two-layer ReLU net, with every method on the same trained net:

- `ntk`: the exact NTK leave-one-out influence (eq. 8-9); `ihvp`: the exact first-order influence
  on the trained net (eq. 12); `trak`: TRAK for the squared loss (projected output gradients, an
  ensemble of nets); `tracin`: TracIn-CP on a gradient-descent path; `grad_dot`: gradient similarity;
- `ntk_refit`: kernel ridge regression refit on each subset alone, exact and **not additive**.

Scores use the library's sign: positive means removing the point raises the test loss.
"""),
    code(_setup('{"tiny": dict(n_train=16, n_test=4, width=64, subsets=6, loo=6, dim=16, '
                'ensemble=1, steps=10),\n'
                '     "small": dict(n_train=60, n_test=20, width=1024, subsets=30, loo=10, '
                'dim=256, ensemble=2, steps=200)}')),
    code("""
ds = ni.load_dataset("digits:3,8", n_train=S["n_train"], n_test=S["n_test"], seed=0)
options = ni.attribution.ScoreOptions(trak_dim=S["dim"], trak_ensemble=S["ensemble"],
                          tracin_steps=S["steps"], tracin_checkpoints=2)
res = ni.attribution_benchmark(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                               width=S["width"], lam=0.1, subsets=S["subsets"], alpha=(0.5, 0.9),
                               seed_protocol="both", loo_points=S["loo"],
                               brittleness_points=S["n_test"], max_flip_fraction=0.3,
                               noise=0.1, options=options,
                               settings=ni.SolverSettings(f_tol=1e-8), show_progress=False)
for name, m in res.metrics.items():
    print(f"{name:>9}", {k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
"""),
    md("""
## LDS, mislabel AUC and predicted against actual subset losses

An additive method predicts a subset's loss as the full model's loss plus the scores of the
removed points; the NTK refit solves kernel ridge regression on the kept points.
"""),
    code("""
fig = ni.plots.attribution_figure(res)
"""),
    md("""
## Why an exact refit beats an additive score

Removing half of the training set is not a sum of single removals: the removed points share
directions in the kernel's feature space, so removing one changes what removing another does.
Every additive method (influence functions, TRAK, TracIn, even the exact leave-one-out of eq. 9)
adds the points' effects as if each were removed alone, and errs by all the interactions between
removed points, which grow with the size of the removed set. For a wide net the kernel model is
the net's own linearisation, so removing a set from it is exact: kernel ridge regression on the
kept points (a block downdate of the full factorisation). It is a non-additive datamodel that
costs one small solve per subset, and its LDS is limited only by how far the finite net is from
its kernel, not by the additivity assumption that caps the others.
"""),
    code("""
j = 0
add = ni.attribution.additive_predictions(res.scores["ntk"], res.subset_indices, res.full_losses)
print("test point 0, first subsets")
print("actual   ", np.round(res.subset_losses[:4, j], 4))
print("ntk_refit", np.round(res.refit_losses[:4, j], 4))
print("ntk (sum)", np.round(add[:4, j], 4))
"""),
    md("""
## Seed protocols and the noise floor

Above, every subset retrain started from the trained net's own `W(0)` (the *fixed* protocol).
Under the *fresh* protocol each retrain draws its own initialisation, as in cross-seed LDS
benchmarks, and the same subsets are retrained a second time from other seeds: the LDS of one
retraining against the other is the noise floor. A prediction free of initialisation noise can
exceed it; about the square root of the floor's per-point correlation is its ceiling.
"""),
    code("""
for key, row in res.lds_table().items():
    print(f"{key:>16}", {k: (None if v is None else round(v, 3)) for k, v in row.items()})
"""),
    md("""
## Brittleness: the smallest set that flips a prediction

The exact refit searches greedily for the set of training points whose removal flips a test
prediction, each step exact given the points already removed; the additive methods take the
shortest prefix of their ranking whose summed predicted change crosses zero. Every set is then
verified by retraining the net without it.
"""),
    code("""
for name, b in res.brittleness.summary.items():
    print(f"{name:>9}: found {b['found']}/{b['of']}, median size {b['median_size']}, "
          f"verified by retraining {b['verified']}")
"""),
    md("""
## Data cleaning, verified by retraining

`ni.attribution.clean` flips a share of the labels, removes the points each ranking finds most
harmful to a validation set (the exact refit also chooses how many, on the validation set alone),
retrains the net without them and measures the test set.
"""),
    code("""
tr, va = slice(0, S["n_train"] - 8), slice(S["n_train"] - 8, S["n_train"])
cl = ni.attribution.clean(ds.x_train[tr], ds.y_train[tr], ds.x_train[va], ds.y_train[va],
                          ds.x_test, ds.y_test, noise=0.2, width=S["width"], grid=3,
                          methods=("ntk", "ihvp", "loss", "random"),
                          settings=ni.SolverSettings(f_tol=1e-6), show_progress=False)
print("k chosen by the exact refit:", cl.k_star)
for name, m in cl.summary.items():
    print(f"{name:>9}: test accuracy {m['test_acc_before']:.3f} -> {m['test_acc_after']:.3f}, "
          f"{m['noisy_removed']} flipped among the removed")
fig = ni.plots.cleaning_figure(cl)
"""),
]

# ---------------------------------------------------------------------------------------------
# 6. Beyond the paper: deep and conv nets, and a user's own Flax model
# ---------------------------------------------------------------------------------------------

NB6 = [
    md("""
# 6. Beyond the paper: deep MLPs and conv nets, and your own Flax model

`ni.compare_width(..., arch=...)` asks the paper's question of deeper nets: NTK influence from
Neural Tangents' kernel of the same stack against leave-one-out retraining of the finite net
(`mlp:L[:ACT]`, `cnn:L[:ACT][:READOUT]`, every layer trained, `f_0 = 0`). The conv net here
reads out the flattened feature map (`cnn:2:erf:flatten`): global average pooling, the
default readout, averages away where the strokes of an 8x8 digit are, and its kernel is then
nearly constant (README, "Beyond the paper"). What *actual* rests on:

- smooth nets (`erf`, `gelu`): the stationary point, truncated Newton until
  `||grad|| / ||lam (theta - theta0)|| <= 1e-8` from the trained weights (`max_rel_grad_norm`
  below says it was met);
- ReLU nets: where Gauss-Newton's predictions settle on kinks, not a stationary point, so their
  numbers are limited by the solver (README, "ReLU nets: solver-limited").

The README's "Beyond the paper" tables are the measured runs.
"""),
    code(_setup('{"tiny": dict(n_train=24, n_test=4, widths=[64], channels=[4], points=4),\n'
                '     "small": dict(n_train=60, n_test=10, widths=[128, 512], channels=[8, 16], '
                'points=8)}', small_time="several minutes")),
    code("""
ds = ni.load_dataset("digits:3,8", n_train=S["n_train"], n_test=S["n_test"], seed=0)
rows = {}
for arch, widths in (("mlp:3:erf", S["widths"]), ("mlp:3", S["widths"]),
                     ("cnn:2:erf:flatten", S["channels"])):
    rows[arch] = []
    for w in widths:  # each architecture's default solver (ni.experiments.comparison_solver)
        c = ni.compare_width(ds.x_train, ds.y_train, ds.x_test, ds.y_test, w, 0.1, arch=arch,
                             n_points=S["points"], test_points=S["n_test"],
                             show_progress=False)
        rows[arch].append(c.row())
        print(f"{arch} width {w}: R = {c.stats['ntk']['pearson']:.3f}, "
              f"IHVP R = {c.stats['ihvp']['pearson']:.3f}, "
              f"max rel. gradient {c.info['max_rel_grad_norm']:.1e}, "
              f"eNTK(W0) error {c.info['entk0_kernel_rel_diff']:.3f}")
fig = plots.width_curves(rows, title="NTK influence against retraining")
"""),
    md("""
## The eNTK approaches NT's kernel

The empirical NTK at initialisation, from the nets' layer structure (no Jacobian in memory),
against Neural Tangents' `kernel_fn`: the relative error falls like about `1/sqrt(width)`.
"""),
    code("""
fam = ni.architecture("mlp:3")
x = fam.prepare(ds.x_train[:20])
kern = ni.kernels.kernel_matrix(fam.kernel(), x)
for w in (32, 128, 512):
    print(w, round(ni.nets.relative_frobenius_error(ni.nets.entk(fam.net(x, w), x), kern), 4))
"""),
    md("""
## Your own model: `ni.entk_influence`

For any model `apply_fn(params, x)`, the kernel-route influence at given parameters: the model
linearised there (eq. 6), its empirical NTK from Neural Tangents, and the exact eq. (8-9).
"""),
    code("""
from flax import nnx

model = ni.nets.mlp(64, 256, 2, seed=1)
graphdef, params = nnx.split(model)
apply_fn = lambda p, x: nnx.merge(graphdef, p)(x)
res = ni.entk_influence(apply_fn, params, ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0.1)
print(res.influence.shape, "most helpful training points for test point 0:",
      res.ranking(0, 3, "helpful"))
"""),
]

NOTEBOOKS = {
    "01_quickstart_table1_figure1.ipynb": NB1,
    "02_regularisation_and_density.ipynb": NB2,
    "03_complexity_and_examples.ipynb": NB3,
    "04_dynamics_and_label_noise.ipynb": NB4,
    "05_attribution_yardsticks.ipynb": NB5,
    "06_deep_and_conv_nets.ipynb": NB6,
}


def build(folder: Path = HERE) -> list[Path]:
    """Write every notebook (without outputs) into ``folder``.

    Args:
      folder: destination folder.

    Returns:
      The paths written.
    """
    out = []
    for name, cells in NOTEBOOKS.items():
        for k, cell in enumerate(cells):
            cell["id"] = f"c{k:02d}"  # stable ids: rebuilding gives the same files
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}})
        path = folder / name
        nbformat.write(nb, path)
        out.append(path)
    return out


if __name__ == "__main__":
    for p in build():
        print(p)
