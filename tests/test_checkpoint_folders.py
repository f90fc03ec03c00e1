"""Checkpoint folders are safe to share and to overwrite, through the real command lines:

1. every option is validated before anything in the folder is touched (`--overwrite` with a
   bad option afterwards deletes nothing);
2. a folder in use is locked: a second trainer exits at once naming the folder and the
   process holding it, the first one carries on unharmed, and a stale lock (its process
   killed) is taken over with a message;
3. a `--checkpoint-dir` that is a file, or lies under one, is a one-line error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxseq import cli
from jaxseq.train.checkpoint import list_checkpoints, read_metadata
from jaxseq.train.run_folder import LOCK_FILE
from tests.bracket_task import write_tsv
from tests.checkpoints import CAPTIONER_ARGV, CLASSIFIER_MODEL_ARGV, tiny_runs
from tests.conftest import REPO_ROOT

PLAIN_JAXSEQ = REPO_ROOT / "tests" / "scripts" / "plain_install.py"  # `jaxseq` without torch's import


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def classify_argv(folder: Path, epochs: int = 2, data: Path | None = None) -> list[str]:
    """A tiny `classify train` into `folder`; its TSV files go into `data` (default: beside it)."""
    data = folder.parent if data is None else data
    return ["classify", "train", "--train", str(write_tsv(data / "lock-train.tsv", 600, 1)),
            "--dev", str(write_tsv(data / "lock-dev.tsv", 60, 2)), "--epochs", str(epochs), "--batch-size", "8",
            "--patience", "1000", *CLASSIFIER_MODEL_ARGV, "--checkpoint-dir", str(folder)]


@pytest.mark.parametrize("kind", ["captioner", "classifier"])
@pytest.mark.parametrize("bad", [["--devices", "1000"], ["--coordinator", "127.0.0.1:1"]],
                         ids=["devices", "half-a-multiprocess-run"])
def test_a_bad_option_after_overwrite_deletes_nothing(kind, bad, tmp_path_factory, capsys):
    folder, argv = tiny_runs(tmp_path_factory)[kind]
    before = snapshot(folder)
    assert any(name.startswith("ckpt-") for name in before)
    line = one_line_error(capsys, cli.main([str(arg) for arg in argv] + ["--overwrite", *bad]))
    assert ("devices" in line) if bad[0] == "--devices" else ("--coordinator" in line)
    assert snapshot(folder) == before


def test_overwrite_with_a_model_option_of_the_other_model_deletes_nothing(tmp_path_factory, capsys):
    folder, argv = tiny_runs(tmp_path_factory)["classifier"]
    before = snapshot(folder)
    code = cli.main([str(arg) for arg in argv] + ["--overwrite", "--model", "lstm", "--no-pad-mask"])
    assert "--no-pad-mask is for the transformer" in one_line_error(capsys, code)
    assert snapshot(folder) == before


@pytest.mark.parametrize("kind", ["captioner", "classifier"])
def test_a_checkpoint_dir_that_is_a_file_or_under_one_is_one_line(kind, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for folder in (a_file, a_file / "run"):
        argv = ([*CAPTIONER_ARGV, "--epochs", "1", "--checkpoint-dir", str(folder)] if kind == "captioner"
                else classify_argv(folder, epochs=1, data=tmp_path))
        line = one_line_error(capsys, cli.main([str(arg) for arg in argv]))
        assert str(a_file) in line and "not a directory" in line, line
        assert f"--checkpoint-dir {folder}: " in line and "log folder" not in line, line  # the option given
        argv = [*argv, "--checkpoint-dir", str(tmp_path / "fine"), "--log-dir", str(folder)]
        line = one_line_error(capsys, cli.main([str(arg) for arg in argv]))
        assert f"--log-dir {folder}: " in line and "not a directory" in line, line
    assert a_file.read_text() == "not a folder"
    assert not (tmp_path / "fine").exists()


def test_the_default_log_folder_blames_the_checkpoint_folder(tmp_path):
    from jaxseq.train.run_log import resolve_log_dir

    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match=rf"^checkpoint folder {a_file}: exists and is a file, not a directory"):
        resolve_log_dir(None, a_file)


def wait_for(predicate, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_folder_in_use_is_locked_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    argv = classify_argv(folder, epochs=500)  # runs until stopped
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    first = subprocess.Popen([sys.executable, str(PLAIN_JAXSEQ), *argv, "--checkpoint-every", "5"], cwd=REPO_ROOT,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: list_checkpoints(folder) or first.poll() is not None, "the first run's checkpoints")
        assert first.poll() is None, first.stderr.read()
        for extra in ([], ["--resume"], ["--overwrite"]):  # the second trainer, whatever it asks for
            line = one_line_error(capsys, cli.main(argv + extra))
            assert f"checkpoint folder {folder} is in use by" in line and f"process {first.pid} on host" in line, line
        first.send_signal(signal.SIGTERM)  # the first run carries on unharmed until told to stop
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, err
    written = Path(err.split("checkpoint ")[-1].split(" written")[0])
    assert written in list_checkpoints(folder) and read_metadata(written)["step"] > 0
    assert not (folder / LOCK_FILE).exists()

    killed = subprocess.Popen([sys.executable, str(PLAIN_JAXSEQ), *argv, "--resume"], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (folder / LOCK_FILE).exists() or killed.poll() is not None, "the second run's lock")
    finally:
        killed.kill()
        killed.wait(timeout=60)
    assert (folder / LOCK_FILE).exists()  # left behind by a killed process
    code = cli.main(classify_argv(folder, epochs=1) + ["--overwrite"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"checkpoint folder {folder}: took over its lock" in captured.err
    assert [read_metadata(path)["epoch"] for path in list_checkpoints(folder)] == [1]
