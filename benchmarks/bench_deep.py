"""Deep-net benchmark: the Gauss-Newton step of mlp:L / cnn:L against the generic and two-layer steps.

Prints a table and writes benchmarks/out/bench_deep.json. Every ratio is measured in one run.

    python benchmarks/bench_deep.py [--widths 1024 4096] [--train-widths 512 1024] [--steps 4]

On digits 3-vs-8 (n_train = 200, lam = 0.1):

- eNTK: the model's structured eNTK (layer Grams of inputs and cotangents) against the naive
  Jacobian contraction (``jax.jacrev``, the ``(n, P)`` Jacobian) at ``--naive-width``;
- one Gauss-Newton step: ``--steps`` steps (f_tol = 0, so every net does the same work) for
  ``mlp:3`` with its own step (products from layer taps), the same net through the generic
  autodiff step (``jax.linearize``, with the structured eNTK), the generic step with the naive
  Jacobian eNTK (at ``--naive-width`` only), and the two-layer net of eq. (1) on its
  pre-activation fast path, at the same width; seconds per step after compilation;
- full training: to the ``compare`` default tolerance (f_tol = 1e-7, at most 200 steps),
  seconds and iterations, ``mlp:3`` and the two-layer net at each of ``--train-widths``; at a
  step width without a full training, the estimate steps (at the widest trained width) x
  seconds per step is reported as such;
- eNTK at W(0) against the analytic NTK (Neural Tangents' ``kernel_fn``): relative Frobenius
  error on 50 digits over ``--seeds`` initialisations, for ``mlp:3`` over ``--entk-widths`` and
  ``cnn:2`` over ``--cnn-entk-widths`` (channels; 2048 channels exhaust 24 GiB in XLA's
  compilation of the blocked conv Gram), with the exponent of a least-squares fit
  ``error ~ width^b``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import ntk_influence as ni

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _runinfo

OUT = Path(__file__).parent / "out"


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def step_seconds(net: ni.nets.FunctionalNet, x: np.ndarray, y: np.ndarray, steps: int) -> float:
    """Seconds per Gauss-Newton step after compilation (``steps`` steps, f_tol = 0)."""
    s = ni.SolverSettings(f_tol=1e-300, max_steps=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ni.errors.NotConvergedWarning)
        ni.training.train(net, x, y, 0.1, settings=s)  # compile
        r = ni.training.train(net, x, y, 0.1, settings=s)
    return r.seconds / max(r.iterations, 1)


def full_training(net: ni.nets.FunctionalNet, x: np.ndarray, y: np.ndarray) -> dict:
    """One full training to the compare default tolerance, compilation included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ni.errors.NotConvergedWarning)
        t0 = time.perf_counter()
        r = ni.training.train(net, x, y, 0.1, settings=ni.SolverSettings(f_tol=1e-7))
    return {"seconds": time.perf_counter() - t0, "iterations": r.iterations,
            "evaluations": r.evaluations, "settled": r.settled, "converged": r.converged,
            "loss": r.loss,
            "rel_grad_norm": r.rel_grad_norm}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--widths", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--train-widths", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--naive-width", type=int, default=512)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--entk-widths", type=int, nargs="+", default=[32, 128, 512, 2048])
    p.add_argument("--cnn-entk-widths", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    res: dict = _runinfo.start()
    ds = ni.load_dataset("digits:3,8", n_train=200, n_test=40)
    x, y = ds.x_train, ds.y_train
    arch = f"mlp:{args.depth}"
    res.update(n_train=int(x.shape[0]), lam=0.1, arch=arch, steps=args.steps, rows=[])

    w = args.naive_width
    net = ni.architecture(arch).net(x, w)
    naive = dataclasses.replace(net, gram_fn=None)  # the same net, Jacobian-contraction eNTK
    ni.nets.entk(net, x), ni.nets.entk(naive, x)  # compile both
    t_s = min(_seconds(lambda: ni.nets.entk(net, x)) for _ in range(2))
    t_n = min(_seconds(lambda: ni.nets.entk(naive, x)) for _ in range(2))
    res["entk"] = {"width": w, "n_params": net.n_params, "structured_s": t_s, "jacobian_s": t_n,
                   "speedup": t_n / t_s}
    generic = dataclasses.replace(net, gn_step=None)  # the generic autodiff step
    st = {"width": w, "tap_s": step_seconds(net, x, y, args.steps),
          "autodiff_s": step_seconds(generic, x, y, args.steps),
          "jacobian_s": step_seconds(dataclasses.replace(naive, gn_step=None), x, y, args.steps)}
    st["speedup_autodiff"] = st["autodiff_s"] / st["tap_s"]
    st["speedup_jacobian"] = st["jacobian_s"] / st["tap_s"]
    res["naive_step"] = st
    print(f"eNTK at width {w} ({net.n_params} parameters, n = {x.shape[0]}): structured "
          f"{t_s:.2f} s, Jacobian {t_n:.2f} s ({t_n / t_s:.1f}x)")
    print(f"GN step at width {w}: taps {st['tap_s']:.2f} s, autodiff {st['autodiff_s']:.2f} s "
          f"({st['speedup_autodiff']:.1f}x), autodiff with Jacobian eNTK {st['jacobian_s']:.2f} s "
          f"({st['speedup_jacobian']:.1f}x)")

    print(f"{'width':>6} {'P (' + arch + ')':>14} {'s/step ' + arch:>12} {'s/step 2-layer':>15} "
          f"{'ratio':>6}")
    for w in args.widths:
        deep_net = ni.architecture(arch).net(x, w)
        two = ni.architecture("two-layer").net(x, w)
        row = {"width": w, "n_params": deep_net.n_params, "two_layer_n_params": two.n_params,
               "step_s": step_seconds(deep_net, x, y, args.steps),
               "autodiff_step_s": step_seconds(dataclasses.replace(deep_net, gn_step=None), x, y,
                                               args.steps),
               "two_layer_step_s": step_seconds(two, x, y, args.steps)}
        row["step_ratio"] = row["step_s"] / row["two_layer_step_s"]
        row["autodiff_ratio"] = row["autodiff_step_s"] / row["step_s"]
        res["rows"].append(row)
        print(f"{w:>6} {row['n_params']:>14} {row['step_s']:>12.3f} "
              f"{row['two_layer_step_s']:>15.4f} {row['step_ratio']:>6.0f} "
              f"(autodiff step {row['autodiff_step_s']:.3f} s, {row['autodiff_ratio']:.1f}x)",
              flush=True)
    res["train"] = []
    for w in args.train_widths:
        t = {"width": w, "mlp": full_training(ni.architecture(arch).net(x, w), x, y),
             "two_layer": full_training(ni.architecture("two-layer").net(x, w), x, y)}
        res["train"].append(t)
        print(f"full training at width {w}: {arch} {t['mlp']['seconds']:.1f} s "
              f"({t['mlp']['iterations']} steps, settled {t['mlp']['settled']}), two-layer "
              f"{t['two_layer']['seconds']:.1f} s ({t['two_layer']['iterations']} steps)",
              flush=True)
    widest = max(res["train"], key=lambda t: t["width"])
    for row in res["rows"]:
        if row["width"] not in args.train_widths:
            row["train_estimate_s"] = row["step_s"] * widest["mlp"]["iterations"]
            row["train_estimate_steps_from_width"] = widest["width"]
    res["entk_error"] = entk_error(ds.x_train[:50], {"mlp:3": args.entk_widths,
                                                     "cnn:2": args.cnn_entk_widths}, args.seeds)
    _runinfo.write(res, OUT / "bench_deep.json")


def entk_error(x: np.ndarray, widths_of: dict[str, list[int]], seeds: int) -> list[dict]:
    """Relative Frobenius error of eNTK(W0) against NT's kernel, with the fitted exponent."""
    out = []
    for name, widths in widths_of.items():
        fam = ni.architecture(name)
        xp = fam.prepare(x)
        kern = np.asarray(ni.kernels.kernel_matrix(fam.kernel(), xp))
        errs = []
        for w in widths:
            e = [ni.nets.relative_frobenius_error(np.asarray(ni.nets.entk(fam.net(xp, w, seed=s), xp)),
                                             kern) for s in range(seeds)]
            errs.append(float(np.mean(e)))
            print(f"eNTK(W0) vs NTK, {name} width {w}: relative error {errs[-1]:.4f} "
                  f"(mean of {seeds} inits)", flush=True)
        b = float(np.polyfit(np.log(widths), np.log(errs), 1)[0])
        print(f"{name}: error ~ width^{b:.3f}")
        out.append({"arch": name, "widths": widths, "errors": errs, "exponent": b,
                    "seeds": seeds, "n_points": int(x.shape[0])})
    return out


if __name__ == "__main__":
    main()
