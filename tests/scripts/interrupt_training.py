"""Run `jaxseq ARGS...` and interrupt it at a chosen point of its checkpoint writes:

    python tests/scripts/interrupt_training.py MARKER N WHERE ARGS...

WHERE is where the run is interrupted:
  state:   at checkpoint N (1 = the first this process writes), half of state.msgpack
           written, then stall;
  meta:    at checkpoint N, state.msgpack complete, half of meta.json written, then stall;
  rename:  at checkpoint N, both files complete and flushed, the temporary folder not yet
           renamed: stall;
  sigterm: right after training step N, the process sends itself SIGTERM (as a cluster
           preempting the job would) and carries on, so the trainer finds the request
           after that step.
  sigint-twice: right after training step N, SIGINT (Ctrl-C); then, half way through writing
           the state.msgpack of the checkpoint that stop makes, SIGINT again (an impatient
           user pressing Ctrl-C twice).
A stalled process writes MARKER (the file or folder it stalled in) and sleeps, for the test
to SIGKILL it; `sigterm` and `sigint-twice` write MARKER (the step number) when they send the
first signal. The run starts as a plain install's does, without torch (see plain_install.py).
"""

import os
import signal
import sys
import time
from pathlib import Path

from plain_install import hide_torch  # beside this script

hide_torch()

from jaxseq import cli  # noqa: E402
from jaxseq.train import checkpoint  # noqa: E402

marker, stop_at, where, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
assert where in ("state", "meta", "rename", "sigterm", "sigint-twice"), where
write_file, fsync_dir = checkpoint._write_file, checkpoint._fsync_dir
started = 0  # checkpoints begun (one state file each)


def mark(text):
    """Write MARKER atomically: the test acts as soon as it exists, so it must never be seen empty."""
    temp = marker.with_name(marker.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, marker)


def stall(path):
    mark(str(path))
    time.sleep(600)


def interrupting_write(path, payload):
    global started
    started += path.name == checkpoint.STATE_FILE
    if where == "sigint-twice" and marker.exists() and path.name == checkpoint.STATE_FILE:
        with open(path, "wb") as handle:
            handle.write(payload[: len(payload) // 2])
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, in the middle of the stop's checkpoint
    if started == stop_at and path.name == {"state": checkpoint.STATE_FILE, "meta": checkpoint.META_FILE}.get(where):
        with open(path, "wb") as handle:
            handle.write(payload[: len(payload) // 2])
        stall(path)
    write_file(path, payload)


def interrupting_fsync_dir(path):
    fsync_dir(path)
    if started == stop_at and where == "rename" and Path(path).name.startswith(checkpoint.TEMP_PREFIX):
        stall(path)


steps_taken = 0  # over every compiled step a trainer made (the language model has one per segment length)


def signalling_train_step(*args, **kwargs):
    step = make_train_step(*args, **kwargs)

    def counted(state, data):
        global steps_taken
        result = step(state, data)
        steps_taken += 1
        if steps_taken == stop_at:
            mark(str(steps_taken))
            os.kill(os.getpid(), signal.SIGINT if where == "sigint-twice" else signal.SIGTERM)
        return result

    return counted


checkpoint._write_file, checkpoint._fsync_dir = interrupting_write, interrupting_fsync_dir
if where in ("sigterm", "sigint-twice"):
    from jaxseq.train import captioning, classifier, language_model, steps

    make_train_step = steps.make_train_step
    captioning.make_train_step = classifier.make_train_step = language_model.make_train_step = signalling_train_step
sys.exit(cli.main(argv))
