"""A full disk at the training loop's checkpoint writes, for the tests of what a trainer does
when process 0 cannot write one (tests/test_cli_cola.py, tests/scripts/multiprocess_stop.py)."""

from __future__ import annotations

import errno
from typing import Any, Callable


def fill_the_disk_after(saves: int, setattr: Callable[[Any, str, Any], None] = setattr) -> list[int]:
    """Make `jaxseq.train.loop`'s checkpoint writes after the first `saves` fail with ENOSPC.

    setattr: how to patch (pytest's `monkeypatch.setattr` undoes it after the test). Returns
    the list that collects the step of every write asked for, failed ones included.
    """
    from jaxseq.train import loop

    real_save, steps = loop.save_checkpoint, []

    def save_until_full(directory, step, *args, **kwargs):
        steps.append(step)
        if len(steps) > saves:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(directory, step, *args, **kwargs)

    setattr(loop, "save_checkpoint", save_until_full)
    return steps
