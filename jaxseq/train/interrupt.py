"""Stopping training cleanly on SIGTERM (a cluster preempting the job, `kill`) and SIGINT
(Ctrl-C, a notebook's interrupt button).

    with stop_on_signals() as stop:
        for ...:
            state = step(state)
            stopping = stop.poll(step)    # the signal's name, e.g. "SIGTERM", or None
            if stopping:
                save a checkpoint of `state`
                raise TrainingInterrupted(stopping, step, checkpoint)

Inside the block the signals only set `stop.requested`, so the trainer finishes the step it
is in, checkpoints that exact state (mid-epoch if need be) and stops; `--resume` then
continues as if nothing had happened. In a multi-process run `poll` makes all processes
agree (a scheduler signals each of them at a different step), so they stop after the same
step. A second signal while stopping acts at once, with the handler that was there before:
SIGTERM twice ends the process; Ctrl-C twice raises `StoppedAtOnce`, a KeyboardInterrupt that
says what it means (a checkpoint being written is abandoned — its temporary folder is never
picked up — and those written before stay), which the command line prints as one line.
Handlers can only be set in the main thread, so elsewhere, or with `enabled=False`, the block
changes nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after checkpointing its state.

    signal_name: "SIGTERM" or "SIGINT"; step: optimizer steps taken; checkpoint: the folder
    written (None when there was nowhere to write). exit_code: 128 + the signal's number,
    the shell's convention for a process ended by that signal.
    """

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        self.exit_code = 128 + int(getattr(signal, signal_name))
        where = f"checkpoint {checkpoint} written; continue with --resume" if checkpoint else "nothing saved"
        super().__init__(f"stopped by {signal_name} after step {step}; {where}")


class StoppedAtOnce(KeyboardInterrupt):
    """Ctrl-C a second time while training was stopping: it stopped where it was."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(f"stopped at once by a second {signal_name}; a checkpoint being written was abandoned, "
                         "the checkpoints written before are kept (continue with --resume)")


class StopRequest:
    """`requested`: the name of the first signal this process received inside the block, or
    None. Trainers ask `poll(step)`, which in a multi-process run makes every process agree."""

    def __init__(self, sync_every: int = 10):
        self.requested: str | None = None
        self.sync_every = sync_every

    def poll(self, step: int, force: bool = False) -> str | None:
        """Whether to stop after `step`: the signal's name, or None.

        One process: `requested`, at every step. Several processes (SLURM and the like signal
        them all, but each at a different step): every process must call this at the same
        steps; every `sync_every` steps (or when `force`) they exchange their requests with a
        small all-gather, so that all of them stop after the same step, or none does.
        """
        import jax

        if jax.process_count() == 1:
            return self.requested
        if not force and step % self.sync_every:
            return None
        from jax.experimental import multihost_utils
        import numpy as np

        mine = np.int32(signal.Signals[self.requested].value if self.requested else 0)
        received = np.asarray(multihost_utils.process_allgather(mine))
        received = received[received > 0]
        return signal.Signals(int(received.min())).name if received.size else None


@contextlib.contextmanager
def stop_on_signals(enabled: bool = True) -> Iterator[StopRequest]:
    """Turn SIGTERM/SIGINT into a `StopRequest` for the duration of the block (see module doc)."""
    stop = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def restore():
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def handle(signum, frame):
        if stop.requested is not None:  # asked twice: stop now, the way it would have without us
            restore()
            if previous[signum] is signal.default_int_handler:  # Python's Ctrl-C: a KeyboardInterrupt
                raise StoppedAtOnce(signal.Signals(signum).name)
            signal.raise_signal(signum)
            return
        stop.requested = signal.Signals(signum).name

    for signum in SIGNALS:
        signal.signal(signum, handle)
    try:
        yield stop
    finally:
        restore()
