"""Comparisons of training runs through their checkpoint folders, shared by the resume tests."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from flax import serialization

from jaxseq.train.checkpoint import STATE_FILE, latest_checkpoint, read_metadata

TIMING_KEYS = ("seconds", "eval_seconds")


def without_timing(value):
    """Metadata with the wall-clock entries (which differ between any two runs) left out."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def saved_state(path: Path):
    """The raw arrays of checkpoint folder `path` (as nested dicts, no template) and its metadata."""
    return serialization.msgpack_restore((Path(path) / STATE_FILE).read_bytes()), read_metadata(path)


def assert_same_run(folder_a: Path, folder_b: Path) -> dict:
    """The latest checkpoints of two run folders hold bit-identical arrays and the same
    metadata (histories included, timings excluded). Returns that metadata."""
    state_a, meta_a = saved_state(latest_checkpoint(folder_a))
    state_b, meta_b = saved_state(latest_checkpoint(folder_b))
    assert jax.tree.structure(state_a) == jax.tree.structure(state_b)
    jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
    assert without_timing(meta_a) == without_timing(meta_b)
    return meta_a
