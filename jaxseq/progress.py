"""Progress bars (tqdm) for long work: training, downloads, decoding a split, benchmarks.

One rule for every bar: it is shown on stderr when asked for (`enabled`) and someone can
see it, that is when stderr is a terminal or the code runs in a Jupyter kernel; written to
a file or a pipe (a job's log, a test's captured output) it stays off, so logs hold lines,
not carriage returns. tqdm is imported when a bar is made, so importing a module that
offers one stays cheap. This module imports nothing of jaxseq or JAX (any layer may use it).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def bar_visible(stream: Any = None) -> bool:
    """Whether a bar on `stream` (default: stderr) would be seen: a terminal, or a Jupyter kernel."""
    stream = sys.stderr if stream is None else stream
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: int | None, *, initial: int = 0, description: str = "train", enabled: bool = True,
                 leave: bool = False, **options: Any):
    """A tqdm bar on stderr over `total` units (disabled, or nobody to see it: a no-op bar with
    the same API). `options` go to tqdm (unit="B", unit_scale=True, ...).

    In Jupyter it is tqdm's widget bar when ipywidgets is installed; without ipywidgets the
    text bar (tqdm's widget variant would only warn "IProgress not found" and fall back).
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm

    return tqdm(total=total, initial=initial, desc=description, disable=not (enabled and bar_visible()),
                file=sys.stderr, dynamic_ncols=True, leave=leave, **options)
