"""Progress reporting for trainers: a tqdm bar and the loss-curve plot.

tqdm and matplotlib are imported when used, so importing a trainer stays cheap; the plot
uses matplotlib's non-interactive Agg backend and only writes a file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Sequence


def progress_bar(total: int, *, initial: int = 0, description: str = "train", enabled: bool = True):
    """A tqdm bar on stderr over `total` steps (disabled: a no-op bar with the same API).

    In Jupyter it is tqdm's widget bar when ipywidgets is installed; without ipywidgets the
    text bar (tqdm's widget variant would only warn "IProgress not found" and fall back).
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm

    return tqdm(total=total, initial=initial, desc=description, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def save_loss_curve(losses: Sequence[float], path: str | Path, *, title: str = "Training loss",
                    smooth: int = 0) -> Path:
    """Plot a per-step loss history to `path` (PNG); `smooth` > 1 overlays a moving average.

    Returns: the path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.asarray(losses, dtype=np.float64)
    figure, axis = plt.subplots(figsize=(7, 4))
    try:
        axis.plot(np.arange(1, len(values) + 1), values, lw=0.8, alpha=0.6 if smooth > 1 else 1.0,
                  label="per step")
        if smooth > 1 and len(values) >= smooth:
            kernel = np.ones(smooth) / smooth
            axis.plot(np.arange(smooth, len(values) + 1), np.convolve(values, kernel, mode="valid"),
                      lw=1.8, label=f"mean of {smooth}")
            axis.legend()
        if values.size and (values > 0).all():
            axis.set_yscale("log")
        axis.set_xlabel("iteration")
        axis.set_ylabel("loss")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path
