"""Unpacking a data set's zip: atomic, bounded, and safe against archives that lie.

`unpack_zip` extracts into a staging folder next to the target and renames it into place,
so the target never exists half-filled. Before anything is written it refuses, from the
zip's headers: members with absolute paths or `..` (zip-slip), more members than
`UnpackLimits.max_members`, declared sizes adding up to more than `max_bytes`, and
compression ratios above `max_ratio` (per member, and for the whole archive against its
real size on disk). Declared sizes can lie, so while writing it counts the bytes each member
really yields (`copy_bounded`) and stops a member at its declared size. Symbolic-link
members become plain files holding the link's text; nothing is written outside the
staging folder. Every refusal is a one-line ValueError naming the archive (and member).

Staging folders are named `.<target>.unpacking-<pid>-<host>-<random>`, and the folder old
data is moved aside to while it is replaced `.<target>.old-<pid>-<host>-<random>`, so that
`remove_stale_staging` can tell the leftovers of a killed run from a live run's folders.
Folders and files get the usual permissions (0777 / 0666 less the umask).

Only the standard library is used, so importing this module is cheap.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import stat
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Iterable

__all__ = [
    "ByteLimitExceeded",
    "DEFAULT_LIMITS",
    "STALE_AFTER_SECONDS",
    "UnpackLimits",
    "copy_bounded",
    "remove_stale_staging",
    "required_file_problems",
    "unpack_zip",
]

COPY_CHUNK_SIZE = 1 << 20  # 1 MiB
STALE_AFTER_SECONDS = 3600.0
_IGNORED_TOP_LEVEL = {"__MACOSX"}  # resource forks added by macOS archivers
_STAGING_KINDS = ("unpacking", "old")


@dataclass(frozen=True)
class UnpackLimits:
    """What one archive may unpack to.

    max_bytes: total uncompressed size of the members written.
    max_ratio: uncompressed / compressed size, checked for each member of at least
      `ratio_floor` bytes, and for the whole archive (the members' total over the zip's size
      on disk) once that total reaches `ratio_floor`. Text and float features compress a few
      times; a zip bomb about a thousand times.
    max_members: number of entries (files and folders) in the zip.
    """

    max_bytes: int
    max_ratio: float = 100.0
    max_members: int = 1000
    ratio_floor: int = 1 << 20


DEFAULT_LIMITS = UnpackLimits(max_bytes=8 << 30)  # data sets pass their own (DatasetSpec)


class ByteLimitExceeded(ValueError):
    """`copy_bounded` met more bytes than it may write; `limit` is how many it allowed."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit:,} bytes")
        self.limit = limit


def copy_bounded(source: IO[bytes], destination: IO[bytes], limit: int, *,
                 chunk_size: int = COPY_CHUNK_SIZE) -> int:
    """Copy `source` to `destination` (binary file objects); returns the bytes written.

    Counts what it really copies: if `source` holds more than `limit` bytes it raises
    ByteLimitExceeded before writing the chunk that would pass the limit, so `destination`
    never receives more than `limit` bytes.
    """
    written = 0
    while chunk := source.read(min(chunk_size, limit - written + 1)):
        if written + len(chunk) > limit:
            raise ByteLimitExceeded(limit)
        destination.write(chunk)
        written += len(chunk)
    return written


# --------------------------------------------------------------------------------------
# Checks made from the zip's headers, before anything is written
# --------------------------------------------------------------------------------------


def _check_member_name(name: str, zip_path: Path) -> None:
    """Reject absolute paths, drive letters and `..` components (zip-slip)."""
    windows = PureWindowsPath(name)
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or windows.drive or windows.root or ".." in posix.parts:
        raise ValueError(f"{zip_path}: refusing to unpack member '{name}': it would be "
                         "written outside the target folder (absolute path or '..')")


def _is_ignored(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and (parts[0] in _IGNORED_TOP_LEVEL or parts[-1] == ".DS_Store")


def _check_declared_sizes(infos: list[zipfile.ZipInfo], members: list[zipfile.ZipInfo],
                          zip_path: Path, limits: UnpackLimits) -> None:
    """Member count, total size and compression ratios as the headers declare them."""
    if len(infos) > limits.max_members:
        raise ValueError(f"{zip_path}: refusing to unpack: it has {len(infos):,} members, more "
                         f"than the limit of {limits.max_members:,}")
    total = sum(info.file_size for info in members)
    if total > limits.max_bytes:
        raise ValueError(f"{zip_path}: refusing to unpack: its members would unpack to "
                         f"{total:,} bytes, more than the limit of {limits.max_bytes:,} bytes")
    for info in members:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= limits.ratio_floor and ratio > limits.max_ratio:
            raise ValueError(
                f"{zip_path}: refusing to unpack member '{info.filename}': it would expand "
                f"{ratio:,.0f} times (from {info.compress_size:,} to {info.file_size:,} bytes), "
                f"more than the limit of {limits.max_ratio:g} times")
    size = max(zip_path.stat().st_size, 1)
    if total >= limits.ratio_floor and total > limits.max_ratio * size:
        raise ValueError(f"{zip_path}: refusing to unpack: its members would expand the "
                         f"{size:,}-byte archive {total / size:,.0f} times, more than the limit "
                         f"of {limits.max_ratio:g} times")


def _checked_members(zf: zipfile.ZipFile, zip_path: Path,
                     limits: UnpackLimits) -> list[zipfile.ZipInfo]:
    """The members to extract (macOS junk skipped), once every header check has passed."""
    infos = zf.infolist()
    members = [info for info in infos if not _is_ignored(info.filename)]
    for info in members:
        _check_member_name(info.filename, zip_path)
    if not any(not info.is_dir() for info in members):
        raise ValueError(f"{zip_path} contains no files")
    _check_declared_sizes(infos, members, zip_path, limits)
    return members


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _make_unique_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder `parent/<prefix><random>` with the usual permissions (0777 less the
    umask; `tempfile.mkdtemp` would make it 0700, and the renamed data folder with it)."""
    while True:
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, staging: Path,
                    zip_path: Path) -> None:
    """Write one member under `staging`, stopping it at the size its header declares."""
    destination = staging.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
    try:
        if info.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            return
        destination.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as source, open(destination, "wb") as out:
            copy_bounded(source, out, info.file_size)
    except ByteLimitExceeded:
        raise ValueError(f"{zip_path}: refusing to unpack member '{info.filename}': it holds "
                         f"more than the {info.file_size:,} bytes its header declares") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ValueError(f"{zip_path} is corrupt: cannot extract member "
                         f"'{info.filename}' ({error})") from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
        raise ValueError(f"{zip_path}: cannot unpack member '{info.filename}': another member "
                         f"has the same path ({error.strerror})") from None


def _arrange_top_folder(staging: Path, top_folder: str | None, keep_top_folder: bool) -> Path:
    """The folder inside `staging` that becomes the target (see `unpack_zip`)."""
    entries = list(staging.iterdir())
    if top_folder is not None and keep_top_folder:
        if not (staging / top_folder).is_dir():  # wrap loose contents into the folder
            wrapper = _make_unique_folder(staging, ".wrap-")
            for entry in entries:
                entry.rename(wrapper / entry.name)
            wrapper.rename(staging / top_folder)
        return staging
    has_top = (top_folder is not None and len(entries) == 1 and entries[0].is_dir()
               and entries[0].name == top_folder)
    return entries[0] if has_top else staging  # entries[0]: staging / top_folder


def file_kind(path: str | os.PathLike) -> tuple[str | None, os.stat_result | None]:
    """(problem, stat) of what should be a regular file: problem None for a regular file,
    "missing", "a directory" or "not a regular file" (a named pipe, device or socket,
    which a reader would block on or misread); stat None when it is missing."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing", None
    if stat.S_ISDIR(info.st_mode):
        return "a directory", info
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file", info
    return None, info


def required_file_problems(folder: str | os.PathLike, required: Iterable[str]) -> list[str]:
    """What keeps each of `required` (paths relative to `folder`) from being a regular,
    non-empty file: "missing X", "X is a directory, not a file", "X is not a regular file",
    "X is empty". An empty list means all is well."""
    folder = Path(folder)
    problems = []
    for name in required:
        problem, info = file_kind(folder / name)
        if problem == "missing":
            problems.append(f"missing {name}")
        elif problem == "a directory":
            problems.append(f"{name} is a directory, not a file")
        elif problem is not None:
            problems.append(f"{name} is {problem}")
        elif info is not None and info.st_size == 0:
            problems.append(f"{name} is empty")
    return problems


def _staging_prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{os.getpid()}-{_host_name()}-"


def _swap_into_place(content: Path, target: Path) -> Path | None:
    """Rename `content` to `target`; an existing target is first moved aside, and that
    folder is returned for the caller to delete (None if there was no target)."""
    old = None
    if target.exists():
        old = target.with_name(_staging_prefix(target, "old") + secrets.token_hex(4))
        os.rename(target, old)
    try:
        os.rename(content, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    return old


def unpack_zip(
    archive: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    top_folder: str | None = None,
    keep_top_folder: bool = False,
    required: tuple[str, ...] | list[str] = (),
    limits: UnpackLimits = DEFAULT_LIMITS,
) -> Path:
    """Unpack the zip `archive` into `target_dir`, atomically and within `limits`; returns
    `target_dir`.

    Everything is extracted into a staging folder next to the target, checked, then renamed
    into place, so `target_dir` never exists half-filled; an existing `target_dir` is
    replaced only once the new one is complete. Stale staging folders of earlier, killed
    runs for the same target are removed first (`remove_stale_staging`). Unsafe member
    names, too many members, too many bytes or too high a compression ratio are refused
    before anything is written (see `UnpackLimits`); a member holding more than its header
    declares is stopped while it is written. A corrupt or truncated zip raises a ValueError
    naming the file. `__MACOSX/` and `.DS_Store` entries are skipped.

    If every member lies in one folder named `top_folder`, that folder is unwrapped
    (default) or, with `keep_top_folder=True`, kept as `target_dir/top_folder` (and
    created if the zip lacks it). Each of `required` (paths relative to `target_dir`) must
    then be a regular, non-empty file, else a ValueError lists what is wrong and nothing
    is put in place.
    """
    zip_path = Path(archive)
    target = Path(target_dir)
    remove_stale_staging(target)
    try:
        zf = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(f"{zip_path} is not a valid zip file ({error})") from None

    with zf:
        members = _checked_members(zf, zip_path, limits)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = _make_unique_folder(target.parent, _staging_prefix(target, "unpacking"))
        old = None
        try:
            for info in members:
                _extract_member(zf, info, staging, zip_path)
            content = _arrange_top_folder(staging, top_folder, keep_top_folder)
            problems = required_file_problems(content, required)
            if problems:
                raise ValueError(f"{zip_path} does not hold the expected files: "
                                 f"{'; '.join(problems)}")
            old = _swap_into_place(content, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------
# Leftovers of killed runs
# --------------------------------------------------------------------------------------


def _host_name() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _last_change(folder: Path) -> float:
    """The newest modification time of `folder` and everything in it."""
    newest = folder.lstat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def _is_stale(folder: Path, owner: re.Match | None) -> bool:
    if owner is not None and owner["host"] == _host_name() and os.name != "nt":
        return not _process_exists(int(owner["pid"]))
    return time.time() - _last_change(folder) > STALE_AFTER_SECONDS


def remove_stale_staging(target: str | os.PathLike) -> None:
    """Remove the staging folders that killed runs left next to `target`; restore data that
    a run killed while replacing it left aside.

    Only folders of this target (`.<name>.unpacking-*`, `.<name>.old-*`) are looked at, and
    only stale ones are touched, so a concurrent run is safe:

    - A folder named with a process id of this host is stale once that process is gone
      (`os.kill(pid, 0)` finds no such process). A live run's folders are never touched; a
      recycled process id can only make a stale folder look alive (it is then left until
      that process ends), never the reverse.
    - A folder of another host (a data root on a shared file system), or one named without
      an owner (by jaxseq before folders recorded it), is stale once nothing in it has changed
      for `STALE_AFTER_SECONDS` (an hour): a run writes while it unpacks, and takes seconds
      to minutes.

    A stale `.unpacking-` folder is deleted. A stale `.old-` folder holds the previous data
    of a run killed between moving it aside and moving the new data in: it is renamed back
    to `target` if `target` is missing, and deleted if `target` is there.
    """
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?P<kind>{'|'.join(_STAGING_KINDS)})-"
                         r"(?P<rest>.*)")
    owner_pattern = re.compile(r"(?P<pid>\d+)-(?P<host>.+)-[0-9a-z_]+")
    try:
        entries = list(target.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            if not _is_stale(entry, owner_pattern.fullmatch(match["rest"])):
                continue
            if match["kind"] == "old" and not target.exists():
                os.rename(entry, target)
                continue
        except OSError:  # a concurrent run got there first
            continue
        shutil.rmtree(entry, ignore_errors=True)
