"""Data parallelism: training on 8 host devices equals training on one (float32, < 1e-5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxseq.train.checkpoint import list_checkpoints
from jaxseq.train.parallel import DataParallel, initialize_distributed
from tests.conftest import REPO_ROOT, users_xla_env


def run_with_devices(script: str, *args: str, devices: int = 8, timeout: int = 300) -> dict:
    # compiled as users do: "8 devices equal one" within 1e-5 is a claim about their float32 rounding
    env = users_xla_env(JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "scripts" / script), *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def captioning_reports() -> dict:
    """{cell: report} of tests/scripts/data_parallel_captioning.py, both cells in one process."""
    return run_with_devices("data_parallel_captioning.py", "rnn", "lstm", timeout=600)


@pytest.fixture(scope="module")
def classifier_reports() -> dict:
    """{architecture: report} of tests/scripts/data_parallel_classifier.py, both in one process."""
    return run_with_devices("data_parallel_classifier.py", "transformer", "lstm", timeout=600)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_captioning_on_8_devices_equals_one_device(cell, captioning_reports):
    report = captioning_reports[cell]
    assert report["devices"] == 8 and report["data_devices"] == 8
    assert report["all_reduces"] > 0  # the step really was partitioned over the batch
    assert report["max_relative_difference"] < 1e-5, report


def test_mesh_arguments_are_checked():
    with pytest.raises(ValueError, match=r"devices must be between 1 and the 1 available CPU device"):
        DataParallel.create(jax.device_count() + 1)
    parallel = DataParallel.create(1)
    parallel.check_batch_size(7)
    with pytest.raises(ValueError, match="coordinator must be HOST:PORT"):
        initialize_distributed("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        initialize_distributed("127.0.0.1:1234", 2, 2)


def test_batch_must_divide_by_device_count():
    report = run_with_devices("mesh_checks.py", devices=4, timeout=120)
    assert report["error"] == "batch size 10 does not divide by the 4 devices; use a multiple of 4"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# One CPU device per process, so a 2-process mesh has one device in each; this checkout's jaxseq.
PROCESS_ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1", "PYTHONPATH": str(REPO_ROOT)}


def run_processes(script: str, *argv, count: int = 2) -> list[tuple[int, str]]:
    """(exit code, stderr) of `count` processes of tests/scripts/`script`, each started as
    `script COORDINATOR COUNT RANK *argv` with a coordinator on 127.0.0.1."""
    coordinator = f"127.0.0.1:{free_port()}"
    workers = [
        subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "scripts" / script), coordinator, str(count),
                          str(rank), *map(str, argv)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=PROCESS_ENV, cwd=REPO_ROOT)
        for rank in range(count)
    ]
    try:
        errors = [worker.communicate(timeout=300)[1] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    return [(worker.returncode, error) for worker, error in zip(workers, errors)]


def test_two_processes_on_localhost_equal_one_process(tmp_path):
    """jax.distributed.initialize with a coordinator on 127.0.0.1, Gloo collectives on CPU."""
    from tests.scripts.multiprocess_captioning import train

    assert jax.process_count() == 1 and jax.device_count() == 1  # this process is the reference
    train(str(tmp_path / "single.json"))
    results = run_processes("multiprocess_captioning.py", tmp_path / "multi.json")
    assert all(code == 0 for code, _ in results), "\n".join(error[-2000:] for _, error in results)

    one = json.loads((tmp_path / "single.json").read_text())
    two = json.loads((tmp_path / "multi.json").read_text())
    assert one["processes"] == 1 and two["processes"] == 2 and two["devices"] == 2
    for name, values in one["params"].items():
        a, b = np.asarray(values), np.asarray(two["params"][name])
        assert np.max(np.abs(a - b)) <= 1e-5 * max(np.max(np.abs(a)), 1e-12), name
    np.testing.assert_allclose(one["loss_history"], two["loss_history"], rtol=1e-5)


@pytest.mark.parametrize("trainer", ["classifier"])  # the stop protocol is the loop's, one for every trainer
def test_sigterm_stops_every_process_after_the_same_step_and_resume(tmp_path, trainer):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for code, error in run_processes("multiprocess_stop.py", trainer, straight, "straight", tmp_path / "one.json"):
        assert code == 0, error[-3000:]
    # Process 0 is signalled after step 9, process 1 after step 11; they compare requests
    # every 10 steps (and at epoch ends), so both stop after step 10, in the middle of an
    # epoch, process 1 before its own signal; process 0 writes that checkpoint.
    for code, error in run_processes("multiprocess_stop.py", trainer, stopped, "signal", tmp_path / "unused.json"):
        assert code == 128 + signal.SIGTERM, error[-3000:]
        assert f"stopped by SIGTERM after step 10; checkpoint {stopped / 'ckpt-00000010'} written" in error
    assert [path.name for path in list_checkpoints(stopped)][-1] == "ckpt-00000010"
    for code, error in run_processes("multiprocess_stop.py", trainer, stopped, "resume", tmp_path / "two.json"):
        assert code == 0, error[-3000:]
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["history"] == one["history"] and len(one["history"]) in (3, 12)  # epochs / steps
    assert two["params"] == one["params"]


def test_a_locked_folder_stops_every_process_of_a_run(tmp_path):
    """Only process 0 takes the folder's lock; when it cannot, the other process must not go on
    alone (it would wait in the first collective for a process that has stopped)."""
    folder = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from jaxseq.train.run_folder import RunFolderLock; "
                               f"lock = RunFolderLock({str(folder)!r}).acquire(); print('held', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=PROCESS_ENV, cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        (first, first_error), (second, second_error) = run_processes(
            "multiprocess_stop.py", "classifier", folder, "straight", tmp_path / "unused.json")
    finally:
        holder.communicate("", timeout=60)
    assert first != 0 and f"checkpoint folder {folder} is in use by process {holder.pid}" in first_error, first_error
    assert second != 0 and "another process of this run could not open it" in second_error, second_error
    assert not list_checkpoints(folder)


def test_a_checkpoint_process_0_cannot_write_stops_every_process(tmp_path):
    """Only process 0 writes checkpoints; when a write fails (a full disk), the other process
    must stop too instead of waiting for it in the next collective."""
    folder = tmp_path / "full"
    (first, first_error), (second, second_error) = run_processes(
        "multiprocess_stop.py", "classifier", folder, "disk-full", tmp_path / "unused.json")
    kept = f"the last good checkpoint is {folder / 'ckpt-00000008'}"
    assert first == 1 and "No space left on device" in first_error and kept in first_error, first_error
    assert second == 1 and "process 0 could not write it" in second_error and kept in second_error, second_error
    assert [path.name for path in list_checkpoints(folder)] == ["ckpt-00000008"]


@pytest.mark.parametrize("architecture", ["transformer", "lstm"])
def test_classifier_on_8_devices_equals_one_device(architecture, classifier_reports):
    report = classifier_reports[architecture]
    assert report["devices"] == 8
    assert report["max_relative_difference"] < 1e-5, report
    assert report["max_logit_difference"] < 1e-5, report
    assert report["resumed_on_the_mesh_identical"] is True, report


def test_language_model_on_8_devices_equals_one_device():
    """The streams split over 8 devices (the carried state with them): the same parameters and
    validation losses as on one; a run resumed on the mesh from a mid-epoch checkpoint ends
    byte-identical to the straight one."""
    report = run_with_devices("data_parallel_language_model.py")
    assert report["devices"] == 8
    assert report["max_relative_difference"] < 1e-5, report
    assert report["max_val_loss_difference"] < 1e-5, report
    assert report["resumed_from_step"] == 5 and report["resumed_on_the_mesh_identical"] is True, report


def test_cli_accepts_scaling_out_options():
    from jaxseq.cli import build_parser

    parser = build_parser()
    for command in (["caption", "train"], ["cola", "train"], ["classify", "train", "--train", "a", "--dev", "b"],
                    ["lm", "train"]):
        args = parser.parse_args([*command, "--devices", "2"])
        assert args.devices == 2
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--devices", "0"])
    from jaxseq.commands._options import setup_parallel

    args = parser.parse_args(["caption", "train", "--coordinator", "127.0.0.1:1"])
    with pytest.raises(ValueError, match="needs --coordinator, --num-processes and --process-id together"):
        setup_parallel(args)


SHARD_MAP_CASES = ("lstm", "lstm lengths reverse state c0", "gru lengths state", "rnn reverse", "lstm_step",
                   "gru_step", "rnn_step", "temporal_affine", "word_embedding", "temporal_softmax_loss",
                   "temporal_affine_softmax_loss", "LanguageModel lstm", "LanguageModel gru", "LanguageModel rnn")


@pytest.fixture(scope="module")
def shard_map_report() -> dict:
    """tests/scripts/shard_map_layers.py on 4 devices: every layer inside jax.shard_map."""
    return run_with_devices("shard_map_layers.py", devices=4)


@pytest.mark.parametrize("case", SHARD_MAP_CASES)
def test_every_hand_written_layer_runs_inside_shard_map_and_equals_one_device(case, shard_map_report):
    # the batch split over 4 devices, the weights replicated, JAX's vma type checks on: the rules'
    # weight gradients (varying) used to be refused for their replicated weights
    assert shard_map_report["devices"] == 4 and set(shard_map_report["cases"]) == set(SHARD_MAP_CASES)
    assert shard_map_report["cases"][case] < 2e-5, shard_map_report["cases"][case]
