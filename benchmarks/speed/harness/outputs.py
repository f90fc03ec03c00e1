"""The files of a run: `<stem>.md` (the report), `<stem>.json` (meta and every result) and
`<stem>.png` (the chart of the ratios)."""

from __future__ import annotations

import json
from pathlib import Path

from jaxseq.timing import load_average

from .machine import machine_info
from .plots import plot_ratios
from .report import format_table
from .roofline import annotate_roofline


def write_outputs(results: list[dict], directory: Path, stem: str = "latest", meta: dict | None = None,
                  title: str = "jaxseq benchmarks") -> dict[str, Path]:
    """Write `<stem>.md`, `<stem>.json` and `<stem>.png` under `directory`; returns their paths.
    The results' `frac_best_matmul` and the meta's best matmul rate are filled in first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or machine_info())
    meta.setdefault("load_average_end", load_average())
    best = annotate_roofline(results)
    if best:
        meta["best_matmul_gflops"] = best
    paths = {"md": directory / f"{stem}.md", "json": directory / f"{stem}.json"}
    paths["md"].write_text(format_table(results, title=title, meta=meta) + "\n")
    paths["json"].write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    png = plot_ratios(results, directory / f"{stem}.png",
                      title=f"{title}: ratios to the reference ({meta.get('host_cpu')}, load {meta.get('load_average')})")
    if png:
        paths["png"] = png
    return paths
