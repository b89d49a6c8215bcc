"""``ntk-influence reproduce``: everything the paper shows, for one dataset, in one report.

The reproduction is a list of parts (Table 1 and Figure 1, Figures 2-7, and the kernel-side
influence they all rest on). Each part runs one subcommand of this CLI into its own folder of
``--out DIR``; a part that finishes writes ``DIR/<part>/part.json``. With ``--resume`` the finished
parts are skipped (when their settings match) and the unfinished one is run again with
``--resume``, so the sweeps inside it continue where they stopped. A part counts as finished only
with the same arguments and the same data (``part.json`` records the data's SHA-256); a damaged
``part.json`` counts as unfinished. ``--resume`` with other settings than the folder's (see
``fingerprint.json``) is refused; ``--force`` then runs again only the parts whose arguments or
data changed. Before any part runs (and under ``--dry-run``), every part's arguments are parsed by
its subcommand and its data and values are checked as the part itself would. At the end
``DIR/report.md`` gathers the tables and figures and ``DIR/reproduce.json`` the status, settings
and timing of every part. ``--quick`` (default) is sized to finish in minutes on a 2-core CPU for
digits; ``--full`` uses the paper's sizes.
"""

from __future__ import annotations

import argparse
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._validate import check_lam
from ..errors import InputError, NotConvergedError, NumericalError
from ..io import data_hash, load_json, save_json
from . import analysis, core, nets
from ._common import Command, count, log, parser_for, seed, settings_of
from ._outdir import claim_output, run_in_folder
from ._report import (
    Part,
    fig2_report,
    fig3_report,
    fig4_report,
    fig5_report,
    fig6_report,
    fig7_report,
    kernel_report,
    table1_report,
    write_report,
)

PART_COMMANDS: tuple[Command, ...] = (
    core.INFLUENCE, nets.COMPARE, analysis.LAMBDA_SWEEP, analysis.DENSITY, analysis.EXAMPLES,
    analysis.COMPLEXITY, analysis.DYNAMICS, analysis.LABEL_NOISE)
"""The subcommands a part may run (a part naming another one is skipped with a message)."""


# ------------------------------------------------------------------ settings per mode

SIZES: dict[str, dict[str, Any]] = {
    "quick": {"n_train": 200, "n_test": 50},
    "full": {"n_train": 1000, "n_test": 200},
}


def _data_argv(args: argparse.Namespace, mode: str, *, n_train: int | None = None,
               n_test: int | None = None, label_noise: float | None = None) -> list[str]:
    """The shared data options, with the mode's sizes unless the user gave their own."""
    pool_tr, pool_te = getattr(args, "pool_sizes", None) or (10**12, 10**12)
    ntr = args.n_train if args.n_train is not None else min(
        n_train or SIZES[mode]["n_train"], pool_tr)
    nte = args.n_test if args.n_test is not None else min(n_test or SIZES[mode]["n_test"], pool_te)
    out = ["--data", args.data, "--n-train", str(ntr), "--n-test", str(nte),
           "--seed", str(args.seed)]
    if args.center:
        out.append("--center")
    if label_noise:
        out += ["--label-noise", str(label_noise)]
    return out


# ------------------------------------------------------------------ part: kernel influence

KERNELS = ["paper", "paper-nt", "paper-both"]
"""``--kernel`` values every kernel-taking part accepts."""


def _kernel_opts(args: argparse.Namespace) -> list[str]:
    """``--kernel K`` when the user chose one (the parts' own default otherwise)."""
    return ["--kernel", args.kernel] if getattr(args, "kernel", None) else []


def _kernel_argv(args: argparse.Namespace, mode: str) -> list[str]:
    spectrum = getattr(args, "spectrum", None)
    return ["influence", *_data_argv(args, mode), "--lam", str(args.lam), *_kernel_opts(args),
            *(["--spectrum", spectrum] if spectrum else [])]


# ------------------------------------------------------------------ part: Table 1 / Figure 1

TABLE1 = {"quick": {"widths": [512, 2048], "n_points": 10, "n_train": 100},
          "full": {"widths": [10000, 20000, 40000, 80000], "n_points": 40, "n_train": 1000}}


def _table1_argv(args: argparse.Namespace, mode: str) -> list[str]:
    t = TABLE1[mode]
    widths = args.widths or t["widths"]
    return ["compare", *_data_argv(args, mode, n_train=t["n_train"]),
            "--widths", *[str(w) for w in widths],
            "--n-points", str(args.n_points or t["n_points"]),
            "--test-index", "0", "--lam", str(args.lam),
            *(["--test-points", str(args.test_points)] if args.test_points else [])]


# ------------------------------------------------------------------ parts: Figures 2-7

DYN_TIMES = ["0.01", "0.03", "0.1", "0.3", "1", "3", "10", "30", "100", "300", "1000", "inf"]

# ------------------------------------------------------------------ the list of parts

def _simple(command: str, extra: dict[str, list[str]], **data_kw: Any
            ) -> Callable[[argparse.Namespace, str], list[str]]:
    def argv(args: argparse.Namespace, mode: str) -> list[str]:
        return [command, *_data_argv(args, mode, **data_kw), "--lam", str(args.lam),
                *_kernel_opts(args), *extra[mode]]

    return argv


PARTS: list[Part] = [
    Part("kernel", "Exact NTK influence and the kernel-regime IHVP", "influence", _kernel_argv,
         "Exact leave-one-out influence of every training point on every test loss through the "
         "NTK (eq. 8-9) and the classic IHVP estimate in the same regime (eq. 13).", kernel_report),
    Part("table1", "Table 1 and Figure 1: NTK influence against leave-one-out retraining",
         "compare", _table1_argv,
         "Finite two-layer ReLU nets of growing width, retrained without each of the most "
         "influential points; correlation of the predicted influences with the actual ones.",
         table1_report),
    Part("figure2", "Figure 2: regularisation and Theorem 3", "lambda-sweep",
         _simple("lambda-sweep", {"quick": [], "full": []}),
         "Mean relative error of the IHVP estimate for lambda = 2^-4 ... 2^4 against Theorem 3's "
         "lower bound lambda_min/(lambda_min+lambda); the ridge leverage h_i is the exact "
         "per-point error of term I.", fig2_report),
    Part("figure3", "Figure 3: data density and Theorem 4", "density",
         _simple("density", {"quick": ["--mixture-n", "300"], "full": ["--mixture-n", "2000"]}),
         "Gaussian KDE density of each training point (after PCA to 10 dimensions, Scott's "
         "bandwidth) against its median IHVP error rate; and the finite mixture of Definition 1, "
         "where rarer components have larger error rates.", fig3_report),
    Part("figure4", "Figure 4: most helpful, harmful and uninfluential images", "examples",
         _simple("examples", {"quick": ["--test-index", "0", "1", "2", "--k", "5"],
                              "full": ["--test-index", "0", "1", "2", "3", "--k", "8"]}),
         "For a few test images, the training images with the largest positive influence "
         "(helpful), the most negative (harmful) and the smallest |I| (uninfluential).",
         fig4_report),
    Part("figure5", "Figure 5: complexity of groups sorted by influence", "complexity",
         _simple("complexity", {"quick": [], "full": []}),
         "Training points sorted by influence (summed over the test points) into ten groups, "
         "group 0 most harmful, group 9 most helpful; complexity of each group by eq. (19).",
         fig5_report),
    Part("figure6", "Figure 6: the most influential images along training", "dynamics",
         _simple("dynamics", {"quick": ["--times", *DYN_TIMES, "--method", "both"],
                              "full": ["--times", *DYN_TIMES, "--method", "both"]}),
         "Exact influence at training time t of the linearised network (eq. 20, with the ridge), "
         "the most influential training image for some test images over time, and the agreement "
         "of the first-order estimate with the exact one.", fig6_report),
    Part("figure7", "Figure 7: label noise along training", "label-noise",
         _simple("label-noise", {"quick": ["--times", *DYN_TIMES, "--noise", "0.4"],
                                 "full": ["--times", *DYN_TIMES, "--noise", "0.4"]}),
         "40% of the training labels flipped; over training time, the share of clean and of "
         "noisy points among the most influential training point of every test point.",
         fig7_report),
]


def _selected(args: argparse.Namespace) -> list[Part]:
    names = [p.name for p in PARTS]
    want = names if not args.parts else [s.strip() for s in ",".join(args.parts).split(",") if s]
    unknown = [w for w in want if w not in names]
    if unknown:
        raise InputError(f"unknown part(s) {unknown}; choose among {names}.")
    skip = set(args.skip or [])
    return [p for p in PARTS if p.name in want and p.name not in skip]


# ------------------------------------------------------------------ running

def _args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="digits:3,8", metavar="SPEC",
                   help="digits:3,8 | mnist:DIR:3,8 | cifar10:DIR:3,5 | npz:PATH; a class pair "
                        "as in the paper (default: %(default)s; nothing is downloaded)")
    g.add_argument("--n-train", type=count, default=None,
                   help="training points, overriding the mode's size (quick: "
                        f"{SIZES['quick']['n_train']}, Table 1 {TABLE1['quick']['n_train']}; "
                        f"full: {SIZES['full']['n_train']}; default: the mode's, capped at what the data "
                        "has)")
    g.add_argument("--n-test", type=count, default=None,
                   help="test points, overriding the mode's size (quick: "
                        f"{SIZES['quick']['n_test']}, full: {SIZES['full']['n_test']}; default: the mode's)")
    g.add_argument("--seed", type=seed, default=0, help="subsampling seed (default: %(default)s)")
    g.add_argument("--center", action="store_true",
                   help="centre inputs on the training mean before unit-normalising")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small settings: minutes on a 2-core CPU for digits (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the paper's sizes (hours on a CPU; use a GPU)")
    p.set_defaults(mode="quick")
    p.add_argument("--lam", type=float, default=0.1,
                      help="ridge lambda for the influence parts (default: %(default)s)")
    p.add_argument("--kernel", default=None, choices=KERNELS,
                   help="NTK of the influence and analysis parts: paper (eq. 4, first layer "
                        "trained), paper-nt (the same through Neural Tangents), paper-both (both "
                        "layers) (default: each part's own, paper)")
    p.add_argument("--spectrum", default=None,
                   choices=["auto", "exact", "iterative", "lanczos", "none"],
                   help="how the kernel part computes lambda_min/lambda_max (see influence "
                        "--help) (default: its own, auto)")
    p.add_argument("--widths", type=count, nargs="+", metavar="W",
                   help="override the Table 1 widths of the mode (default: quick "
                        f"{TABLE1['quick']['widths']}, full {TABLE1['full']['widths']})")
    p.add_argument("--n-points", type=count, metavar="K",
                   help="override the number of retrained points per width in Table 1 "
                        f"(default: quick {TABLE1['quick']['n_points']}, full "
                        f"{TABLE1['full']['n_points']})")
    p.add_argument("--test-points", type=count, metavar="K",
                   help="average Table 1 over K test points (see compare --help; no extra "
                        "retraining) (default: 1, the paper's single test point)")
    p.add_argument("--parts", nargs="+", metavar="PART",
                      help=f"run only these parts (of {', '.join(p.name for p in PARTS)}; default: all)")
    p.add_argument("--skip", nargs="+", metavar="PART",
                   help="leave these parts out (default: none)")
    p.add_argument("--keep-going", action="store_true",
                   help="record a failed part in the report and go on with the next")
    p.add_argument("--dry-run", action="store_true",
                   help="check and print the command of every part, then stop")


def _part_argv(part: Part, args: argparse.Namespace, folder: Path) -> list[str]:
    return [*part.argv(args, args.mode), "--out", str(folder)]


def _run_part(part: Part, argv: list[str], resume: bool, quiet: bool = False) -> None:
    parser = parser_for(PART_COMMANDS)
    try:
        sub = parser.parse_args(argv + (["--resume"] if resume else [])
                                + (["--quiet"] if quiet else []))
    except SystemExit as e:
        raise InputError(f"part {part.name}: the arguments {argv} were refused by "
                         f"'{part.command}' (see the message above).") from e
    run_in_folder(sub, sub.func)


def _run(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    available = {c.name for c in PART_COMMANDS}
    parts = _selected(args)
    # the mode's sizes are capped at what the data has (digits 3 vs 8: 250 train / 107 test)
    # deferred for start-up speed
    from ..data import load_dataset

    pool = load_dataset(args.data, n_train=None, n_test=None, seed=args.seed)
    args.pool_sizes = (int(pool.x_train.shape[0]), int(pool.x_test.shape[0]))
    args.pool_outputs = 1 if pool.y_train.ndim == 1 else int(pool.y_train.shape[1])
    _preflight(args, parts, out, available)
    if args.dry_run:
        return _dry_run(args, parts, out, available)
    # the parts check their own folders; a finished part is reused only with the same arguments
    # and data
    claim_output(args, pool, restart=False)
    args.data_sha256 = data_hash(pool.x_train, pool.y_train, pool.x_test, pool.y_test)
    status: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    try:
        _run_parts(args, parts, out, available, status)
    finally:  # the report covers what finished, even when a part fails or is interrupted
        try:
            _finish(args, out, status, time.perf_counter() - t_all)
        except Exception as e:  # never hide the part's own error behind the report's
            log(args, f"could not write the report ({type(e).__name__}: {e})")
    failed = [k for k, v in status.items() if v["status"] == "failed"]
    if failed:
        raise RuntimeError(f"parts {failed} failed; see {out / 'report.md'} and "
                           f"{out / 'reproduce.json'} for the errors.")
    return out


def _run_parts(args: argparse.Namespace, parts: list[Part], out: Path, available: set[str],
               status: dict[str, dict[str, Any]]) -> None:
    """Run the parts in order, recording each one's status in ``status`` as it ends."""
    for part in parts:
        folder = out / part.name
        marker = folder / "part.json"
        reason = _skip_reason(part, args, available)
        if reason:
            msg = f"skipped: {reason}"
            log(args, f"{part.name}: {msg}")
            status[part.name] = {"status": "skipped", "reason": msg}
            continue
        argv = _part_argv(part, args, folder)
        old = _read_marker(args, marker) if args.resume else {}
        same = old.get("argv") == argv and old.get("data_sha256") == args.data_sha256
        if args.resume and same and old.get("status") == "done":
            log(args, f"{part.name}: finished earlier; skipping (--resume)")
            status[part.name] = old
            continue
        if args.resume and old.get("argv") == argv and not same:
            log(args, f"{part.name}: its data changed since it ran; running it again")
        # continue an interrupted part only when it ran with the same arguments and data
        resume_part = bool(args.resume and same)
        base = {"argv": argv, "data_sha256": args.data_sha256}
        save_json(marker, {"status": "running", **base})
        log(args, f"{part.name}: ntk-influence {' '.join(argv)}"
                  + (" --resume" if resume_part else ""))
        t0 = time.perf_counter()
        try:
            _run_part(part, argv, resume_part, args.quiet)
        except KeyboardInterrupt:
            status[part.name] = {"status": "interrupted", **base}
            raise
        except Exception as e:
            status[part.name] = {"status": "failed", **base,
                                 "error": f"{type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc()}
            numerical = isinstance(e, (NumericalError, NotConvergedError))
            if not args.keep_going or (isinstance(e, InputError) and not numerical):
                raise
            log(args, f"{part.name}: failed ({type(e).__name__}: {e}); going on (--keep-going)")
            continue
        secs = time.perf_counter() - t0
        status[part.name] = {"status": "done", **base, "seconds": secs}
        save_json(marker, status[part.name])
        log(args, f"{part.name}: done in {secs:.1f} s")


def _environment() -> dict[str, Any]:
    """Versions and devices, so that numbers can be compared across machines."""
    # deferred for start-up speed
    import jax


    dev = jax.devices()[0]
    return {"ntk_influence": __version__, "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "backend": jax.default_backend(),
            "device": getattr(dev, "device_kind", str(dev)), "devices": jax.device_count(),
            "platform": platform.platform()}


def _finish(args: argparse.Namespace, out: Path, status: dict[str, dict[str, Any]],
            seconds: float) -> None:
    """Write ``reproduce.json`` and ``report.md`` for the parts run now and those done before."""
    for part in PARTS:  # parts not run this time keep their earlier results in the report
        marker = out / part.name / "part.json"
        if part.name not in status and marker.exists():
            old = _read_marker(args, marker)
            if old.get("status") == "done" and old.get("data_sha256") == getattr(args, "data_sha256", None):
                status[part.name] = old
    parts = [p for p in PARTS if p.name in status]
    env = _environment()
    save_json(out / "reproduce.json", {
        "command": "reproduce", "version": env["ntk_influence"], "mode": args.mode,
        "settings": settings_of(args), "environment": env, "parts": status,
        "seconds_this_run": seconds})
    write_report(out, args, parts, status, env)


def _read_marker(args: argparse.Namespace, marker: Path) -> dict[str, Any]:
    """A part's ``part.json``; empty (unfinished) when missing or damaged, which is said."""
    if not marker.exists():
        return {}
    try:
        old = load_json(marker)
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        log(args, f"{marker} is damaged ({type(e).__name__}); the part counts as unfinished")
        return {}
    return old


def _preflight(args: argparse.Namespace, parts: list[Part], out: Path, available: set[str]) -> None:
    """Check every part as it would check itself before its work, so that a bad value fails now.

    Each part's arguments are parsed by its subcommand, its data is loaded with its sizes (the
    same messages as the part's own run) and ``--lam`` is checked; a part folder that is a
    symbolic link is refused. Run before any part and by ``--dry-run``.
    """
    # deferred for start-up speed
    from ..data import load_dataset

    check_lam(args.lam)
    parser = parser_for(PART_COMMANDS)
    loaded: set[tuple[Any, ...]] = set()
    for part in parts:
        if _skip_reason(part, args, available):
            continue
        folder = out / part.name
        if folder.is_symlink():
            raise InputError(f"{folder} is a symbolic link; results are written only inside "
                             "--out: remove the link.")
        argv = _part_argv(part, args, folder)
        try:
            sub = parser.parse_args(argv)
        except SystemExit as e:
            raise InputError(f"part {part.name}: '{part.command}' refuses {argv}.") from e
        key = (sub.data, sub.n_train, sub.n_test, sub.seed, sub.label_noise, sub.center)
        if key not in loaded:
            load_dataset(sub.data, n_train=sub.n_train, n_test=sub.n_test, seed=sub.seed,
                         label_noise=sub.label_noise, center=sub.center)
            loaded.add(key)


def _skip_reason(part: Part, args: argparse.Namespace, available: set[str]) -> str:
    """Why a part cannot run here (empty if it can)."""
    if part.command not in available:
        return f"the '{part.command}' subcommand is not available in this installation"
    if part.name == "table1" and getattr(args, "pool_outputs", 1) > 1:
        return ("Table 1 retrains scalar-output nets; pass a class pair such as "
                f"{args.data.split(':')[0]}:3,8 (this data has one-hot labels)")
    return ""


def _dry_run(args: argparse.Namespace, parts: list[Part], out: Path, available: set[str]) -> Path:
    """Print the command of every part (already checked by :func:`_preflight`)."""
    for part in parts:
        reason = _skip_reason(part, args, available)
        if reason:
            print(f"# {part.name}: skipped ({reason})")
            continue
        print(f"ntk-influence {' '.join(_part_argv(part, args, out / part.name))}")
    return out


REPRODUCE = Command("reproduce", "run everything the paper shows (Table 1, Figures 1-7) for one "
                    "dataset and write report.md with the tables and figures, plus all arrays "
                    "and JSON", _args, _run)
