"""Kill both trainers' command lines with SIGKILL — at random moments, and forced into the
three stages of a checkpoint write — or stop them with SIGTERM, resume with --resume, and
get bit-identically the checkpoint (arrays and histories) of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxseq.train.checkpoint import TEMP_PREFIX, latest_checkpoint, list_checkpoints, read_metadata
from tests.bracket_task import write_tsv
from tests.checkpoints import assert_same_run
from tests.conftest import REPO_ROOT, command_env

EPOCHS = 12
INTERRUPT_SCRIPT = REPO_ROOT / "tests" / "scripts" / "interrupt_training.py"

# The three command lines run the one training loop and the one checkpoint writer: the stages
# of a write, the second Ctrl-C, --checkpoint-every and a SIGTERM in the first epoch are those
# of the loop, so they run on one trainer (the classifier, whose state has the most parts: the
# shuffling key, the best epoch's params);
# every trainer meets the random SIGKILLs, a mid-epoch SIGTERM and a kill inside a write (the
# language model, whose loop is the same, the last two: its carried state and plateau rate).
TRAINERS = ["captioner", "classifier", "lstm-classifier"]
every_trainer = pytest.mark.parametrize("trainer", TRAINERS, indirect=True)


@pytest.fixture(scope="module")
def straight_runs() -> dict:
    """{trainer: (argv, folder of its uninterrupted run)}, filled by `trainer`: one run of each
    trainer for the module (pytest sets a parametrized module fixture up again each time the
    order of the tests switches its parameter: 14 runs of 4 trainers here)."""
    return {}


@pytest.fixture
def trainer(request, straight_runs, tmp_path_factory):
    """(name, argv without --checkpoint-dir, the folder of an uninterrupted run)."""
    if request.param not in straight_runs:
        straight_runs[request.param] = uninterrupted_run(request.param, tmp_path_factory.mktemp(request.param))
    return (request.param, *straight_runs[request.param])


def uninterrupted_run(name: str, folder: Path) -> tuple[list[str], Path]:
    """(argv without --checkpoint-dir, the folder of its run to the end) of trainer `name`."""
    if name == "captioner":
        argv = ["caption", "train", "--cell", "lstm", "--max-train", "400", "--batch-size", "50",
                "--hidden-dim", "32", "--wordvec-dim", "32", "--quiet", "--seed", "1"]
    elif name == "language-model":  # SGD on the plateau schedule, dropout, the carried state
        argv = ["lm", "train", "--embed-size", "16", "--hidden-size", "16", "--batch-size", "64", "--bptt", "200",
                "--optimizer", "sgd", "--schedule", "plateau", "--lr", "30", "--clip", "0.5", "--hidden-dropout",
                "0.1", "--locked-dropout", "--no-progress", "--seed", "1"]
    elif name == "lstm-classifier":  # the recurrent classifier: two layers, dropout between them
        argv = ["classify", "train", "--model", "lstm", "--train", str(write_tsv(folder / "train.tsv", 600, 1)),
                "--dev", str(write_tsv(folder / "dev.tsv", 150, 2)), "--batch-size", "32", "--lr", "3e-3",
                "--patience", "100", "--embed-dim", "16", "--hidden-dim", "16", "--num-layers", "2",
                "--min-count", "1", "--max-length", "16", "--no-progress", "--seed", "1"]
    else:
        argv = ["classify", "train", "--train", str(write_tsv(folder / "train.tsv", 600, 1)),
                "--dev", str(write_tsv(folder / "dev.tsv", 150, 2)), "--batch-size", "32", "--lr", "3e-3",
                "--patience", "100", "--hidden-dim", "16", "--num-heads", "2", "--dim-k", "8", "--dim-v", "8",
                "--dim-feedforward", "32", "--min-count", "1", "--max-length", "16", "--no-progress", "--seed", "1"]
    argv += ["--epochs", str(EPOCHS)]
    straight = folder / "straight"
    run_to_end([*argv, "--checkpoint-dir", str(straight)])
    return argv, straight


def jaxseq(*argv) -> list[str]:
    return [sys.executable, "-m", "jaxseq.cli", *argv]


def run_to_end(argv) -> None:
    result = subprocess.run(jaxseq(*argv), capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                            env=command_env(argv))
    assert result.returncode == 0, result.stderr[-3000:]


def latest_name(folder) -> str | None:
    checkpoints = list_checkpoints(folder)
    return checkpoints[-1].name if checkpoints else None


def epoch_steps(straight) -> int:
    """Steps per epoch of the uninterrupted run in `straight` (the captioner 8, a classifier 19)."""
    return read_metadata(latest_checkpoint(straight))["step"] // EPOCHS


def stall_and_kill(marker, n: int, where: str, argv) -> None:
    """Run `jaxseq argv` under tests/scripts/interrupt_training.py until it stalls at `where`
    of checkpoint `n`, then SIGKILL it."""
    process = subprocess.Popen([sys.executable, str(INTERRUPT_SCRIPT), str(marker), str(n), where, *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=command_env(argv))
    deadline = time.monotonic() + 180
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, process.stderr.read().decode()[-3000:]
    assert marker.exists(), f"the run never reached checkpoint {n}"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()


def assert_resumed_run_is_the_straight_one(folder, straight) -> None:
    meta = assert_same_run(folder, straight)
    assert meta["epoch"] == EPOCHS
    assert not [p for p in os.listdir(folder) if p.startswith(TEMP_PREFIX)]  # no half-written leftovers


@every_trainer
def test_sigkill_at_random_moments_and_resume(trainer, tmp_path):
    _, argv, straight = trainer
    command = jaxseq(*argv, "--checkpoint-dir", str(tmp_path), "--resume")
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT,
                                   env=command_env(argv))
        before = latest_name(tmp_path)
        deadline = time.monotonic() + 120
        # Wait for this run to write a new checkpoint, then kill it at a random moment: epochs
        # take milliseconds and checkpoint writes (with fsync) much of that, so kills land in
        # steps and in writes alike.
        while process.poll() is None and time.monotonic() < deadline and latest_name(tmp_path) == before:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    assert kills >= 1  # the run really was interrupted
    run_to_end([*argv, "--checkpoint-dir", str(tmp_path), "--resume"])  # from the last complete checkpoint
    assert_resumed_run_is_the_straight_one(tmp_path, straight)


@pytest.mark.parametrize("trainer, where", [("classifier", "state"), ("classifier", "meta"),
                                            *((name, "rename") for name in [*TRAINERS, "language-model"])],
                         indirect=["trainer"])
def test_sigkill_while_writing_a_checkpoint_and_resume(trainer, tmp_path, where):
    _, argv, straight = trainer
    folder, marker = tmp_path / "run", tmp_path / "stalled"
    stall_and_kill(marker, 3, where, [*argv, "--checkpoint-dir", str(folder)])

    # Killed inside the third write: its temporary folder is there, but never picked up.
    (temp,) = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert marker.read_text().startswith(str(temp))
    assert read_metadata(latest_checkpoint(folder))["epoch"] == 2  # only the interrupted epoch is lost

    run_to_end([*argv, "--checkpoint-dir", str(folder), "--resume"])
    assert_resumed_run_is_the_straight_one(folder, straight)


@pytest.mark.parametrize("trainer, step", [("classifier", 5),
                                           *((name, 45) for name in [*TRAINERS, "language-model"])],
                         indirect=["trainer"])
def test_sigterm_checkpoints_the_current_step_and_resume(trainer, tmp_path, step):
    _, argv, straight = trainer
    folder, marker = tmp_path / "run", tmp_path / "signalled"
    steps_per_epoch = epoch_steps(straight)
    assert step % steps_per_epoch != 0  # SIGTERM in the middle of an epoch (the first one, or a later one)
    result = subprocess.run([sys.executable, str(INTERRUPT_SCRIPT), str(marker), str(step), "sigterm", *argv,
                             "--checkpoint-dir", str(folder)], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=300, env=command_env(argv))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert marker.read_text() == str(step)
    stopped = latest_checkpoint(folder)
    meta = read_metadata(stopped)
    assert meta["step"] == step and meta["epoch"] == step // steps_per_epoch  # epochs completed
    assert meta["metric"] is None  # in the middle of an epoch: no validation score
    assert f"stopped by SIGTERM after step {step}; checkpoint {stopped} written; continue with --resume" \
        in result.stderr

    run_to_end([*argv, "--checkpoint-dir", str(folder), "--resume"])
    assert_resumed_run_is_the_straight_one(folder, straight)


@pytest.mark.parametrize("trainer", ["classifier"], indirect=True)
def test_a_second_ctrl_c_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(trainer, tmp_path):
    _, argv, straight = trainer
    folder, marker, step = tmp_path / "run", tmp_path / "signalled", 45
    steps_per_epoch = epoch_steps(straight)
    result = subprocess.run([sys.executable, str(INTERRUPT_SCRIPT), str(marker), str(step), "sigint-twice", *argv,
                             "--checkpoint-dir", str(folder)], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=300, env=command_env(argv))
    assert result.returncode == 128 + signal.SIGINT, result.stderr[-3000:]
    assert marker.read_text() == str(step)
    assert result.stderr == (f"jaxseq {argv[0]}: stopped at once by a second SIGINT; a checkpoint being written was "
                             "abandoned, the checkpoints written before are kept (continue with --resume)\n")
    # The stop's checkpoint was abandoned half written and its folder removed on the way out;
    # the last complete one is the epoch's before.
    assert not [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert read_metadata(latest_checkpoint(folder))["step"] == step // steps_per_epoch * steps_per_epoch

    run_to_end([*argv, "--checkpoint-dir", str(folder), "--resume"])
    assert_resumed_run_is_the_straight_one(folder, straight)


@pytest.mark.parametrize("trainer", ["classifier"], indirect=True)
def test_checkpoint_every_bounds_what_a_sigkill_loses(trainer, tmp_path):
    _, argv, straight = trainer
    folder, marker = tmp_path / "run", tmp_path / "stalled"
    steps_per_epoch = epoch_steps(straight)
    # With a checkpoint every 3 steps and at epoch ends, killed while renaming the 5th
    # checkpoint, the run is left at the 4th, inside an epoch.
    saved_at = sorted({s for s in range(3, 60, 3)} | {steps_per_epoch * k for k in range(1, 4)})
    left_at = saved_at[3]
    assert left_at % steps_per_epoch != 0
    stall_and_kill(marker, 5, "rename", [*argv, "--checkpoint-every", "3", "--checkpoint-dir", str(folder)])
    meta = read_metadata(latest_checkpoint(folder))
    assert (meta["step"], meta["epoch"]) == (left_at, left_at // steps_per_epoch)

    run_to_end([*argv, "--checkpoint-dir", str(folder), "--resume"])
    assert_resumed_run_is_the_straight_one(folder, straight)
