"""Atomic checkpoints: flax.serialization msgpack for arrays, JSON for metadata — never pickle.

Layout: `<directory>/ckpt-<step:08d>/` holding `state.msgpack` (any pytree: params,
optimizer state, RNG key, ...) and `meta.json` (step, metric, config, vocabulary, ...).
A checkpoint is written into a temporary folder in the same directory, flushed to disk and
then renamed into place, so a crash at any moment leaves either the previous complete set or
the new complete checkpoint — a half-written one is never picked up (temporary folders are
ignored and cleaned up by the next save).

Loading parses msgpack into arrays against a template pytree; it never executes code from
the file, and a file that does not match the template is rejected with an error naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flax import serialization

PREFIX = "ckpt-"
TEMP_PREFIX = ".tmp-ckpt-"
STATE_FILE = "state.msgpack"
META_FILE = "meta.json"


def _write_file(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` and flush it to disk (one file of a checkpoint being built)."""
    with open(path, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    """The folder of checkpoint `step` in `directory`: `ckpt-<step:08d>`."""
    return Path(directory) / f"{PREFIX}{step:08d}"


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata dict of one checkpoint folder; ValueError if it is missing or corrupt."""
    meta_file = Path(path) / META_FILE
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path}: missing {META_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"checkpoint {meta_file}: not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {meta_file}: expected a JSON object, got {type(meta).__name__}")
    return meta


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `directory`, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        if not child.name.startswith(PREFIX) or not child.is_dir():
            continue
        try:
            step = int(child.name[len(PREFIX):])
        except ValueError:
            continue
        if (child / STATE_FILE).is_file() and (child / META_FILE).is_file():
            found.append((step, child))
    return [path for _, path in sorted(found)]


def prepare_checkpoint_dir(directory: str | os.PathLike, *, overwrite: bool = False,
                           resume: bool = False) -> Path | None:
    """Get `directory` ready for a training run; returns the checkpoint to resume from, or None.

    A folder that already holds checkpoints is an error unless `resume` (continue from its
    latest checkpoint) or `overwrite` (delete them and start afresh); both at once are an
    error. `resume` on a folder without checkpoints starts afresh (so a job script can
    always pass it).
    """
    if overwrite and resume:
        raise ValueError("resume and overwrite exclude each other: continue the run in the folder or replace it")
    directory = Path(directory)
    existing = list_checkpoints(directory)
    if resume or not existing:
        return existing[-1] if existing else None
    if not overwrite:
        raise ValueError(
            f"checkpoint folder {directory} already holds checkpoints ({existing[-1].name}, ...); "
            "resume that run (--resume), replace it (--overwrite) or give a new folder"
        )
    for path in existing:
        shutil.rmtree(path, ignore_errors=True)  # several processes may clear a shared folder at once
    return None


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def best_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the best `metric` in its metadata (ties: the earliest)."""
    best, best_score = None, None
    for path in list_checkpoints(directory):
        meta = read_metadata(path)
        if meta.get("metric") is None:
            continue
        score = meta["metric"] if meta.get("higher_is_better", True) else -meta["metric"]
        if best_score is None or score > best_score:
            best, best_score = path, score
    return best


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    state: Any,
    *,
    metadata: dict[str, Any] | None = None,
    metric: float | None = None,
    higher_is_better: bool = True,
    keep: int = 3,
) -> Path:
    """Write `state` (a pytree of arrays) and `metadata` (JSON-able) as checkpoint `step`.

    Keeps the `keep` most recent checkpoints plus the one with the best `metric`; older
    ones are deleted only after the new one is in place. Returns the checkpoint's folder.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(TEMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)

    meta = dict(metadata or {})
    meta.update(step=int(step), metric=None if metric is None else float(metric),
                higher_is_better=bool(higher_is_better))
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=directory))
    _write_file(temp / STATE_FILE, serialization.to_bytes(state))
    _write_file(temp / META_FILE, json.dumps(meta, indent=1, sort_keys=True).encode("utf-8"))
    _fsync_dir(temp)

    final = checkpoint_path(directory, step)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(temp, final)
    _fsync_dir(directory)

    existing = list_checkpoints(directory)
    keep_paths = set(existing[-keep:])
    best = best_checkpoint(directory)
    if best is not None:
        keep_paths.add(best)
    for path in existing:
        if path not in keep_paths:
            shutil.rmtree(path, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Read checkpoint folder `path` into the structure of `template`; returns (state, metadata).

    Raises ValueError naming the file when it is missing, corrupt or does not match the
    template's structure and shapes.
    """
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"checkpoint {path}: missing {STATE_FILE}")
    meta = read_metadata(path)
    try:
        restored = serialization.msgpack_restore(state_file.read_bytes())
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"checkpoint {state_file}: not a valid msgpack state ({error})") from None
    try:
        state = serialization.from_state_dict(template, restored)
    except Exception as error:
        raise ValueError(f"checkpoint {state_file}: does not match the expected structure ({error})") from None
    _check_shapes(template, state, state_file)
    return state, meta


def _check_shapes(template: Any, state: Any, state_file: Path) -> None:
    import jax
    import numpy as np

    expected = jax.tree_util.tree_leaves_with_path(template)
    actual = jax.tree_util.tree_leaves(state)
    for (key_path, want), got in zip(expected, actual):
        want_shape, got_shape = np.shape(want), np.shape(got)
        if want_shape != got_shape:
            name = jax.tree_util.keystr(key_path)
            raise ValueError(
                f"checkpoint {state_file}: {name} has shape {got_shape}, expected {want_shape}"
            )
