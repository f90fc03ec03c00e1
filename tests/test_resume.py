"""Kill training with SIGKILL at random moments (mid-step and mid-checkpoint-write), resume,
and get exactly the parameters of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from jaxseq.train.captioning import load_captioning_checkpoint
from jaxseq.train.checkpoint import TEMP_PREFIX, list_checkpoints
from tests.conftest import REPO_ROOT

TRAIN = ["caption", "train", "--cell", "lstm", "--max-train", "400", "--epochs", "30", "--batch-size", "50",
         "--hidden-dim", "32", "--wordvec-dim", "32", "--quiet", "--seed", "1"]


def command(checkpoint_dir) -> list[str]:
    return [sys.executable, "-m", "jaxseq.cli", *TRAIN, "--checkpoint-dir", str(checkpoint_dir)]


def run_to_end(checkpoint_dir) -> None:
    result = subprocess.run(command(checkpoint_dir), capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def latest_name(checkpoint_dir) -> str | None:
    checkpoints = list_checkpoints(checkpoint_dir)
    return checkpoints[-1].name if checkpoints else None


def final_params(checkpoint_dir):
    _, params, meta = load_captioning_checkpoint(checkpoint_dir)
    return jax.device_get(params), meta


def test_sigkill_and_resume_equals_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_to_end(straight)

    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=REPO_ROOT)
        before = latest_name(killed)
        deadline = time.monotonic() + 120
        # Wait for this run to write a new checkpoint, then kill it at a random moment: epochs
        # take milliseconds and checkpoint writes (with fsync) most of that, so kills land in
        # steps and in writes alike.
        while process.poll() is None and time.monotonic() < deadline and latest_name(killed) == before:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    assert kills >= 1  # the run really was interrupted
    run_to_end(killed)  # resumes from the last complete checkpoint

    ours, meta = final_params(killed)
    theirs, meta_straight = final_params(straight)
    assert meta["epoch"] == meta_straight["epoch"] == 30
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert meta["loss_history"] == meta_straight["loss_history"]
    assert not [p for p in os.listdir(killed) if p.startswith(TEMP_PREFIX)]  # no half-written leftovers
