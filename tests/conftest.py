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
