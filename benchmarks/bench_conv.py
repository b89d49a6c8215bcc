"""Where a Newton step of a smooth conv net spends its time, against float64 matmul floors.

``python benchmarks/bench_conv.py [--arch cnn:2:erf] [--channels 32 64 128] [--n 200]`` builds
the net on ``n`` digits (8x8 images) and times, compiled and after a warm-up, the pieces of one
truncated Newton step (:meth:`ntk_influence.training.SolverSettings.stationary`): the forward
pass on the training points, the structured eNTK (the ``n x n`` Gram of per-example weight
gradients), the gradient of eq. (2), one Hessian-vector product (forward over reverse), and one
whole Newton step from ``W(0)``. Each is set against a NumPy float64 matmul floor of the same
shape: the conv layers' patch matmuls for the forward pass, and ``G G^T`` of the per-example
weight gradients for the Gram. Ratios are measured in the same run; the step's count of line
search evaluations and its time over one HVP say how many Hessian-vector products it ran.
It also records how far the net is from its limit at initialisation: the relative Frobenius
error of eNTK(W0) against Neural Tangents' kernel on ``--entk-points`` digits over
``--entk-seeds`` initialisations per channel count (``--entk-channels``): mean, median and
fitted exponent of the median, with the kernel's mean off-diagonal over mean diagonal entry (a
kernel near a constant matrix makes the error one fluctuating scalar per initialisation).
Last, one whole training from ``W(0)`` per ``--train-channels`` to a stationary point
(``SolverSettings.stationary()``), timed as a user runs it, compilation included, with its
Newton steps and final ridge-relative gradient.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import ntk_influence as ni

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _runinfo

OUT = Path(__file__).parent / "out"


def best(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (already warmed up)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def floors(n: int, hw: int, channels: int, depth: int, rng: np.random.Generator
           ) -> tuple[float, float]:
    """NumPy float64 floors: the patch matmuls of one forward pass (both nets of the pair) and
    the Gram ``G G^T`` of the deepest layer's per-example weight gradients (both nets)."""
    fwd = 0.0
    for layer in range(depth):
        cin = 1 if layer == 0 else channels
        a, w = rng.normal(size=(n * hw, 9 * cin)), rng.normal(size=(9 * cin, channels))
        fwd += 2 * best(lambda a=a, w=w: a @ w)
    g = rng.normal(size=(n, 9 * channels * channels)) if depth > 1 else rng.normal(
        size=(n, 9 * channels))
    return fwd, 2 * (depth - 1 or 1) * best(lambda: g @ g.T)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cnn:2:erf")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--entk-channels", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--entk-points", type=int, default=50)
    ap.add_argument("--entk-seeds", type=int, default=8)
    ap.add_argument("--train-channels", type=int, nargs="*", default=[128])
    ap.add_argument("--out", type=Path, default=OUT / "bench_conv.json")
    a = ap.parse_args(argv)
    info = _runinfo.start(argv)
    ds = ni.load_dataset("digits:3,8", n_train=a.n, n_test=10, seed=0)
    fam = ni.architecture(a.arch)
    x, y = fam.prepare(ds.x_train), ds.y_train
    depth = int(fam.name.split(":")[1])
    rng = np.random.default_rng(0)
    rows = []
    with ni.precision("float64"):
        xa, ya = jnp.asarray(x), jnp.asarray(y)
        for c in a.channels:
            net = fam.net(x, c)
            t0 = net.theta0

            def obj(t, net=net):
                return ni.training.objective(net, t, xa, ya, 0.1)

            fwd = jax.jit(lambda t, net=net: net.apply(t, xa))
            gram = jax.jit(lambda t, net=net: ni.nets.ntk_gram(net, t, xa))
            grad = jax.jit(jax.grad(obj))
            hvp = jax.jit(lambda t, v, obj=obj: jax.jvp(jax.grad(obj), (t,), (v,))[1])
            v = jnp.asarray(rng.normal(size=t0.shape))
            row = {"channels": c, "n_params": net.n_params,
                   "forward_s": best(lambda fwd=fwd, t0=t0: fwd(t0)),
                   "gram_s": best(lambda gram=gram, t0=t0: gram(t0)),
                   "grad_s": best(lambda grad=grad, t0=t0: grad(t0)),
                   "hvp_s": best(lambda hvp=hvp, v=v, t0=t0: hvp(t0, v))}
            s = ni.SolverSettings.stationary(max_steps=1, g_tol=1e-300)
            ni.train(net, x, y, 0.1, settings=s, warn=False)  # compile
            t = time.perf_counter()
            r = ni.train(net, x, y, 0.1, settings=s, warn=False)
            row.update(newton_step_s=time.perf_counter() - t, step_evaluations=r.evaluations)
            row["forward_floor_s"], row["gram_floor_s"] = floors(a.n, x.shape[1] * x.shape[2],
                                                                 c, depth, rng)
            row["step_over_hvp"] = row["newton_step_s"] / row["hvp_s"]
            rows.append(row)
            print(f"{fam.name} C={c} P={net.n_params}: forward {row['forward_s']:.3f} s "
                  f"({row['forward_s'] / row['forward_floor_s']:.1f}x floor), gram "
                  f"{row['gram_s']:.3f} s ({row['gram_s'] / row['gram_floor_s']:.1f}x floor), "
                  f"grad {row['grad_s']:.3f} s, HVP {row['hvp_s']:.3f} s, Newton step "
                  f"{row['newton_step_s']:.2f} s = {row['step_over_hvp']:.0f} HVPs", flush=True)
            info.update(arch=fam.name, n=a.n, rows=rows)
            _runinfo.write(info, a.out)
    xe = fam.prepare(ds.x_train[:a.entk_points])
    kern = np.asarray(ni.kernels.kernel_matrix(fam.kernel(), xe))
    means, medians = [], []
    for c in a.entk_channels:
        e = [ni.nets.relative_frobenius_error(np.asarray(ni.nets.entk(fam.net(xe, c, seed=s), xe)),
                                             kern) for s in range(a.entk_seeds)]
        means.append(float(np.mean(e)))
        medians.append(float(np.median(e)))
        print(f"eNTK(W0) vs NT, {fam.name} {c} channels: relative error mean {means[-1]:.4f}, "
              f"median {medians[-1]:.4f}, range {min(e):.3f}-{max(e):.3f}", flush=True)
    slope = float(np.polyfit(np.log(a.entk_channels), np.log(medians), 1)[0])
    off = (kern.sum() - np.trace(kern)) / (kern.shape[0] * (kern.shape[0] - 1))
    info["entk_error"] = {"channels": a.entk_channels, "errors": means, "medians": medians,
                          "exponent": slope, "seeds": a.entk_seeds, "n_points": a.entk_points,
                          "offdiag_over_diag": float(off / np.diag(kern).mean())}
    _runinfo.write(info, a.out)
    info["train"] = []
    for c in a.train_channels:
        net = fam.net(x, c)
        t = time.perf_counter()
        r = ni.train(net, x, y, 0.1, settings=ni.SolverSettings.stationary(), warn=False)
        info["train"].append({"channels": c, "n_params": net.n_params,
                              "seconds": time.perf_counter() - t, "newton_steps": r.iterations,
                              "ridge_rel_grad_norm": r.ridge_rel_grad_norm,
                              "converged": r.converged})
        print(f"{fam.name} C={c}: training from W(0) to a stationary point "
              f"{info['train'][-1]['seconds']:.1f} s (compilation included), {r.iterations} "
              f"Newton steps, ridge-relative gradient {r.ridge_rel_grad_norm:.2g}", flush=True)
        _runinfo.write(info, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
