"""The bar chart of a run: every non-reference contender's ratio, grouped by case (log scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from jaxseq.timing import group_cases


def _bars(results: Sequence[dict], palette: list[str]) -> tuple[list[str], list[float], list[str]]:
    """(labels, ratios, colors) of the bars, one color per contender name."""
    labels, values, colors = [], [], []
    names = sorted({r["contender"] for r in results})
    for (case, variant, shape), rows in group_cases(results):
        for r in rows:
            if r.get("ratio") is None or r["contender"] == r.get("reference"):
                continue
            labels.append(f"{case} {variant} {shape} — {r['contender']} / {r['reference']}")
            values.append(r["ratio"])
            colors.append(palette[names.index(r["contender"]) % len(palette)])
    return labels, values, colors


def plot_ratios(results: Sequence[dict], path: Path, title: str = "time / reference time") -> Path | None:
    """Horizontal bar chart of the ratios written to `path` (PNG); None when there is no ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = _bars(results, plt.rcParams["axes.prop_cycle"].by_key()["color"])
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.28 * len(values) + 1.2)))
    y = list(range(len(values)))[::-1]
    ax.barh(y, values, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("median time / reference median time (log scale; > 1: the reference is faster)")
    ax.set_title(title, fontsize=10)
    for yy, v in zip(y, values):
        ax.text(v, yy, f" {v:.2f}", va="center", fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
