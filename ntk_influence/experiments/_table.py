"""Table 1 as Markdown: `table_markdown` of a width sweep (from `_compare.py`)."""

from __future__ import annotations

from ._compare import WidthComparison


def table_markdown(results: list[WidthComparison]) -> str:
    """A Markdown table like Table 1 (widths as columns, ascending) with extra diagnostics as rows.

    The NTK + f0 rows are left out (with a line saying so) when ``f_0 = 0`` exactly at every
    width, where they equal the NTK rows; a note below the table says what the eNTK(W0) row is.

    Args:
      results: the sweep.

    Returns:
      The table text.
    """
    cols = sorted(results, key=lambda c: c.width)
    f0_zero = all(c.info.get("f0_max_abs") == 0.0 for c in cols)
    head = "| | " + " | ".join(f"m = {c.width}" for c in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    rows = [head, sep]
    for v, label in [("ntk", "NTK"), ("ntk_f0", "NTK + f0"), ("entk0", "eNTK(W0) + f0"),
                     ("ihvp", "IHVP (finite net)"), ("ntk_ihvp", "IHVP (NTK limit)")]:
        if v == "ntk_f0" and f0_zero:
            continue
        for k, name in [("pearson", "R"), ("spearman", "rho"), ("slope", "slope"),
                        ("rel_error", "rel. error")]:
            rows.append(f"| {label} {name} | " + " | ".join(
                f"{c.stats[v][k]:.3f}" for c in cols) + " |")

    def info_row(label: str, key: str, spec: str) -> None:
        rows.append(f"| {label} | " + " | ".join(
            "n/a" if c.info.get(key) is None else format(c.info[key], spec) for c in cols) + " |")

    rows.append("| f0(x_te) | " + " | ".join(f"{c.f0_test:.2e}" for c in cols) + " |")
    info_row("eNTK(W0) vs eq. (4): rel. difference", "entk0_kernel_rel_diff", ".3f")
    info_row("NTK mean abs(f - y) at the test points", "ntk_residual_test", ".3g")
    info_row("eNTK(W0) mean abs(f - y) at the test points", "entk0_residual_test", ".3g")
    info_row("full-run grad norm", "full_grad_norm", ".2e")
    info_row("full-run final step (t << 1: stopped on ReLU kinks)", "full_final_step", ".2e")
    info_row("max rel. gradient (full run and retrains)", "max_rel_grad_norm", ".1e")
    stationary = all(c.info.get("stop") == "gradient" for c in cols)
    info_row("max last steps' change / abs(Delta)" if stationary
             else "max solver error / abs(Delta)", "retrain_max_error_ratio", ".1e")
    info_row("seconds", "seconds_total", ".0f")
    k = {int(c.info.get("test_points", 1)) for c in cols}
    warm = any(c.info.get("warm_start", False) for c in cols)
    actual = ("the stationary point (truncated Newton, ridge-relative gradient <= "
              f"{cols[0].info.get('g_tol', 1e-8):g}) retrained without the point"
              if stationary else "Gauss-Newton retrained without the point until the "
              "predictions settle")
    notes = ["", f"Statistics over the removed training points x {'/'.join(map(str, sorted(k)))} "
             f"test point(s); actual = {actual}, from "
             f"{'the trained weights (warm start)' if warm else 'the same W(0)'}. The max rel. "
             "gradient row is ||grad L|| / ||lam (theta - theta0)|| (n/a: not recorded)."
             + (" A stationary run stops on its gradient, so the change of its last steps "
                "bounds the error before them, not after." if stationary else "")]
    if f0_zero:
        notes.append("NTK + f0 rows omitted: f0 = 0 exactly at every width (symmetric "
                     "initialisation), so they equal the NTK rows.")
    notes.append("eNTK(W0) + f0: the empirical NTK of the net at its initialisation W(0) used as "
                 "the kernel (with f0). A test loss's influence is Delta (f - y) + Delta^2/2, so "
                 "it scales with the residual f - y: at small width this kernel differs from "
                 "eq. (4) by several per cent (row 'rel. difference'), which can move its "
                 "prediction onto the label (small abs(f - y) row), and its influences then "
                 "shrink and lose their sign; the row approaches the NTK row as the width grows.")
    return "\n".join(rows + notes) + "\n"
