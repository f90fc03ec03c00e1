"""Atomic checkpoints: flax.serialization msgpack for arrays, JSON for metadata — never pickle.

Layout: `<directory>/ckpt-<step:08d>/` holding `state.msgpack` (any pytree: params,
optimizer state, RNG key, ...) and `meta.json` (step, metric, config, vocabulary, ...).
A checkpoint is written into a temporary folder in the same directory, flushed to disk and
then renamed into place, so a crash at any moment leaves either the previous complete set or
the new complete checkpoint — a half-written one is never picked up (temporary folders are
ignored and cleaned up by the next save).

Loading parses msgpack into arrays against a template pytree; it never executes code from
the file. Nothing in a checkpoint is trusted: `meta.json` is read with the bounds of
`jaxseq.data.json_file` (size, nesting, numbers) and its common fields (step, metric,
higher_is_better) are type-checked; `state.msgpack` may be at most about twice the size of
the template's arrays, and the state must match the template entry by entry in structure,
shape and dtype, with finite floating-point values (`jaxseq.train.state_check`). Every
refusal is a one-line ValueError naming the file and the entry.

A run folder whose preferred checkpoint cannot be read is not blocked by it:
`load_run_checkpoint` falls back to the next usable one and says which it skipped and why.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

from flax import serialization

from jaxseq.data.json_fields import boolean, check_fields, fields, integer, nullable, number
from jaxseq.data.json_file import read_json_file
from jaxseq.limits import MAX_COUNT
from jaxseq.train.run_folder import check_run_dir, notice_on_stderr
from jaxseq.train.state_check import check_state, state_nbytes

PREFIX = "ckpt-"
TEMP_PREFIX = ".tmp-ckpt-"
STATE_FILE = "state.msgpack"
META_FILE = "meta.json"
MAX_META_BYTES = 64 * 2**20  # meta.json: a captioner's loss history of ~2.5 million steps fits
STATE_OVERHEAD_BYTES = 2**20  # state.msgpack beyond twice its arrays' bytes: not a checkpoint of them

# The entries `save_checkpoint` adds to every checkpoint's metadata.
COMMON_FIELDS = fields(required={"step": integer(0, MAX_COUNT)},
                       optional={"metric": nullable(number(finite=False)), "higher_is_better": boolean()})

Loaded = TypeVar("Loaded")


class RunKindError(ValueError):
    """A folder holds a run of another kind (a captioner's where a classifier was asked
    for, or the reverse): none of its checkpoints can serve, so there is no falling back."""


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
    """The metadata dict of one checkpoint folder, its common fields checked; ValueError
    (one line, naming the file) if it is missing, corrupt, too large or too deep."""
    meta_file = Path(path) / META_FILE
    try:
        meta = read_json_file(meta_file, label="checkpoint", max_bytes=MAX_META_BYTES)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path}: missing {META_FILE}") from None
    check_fields(meta, COMMON_FIELDS, f"checkpoint {meta_file}")
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


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def _score(meta: dict[str, Any]) -> float | None:
    """The metric as a score where higher is better, or None (no metric, or NaN)."""
    metric = meta.get("metric")
    if metric is None or math.isnan(metric):
        return None
    return metric if meta.get("higher_is_better", True) else -metric


def _read_all(checkpoints: list[Path]) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """(path, metadata) of the checkpoints whose metadata reads, and (path, reason) of the others."""
    readable, unreadable = [], []
    for path in checkpoints:
        try:
            readable.append((path, read_metadata(path)))
        except ValueError as error:
            unreadable.append((path, str(error)))
    return readable, unreadable


def _best(readable: list[tuple[Path, dict]]) -> Path | None:
    best, best_score = None, None
    for path, meta in readable:
        score = _score(meta)
        if score is not None and (best_score is None or score > best_score):
            best, best_score = path, score
    return best


def best_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the best `metric` in its metadata (ties: the earliest);
    checkpoints whose metadata cannot be read are passed over."""
    return _best(_read_all(list_checkpoints(directory))[0])


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

    Keeps the `keep` most recent checkpoints plus the one with the best `metric` (and any
    whose metadata cannot be read: it may be the best); older ones are deleted only after
    the new one is in place. Returns the checkpoint's folder.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    directory = check_run_dir(directory)  # a file, or a path under one: a one-line error
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(TEMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)

    meta = dict(metadata or {})
    meta.update(step=int(step), metric=None if metric is None else float(metric),
                higher_is_better=bool(higher_is_better))
    meta_bytes = json.dumps(meta, indent=1, sort_keys=True).encode("utf-8")
    if len(meta_bytes) > MAX_META_BYTES:  # a checkpoint that could not be read back
        raise ValueError(f"checkpoint {checkpoint_path(directory, step)}: its metadata takes {len(meta_bytes)} "
                         f"bytes, more than the {MAX_META_BYTES} a meta.json may hold; not written (the "
                         "checkpoints before it are kept)")
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=directory))
    try:
        _write_file(temp / STATE_FILE, serialization.to_bytes(state))
        _write_file(temp / META_FILE, meta_bytes)
        _fsync_dir(temp)
    except BaseException:  # a full disk: give the space back now, not at the next save
        shutil.rmtree(temp, ignore_errors=True)
        raise

    final = checkpoint_path(directory, step)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(temp, final)
    _fsync_dir(directory)

    existing = list_checkpoints(directory)
    readable, unreadable = _read_all(existing)
    keep_paths = set(existing[-keep:]) | {path for path, _ in unreadable}  # an unreadable one may be the best
    best = _best(readable)
    if best is not None:
        keep_paths.add(best)
    for path in existing:
        if path not in keep_paths:
            shutil.rmtree(path, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Read checkpoint folder `path` into the structure of `template`; returns (state, metadata).

    `template`: a pytree of arrays or `jax.ShapeDtypeStruct`s, what the model's (and the
    optimizer's) init produces. Raises ValueError naming the file (and the entry) when it is
    missing, corrupt, too large, or does not match the template's structure, shapes and
    dtypes, or holds NaN / infinite floating-point values.
    """
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"checkpoint {path}: missing {STATE_FILE}")
    meta = read_metadata(path)
    limit = 2 * state_nbytes(template) + STATE_OVERHEAD_BYTES
    size = state_file.stat().st_size
    if size > limit:
        raise ValueError(f"checkpoint {state_file}: {size} bytes, more than the {limit} that a state of the "
                         "expected arrays can take")
    try:
        restored = serialization.msgpack_restore(state_file.read_bytes())
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"checkpoint {state_file}: not a valid msgpack state ({error})") from None
    try:
        state = serialization.from_state_dict(template, restored)
    except Exception as error:
        raise ValueError(f"checkpoint {state_file}: does not match the expected structure ({error})") from None
    check_state(state, template, f"checkpoint {state_file}")
    return state, meta


def _preferred_order(readable: list[tuple[Path, dict]]) -> list[Path]:
    """The scored checkpoints best first (ties: the earliest), then the others, newest first."""
    newest_first = [path for path, _ in reversed(readable)]
    scored = sorted(((score, index, path) for index, (path, meta) in enumerate(readable)
                     if (score := _score(meta)) is not None), key=lambda item: (-item[0], item[1]))
    best_first = [path for _, _, path in scored]
    return best_first + [path for path in newest_first if path not in best_first]


def load_run_checkpoint(path: str | os.PathLike, load: Callable[[Path], Loaded], *,
                        log: Callable[[str], None] | None = notice_on_stderr) -> Loaded | None:
    """`load(checkpoint)` of `path`, a checkpoint folder or a run folder holding them.

    A checkpoint folder is loaded as it is. In a run folder the checkpoints are tried in the
    one order inference uses for every trainer: the best by the metric the trainer recorded
    (`metric`, `higher_is_better`), then those without a score, newest first
    (`_preferred_order`), until one loads; each one skipped because its files are unreadable or invalid
    (a ValueError) is reported to `log` in one line: which, why, and which one is used.
    Returns None if the folder holds no checkpoint. If none loads: the ValueError of the
    first one tried (of the newest, if no metadata could be read); a `RunKindError` is
    raised at once.
    """
    path = Path(path)
    if (path / META_FILE).is_file():
        return load(path)
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        return None
    readable, unreadable = _read_all(checkpoints)
    failed = []
    for candidate in _preferred_order(readable):
        try:
            loaded = load(candidate)
        except RunKindError:
            raise
        except ValueError as error:
            failed.append((candidate, str(error)))
            continue
        for passed, reason in unreadable + failed:
            if log is not None:
                log(f"skipped checkpoint {passed.name} ({reason}); using {candidate}")
        return loaded
    reason = (failed or unreadable[::-1])[0][1]
    others = len(checkpoints) - 1
    if others:
        reason += (f" (and the other checkpoint in {path} cannot be used either)" if others == 1 else
                   f" (and none of the other {others} checkpoints in {path} can be used either)")
    raise ValueError(reason)


def load_trained_run(path: str | os.PathLike, load: Callable[[Path], Loaded], writer: str, *,
                     log: Callable[[str], None] | None = notice_on_stderr) -> Loaded:
    """`load_run_checkpoint(path, load, log=log)` for a user's path: FileNotFoundError (one
    line) when `path` does not exist or holds no checkpoint, naming `writer`, the command
    whose run folders it expected (e.g. "`jaxseq lm train`")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found")
    loaded = load_run_checkpoint(path, load, log=log)
    if loaded is None:
        raise FileNotFoundError(f"no checkpoint in {path} (expected ckpt-* folders from {writer})")
    return loaded
