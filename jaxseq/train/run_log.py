"""A training run's numbers, for people watching it: TensorBoard event files and metrics.jsonl.

The loop (`jaxseq.train.loop`) writes, in the run's log folder (`log_dir`, by default
`<checkpoint_dir>/logs`; neither: nothing is written), only from JAX process 0:

    metrics.jsonl                       one JSON object a line, one scalar each (a tidy table)
    events.out.tfevents.<time>.<host>.<ns>   the same scalars for TensorBoard (`event_file`)

Each line of metrics.jsonl is

    {"step": 150, "epoch": 3, "name": "train/loss", "value": 0.4123, "wall_time": 1717171717.5}

step: optimizer updates done (1-based: the update that brought the state to this step);
epoch: the epoch the step belongs to (1-based); name: the series (TensorBoard's tag);
value: a float (null where it is not finite); wall_time: seconds since the epoch.
`pandas.read_json(path, lines=True)` reads it as a long table; `.pivot_table(index="step",
columns="name", values="value")` makes it wide. The series:

    train/loss             mean training loss of the steps since the previous point, every
                           `log_every` steps and at each epoch's last step
    train/learning_rate    the rate of that step's update (`task.learning_rate(step)`)
    train/steps_per_second since the previous flush of losses from the device, compilation
                           excluded (timing: differs between runs)
    val/<metric>           per epoch, at its last step: each `val_<metric>` of the task's
                           epoch record (val/loss; the classifier's val/accuracy, val/mcc)
    epoch/<field>          the record's other numbers (epoch/train_loss; the classifier's
                           epoch/learning_rate, epoch/seconds, epoch/eval_seconds)

Resuming from a checkpoint at step S keeps the lines with step <= S (metrics.jsonl is
rewritten atomically: temp file + rename) and starts a new event file whose first events
purge every older event with step > S (a SessionLog START at step S + 1, what tensorboardX's
`purge_step` writes: TensorBoard hides them),
so a resumed run's log equals an uninterrupted run's. A fresh run (S = 0) starts both anew.
The log is flushed before every checkpoint is written, so a checkpoint never runs ahead of
its log.

Writing never stops training: the folder is checked with the other options before
training (`resolve_log_dir`: an unwritable one is a ValueError); a write that fails later
(a full disk) gives one line on the log and the run goes on without a log.

Event files are written synchronously by `jaxseq.train.event_file` (no background thread or
queue that a failed write could leave blocked; no TensorBoard or tensorboardX needed); `read_metrics` reads a
metrics.jsonl back within bounds, with one-line errors naming the file and the line.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping, NamedTuple

from jaxseq.data.json_file import parse_json_bytes
from jaxseq.limits import MAX_COUNT
from jaxseq.train.event_file import FILE_VERSION, EventFileWriter, encode_event
from jaxseq.train.run_folder import check_run_dir

METRICS_FILE = "metrics.jsonl"
LOG_SUBDIR = "logs"  # the default log folder inside a checkpoint folder
EVENT_PREFIX = "events"  # TensorBoard reads files named events.out.tfevents.*
DEFAULT_LOG_EVERY = 50  # steps between train/loss points (the loop's flush of losses every 50 steps)
MAX_LINE_BYTES = 64 * 1024  # a line is ~100 bytes; a longer one is not ours, and is not parsed
MAX_METRICS_BYTES = 512 * 2**20  # a million-step run logged every step is ~300 MB


def resolve_log_dir(log_dir: str | os.PathLike | None, checkpoint_dir: str | os.PathLike | None) -> Path | None:
    """The run's log folder: `log_dir`, else `<checkpoint_dir>/logs`, else None (no log).

    Checked as a run folder is (`check_run_dir`), creating nothing: ValueError (one line,
    naming the path) if it is a file, lies under one, or cannot be written or created. The
    default one is blamed on the checkpoint folder when that is what is wrong.
    """
    if log_dir is None:
        if checkpoint_dir is None:
            return None
        path = check_run_dir(checkpoint_dir) / LOG_SUBDIR
    else:
        path = Path(log_dir)
    return check_run_dir(path, label="log folder")


class MetricPoint(NamedTuple):
    """One line of metrics.jsonl (see the module docstring)."""

    step: int
    epoch: int
    name: str
    value: float | None
    wall_time: float | None = None


def _value(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a task's epoch record by their series name: `val_x` -> val/x, the rest
    -> epoch/<key>; "epoch", None, booleans and non-numbers are left out."""
    scalars = {}
    for key, value in record.items():
        if key == "epoch" or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = f"val/{key[len('val_'):]}" if key.startswith("val_") else f"epoch/{key}"
        scalars[name] = float(value)
    return scalars


class RunLog:
    """Writes a run's scalars to `directory`/metrics.jsonl and a TensorBoard event file.

    `RunLog(directory, resume_step=S, log=print)`: keeps the log's lines with step <= S (see
    the module docstring); `directory` None: a log that writes nothing (no folder, or a
    process other than 0). `scalars(step, epoch, {name: value})` adds points, `flush()`
    puts them on disk, `close()` ends the log. A failing write says so once on `log` and
    turns the log off; no method raises.
    """

    def __init__(self, directory: str | os.PathLike | None, *, resume_step: int = 0,
                 log: Callable[[str], None] | None = print):
        self.directory = Path(directory) if directory is not None else None
        self._log = log
        self._jsonl: IO[str] | None = None
        self._events: EventFileWriter | None = None
        if self.directory is None:
            return
        folder = self.directory
        self._guarded("open", lambda: self._open(folder, int(resume_step)))

    @property
    def enabled(self) -> bool:
        return self._jsonl is not None

    @property
    def metrics_file(self) -> Path | None:
        return self.directory / METRICS_FILE if self.directory is not None else None

    def _open(self, folder: Path, resume_step: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        keep_until(folder / METRICS_FILE, resume_step)
        self._jsonl = open(folder / METRICS_FILE, "a", encoding="utf-8")
        # TensorBoard's name (seconds and host), then time_ns: a resumed run's file sorts after
        # the one it continues, even within the same second.
        name = (f"{EVENT_PREFIX}.out.tfevents.{int(time.time())}.{socket.gethostname()}.{time.time_ns()}."
                f"{secrets.token_hex(2)}")
        self._events = EventFileWriter(str(folder / name))
        # What SummaryWriter(purge_step=S + 1) writes: TensorBoard drops older events at steps > S.
        purge = resume_step + 1
        self._events.write(encode_event(wall_time=time.time(), step=purge, file_version=FILE_VERSION))
        self._events.write(encode_event(wall_time=time.time(), step=purge, session_start=True))
        self._events.flush()

    def scalars(self, step: int, epoch: int, values: Mapping[str, float | None]) -> None:
        """Add one point per entry of `values` at `step` of `epoch` (None: left out)."""
        if not self.enabled:
            return
        points = [MetricPoint(int(step), int(epoch), name, _value(value), time.time())
                  for name, value in values.items() if value is not None]
        self._guarded("write", lambda: self._write(points))

    def _write(self, points: Iterable[MetricPoint]) -> None:
        if self._jsonl is None or self._events is None:
            return
        for point in points:
            self._jsonl.write(json.dumps(point._asdict(), allow_nan=False) + "\n")
            if point.value is not None:
                self._events.write(encode_event(wall_time=point.wall_time or time.time(), step=point.step,
                                                scalars=[(point.name, point.value)]))

    def flush(self) -> None:
        """Put everything added so far on disk (the loop calls it before every checkpoint)."""
        if self.enabled:
            self._guarded("flush", self._flush)

    def _flush(self) -> None:
        if self._jsonl is None or self._events is None:
            return
        self._jsonl.flush()
        os.fsync(self._jsonl.fileno())
        self._events.flush()

    def close(self) -> None:
        if self.enabled:
            self._guarded("close", self._flush)
        self._shut()

    def _shut(self) -> None:
        for handle in (self._jsonl, self._events):
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # noqa: BLE001 - closing after a failed write may fail again
                    pass
        self._jsonl = self._events = None

    def _guarded(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as error:  # noqa: BLE001 - a log must never stop training
            self._shut()
            if self._log is not None:
                self._log(f"run log {self.directory}: {what} failed ({type(error).__name__}: {error}); "
                          "training goes on without TensorBoard / metrics.jsonl")

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def keep_until(path: Path, step: int) -> None:
    """Rewrite metrics.jsonl `path` atomically with only its lines of step <= `step` (no file,
    or nothing kept: an empty file). Lines that cannot be read (a line cut short by a
    kill, anything not a point) are dropped."""
    kept: list[bytes] = []
    if step > 0 and path.is_file():
        with open(path, "rb") as handle:
            for number, line in enumerate(_lines(handle), 1):
                try:
                    point = _point(line, f"{path}, line {number}")
                except ValueError:
                    continue
                if point.step <= step:
                    kept.append(line if line.endswith(b"\n") else line + b"\n")
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.writelines(kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def _lines(handle) -> Iterable[bytes]:
    """The file's lines, each cut at MAX_LINE_BYTES + 1 bytes (the rest of a long line is skipped)."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # skip to the end of the over-long line
                rest = handle.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line


def _point(line: bytes, name: str) -> MetricPoint:
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"{name}: longer than {MAX_LINE_BYTES} bytes; a metrics.jsonl line is one small "
                         "JSON object")
    entry = parse_json_bytes(line, name, max_depth=2, expect=dict)
    step, epoch, series, value = (entry.get(key) for key in ("step", "epoch", "name", "value"))
    for key, number in (("step", step), ("epoch", epoch)):  # counts, int32 on the device
        if not (isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= MAX_COUNT):
            raise ValueError(f"{name}: \"{key}\" must be an integer in [0, {MAX_COUNT}], got {number!r}"[:300])
    if not (isinstance(series, str) and 0 < len(series) <= 200):
        raise ValueError(f"{name}: \"name\" must be a series name (a string), got {series!r}"[:300])
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{name}: \"value\" must be a number or null, got {value!r}"[:300])
    wall_time = entry.get("wall_time")
    wall_time = float(wall_time) if isinstance(wall_time, (int, float)) and not isinstance(wall_time, bool) else None
    return MetricPoint(step, epoch, series, None if value is None else float(value), wall_time)


def find_metrics_file(run_dir: str | os.PathLike) -> Path:
    """metrics.jsonl of a run: `run_dir` itself if it is the file, else in `run_dir` (a log
    folder), else in `run_dir`/logs (a checkpoint folder); FileNotFoundError naming the
    places looked at."""
    path = Path(run_dir)
    candidates = [path] if path.is_file() else [path / METRICS_FILE, path / LOG_SUBDIR / METRICS_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {METRICS_FILE} in {path} (looked for {' and '.join(map(str, candidates))}); "
                            "give a run's --log-dir or --checkpoint-dir")


def read_metrics(path: str | os.PathLike, *, max_bytes: int = MAX_METRICS_BYTES) -> list[MetricPoint]:
    """The points of metrics.jsonl `path`, in file order. ValueError (one line, naming the file
    and the line) for a line that is not a point, a file larger than `max_bytes` or an empty
    one; FileNotFoundError if there is no such file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(f"{path}: {size} bytes, more than the {max_bytes} bytes allowed for a metrics file")
        points = []
        with open(path, "rb") as handle:
            for number, line in enumerate(_lines(handle), 1):
                if line.strip():
                    points.append(_point(line, f"{path}, line {number}"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: a directory, not a metrics.jsonl file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not points:
        raise ValueError(f"{path}: holds no points yet (the run has not logged a step)")
    return points
