"""The one training loop: both trainers (the captioner and the sentence classifiers) run it.

The loop owns what every training run shares: epochs and steps, resuming in the middle of
an epoch, stopping on SIGTERM / Ctrl-C, checkpoints (after every epoch, every
`checkpoint_every` steps, only from process 0; when it cannot write one, every process
stops with a `CheckpointWriteError`), NaN / inf losses, the best epoch by the
validation metric and early stopping, the progress bar, the step and epoch lines, and
steps per second. A trainer is a `TrainingTask`, what differs:

    task.kind                        "captioner" or "classifier" (jaxseq.train.run_metadata)
    task.initial_state()             the TrainState to start from, on the device(s)
    task.extra_state                 arrays saved beside the state (the classifier's shuffling key)
    task.run_settings()              what a resumed run must share with the one it continues
    task.epoch_step(epoch)           step(state, batch) -> (state, loss), one compiled call
    task.evaluate(state, epoch, losses, seconds) -> EpochResult (metric, record, line)
    task.checkpoint_metadata(progress)  the task's entries of a checkpoint's meta.json
    task.place(state)                a restored state onto the device(s)
    task.check_resumable(meta, path) ValueError unless a checkpoint's metadata can be resumed
    task.restored(meta, path, extra) -> RunProgress of a checkpoint (its fields checked; the
                                     loop reads best_params from its best_path)
    task.learning_rate(step)         the rate of update `step` (1-based), for the run log
    task.interim_record(state)       optional: validation numbers in the middle of an epoch
                                     ({"val_loss": ...}), logged every `eval_every` steps

Adding a model to a trainer does not touch this file; neither does adding a trainer.

The run log (`jaxseq.train.run_log`): with a log folder (`log_dir`, by default
`<checkpoint_dir>/logs`), process 0 writes TensorBoard event files and metrics.jsonl: the
train loss every `log_every` steps and at each epoch's end, the learning rate, steps per
second, and the numbers of every epoch's record (val/loss, val/mcc, ...). It is flushed
before every checkpoint, and a resumed run keeps only its entries up to the resumed step.

Resuming: `resume` continues from the folder's latest checkpoint after checking it is of
the same kind and the same run (`check_same_run`: every setting in `task.run_settings()`,
nested dicts key by key), so the run ends bit-identical to one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Protocol

import jax

from jaxseq.checks import check_positive_int
from jaxseq.progress import progress_bar
from jaxseq.train.checkpoint import checkpoint_path, load_checkpoint, read_metadata, save_checkpoint
from jaxseq.train.interrupt import TrainingInterrupted, stop_on_signals
from jaxseq.train.parallel import any_process
from jaxseq.train.run_folder import RunFolder, open_run_folder
from jaxseq.train.run_log import DEFAULT_LOG_EVERY, RunLog, epoch_scalars, resolve_log_dir
from jaxseq.train.run_metadata import check_state_step
from jaxseq.train.steps import NonFiniteLossError, TrainState, checkpoint_tree, losses_to_host

POSTFIX_EVERY = 50  # steps between the progress bar's loss updates (each one waits for the device)


class EpochResult(NamedTuple):
    """What a task's evaluation after an epoch gives the loop: metric, the validation score
    that selects the best epoch (None: no validation data); record, the epoch's entries for
    the history; line(improved), the epoch's log line (None: no line)."""

    metric: float | None
    record: dict[str, Any]
    line: Callable[[bool], str | None]


@dataclass
class RunProgress:
    """What a run carries from epoch to epoch and across a restart.

    epochs_done; epoch_losses: the step losses of the epoch in progress (empty at an
    epoch's end); history: the records of the finished epochs; best_epoch (0: none yet),
    best_metric, best_path (its checkpoint, if any) and best_params (on the host).
    """

    epochs_done: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float | None = None
    best_path: Path | None = None
    best_params: Any = None


def progress_metadata(progress: RunProgress, steps_per_epoch: int, best_key: str) -> dict[str, Any]:
    """A task's checkpoint entries for resuming a run that picks its best epoch by validation:
    the last epoch's record (at an epoch's end), the epochs done, the losses of the epoch in
    progress, the history, the best epoch, its metric (under `best_key`, e.g.
    "best_val_mcc") and step, and the steps per epoch."""
    at_epoch_end = bool(progress.history) and not progress.epoch_losses
    return {**(progress.history[-1] if at_epoch_end else {}),
            "epoch": progress.epochs_done, "epoch_losses": list(progress.epoch_losses),
            "history": progress.history, "best_epoch": progress.best_epoch,
            best_key: progress.best_metric if progress.best_epoch > 0 else None,
            "best_step": progress.best_epoch * steps_per_epoch, "steps_per_epoch": steps_per_epoch}


def progress_from_metadata(meta: dict[str, Any], path: Path, best_key: str) -> RunProgress:
    """The RunProgress that `progress_metadata` recorded in checkpoint `path` (its fields
    checked by the caller); the best epoch's parameters are read by the loop."""
    progress = RunProgress(epochs_done=int(meta["epoch"]), history=list(meta["history"]),
                           best_epoch=int(meta["best_epoch"]), epoch_losses=list(meta.get("epoch_losses", [])))
    if progress.best_epoch > 0:  # else: stopped inside the first epoch, nothing scored yet
        progress.best_metric = float(meta[best_key])
        progress.best_path = checkpoint_path(path.parent, int(meta["best_step"]))
    return progress


class TrainingTask(Protocol):
    """What a trainer gives the loop (see the module docstring)."""

    kind: str
    extra_state: dict[str, Any]

    def initial_state(self) -> TrainState: ...
    def run_settings(self) -> dict[str, Any]: ...
    def epoch_step(self, epoch: int) -> Callable[[TrainState, int], tuple[TrainState, jax.Array]]: ...
    def evaluate(self, state: TrainState, epoch: int, losses: list[float], seconds: float) -> EpochResult: ...
    def checkpoint_metadata(self, progress: RunProgress) -> dict[str, Any]: ...
    def place(self, state: TrainState) -> TrainState: ...
    def check_resumable(self, meta: dict[str, Any], path: Path) -> None: ...
    def restored(self, meta: dict[str, Any], path: Path, extra: dict[str, Any]) -> RunProgress: ...
    def learning_rate(self, step: int) -> float | None: ...


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs a task.

    num_epochs, steps_per_epoch; checkpoint_dir (None: no checkpoints, no signal handling);
    resume / overwrite: what to do with checkpoints already in the folder (neither: an
    error; see `jaxseq.train.run_folder`); checkpoint_every: also save every this many
    steps inside an epoch; keep: the most recent checkpoints kept (plus the best);
    higher_is_better: the metric's direction; patience: stop after this many epochs
    without a better metric (None: never); print_every: steps between loss lines (0: none);
    progress: show the bar; description: its label; metric_name: the metric in the
    early-stop line; log: where lines go (None: nowhere);
    prepare_folder(folder, resume_from): the task's own files in the folder, called under
    the folder's lock before anything is restored (e.g. the classifier's vocab.json);
    log_dir: the run log's folder (None: `<checkpoint_dir>/logs`, or no log without a
    checkpoint folder); log_every: steps between the log's train-loss points; eval_every:
    also log the task's `interim_record` every this many steps inside an epoch (long epochs;
    None: at epoch ends only; the epoch's own evaluation still picks the best epoch).
    """

    num_epochs: int
    steps_per_epoch: int
    checkpoint_dir: Path | None = None
    resume: bool = False
    overwrite: bool = False
    checkpoint_every: int | None = None
    keep: int = 3
    higher_is_better: bool = True
    patience: int | None = None
    print_every: int = 0
    progress: bool = True
    description: str = "train"
    metric_name: str = "validation score"
    log: Callable[[str], None] | None = print
    prepare_folder: Callable[[Path, Path | None], None] | None = None
    log_dir: str | os.PathLike | None = None
    log_every: int = DEFAULT_LOG_EVERY
    eval_every: int | None = None


class CheckpointWriteError(OSError):
    """Process 0 could not write a checkpoint: every process of the run stops, and the message
    says why and which checkpoint is the last one written."""


class LoopResult(NamedTuple):
    """state: the final TrainState; progress: the RunProgress at the end; steps_per_second:
    compilation excluded (None when too few steps ran to time)."""

    state: TrainState
    progress: RunProgress
    steps_per_second: float | None


def check_same_run(path: Path, meta: dict[str, Any], settings: dict[str, Any]) -> None:
    """ValueError naming every setting (and, inside a dict setting, every key) whose value in
    checkpoint `path`'s metadata differs from this run's `settings`."""
    differ = []
    for key, wanted in settings.items():
        saved = meta.get(key)
        if saved == wanted:
            continue
        differ.append(key)
        if isinstance(wanted, dict) and isinstance(saved, dict):
            differ += [f"{key}.{inner}" for inner in sorted(set(wanted) | set(saved))
                       if saved.get(inner) != wanted.get(inner)]
    if differ:
        raise ValueError(f"checkpoint {path} is from a different run ({', '.join(differ)} differ); resume with "
                         "the same model, settings and data, or start afresh in a new folder")


def better(metric: float | None, best: float | None, higher_is_better: bool) -> bool:
    """Whether `metric` beats `best` (None: nothing yet); a NaN metric never does."""
    if metric is None or math.isnan(metric):
        return False
    if best is None:
        return True
    return metric > best if higher_is_better else metric < best


class TrainingLoop:
    """Runs `task` under `settings`: `TrainingLoop(task, settings).run() -> LoopResult`."""

    def __init__(self, task: TrainingTask, settings: LoopSettings):
        self.task, self.settings = task, settings
        self.writes = settings.checkpoint_dir is not None
        self.state: TrainState  # set by run(), before anything reads it
        self.progress = RunProgress()
        self.last_good: Path | None = None  # the newest checkpoint written or resumed from
        self.timed_steps, self.timed_seconds, self.compiled = 0, 0.0, False
        self.run_log = RunLog(None)
        self.rate_mark: tuple[int, float] | None = None  # (step, time) the next steps/s counts from

    # --- the run -------------------------------------------------------------------------

    def run(self) -> LoopResult:
        """Open the folder (locked), resume or start, run the epochs left; see the module doc."""
        s = self.settings
        check_positive_int("log_every", s.log_every)
        check_positive_int("eval_every", s.eval_every, allow_none=True)
        if s.eval_every is not None and not hasattr(self.task, "interim_record"):
            raise ValueError(f"eval_every: a {self.task.kind} run has no evaluation inside an epoch")
        log_dir = resolve_log_dir(s.log_dir, s.checkpoint_dir)  # an option error before the folder is touched
        with self._open_folder() as folder:
            if s.prepare_folder is not None and folder is not None:
                s.prepare_folder(folder.path, folder.resume_from)
            self.state = self.task.initial_state()
            if folder is not None and folder.resume_from is not None:
                self._restore(folder.resume_from)
            total, step = s.num_epochs * s.steps_per_epoch, int(self.state.step)
            writer = log_dir if jax.process_index() == 0 else None
            with progress_bar(total, initial=step, description=s.description, enabled=s.progress) as bar, \
                    stop_on_signals(enabled=self.writes) as stop, \
                    RunLog(writer, resume_step=step, log=self._notice) as self.run_log:
                self.bar, self.stop = bar, stop
                if self.last_good is not None:
                    self._say(self._resume_line(step))
                for epoch in range(self._first_epoch(), s.num_epochs + 1):
                    if self._epoch(epoch):
                        break
        rate = self.timed_steps / self.timed_seconds if self.timed_steps and self.timed_seconds > 0 else None
        return LoopResult(self.state, self.progress, rate)

    @contextlib.contextmanager
    def _open_folder(self) -> Iterator[RunFolder | None]:
        """The checkpoint folder, opened (locked by process 0) in every process or in none: a
        refusal in one process (the lock, a folder of another run) stops all of them."""
        s = self.settings
        if s.checkpoint_dir is None:  # not self.writes
            yield None
            return
        stack, failed = contextlib.ExitStack(), None
        try:
            folder = stack.enter_context(open_run_folder(s.checkpoint_dir, overwrite=s.overwrite, resume=s.resume,
                                                         lock=jax.process_index() == 0))
        except ValueError as error:
            failed = error
        if any_process(failed is not None) and failed is None:
            stack.close()
            raise ValueError(f"checkpoint folder {s.checkpoint_dir}: another process of this run could not open it "
                             "(its error says why); stopped")
        if failed is not None:
            raise failed
        with stack:
            yield folder

    def _first_epoch(self) -> int:
        """The epoch to run next; past the end if the run being resumed had stopped early."""
        p, patience = self.progress, self.settings.patience
        if patience is not None and p.epochs_done - p.best_epoch >= patience:
            return self.settings.num_epochs + 1
        return p.epochs_done + 1

    def _resume_line(self, step: int) -> str:
        p = self.progress
        partial = f" and {len(p.epoch_losses)} steps" if p.epoch_losses else ""
        best = f", best: epoch {p.best_epoch}" if p.best_metric is not None else ""
        return (f"resuming from {self.last_good} (epoch {p.epochs_done}{partial} of {self.settings.num_epochs}, "
                f"step {step}{best})")

    def _epoch(self, epoch: int) -> bool:
        """Run epoch `epoch` (the rest of it, when resuming in its middle), evaluate and save it.
        Returns True when training stops early."""
        s, p = self.settings, self.progress
        step_fn = self.task.epoch_step(epoch)
        epoch_start = timing_start = time.perf_counter()  # the timing leaves out the first step (it compiles)
        step = int(self.state.step)
        self.rate_mark = (step, epoch_start)
        pending: list[jax.Array] = []
        for batch in range(step - (epoch - 1) * s.steps_per_epoch, s.steps_per_epoch):
            self.state, loss = step_fn(self.state, batch)
            pending.append(loss)
            step += 1
            self.bar.update(1)
            timing_start = self._time_step(loss, timing_start)
            stopping = self.stop.poll(step) if self.writes else None  # the same answer in every process
            mid_epoch = batch < s.steps_per_epoch - 1  # the epoch's end flushes and saves anyway
            due = s.checkpoint_every is not None and step % s.checkpoint_every == 0
            save_now = self.writes and mid_epoch and bool(stopping or due)
            report = s.print_every > 0 and step % s.print_every == 0
            if report or save_now or len(pending) == POSTFIX_EVERY:
                self._flush(pending, epoch)
                pending = []
                self.bar.set_postfix(epoch=epoch, loss=f"{p.epoch_losses[-1]:.4f}")
                if report:
                    self._say(f"(Iteration {step} / {s.num_epochs * s.steps_per_epoch}) "
                              f"loss: {p.epoch_losses[-1]:f}")
            if s.eval_every is not None and mid_epoch and step % s.eval_every == 0:
                interim_record = getattr(self.task, "interim_record")  # run() checked that the task has it
                self.run_log.scalars(step, epoch, epoch_scalars(interim_record(self.state)))
            if save_now:
                written = self._save(None)
                if stopping:
                    raise TrainingInterrupted(stopping, step, written)
        self._flush(pending, epoch)
        self._account_time(timing_start)
        return self._end_epoch(epoch, time.perf_counter() - epoch_start)  # compilation included

    def _end_epoch(self, epoch: int, seconds: float) -> bool:
        """Evaluate epoch `epoch`, track the best, save, log; True when training stops early."""
        s, p = self.settings, self.progress
        result = self.task.evaluate(self.state, epoch, p.epoch_losses, seconds)
        improved = better(result.metric, p.best_metric, s.higher_is_better)
        step = int(self.state.step)
        self.run_log.scalars(step, epoch, epoch_scalars(result.record))
        p.history.append(result.record)
        p.epochs_done, p.epoch_losses = epoch, []
        if improved:
            p.best_epoch, p.best_metric = epoch, result.metric
            p.best_params = jax.device_get(self.state.params)
            p.best_path = checkpoint_path(s.checkpoint_dir, step) if s.checkpoint_dir is not None else None
        written = self._save(result.metric) if self.writes else None
        line = result.line(improved)
        if line is not None:
            self._say(line)
        stopping = self.stop.poll(step, force=True) if self.writes else None  # during evaluation or save
        if stopping:
            raise TrainingInterrupted(stopping, step, written)
        if s.patience is not None and epoch - p.best_epoch >= s.patience:
            self._say(f"early stop: no better {s.metric_name} for {s.patience} epochs (best: epoch {p.best_epoch})")
            return True
        return False

    # --- steps, losses, time ------------------------------------------------------------

    def _time_step(self, loss: jax.Array, start: float) -> float:
        """Keep the first step (it compiles) out of the timing: returns the timing's start."""
        if self.compiled:
            self.timed_steps += 1
            return start
        jax.block_until_ready(loss)
        self.compiled = True
        now = time.perf_counter()
        self.rate_mark = (int(self.state.step), now)
        return now

    def _account_time(self, start: float) -> None:
        self.timed_seconds += time.perf_counter() - start  # the epoch's last flush synchronized

    def _flush(self, pending: list[jax.Array], epoch: int) -> None:
        """The pending step losses to the host (one transfer), onto `progress.epoch_losses`;
        NonFiniteLossError naming the step, the epoch and what was kept on NaN / inf."""
        first = int(self.state.step) - len(pending) + 1
        try:
            self.progress.epoch_losses.extend(losses_to_host(pending, first))
            if pending:
                self._log_steps(first, int(self.state.step), epoch)
        except NonFiniteLossError as error:
            p = self.progress
            best = f" (best parameters: epoch {p.best_epoch}, {p.best_path})" if p.best_path else ""
            raise NonFiniteLossError(f"{error} (epoch {epoch}); stopped ({self._kept()}{best}); try a lower learning "
                                     "rate or gradient clipping (clip_norm)") from None

    def _log_steps(self, first: int, last: int, epoch: int) -> None:
        """The run log's points among steps `first`..`last` of `epoch` (their losses just came to
        the host): every `log_every`-th step and the epoch's last; the loss is the mean since
        the previous point, so a resumed run logs the same numbers."""
        s, losses = self.settings, self.progress.epoch_losses
        before = (epoch - 1) * s.steps_per_epoch  # steps done before this epoch
        now, rate = time.perf_counter(), None
        if self.compiled and self.rate_mark is not None and last > self.rate_mark[0] and now > self.rate_mark[1]:
            rate = (last - self.rate_mark[0]) / (now - self.rate_mark[1])
        self.rate_mark = (last, now)
        for step in range(first, last + 1):
            if step % s.log_every and step != epoch * s.steps_per_epoch:
                continue
            since = max(before, (step - 1) // s.log_every * s.log_every)
            window = losses[since - before:step - before]
            self.run_log.scalars(step, epoch, {"train/loss": sum(window) / len(window),
                                               "train/learning_rate": self.task.learning_rate(step),
                                               "train/steps_per_second": rate})

    def _say(self, line: str) -> None:
        if self.settings.log is not None:
            with self.bar.external_write_mode():
                self.settings.log(line)

    def _notice(self, line: str) -> None:
        """A line that must be seen even when the task logs nothing (the run log failing)."""
        with self.bar.external_write_mode():
            print(line, file=sys.stderr)

    # --- checkpoints --------------------------------------------------------------------

    def _kept(self) -> str:
        """What a run that stops on an error leaves to continue from, for its message."""
        return f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written"

    def _tree(self, state: Any) -> Any:
        """What a checkpoint holds: the TrainState, with the task's extra state beside it."""
        return checkpoint_tree(state, self.task.extra_state)

    def _load(self, path: Path) -> tuple[TrainState, dict[str, Any], dict[str, Any]]:
        """(state, extra state, metadata) of checkpoint `path`, read against the whole of this
        run's state (never a part of it: the file's size is bounded by what it must hold)."""
        tree, meta = load_checkpoint(path, self._tree(self.state))
        extra = {key: tree.pop(key) for key in self.task.extra_state} if self.task.extra_state else {}
        return (TrainState(**tree) if isinstance(tree, dict) else tree), extra, meta

    def _save(self, metric: float | None) -> Path:
        """Checkpoint the state now (metric None: in the middle of an epoch). Process 0 writes;
        every process returns the folder."""
        s, step = self.settings, int(self.state.step)
        if s.checkpoint_dir is None:
            raise RuntimeError("a run without a checkpoint folder saves nothing")
        path = checkpoint_path(s.checkpoint_dir, step)
        self.run_log.flush()  # the log on disk covers every step the checkpoint holds
        failed = None
        if jax.process_index() == 0:
            metadata = {**self.task.checkpoint_metadata(self.progress), **self.task.run_settings()}
            try:
                path = save_checkpoint(s.checkpoint_dir, step, self._tree(self.state), metadata=metadata,
                                       metric=metric, higher_is_better=s.higher_is_better, keep=s.keep)
            except OSError as error:  # a full disk, a folder gone read-only
                failed = error
        if any_process(failed is not None):  # the other processes must not wait for process 0 in a collective
            reason = failed if failed is not None else "process 0 could not write it (its error says why)"
            raise CheckpointWriteError(f"could not write checkpoint {path}: {reason}; training stopped after step "
                                       f"{step}, {self._kept()}") from failed
        self.last_good = path
        self.rate_mark = (step, time.perf_counter())  # saving is not training time
        return path

    def _restore(self, path: Path) -> None:
        """Continue from checkpoint `path` after checking it belongs to this run."""
        meta = read_metadata(path)
        self.task.check_resumable(meta, path)
        check_same_run(path, meta, self.task.run_settings())
        state, extra, meta = self._load(path)
        check_state_step(state.step, meta, path)
        progress = self.task.restored(meta, path, extra)
        if progress.best_path is not None and progress.best_params is None:  # the best epoch's parameters
            progress.best_params = (state if progress.best_path == path else self._load(progress.best_path)[0]).params
        self.progress = progress
        self.state = self.task.place(state)
        self.last_good = path
