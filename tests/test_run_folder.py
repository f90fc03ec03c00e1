"""Run folders (jaxseq.train.run_folder): path checks, the lock against a second trainer
(real child processes hold it, die holding it, race for it), and open_run_folder's order:
lock first, then resume / overwrite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import pytest

from jaxseq.train.checkpoint import list_checkpoints, save_checkpoint
from jaxseq.train.interrupt import TrainingInterrupted
from jaxseq.train.run_folder import (
    LOCK_FILE,
    RunFolder,
    RunFolderBusyError,
    RunFolderLock,
    check_run_dir,
    lock_run_folder,
    open_run_folder,
    prepare_checkpoint_dir,
)
import jaxseq.train.run_folder as run_folder_module

MODULE = Path(run_folder_module.__file__)

# A child process: loads run_folder.py by itself (so it must not need JAX), then
#   hold <folder>:  takes the lock, prints "locked", holds it until its stdin closes;
#   race <folder>:  prints "ready", waits for a line on stdin, tries the lock, prints
#                   "won" (and holds it until stdin closes) or "busy".
CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("run_folder_alone", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
assert "jax" not in sys.modules, "run_folder imported JAX"
mode, folder = sys.argv[2], sys.argv[3]
if mode == "race":
    print("ready", flush=True)
    sys.stdin.readline()
try:
    lock = module.lock_run_folder(folder, log=None).acquire()
except module.RunFolderBusyError:
    print("busy", flush=True)
    sys.exit(0)
print("locked" if mode == "hold" else "won", flush=True)
sys.stdin.read()
lock.release()
"""


def _child(mode: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(MODULE), mode, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _holding_child(folder: Path) -> subprocess.Popen:
    child = _child("hold", folder)
    assert child.stdout.readline().strip() == "locked"
    return child


def _finish(child: subprocess.Popen) -> str:
    """The child's remaining output, once it has ended (its stdin already closed)."""
    out = child.stdout.read()
    child.wait(timeout=10)
    child.stdout.close()
    return out


def _lock_fields(folder: Path) -> dict:
    return json.loads((folder / LOCK_FILE).read_text())


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- check_run_dir


def test_check_run_dir_accepts_new_existing_and_symlinked_folders(tmp_path):
    assert check_run_dir(tmp_path) == tmp_path
    assert check_run_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # creates nothing
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    check_run_dir(tmp_path / "link")
    check_run_dir(tmp_path / "link" / "new")


def test_a_file_as_the_folder(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(ValueError, match="exists and is a file, not a directory") as error:
        check_run_dir(tmp_path / "run")
    assert str(tmp_path / "run") in _one_line(error)


@pytest.mark.parametrize("below", ["x", "x/y", "../other"])
def test_a_folder_under_a_file(tmp_path, below):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="lies under .*file, which is a file") as error:
        check_run_dir(tmp_path / "file" / below)
    _one_line(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_dangling_symlinks(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(ValueError, match="is a symlink to .*missing, which does not exist") as error:
        check_run_dir(tmp_path / "link")
    _one_line(error)
    with pytest.raises(ValueError, match="lies under .*link, a symlink to .*missing, which does not exist"):
        check_run_dir(tmp_path / "link" / "run")
    assert not (tmp_path / "missing").exists()


def _interpreter_for(uid: int) -> str | None:
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            if subprocess.run([candidate, "-c", "pass"], user=uid, capture_output=True, timeout=10).returncode == 0:
                return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def test_unwritable_parent_and_folder(tmp_path):
    if os.geteuid() != 0:
        parent = tmp_path / "readonly"
        (parent / "run").mkdir(parents=True)
        parent.chmod(0o555)
        (parent / "run").chmod(0o555)
        try:
            with pytest.raises(ValueError, match="cannot be created: this user .* cannot write in") as error:
                check_run_dir(parent / "new" / "run")
            _one_line(error)
            with pytest.raises(ValueError, match="cannot list and write in it"):
                check_run_dir(parent / "run")
            with pytest.raises(ValueError, match="cannot be created"):
                lock_run_folder(parent / "new").acquire()
        finally:
            (parent / "run").chmod(0o755)
            parent.chmod(0o755)
        return
    # As root every folder is writable: check as user nobody, in a child process.
    nobody = 65534
    python = _interpreter_for(nobody)
    if python is None:
        pytest.skip("running as root and no Python interpreter that user nobody can run")
    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        shutil.copy(MODULE, base / "run_folder.py")
        (base / "readonly" / "run").mkdir(parents=True)
        script = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("run_folder_alone", sys.argv[1])
module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module; spec.loader.exec_module(module)
for path in sys.argv[2:]:
    try:
        module.check_run_dir(path)
        print("accepted")
    except ValueError as error:
        print(error)
"""
        result = subprocess.run([python, "-c", script, str(base / "run_folder.py"), str(base / "readonly" / "new" / "x"),
                                 str(base / "readonly" / "run")], user=nobody, capture_output=True, text=True,
                                timeout=20)
        lines = result.stdout.splitlines()
        assert result.returncode == 0, result.stderr
        assert len(lines) == 2
        assert "cannot be created: this user (65534) cannot write in" in lines[0] and "readonly" in lines[0]
        assert "cannot list and write in it" in lines[1]
        assert not (base / "readonly" / "new").exists()
    finally:
        shutil.rmtree(base)


def test_save_checkpoint_gives_one_line_errors_for_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is a file") as error:
        save_checkpoint(tmp_path / "file", 1, {"w": jnp.zeros(2)})
    _one_line(error)
    with pytest.raises(ValueError, match="lies under"):
        save_checkpoint(tmp_path / "file" / "run", 1, {"w": jnp.zeros(2)})


# ---------------------------------------------------------------- the lock


def test_lock_file_format_and_release(tmp_path):
    folder = tmp_path / "new" / "run"
    with lock_run_folder(folder, log=None) as lock:
        fields = _lock_fields(folder)
        assert lock.fields == fields
        assert fields["pid"] == os.getpid() and fields["hostname"] == socket.gethostname()
        assert abs(fields["started"] - time.time()) < 60
        if Path("/proc/self/stat").exists():
            assert isinstance(fields["process_start"], int)
        assert isinstance(fields["token"], str)
        assert os.listdir(folder) == [LOCK_FILE]  # no temporary file left
    assert os.listdir(folder) == []


def test_lock_held_by_a_live_process(tmp_path):
    child = _holding_child(tmp_path)
    try:
        with pytest.raises(RunFolderBusyError) as error:
            lock_run_folder(tmp_path, log=None).acquire()
        message = _one_line(error)
        assert isinstance(error.value, ValueError)
        assert f"checkpoint folder {tmp_path} is in use by process {child.pid} on host " in message
        assert "wait for it to finish, stop it, or use another folder" in message
        assert error.value.holder["pid"] == child.pid
        assert (tmp_path / LOCK_FILE).exists()
    finally:
        child.stdin.close()
    assert _finish(child) == ""
    assert not (tmp_path / LOCK_FILE).exists()  # the child released it


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    child = _holding_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert _lock_fields(tmp_path)["pid"] == child.pid
    notices = []
    with lock_run_folder(tmp_path, log=notices.append):
        assert _lock_fields(tmp_path)["pid"] == os.getpid()
    assert len(notices) == 1 and "\n" not in notices[0]
    assert f"took over its lock, as its holder, process {child.pid} on host" in notices[0]
    assert "is no longer running" in notices[0]


def _write_lock(folder: Path, **changes) -> None:
    fields = {"pid": os.getpid(), "hostname": socket.gethostname(), "started": time.time() - 60,
              "process_start": None, "boot_id": None, "pid_ns": None, "token": "someone-else"}
    fields.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps(fields))


def test_a_reused_pid_is_not_the_holder(tmp_path):
    if run_folder_module._process_start(os.getpid()) is None:
        pytest.skip("no /proc/<pid>/stat here: a reused pid cannot be told apart")
    start = run_folder_module._process_start(os.getpid())
    _write_lock(tmp_path, process_start=start + 12345)  # this pid, started at another time
    notices = []
    with lock_run_folder(tmp_path, log=notices.append):
        pass
    assert len(notices) == 1 and f"pid {os.getpid()} now belongs to another process" in notices[0]
    # ... and with the right start time it is this very process, which holds it.
    _write_lock(tmp_path, process_start=start)
    with pytest.raises(RunFolderBusyError, match="this process already holds it"):
        lock_run_folder(tmp_path, log=None).acquire()


def test_a_lock_from_before_a_reboot_is_stale(tmp_path):
    if run_folder_module._boot_id() is None:
        pytest.skip("no boot id here")
    _write_lock(tmp_path, boot_id="another-boot")
    notices = []
    with lock_run_folder(tmp_path, log=notices.append):
        pass
    assert "ran before the host restarted" in notices[0]


def test_a_lock_from_another_host_counts_as_held(tmp_path):
    _write_lock(tmp_path, hostname="other-host.invalid", pid=1)
    with pytest.raises(RunFolderBusyError) as error:
        lock_run_folder(tmp_path, log=None).acquire()
    message = _one_line(error)
    assert "in use by process 1 on host other-host.invalid since" in message
    assert f"cannot check whether it is still running: if it is not, delete {tmp_path / LOCK_FILE}" in message
    assert _lock_fields(tmp_path)["hostname"] == "other-host.invalid"


@pytest.mark.parametrize("content, why", [
    (b"", "it is empty"),
    (b"\xff\xfe garbage \x00", "it is not JSON"),
    (b"{\"pid\": 12", "it is not JSON"),
    (b"[" * 2000 + b"]" * 2000, "it is not JSON: lists and objects nested more than 4 deep"),
    (b"[" * 100_000, "more than the 4096 bytes"),
    (b" " * 2**20 + b"{}", "more than the 4096 bytes"),
    (b"[1, 2]", "a JSON list, not an object"),
    (b"{\"pid\": \"12\", \"hostname\": \"h\", \"started\": 1}", "its pid is not a positive integer"),
    (b"{\"pid\": true, \"hostname\": \"h\", \"started\": 1}", "its pid is not a positive integer"),
    (b"{\"pid\": -5, \"hostname\": \"h\", \"started\": 1}", "its pid is not a positive integer"),
    (b"{\"pid\": " + b"9" * 4000 + b", \"hostname\": \"h\", \"started\": 1}", "holds a number 4000 characters long"),
    (b"{\"pid\": 12, \"hostname\": [\"h\"], \"started\": 1}", "its hostname is not a string"),
    (b"{\"pid\": 12, \"hostname\": \"h\", \"started\": NaN}", "its start time is not a time"),
    (b"{\"pid\": 12, \"hostname\": \"h\", \"started\": 1e300}", "its start time is not a time"),
    (b"{\"pid\": 12, \"hostname\": \"h\", \"started\": 1, \"process_start\": 1.5}", "process_start"),
])
def test_a_lock_file_that_lies_is_taken_over_with_the_reason(tmp_path, content, why):
    (tmp_path / LOCK_FILE).write_bytes(content)
    if not content:
        old = time.time() - 3600
        os.utime(tmp_path / LOCK_FILE, (old, old))  # not one being written right now
    notices = []
    with lock_run_folder(tmp_path, log=notices.append):
        assert _lock_fields(tmp_path)["pid"] == os.getpid()
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "took over its lock, as its lock file could not be read" in notices[0] and why in notices[0]
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_files_that_are_not_files(tmp_path):
    (tmp_path / LOCK_FILE).symlink_to("/dev/zero")
    notices = []
    with lock_run_folder(tmp_path, log=notices.append):
        pass
    assert "it is a symlink" in notices[0]
    os.mkfifo(tmp_path / LOCK_FILE)  # opening must not block
    notices.clear()
    with lock_run_folder(tmp_path, log=notices.append):
        pass
    assert "it is a named pipe, not a file" in notices[0]
    (tmp_path / LOCK_FILE).mkdir()
    with pytest.raises(ValueError, match="is not a lock and cannot be removed .*remove it by hand") as error:
        lock_run_folder(tmp_path, log=None).acquire()
    _one_line(error)


def test_a_lock_from_another_pid_namespace_counts_as_held(tmp_path):
    if run_folder_module._pid_namespace() is None:
        pytest.skip("no /proc/self/ns/pid here")
    _write_lock(tmp_path, pid=2**30, pid_ns="pid:[1]")  # no such pid here: it would look dead
    with pytest.raises(RunFolderBusyError, match="another PID namespace .a container., so this host cannot check"):
        lock_run_folder(tmp_path, log=None).acquire()
    assert _lock_fields(tmp_path)["pid_ns"] == "pid:[1]"


def test_a_holders_text_cannot_break_the_line(tmp_path):
    _write_lock(tmp_path, hostname="evil\nhost\x1b[2J", pid=1)
    with pytest.raises(RunFolderBusyError) as error:
        lock_run_folder(tmp_path, log=None).acquire()
    assert "evil?host?[2J" in _one_line(error)


@pytest.mark.parametrize("raised", [RuntimeError("boom"), KeyboardInterrupt(),
                                    TrainingInterrupted("SIGTERM", 3, None)])
def test_released_on_exceptions(tmp_path, raised):
    with pytest.raises(type(raised)):
        with lock_run_folder(tmp_path, log=None):
            assert (tmp_path / LOCK_FILE).exists()
            raise raised
    assert not (tmp_path / LOCK_FILE).exists()
    with pytest.raises(type(raised)):
        with open_run_folder(tmp_path, overwrite=False, resume=True, log=None):
            raise raised
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_release_leaves_somebody_elses_lock(tmp_path):
    notices = []
    with lock_run_folder(tmp_path, log=notices.append):
        # Somebody removed our lock and took the folder (by hand, or a trainer on another host).
        _write_lock(tmp_path, hostname="other-host.invalid", pid=77, token="theirs")
    assert _lock_fields(tmp_path)["token"] == "theirs"
    assert len(notices) == 1 and "its lock was taken by process 77 on host other-host.invalid" in notices[0]
    (tmp_path / LOCK_FILE).unlink()
    with lock_run_folder(tmp_path, log=notices.append):
        (tmp_path / LOCK_FILE).unlink()
    assert "was removed by someone else" in notices[-1]


def test_a_forked_child_does_not_release_its_parents_lock(tmp_path):
    with lock_run_folder(tmp_path, log=None) as lock:
        lock._owner_pid = os.getpid() + 1  # as seen from a forked child: not the owner
        lock.release()
        assert (tmp_path / LOCK_FILE).exists()
        lock._owner_pid = os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def _race(folder: Path, children: int = 8) -> list[str]:
    racers = [_child("race", folder) for _ in range(children)]
    try:
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready"
        for racer in racers:
            racer.stdin.write("go\n")
            racer.stdin.flush()
        results = [racer.stdout.readline().strip() for racer in racers]
    finally:
        for racer in racers:
            racer.stdin.close()
    for racer in racers:
        racer.wait(timeout=10)
    return results


@pytest.mark.parametrize("start", ["free", "stale"])
def test_processes_racing_for_a_lock_exactly_one_wins(tmp_path, start):
    for round_ in range(3):
        if start == "stale":
            dead = subprocess.Popen([sys.executable, "-c", "pass"])
            dead.wait()
            _write_lock(tmp_path, pid=dead.pid)
        results = _race(tmp_path)
        assert sorted(results) == ["busy"] * 7 + ["won"], (round_, results)
        assert not (tmp_path / LOCK_FILE).exists()  # the winner released it
        assert sorted(os.listdir(tmp_path)) == []


# ---------------------------------------------------------------- open_run_folder


def _checkpoints(folder: Path, steps=(1, 2)) -> None:
    for step in steps:
        save_checkpoint(folder, step, {"w": jnp.full(2, float(step))})


def test_open_run_folder_resume_returns_the_latest_under_the_lock(tmp_path):
    _checkpoints(tmp_path, (3, 7))
    with open_run_folder(tmp_path, overwrite=False, resume=True, log=None) as run:
        assert run == RunFolder(tmp_path, tmp_path / "ckpt-00000007")
        assert _lock_fields(tmp_path)["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()
    with open_run_folder(tmp_path / "fresh", overwrite=False, resume=True, log=None) as run:
        assert run.resume_from is None and (tmp_path / "fresh" / LOCK_FILE).exists()


def test_open_run_folder_overwrite_deletes_only_once_the_lock_is_taken(tmp_path):
    _checkpoints(tmp_path)
    child = _holding_child(tmp_path)
    try:
        with pytest.raises(RunFolderBusyError, match=f"process {child.pid}"):
            with open_run_folder(tmp_path, overwrite=True, resume=False, log=None):
                pytest.fail("entered a folder another trainer holds")
        assert len(list_checkpoints(tmp_path)) == 2  # the other trainer's checkpoints are intact
    finally:
        child.stdin.close()
        _finish(child)
    with open_run_folder(tmp_path, overwrite=True, resume=False, log=None) as run:
        assert run.resume_from is None and list_checkpoints(tmp_path) == []


def test_open_run_folder_refusals(tmp_path):
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        with open_run_folder(tmp_path / "run", overwrite=True, resume=True, log=None):
            pass
    assert not (tmp_path / "run").exists()
    _checkpoints(tmp_path / "run")
    with pytest.raises(ValueError, match="already holds checkpoints .*--resume.*--overwrite"):
        with open_run_folder(tmp_path / "run", overwrite=False, resume=False, log=None):
            pass
    assert not (tmp_path / "run" / LOCK_FILE).exists() and len(list_checkpoints(tmp_path / "run")) == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="lies under"):
        with open_run_folder(tmp_path / "file" / "run", overwrite=False, resume=False, log=None):
            pass


def test_open_run_folder_without_the_lock(tmp_path):
    _checkpoints(tmp_path)
    with open_run_folder(tmp_path, overwrite=False, resume=True, lock=False, log=None) as run:
        assert run.resume_from == tmp_path / "ckpt-00000002"
        assert not (tmp_path / LOCK_FILE).exists()
    # a process other than 0 starts afresh on overwrite but leaves the deleting to process 0
    with open_run_folder(tmp_path, overwrite=True, resume=False, lock=False, log=None) as run:
        assert run.resume_from is None and len(list_checkpoints(tmp_path)) == 2
    with pytest.raises(ValueError, match="already holds checkpoints"):
        with open_run_folder(tmp_path, overwrite=False, resume=False, lock=False, log=None):
            pass
    with open_run_folder(tmp_path / "new", overwrite=False, resume=False, lock=False, log=None) as run:
        assert run.resume_from is None
    assert not (tmp_path / "new").exists()


def test_prepare_checkpoint_dir_moved_unchanged(tmp_path):
    assert prepare_checkpoint_dir(tmp_path) is None
    _checkpoints(tmp_path)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        prepare_checkpoint_dir(tmp_path)
    with pytest.raises(ValueError, match="exclude each other"):
        prepare_checkpoint_dir(tmp_path, overwrite=True, resume=True)
    assert prepare_checkpoint_dir(tmp_path, resume=True) == tmp_path / "ckpt-00000002"
    assert prepare_checkpoint_dir(tmp_path, overwrite=True) is None and list_checkpoints(tmp_path) == []


def test_the_lock_class_is_not_reentrant_by_object(tmp_path):
    lock = RunFolderLock(tmp_path, log=None)
    with lock:
        with pytest.raises(RuntimeError, match="not reentrant"):
            lock.acquire()
    assert not (tmp_path / LOCK_FILE).exists()
