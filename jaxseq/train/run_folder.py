"""Owning a run folder: checking it can be one, locking it against a second trainer, and
getting its checkpoints ready (resume from the latest, or delete them on overwrite).

    with open_run_folder(checkpoint_dir, overwrite=args.overwrite, resume=args.resume,
                         lock=jax.process_index() == 0) as run:
        ... train, `save_checkpoint(run.path, ...)`, resuming from `run.resume_from` ...

Two trainers started on one folder would delete each other's checkpoints; the lock makes
the second one stop at once with a one-line `RunFolderBusyError` naming the first.

The lock is the file `<folder>/.lock`, JSON of at most `MAX_LOCK_BYTES`:

    {"pid": 4242, "hostname": "node-1", "started": 1717171717.5,
     "process_start": 123456, "boot_id": "…", "pid_ns": "pid:[4026531836]", "token": "9f…"}

`started`: when it was taken (seconds since the epoch); `process_start`: the holder's start
time in clock ticks after boot (field 22 of /proc/<pid>/stat; null where there is no /proc)
and `boot_id` (/proc/sys/kernel/random/boot_id; null likewise), so that a pid reused by a
later process, or a lock left from before a reboot, is not taken for its holder; `pid_ns`:
the holder's PID namespace (/proc/self/ns/pid; null likewise), as a container sharing the
host's name has pids of its own; `token`:
random, tells this process's own lock from any other. It is written in full to a temporary
file and hard-linked into place, so `.lock` appears atomically, never half-written, and only
if absent (where the filesystem has no hard links: O_CREAT|O_EXCL, then the content).

A lock whose holder is gone (same host; the pid is not running, or is running but started at
another time, or the host rebooted since) is stale and taken over, with one line on `log`;
so is a lock file that cannot be read as a lock (garbage, too large, wrong types) — nothing
in it is trusted. The takeover holds an flock on the folder, so of several processes taking
over one stale lock exactly one wins (on filesystems without flock, such as some NFS mounts,
two takeovers at the same instant on one host could both succeed). A lock from another host
(or from another PID namespace, a container) cannot be checked: it counts as held, and the
error says how to remove it if it is stale.
On exit the lock is removed only if it is still this process's.

This module imports nothing of JAX (so the lock works in any process); only
`prepare_checkpoint_dir`, when called, imports `jaxseq.train.checkpoint`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import secrets
import socket
import stat
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

fcntl: ModuleType | None
try:
    import fcntl as _posix_fcntl
    fcntl = _posix_fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

LOCK_FILE = ".lock"
MAX_LOCK_BYTES = 4096  # a lock is ~200 bytes; anything larger is not one, and is not read further
MAX_PID = 2**31 - 1
MAX_TEXT = 255  # hostname, boot_id, token
_ATTEMPTS = 8  # rounds of create / judge / take over before giving up on a lock that keeps changing
_GUARD_SECONDS = 5.0  # how long to wait for another process's takeover (it takes microseconds)
_YOUNG_SECONDS = 1.0  # an empty lock file this young may be one being written (no hard links)

Log = Callable[[str], None]


def notice_on_stderr(line: str) -> None:
    """The default `log` of notices: one line on stderr."""
    print(line, file=sys.stderr)


class RunFolderBusyError(ValueError):
    """The run folder is locked by another process (running, or on another host where it
    cannot be checked); the message (one line) names the folder, the holder (pid, host,
    since when) and what to do. `holder`: the lock's fields (dict), or None."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None):
        super().__init__(message)
        self.holder = holder


# ---------------------------------------------------------------- checking the path


def check_run_dir(directory: str | os.PathLike, *, label: str = "checkpoint folder") -> Path:
    """`directory` as a Path, if it is a directory this process can use as a run folder, or
    can create as one; creates nothing. `label` names it in the messages.

    ValueError (one line, naming the path and what was expected) if it exists and is not a
    directory, is a dangling symlink, lies under a file, or cannot be listed / written /
    created (permissions, a read-only filesystem). A symlink to a directory is fine.
    """
    path = Path(directory)
    label = f"{label} {path}"
    # The path as given, not normalized: "file/../x" does lie under a file.
    for candidate in (path, *path.parents):
        try:
            info = os.stat(candidate)
        except FileNotFoundError:
            if os.path.islink(candidate):
                what = "is" if candidate == path else f"lies under {candidate},"
                raise ValueError(f"{label}: {what} a symlink to {_readlink(candidate)}, which does not exist; "
                                 "expected a directory or a path that can be created") from None
            continue
        except NotADirectoryError:
            continue  # an ancestor higher up is a file: found on the way up
        except OSError as error:
            raise ValueError(f"{label}: cannot look at {candidate} ({_reason(error)}); "
                             "expected a directory or a path that can be created") from None
        if not stat.S_ISDIR(info.st_mode):
            what = _kind(info.st_mode)
            if candidate == path:
                raise ValueError(f"{label}: exists and is {what}, not a directory; give a directory "
                                 "(or a path that can be created)")
            raise ValueError(f"{label}: lies under {candidate}, which is {what}, not a directory; "
                             "give a path whose parents are directories")
        if candidate == path:
            if not os.access(candidate, os.R_OK | os.W_OK | os.X_OK):
                raise ValueError(f"{label}: this user ({_user()}) cannot list and write in it "
                                 "(permissions or a read-only filesystem); give a folder you can write")
        elif not os.access(candidate, os.W_OK | os.X_OK):
            raise ValueError(f"{label}: cannot be created: this user ({_user()}) cannot write in {candidate} "
                             "(permissions or a read-only filesystem); give a folder you can write")
        return path
    return path  # nothing of it exists, not even "." or "/": let mkdir say what is wrong


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a directory"


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _user() -> str:
    try:
        return str(os.getuid())
    except AttributeError:  # pragma: no cover - not on POSIX
        return "?"


def _make_dir(path: Path) -> None:
    """mkdir -p after `check_run_dir`; a one-line ValueError if that still fails (a race)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"checkpoint folder {path}: cannot be created ({_reason(error)})") from None
    check_run_dir(path)  # e.g. a file created at that path in between


# ---------------------------------------------------------------- what a lock says


def _process_start(pid: int) -> int | None:
    """Start time of process `pid` in clock ticks after boot (/proc/<pid>/stat field 22), or
    None where that cannot be read (no /proc, no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read(4096)
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
        return int(text[text.rindex(b")") + 1:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            return handle.read(100).decode("ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")[:MAX_TEXT] or None
    except (OSError, AttributeError):
        return None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running, as another user
    except OSError:
        return True  # cannot tell: do not take the lock away
    return True


def _own_lock(token: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "hostname": socket.gethostname(), "started": time.time(),
            "process_start": _process_start(pid), "boot_id": _boot_id(), "pid_ns": _pid_namespace(), "token": token}


class _Unreadable(Exception):
    """The lock file is not a lock (why: str(self)). `identity`: the file's (see `_identity`);
    `young_and_empty`: it was empty and just made (perhaps still being written)."""

    identity: tuple[int, int, int] | None = None
    young_and_empty: bool = False


def _text(value: Any, name: str, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise _Unreadable(f"its {name} is not a string of 1 to {MAX_TEXT} characters")
    return value


def _parse_lock(payload: bytes) -> dict[str, Any]:
    """The fields of a lock file's bytes, checked; _Unreadable saying why not."""
    if not payload.strip():
        raise _Unreadable("it is empty")
    from jaxseq.data.json_file import parse_json_bytes  # JAX-free: the bounded parser of every JSON file

    try:
        data = parse_json_bytes(payload, "lock file", max_depth=4, expect=None)
    except ValueError as error:
        raise _Unreadable(f"it is not JSON: {str(error).removeprefix('lock file: ')}") from None
    if not isinstance(data, dict):
        raise _Unreadable(f"it holds a JSON {type(data).__name__}, not an object")
    pid = data.get("pid")
    if type(pid) is not int or not 0 < pid <= MAX_PID:
        raise _Unreadable("its pid is not a positive integer")
    started = data.get("started")
    if isinstance(started, bool) or not isinstance(started, (int, float)) or not math.isfinite(started) or not 0 <= started < 2**36:
        raise _Unreadable("its start time is not a time")
    process_start = data.get("process_start")
    if process_start is not None and (type(process_start) is not int or not 0 <= process_start < 2**63):
        raise _Unreadable("its process_start is not a non-negative integer")
    return {"pid": pid, "hostname": _text(data.get("hostname"), "hostname"), "started": float(started),
            "process_start": process_start, "boot_id": _text(data.get("boot_id"), "boot_id", nullable=True),
            "pid_ns": _text(data.get("pid_ns"), "pid_ns", nullable=True),
            "token": _text(data.get("token"), "token", nullable=True)}


def _read_lock(lock_file: Path) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """(fields, identity: see `_identity`) of the lock file; FileNotFoundError if there is none;
    _Unreadable (with the file's identity as `identity`) if it is not a lock."""
    try:
        descriptor = os.open(lock_file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP or os.path.islink(lock_file):
            unreadable = _Unreadable("it is a symlink")
        else:
            unreadable = _Unreadable(f"it cannot be opened ({_reason(error)})")
        unreadable.identity = _identity(lock_file)
        raise unreadable from None
    try:
        info = os.fstat(descriptor)
        identity = (info.st_dev, info.st_ino, info.st_ctime_ns)
        if not stat.S_ISREG(info.st_mode):
            unreadable = _Unreadable(f"it is {_kind(info.st_mode)}, not a file")
            unreadable.identity = identity
            raise unreadable
        if info.st_size > MAX_LOCK_BYTES:
            unreadable = _Unreadable(f"it holds more than the {MAX_LOCK_BYTES} bytes of a lock ({info.st_size})")
            unreadable.identity = identity
            raise unreadable
        chunks, size = [], 0
        while size <= MAX_LOCK_BYTES:  # read no more than that, whatever st_size said
            chunk = os.read(descriptor, MAX_LOCK_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except _Unreadable:
        raise
    except OSError as error:
        unreadable = _Unreadable(f"it cannot be read ({_reason(error)})")
        unreadable.identity = _identity(lock_file)
        raise unreadable from None
    finally:
        os.close(descriptor)
    payload = b"".join(chunks)
    if len(payload) > MAX_LOCK_BYTES:
        unreadable = _Unreadable(f"it holds more than the {MAX_LOCK_BYTES} bytes of a lock")
        unreadable.identity = identity
        raise unreadable
    try:
        return _parse_lock(payload), identity
    except _Unreadable as unreadable:
        unreadable.identity = identity
        unreadable.young_and_empty = not payload and time.time() - info.st_mtime < _YOUNG_SECONDS
        raise


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file `path` is: (st_dev, st_ino, st_ctime_ns), or None. The change time is part of
    it because a lock deleted and re-created at once can get its old inode number back: without
    it, a process that judged the old lock stale would take the new one for it and delete it."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_ctime_ns)


def _printable(text: str) -> str:
    """A lock's text as it may appear in a one-line message."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _when(started: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)).strip()
    except (OverflowError, OSError, ValueError):
        return "an unknown time"


def _holder(fields: dict[str, Any]) -> str:
    return f"process {fields['pid']} on host {_printable(fields['hostname'])} since {_when(fields['started'])}"


def _checkable(fields: dict[str, Any]) -> bool:
    """Whether this process can see the lock's holder: same host, same PID namespace."""
    if fields["hostname"] != socket.gethostname():
        return False
    namespace = _pid_namespace()
    return fields["pid_ns"] is None or namespace is None or fields["pid_ns"] == namespace


def _stale_reason(fields: dict[str, Any]) -> str | None:
    """Why the lock's holder is gone, or None if it may be running (or cannot be checked)."""
    if not _checkable(fields):
        return None
    boot_id = _boot_id()
    if fields["boot_id"] is not None and boot_id is not None and fields["boot_id"] != boot_id:
        return "ran before the host restarted"
    pid = fields["pid"]
    if not _pid_running(pid):
        return "is no longer running"
    if fields["process_start"] is not None:
        now = _process_start(pid)
        if now is not None and now != fields["process_start"]:
            return f"is no longer running (pid {pid} now belongs to another process)"
    return None


# ---------------------------------------------------------------- the lock


@contextlib.contextmanager
def _guard(directory: Path) -> Iterator[None]:
    """An exclusive flock on the folder while a stale lock is replaced (so that of several
    processes taking it over at once, one does); no guard where the filesystem has no flock."""
    if fcntl is None:
        yield
        return
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + _GUARD_SECONDS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunFolderBusyError(
                        f"checkpoint folder {directory}: another process has been taking over its lock "
                        f"for {_GUARD_SECONDS:.0f} s; try again, or stop the other trainer") from None
                time.sleep(0.01)
            except OSError:
                break  # no flock here (e.g. NFS on a directory): unguarded
        yield
    finally:
        os.close(descriptor)  # releases the flock


class RunFolderLock:
    """The lock of one run folder, a context manager (not reentrant):

        with RunFolderLock(directory, log=...) as lock: ...   # or lock_run_folder(directory)

    Entering checks the path (`check_run_dir`), creates the folder if needed and takes the
    lock: `RunFolderBusyError` if another process holds it; a stale one is taken over with
    one line on `log` (None: silent). Exiting — normally, on an exception, KeyboardInterrupt
    or `TrainingInterrupted` — removes the lock file if it is still this process's.
    Attributes: `path` (the folder), `lock_file`, `fields` (what the lock says, once taken).
    """

    def __init__(self, directory: str | os.PathLike, *, log: Log | None = notice_on_stderr):
        self.path = Path(directory)
        self.lock_file = self.path / LOCK_FILE
        self.fields: dict[str, Any] | None = None
        self._log = log
        self._owner_pid: int | None = None
        self._identity: tuple[int, int, int] | None = None
        self._token: str | None = None

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    def acquire(self) -> "RunFolderLock":
        """Take the lock (see the class); returns self."""
        if self._owner_pid is not None:
            raise RuntimeError(f"the lock of {self.path} is already held by this object (it is not reentrant)")
        check_run_dir(self.path)
        _make_dir(self.path)
        token = secrets.token_hex(16)
        fields = _own_lock(token)
        payload = json.dumps(fields, sort_keys=True).encode("utf-8") + b"\n"
        try:
            self._take(token, fields, payload)
        except BaseException:
            self._remove_if_ours(token, quiet=True)  # interrupted just after taking it
            raise
        return self

    def _take(self, token: str, fields: dict[str, Any], payload: bytes) -> None:
        taken_over = None
        identity: tuple[int, int, int] | None
        for attempt in range(_ATTEMPTS):
            if self._create(payload):
                self._owned(token, fields)
                if taken_over is not None:
                    self._say(taken_over)
                return
            try:
                holder, identity = _read_lock(self.lock_file)
            except FileNotFoundError:
                continue  # released in between: try again
            except _Unreadable as unreadable:
                if unreadable.young_and_empty and attempt < _ATTEMPTS - 2:
                    time.sleep(0.05)  # perhaps being written (no hard links here): look again
                    continue
                identity, reason = unreadable.identity, f"its lock file could not be read: {unreadable}"
            else:
                stale = _stale_reason(holder)
                if stale is None:
                    raise self._busy(holder)
                reason = f"its holder, {_holder(holder)}, {stale}"
            with _guard(self.path):
                if _identity(self.lock_file) != identity:
                    continue  # replaced meanwhile (by its owner's release or another takeover): judge again
                self._unlink_stale()
                if self._create(payload):
                    self._owned(token, fields)
                    self._say(f"checkpoint folder {self.path}: took over its lock, as {reason}")
                    return
            taken_over = f"checkpoint folder {self.path}: took over its lock, as {reason}"
        raise RunFolderBusyError(f"checkpoint folder {self.path}: its lock file {self.lock_file} kept changing "
                                 f"in {_ATTEMPTS} attempts to take it; another trainer is starting there: use "
                                 "another folder or try again")

    def _busy(self, holder: dict[str, Any]) -> RunFolderBusyError:
        if not _checkable(holder):
            advice = ("another PID namespace (a container), so " if holder["hostname"] == socket.gethostname()
                      else "")
            advice = (f"{advice}this host cannot check whether it is still running: if it is not, delete "
                      f"{self.lock_file} and start again; otherwise use another folder")
        elif holder["pid"] == os.getpid():
            advice = "this process already holds it (the lock is not reentrant)"
        else:
            advice = "wait for it to finish, stop it, or use another folder"
        return RunFolderBusyError(f"checkpoint folder {self.path} is in use by {_holder(holder)} "
                                  f"(lock file {self.lock_file}); {advice}", holder)

    def _create(self, payload: bytes) -> bool:
        """Put `payload` at the lock file if there is none, atomically; False if there is one."""
        temp = self.path / f"{LOCK_FILE}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as error:
            raise ValueError(f"checkpoint folder {self.path}: cannot write a lock file there ({_reason(error)})") from None
        try:
            try:
                os.write(descriptor, payload)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            try:
                os.link(temp, self.lock_file)
                return True
            except FileExistsError:
                return False
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise ValueError(f"checkpoint folder {self.path}: cannot create its lock file "
                                     f"{self.lock_file} ({_reason(error)})") from None
            return self._create_exclusive(payload)  # no hard links on this filesystem
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def _create_exclusive(self, payload: bytes) -> bool:
        try:
            descriptor = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise ValueError(f"checkpoint folder {self.path}: cannot create its lock file "
                             f"{self.lock_file} ({_reason(error)})") from None
        try:
            os.write(descriptor, payload)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return True

    def _unlink_stale(self) -> None:
        try:
            os.unlink(self.lock_file)
        except FileNotFoundError:
            pass
        except OSError as error:  # e.g. a directory named .lock
            raise ValueError(f"checkpoint folder {self.path}: its lock file {self.lock_file} is not a lock and "
                             f"cannot be removed ({_reason(error)}); remove it by hand") from None

    def _owned(self, token: str, fields: dict[str, Any]) -> None:
        self.fields, self._owner_pid, self._token = fields, os.getpid(), token
        self._identity = _identity(self.lock_file)

    def release(self) -> None:
        """Remove the lock file if it is still this process's (a forked child never removes
        its parent's); a lock replaced by someone else is left in place, with a line on `log`."""
        token = self._token
        if self._owner_pid is None or self._owner_pid != os.getpid() or token is None:
            return
        self._owner_pid, self.fields = None, None
        self._remove_if_ours(token, quiet=False)

    def _remove_if_ours(self, token: str, *, quiet: bool) -> None:
        try:
            holder, identity = _read_lock(self.lock_file)
        except FileNotFoundError:
            if not quiet:
                self._say(f"checkpoint folder {self.path}: its lock file {self.lock_file} was removed by someone "
                          "else while this run held it")
            return
        except _Unreadable as unreadable:
            if not quiet:
                self._say(f"checkpoint folder {self.path}: its lock file {self.lock_file} was replaced while this "
                          f"run held it ({unreadable}); left in place")
            return
        if holder["token"] != token:
            if not quiet:
                self._say(f"checkpoint folder {self.path}: its lock was taken by {_holder(holder)} while this run "
                          "held it; left in place")
            return
        with contextlib.suppress(FileNotFoundError):
            if _identity(self.lock_file) == identity:
                os.unlink(self.lock_file)

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def lock_run_folder(directory: str | os.PathLike, *, log: Log | None = notice_on_stderr) -> RunFolderLock:
    """`RunFolderLock(directory, log=log)`: use as `with lock_run_folder(path) as lock: ...`."""
    return RunFolderLock(directory, log=log)


# ---------------------------------------------------------------- the run's checkpoints


def _choose_checkpoint(directory: Path, overwrite: bool, resume: bool, delete: bool) -> Path | None:
    from jaxseq.train.checkpoint import list_checkpoints  # here: this module stays free of JAX

    if overwrite and resume:
        raise ValueError("resume and overwrite exclude each other: continue the run in the folder or replace it")
    existing = list_checkpoints(directory)
    if resume or not existing:
        return existing[-1] if existing else None
    if not overwrite:
        raise ValueError(
            f"checkpoint folder {directory} already holds checkpoints ({existing[-1].name}, ...); "
            "resume that run (--resume), replace it (--overwrite) or give a new folder"
        )
    if delete:
        import shutil

        for path in existing:
            shutil.rmtree(path, ignore_errors=True)  # several processes may clear a shared folder at once
    return None


def prepare_checkpoint_dir(directory: str | os.PathLike, *, overwrite: bool = False,
                           resume: bool = False) -> Path | None:
    """Get `directory` ready for a training run; returns the checkpoint to resume from, or None.

    A folder that already holds checkpoints is an error unless `resume` (continue from its
    latest checkpoint) or `overwrite` (delete them and start afresh); both at once are an
    error. `resume` on a folder without checkpoints starts afresh (so a job script can
    always pass it). Takes no lock: trainers call `open_run_folder`, which does.
    """
    return _choose_checkpoint(Path(directory), overwrite, resume, delete=True)


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """An open run folder: `path`, and `resume_from` — the checkpoint folder to continue
    from, or None to start afresh."""

    path: Path
    resume_from: Path | None


@contextlib.contextmanager
def open_run_folder(directory: str | os.PathLike, *, overwrite: bool, resume: bool, lock: bool = True,
                    log: Log | None = notice_on_stderr) -> Iterator[RunFolder]:
    """Own the run folder `directory` for a training run; yields a `RunFolder`.

    Call it after every other option is validated (a refused run leaves the folder as it
    was). In order: `overwrite` and `resume` exclude each other (ValueError, nothing
    touched); `check_run_dir`; with `lock`, the folder is created and locked
    (`RunFolderBusyError` if another trainer holds it); then, under the lock, the checkpoint
    to resume from is picked, or on `overwrite` the existing checkpoints are deleted
    (`prepare_checkpoint_dir`). The lock is released when the block ends, however it ends.

    In a multi-process JAX run pass `lock=jax.process_index() == 0`: the other processes
    take no lock and never delete (process 0 does, and is the one that writes checkpoints);
    they get the same `resume_from` (the latest checkpoint; None on overwrite) and the same
    errors for a folder that already holds checkpoints.
    """
    if overwrite and resume:
        raise ValueError("resume and overwrite exclude each other: continue the run in the folder or replace it")
    path = check_run_dir(directory)
    if not lock:
        yield RunFolder(path, _choose_checkpoint(path, overwrite, resume, delete=False))
        return
    with RunFolderLock(path, log=log):
        yield RunFolder(path, prepare_checkpoint_dir(path, overwrite=overwrite, resume=resume))
