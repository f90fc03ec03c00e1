"""Run `jaxseq ARGS...` whose checkpoint writes stall at one chosen point, so a test can
SIGKILL the process while a checkpoint is half written:

    python tests/scripts/stall_in_checkpoint_write.py MARKER CHECKPOINT WHERE ARGS...

At checkpoint number CHECKPOINT (1 = the first this process writes), WHERE is
  state:  half of state.msgpack written,   meta: state.msgpack complete, half of meta.json,
  rename: both files complete and flushed, the temporary folder not yet renamed into place.
There the process writes MARKER (the file or folder it stalled in) and sleeps.
"""

import sys
import time
from pathlib import Path

from jaxseq import cli
from jaxseq.train import checkpoint

marker, stall_at, where, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
assert where in ("state", "meta", "rename"), where
write_file, fsync_dir = checkpoint._write_file, checkpoint._fsync_dir
started = 0  # checkpoints begun (one state file each)


def stall(path):
    marker.write_text(str(path))
    time.sleep(600)


def stalling_write(path, payload):
    global started
    started += path.name == checkpoint.STATE_FILE
    if started == stall_at and path.name == {"state": checkpoint.STATE_FILE, "meta": checkpoint.META_FILE}.get(where):
        with open(path, "wb") as handle:
            handle.write(payload[: len(payload) // 2])
        stall(path)
    write_file(path, payload)


def stalling_fsync_dir(path):
    fsync_dir(path)
    if started == stall_at and where == "rename" and Path(path).name.startswith(checkpoint.TEMP_PREFIX):
        stall(path)


checkpoint._write_file, checkpoint._fsync_dir = stalling_write, stalling_fsync_dir
sys.exit(cli.main(argv))
