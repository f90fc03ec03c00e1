"""Stopping training cleanly on SIGTERM (a cluster preempting the job, `kill`) and SIGINT
(Ctrl-C, a notebook's interrupt button).

    with stop_on_signals() as stop:
        for ...:
            state = step(state)
            if stop.requested:            # the signal's name, e.g. "SIGTERM", or None
                save a checkpoint of `state`
                raise TrainingInterrupted(stop.requested, step, checkpoint)

Inside the block the signals only set `stop.requested`, so the trainer finishes the step it
is in, checkpoints that exact state (mid-epoch if need be) and stops; `--resume` then
continues as if nothing had happened. A second signal while stopping acts at once, with the
handler that was there before (Ctrl-C twice: KeyboardInterrupt). Handlers can only be set
in the main thread and would desynchronize a multi-process run (each process would stop at
a different step), so elsewhere, or with `enabled=False`, the block changes nothing.
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


class StopRequest:
    """`requested`: the name of the first signal received inside the block, or None."""

    def __init__(self):
        self.requested: str | None = None


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
            signal.raise_signal(signum)
            return
        stop.requested = signal.Signals(signum).name

    for signum in SIGNALS:
        signal.signal(signum, handle)
    try:
        yield stop
    finally:
        restore()
