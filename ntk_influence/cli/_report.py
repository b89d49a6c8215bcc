"""``ntk-influence reproduce``'s :class:`Part` record and Markdown: numbers, tables, one summary per part."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_bytes, load_json, load_npz


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of the reproduction: a subcommand and the arguments for a mode.

    Attributes:
      name: folder name and ``--parts`` key.
      title: heading in the report.
      command: the subcommand that does the work.
      argv: ``(args, mode) -> list of arguments`` (without ``--out``/``--resume``/``--quiet``).
      caption: what the part shows, for the report.
      report: ``(folder) -> Markdown lines`` summarising the part's results.
    """

    name: str
    title: str
    command: str
    argv: Callable[[argparse.Namespace, str], list[str]]
    caption: str
    report: Callable[[Path], list[str]]


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a table: ``digits`` significant digits, ``n/a`` for None.

    Args:
      x: a number (or anything printable).
      digits: significant digits.

    Returns:
      The text.
    """
    if x is None:
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(xf):
        return str(xf)
    return f"{xf:.{digits}g}"


def fmt_time(t: Any) -> str:
    """A training time; JSON stores ``inf`` (the end of training) as null.

    Args:
      t: the time, or None for ``inf``.

    Returns:
      The text.
    """
    return "inf" if t is None else fmt(t, 3)


def figures(folder: Path) -> list[str]:
    """Markdown image links to the PNG figures of a part's folder.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    return [f"![{p.stem}]({folder.name}/{p.name})" for p in sorted(folder.glob("*.png"))]


def md_table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> list[str]:
    """A Markdown table of ``rows`` with the given ``(key, heading)`` columns.

    Args:
      rows: one dict per row.
      cols: ``(key, heading)`` per column.

    Returns:
      Markdown lines (empty without rows).
    """
    if not rows:
        return []
    lines = ["| " + " | ".join(h for _, h in cols) + " |",
             "|" + "|".join("---:" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(k)) for k, _ in cols) + " |")
    return lines


def scalars(d: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Scalar entries of a (nested) JSON summary, for a compact key-value listing.

    Args:
      d: the summary.
      prefix: key prefix of nested entries.
      depth: current nesting depth (one level is opened).

    Returns:
      ``(dotted key, value)`` pairs.
    """
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if k in ("settings", "data", "command"):
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 1:
            out += scalars(v, key + ".", depth + 1)
        elif isinstance(v, (int, float, bool)) or v is None:
            out.append((key, v))
    return out


def generic_report(folder: Path) -> list[str]:
    """The scalars of every JSON summary in ``folder`` and its figures.

    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    lines: list[str] = []
    for p in sorted(folder.glob("*.json")):
        if p.name == "part.json":
            continue
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        items = scalars(d) if isinstance(d, dict) else []
        if items:
            lines += [f"Key numbers from `{folder.name}/{p.name}`:", ""]
            lines += [f"- `{k}`: {fmt(v)}" for k, v in items[:30]]
            lines.append("")
    return lines + figures(folder)


def kernel_report(folder: Path) -> list[str]:
    """Kernel-regime IHVP against exact LOO influence (Prop. 2, Theorem 3) and its figure.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    # deferred for start-up speed
    from .. import plots

    z = load_npz(folder / "influence.npz")
    s = load_json(folder / "summary.json")
    infl, ihvp = z["influence"], z["ihvp"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.abs(infl - ihvp) / np.abs(infl)
    rate = rate[np.isfinite(rate)]
    j = int(np.argmax(np.abs(infl).sum(axis=0)))
    top = np.argsort(-np.abs(infl[:, j]))[:40]
    fig = plots.influence_scatter(ihvp[top, j], infl[top, j],
                                  xlabel="exact NTK influence (leave-one-out, eq. 9)",
                                  ylabel="IHVP estimate in the kernel regime (eq. 13)",
                                  title=f"test point {j}: 40 most influential training points",
                                  path=folder / "kernel_ihvp_vs_exact.png")
    close_figure(fig)
    th = s["theorem3"]
    return [
        f"- training points {infl.shape[0]}, test points {infl.shape[1]}, lambda = "
        f"{fmt(s['lam'])}, cond(K + lam I) = {fmt(s['conditioning']['cond_K_plus_lam_I'])}",
        f"- IHVP error rate |I - Ihat| / |I| over all pairs: median {fmt(np.median(rate))}, "
        f"mean {fmt(np.mean(rate))}",
        f"- ridge leverage h_i in [{fmt(th['leverage_min'])}, {fmt(th['leverage_max'])}], "
        f"inside Theorem 3's [{fmt(th['lower'])}, {fmt(th['upper'])}]",
        "", *figures(folder)]


def close_figure(fig: Any) -> None:
    """Close a Matplotlib figure (figures are written to files, never shown).

    Args:
      fig: the figure.
    """
    # deferred for start-up speed
    import matplotlib.pyplot as plt

    plt.close(fig)


def table1_report(folder: Path) -> list[str]:
    """Table 1 (R and rho per width), the full comparison table, and Figure 1 for both methods.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    p = folder / "compare.json"
    if not p.exists():
        return generic_report(folder)
    d = load_json(p)
    rows = d.get("widths", [])
    k = int(d.get("test_points", 1))
    on = "one test point" if k == 1 else f"{k} test points (all pairs)"
    lines = [f"Table 1 (predicted against actual influence of the removed points on {on}):", ""]
    lines += md_table(rows, [("width", "width"), ("pearson", "R (NTK)"),
                              ("spearman", "rho (NTK)"), ("ntk_slope", "slope (NTK)"),
                              ("ihvp_pearson", "R (IHVP)"), ("ihvp_spearman", "rho (IHVP)"),
                              ("ihvp_slope", "slope (IHVP)"),
                              ("retrain_max_error_ratio", "max solver error / abs(Delta)")])
    md = folder / "compare.md"
    if md.exists():
        lines += ["", "All comparisons (NTK ignoring / including the initial output f0, the "
                  "empirical NTK at W(0), the IHVP on the finite net and in the NTK limit):", "",
                  md.read_text().strip()]
    note = d.get("note")
    if note:
        lines += ["", note]
    return [*lines, "", *figures(folder)]


def load_summary(folder: Path) -> dict[str, Any]:
    """The part's ``summary.json``.

    Args:
      folder: the part's output folder.

    Returns:
      The decoded summary.
    """
    return load_json(folder / "summary.json")


def fig2_report(folder: Path) -> list[str]:
    """Figure 2: error rate per lambda against Theorem 3's bounds.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    s = load_summary(folder)
    rows = s.get("per_lambda", [])
    lines = [f"lambda_min(K) = {fmt(s.get('lambda_min'))}, lambda_max(K) = "
             f"{fmt(s.get('lambda_max'))}; error rate = {s.get('error_rate', '')}.", ""]
    lines += md_table(rows, [("lam", "lambda"), ("mean_error_rate", "mean error rate"),
                              ("median_error_rate", "median"),
                              ("theorem3_lower", "Theorem 3 lower bound"),
                              ("upper", "upper quantity"), ("mean_leverage", "mean h_i"),
                              ("eq16_violations", "eq. (16) violations"),
                              ("leverage_in_bounds", "h_i in bounds")])
    return [*lines, "", *figures(folder)]


def fig3_report(folder: Path) -> list[str]:
    """Figure 3 and Theorem 4: density, leverage and error-rate correlations.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    s = load_summary(folder)
    lines = []
    for key, label in (("spearman_density_error", "Spearman(density, IHVP error rate)"),
                       ("spearman_leverage_error", "Spearman(leverage h_i, IHVP error rate)"),
                       ("spearman_density_leverage", "Spearman(density, leverage)")):
        v = s.get(key, (s.get("density") or {}).get(key))
        if v is not None:
            lines.append(f"- {label}: {fmt(v)}")
    mix = s.get("mixture")
    if isinstance(mix, dict):
        p = ", ".join(fmt(v, 3) for v in mix.get("p", []))
        err = ", ".join(fmt(v, 3) for v in mix.get("component_error", []))
        lines.append(f"- Definition 1 mixture: p_k = [{p}], median error rate per component = "
                     f"[{err}], Spearman(p_k, error) = {fmt(mix.get('spearman_p_error'))}")
    if not lines:
        return generic_report(folder)
    return [*lines, "", *figures(folder)]


def fig4_report(folder: Path) -> list[str]:
    """Figure 4: per test point, the most helpful, most harmful and least influential points.

    Args:
      folder: the part's output folder (``examples.npz``, ``summary.json``).

    Returns:
      Markdown lines: one table row per test point, each cell ``#index (I)``, best first.
    """
    z = load_npz(folder / "examples.npz")
    s = load_summary(folder)

    def cell(kind: str, r: int) -> str:
        return ", ".join(f"#{int(i)} ({v:+.2e})"
                         for i, v in zip(z[kind][r], z[f"{kind}_value"][r]))

    k = int(z["helpful"].shape[1])
    lines = [f"Influence I of the {k} most helpful (largest I), most harmful (most negative I) "
             f"and least influential (smallest |I|) training points for each test point, out "
             f"of {(s.get('data') or {}).get('n_train', '?')} training points; "
             f"{s.get('sign_convention', 'I > 0: helpful')}.", "",
             "| test point | most helpful | most harmful | least influential |",
             "|---:|---|---|---|"]
    for r, j in enumerate(z["test_index"]):
        lines.append(f"| {int(j)} | {cell('helpful', r)} | {cell('harmful', r)} | "
                     f"{cell('uninfluential', r)} |")
    return [*lines, "", *figures(folder)]


def fig5_report(folder: Path) -> list[str]:
    """Figure 5: complexity per influence group.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    s = load_summary(folder)
    b = str(s.get("B")).replace("^-1", "\u207b\u00b9")
    lines = [f"{s.get('grouping', '')}. B = {b}, cond = {fmt(s.get('cond'))}.", ""]
    lines += md_table(s.get("groups", []), [("group", "group"), ("size", "size"),
                                             ("mean_influence", "influence score"),
                                             ("complexity", "complexity C")])
    return [*lines, "", *figures(folder)]


def fig6_report(folder: Path) -> list[str]:
    """Figure 6: most influential points over time and first-order agreement.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    s = load_summary(folder)
    lines = [f"- time unit: {s.get('time_unit')}; times: "
             f"{', '.join(fmt_time(t) for t in s.get('times', []))}",
             f"- changes of the most influential point between consecutive times (over test "
             f"points): {s.get('changes_of_most_influential')}"]
    ag = s.get("agreement_first_order_vs_exact")
    if isinstance(ag, dict):
        rows = [{"t": fmt_time(t), **{k: (v[i] if isinstance(v, list) else v)
                                    for k, v in ag.items()}}
                for i, t in enumerate(s.get("times", []))]
        lines += ["", "First-order against exact influence at each time:", ""]
        lines += md_table(rows, [("t", "t"), ("pearson", "R"), ("spearman", "rho"),
                                  ("slope", "slope"), ("rel_error", "relative error"),
                                  ("top1_match", "same most influential")])
    return [*lines, "", *figures(folder)]


def fig7_report(folder: Path) -> list[str]:
    """Figure 7: shares of clean and noisy points among the most influential.
    Args:
      folder: the part's output folder.

    Returns:
      Markdown lines.
    """
    s = load_summary(folder)
    rows = [{"t": fmt_time(t), "clean": c, "noisy": n} for t, c, n in
            zip(s.get("times", []), s.get("share_clean", []), s.get("share_noisy", []))]
    lines = [f"{s.get('n_noisy')} training labels flipped ({fmt(s.get('noise_fraction'))}); "
             f"{s.get('rule')}; time unit {s.get('time_unit')}.", ""]
    lines += md_table(rows, [("t", "t"), ("clean", "share clean"), ("noisy", "share noisy")])
    return [*lines, "", *figures(folder)]


def write_report(out: Path, args: argparse.Namespace, parts: Sequence[Part],
                 status: dict[str, dict[str, Any]], env: dict[str, Any]) -> None:
    """Write ``out/report.md``: settings, environment, a status table and one section per part.

    Args:
      out: the reproduction folder.
      args: the ``reproduce`` arguments.
      parts: the parts to show, in order.
      status: part name -> its status record.
      env: versions and devices.
    """
    lines = ["# Reproduction report", "",
             "Zhang & Zhang, *Rethinking Influence Functions of Neural Networks in the "
             "Over-Parameterized Regime* (AAAI 2022), reproduced with `ntk_influence`.", "",
             f"- data: `{args.data}` (seed {args.seed}); mode: `{args.mode}`; lambda = {args.lam:g}",
             f"- ntk_influence {env['ntk_influence']}, JAX {env['jax']} on {env['backend']} "
             f"({env['device']} x {env['devices']}), Python {env['python']}",
             "- sign of influence: positive = removing the point raises the test loss (helpful); "
             "losses are sums of squared errors over points (and outputs), as in eq. (2).", ""]
    lines += ["| part | status | seconds |", "|---|---|---:|"]
    for p in parts:
        st = status.get(p.name, {})
        lines.append(f"| [{p.name}](#{p.name}) | {st.get('status', 'not run')} | "
                     f"{fmt(st.get('seconds'), 3)} |")
    lines.append("")
    for p in parts:
        st = status.get(p.name, {})
        lines += [f"<a id=\"{p.name}\"></a>", f"## {p.title}", "", p.caption, ""]
        folder = out / p.name
        if st.get("status") == "done":
            shown = " ".join(f"DIR/{p.name}" if a == str(folder) else a for a in st["argv"])
            lines.append(f"Command: `ntk-influence {shown}`")
            lines.append("")
            try:
                lines += p.report(folder)
            except Exception as e:  # a report helper must never lose the computed results
                lines.append(f"(could not summarise {folder}: {type(e).__name__}: {e})")
        elif st.get("status") == "failed":
            lines += ["**Failed:**", "", "```", st.get("error", ""), "```"]
        elif st.get("status") == "interrupted":
            lines.append("*interrupted; run again with `--resume` to continue*")
        else:
            lines.append(f"*{st.get('reason', 'not run')}*")
        lines.append("")
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
