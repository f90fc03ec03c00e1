"""Shared pytest fixtures.

float64 tests use the `x64` fixture (JAX's x64 mode only inside that test), so the rest of
the suite runs in the default float32 mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def cola_data_dir() -> Path | None:
    """The real CoLA folder: $JAXSEQ_DATA/cola, else ../shared/data/cola next to the repo."""
    candidates = []
    if os.environ.get("JAXSEQ_DATA"):
        candidates.append(Path(os.environ["JAXSEQ_DATA"]) / "cola")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "cola")
    for candidate in candidates:
        if (candidate / "train.tsv").is_file():
            return candidate
    return None


@pytest.fixture
def cola_dir() -> Path:
    path = cola_data_dir()
    if path is None:
        pytest.skip("real CoLA data not found: set JAXSEQ_DATA or place it in ../shared/data/cola")
    return path


@pytest.fixture(autouse=True)
def signal_handlers_are_left_as_found():
    """A test that leaves a SIGTERM / SIGINT handler behind changes what the next one sees
    (the trainers save and restore them): name it at once instead."""
    import signal

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    after = {signum: signal.getsignal(signum) for signum in before}
    changed = [signal.Signals(signum).name for signum in before if after[signum] is not before[signum]]
    for signum in before:
        signal.signal(signum, before[signum])
    assert not changed, f"the test left its own handler of {', '.join(changed)} installed: {after}"
