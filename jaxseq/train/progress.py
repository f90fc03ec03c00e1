"""Progress reporting for trainers: the tqdm bar (`jaxseq.progress.progress_bar`), the loss-curve
plot and a run's curves from its metrics.jsonl.

tqdm and matplotlib are imported when used, so importing a trainer stays cheap; the plots
use matplotlib's non-interactive Agg backend and only write files.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from jaxseq.progress import progress_bar  # noqa: F401  (the trainers' bar: jaxseq.progress)


@contextlib.contextmanager
def _figure(path: Path, rows: int, size: tuple[float, float]) -> Iterator[tuple[Any, list[Any]]]:
    """A matplotlib figure (Agg) of `rows` axes, saved to `path` (PNG, its folder created) and
    closed when the block ends. The file is `path` itself, whatever its suffix (matplotlib
    would add ".png" to a name without one)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(rows, 1, figsize=size, squeeze=False)
    try:
        yield figure, list(axes[:, 0])
        for axis in axes[:, 0]:
            axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, dpi=100, format="png")
    finally:
        plt.close(figure)


def _log_scale_if_positive(axis, *series) -> None:
    import numpy as np

    values = np.concatenate([np.asarray(values, dtype=np.float64) for values in series])
    values = values[np.isfinite(values)]
    if values.size and (values > 0).all() and values.max() > 3 * values.min():
        axis.set_yscale("log")


def save_loss_curve(losses: Sequence[float], path: str | Path, *, title: str = "Training loss",
                    smooth: int = 0) -> Path:
    """Plot a per-step loss history to `path` (PNG); `smooth` > 1 overlays a moving average.

    Returns: the path written.
    """
    import numpy as np

    path = Path(path)
    values = np.asarray(losses, dtype=np.float64)
    with _figure(path, 1, (7, 4)) as (_, (axis,)):
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
    return path


def check_title(title: str, what: str = "title") -> str:
    """`title` if matplotlib can draw it; a one-line ValueError naming `what` (the argument,
    e.g. "--title") if its `$...$` parts are not valid mathtext (matplotlib would only find
    out while saving, in a message of several lines)."""
    from matplotlib import cbook, mathtext

    if cbook.is_math_text(title):  # an even number of unescaped $: matplotlib draws it as math
        try:
            mathtext.MathTextParser("path").parse(title)
        except ValueError as error:
            reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())[-200:]
            raise ValueError(f"{what} {title!r} is not valid matplotlib mathtext ({reason}); write \\$ for a "
                             "dollar sign") from None
    return title


def save_run_curves(points: Sequence[Any], path: str | Path, *, title: str = "Training run") -> Path:
    """Plot a run's curves from its metrics.jsonl points (`jaxseq.train.run_log.read_metrics`) to
    `path` (PNG): the train loss against the step (with each epoch's mean), the validation
    metrics against the epoch, and the learning rate against the step; panels without data
    are left out. `title` is checked first (`check_title`). Returns: the path written."""
    series: dict[str, dict[int, tuple[int, float]]] = {}
    for point in points:  # the last point of a step wins, as in TensorBoard
        if point.value is not None:
            series.setdefault(point.name, {})[point.step] = (point.epoch, point.value)

    def curve(name: str, by_epoch: bool = False) -> tuple[list[int], list[float]]:
        entries = sorted(series.get(name, {}).items())
        return ([epoch if by_epoch else step for step, (epoch, _) in entries], [value for _, (_, value) in entries])

    validation = sorted(name for name in series if name.startswith("val/"))
    panels = [kind for kind, present in (("loss", "train/loss" in series or "epoch/train_loss" in series),
                                          ("val", bool(validation)), ("rate", "train/learning_rate" in series))
              if present]
    if not panels:
        raise ValueError("the run log holds no train/loss, val/* or train/learning_rate points to plot")
    check_title(title)
    path = Path(path)
    with _figure(path, len(panels), (7, 2.6 * len(panels) + 0.4)) as (figure, axes):
        for axis, kind in zip(axes, panels):
            if kind == "loss":
                steps, losses = curve("train/loss")
                ends, means = curve("epoch/train_loss")
                axis.plot(steps, losses, lw=0.9, label="train loss")
                if ends:
                    axis.plot(ends, means, "o-", ms=3, lw=1.2, label="epoch mean")
                _log_scale_if_positive(axis, losses, means)
                axis.set_xlabel("step")
                axis.set_ylabel("loss")
                axis.legend(fontsize="small")
            elif kind == "val":
                for name in validation:
                    epochs, values = curve(name, by_epoch=True)
                    axis.plot(epochs, values, "o-", ms=3, lw=1.2, label=name)
                axis.set_xlabel("epoch")
                axis.set_ylabel("validation")
                axis.legend(fontsize="small")
            else:
                steps, rates = curve("train/learning_rate")
                axis.plot(steps, rates, lw=1.2)
                axis.set_xlabel("step")
                axis.set_ylabel("learning rate")
                axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        axes[0].set_title(title)
    return path
