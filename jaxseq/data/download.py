"""Downloading and unpacking the data sets: streamed, resumable, checksummed, atomic.

`download_file` streams a URL into `<destination>.part`; if that file is already there (an
earlier run was interrupted) it asks the server for the rest with a `Range` request and
carries on, so the SHA-256 it returns always covers the whole file. Only a complete
download is renamed to `<destination>`. `unpack_zip` extracts into a temporary folder next to
the target and renames it into place, so the target never exists half-filled.
`download_dataset` puts the two together for the data sets in `DATASETS`.

Only the standard library is used (plus tqdm for the progress bar, imported when needed),
so importing this module is cheap and needs no JAX.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DownloadError",
    "default_data_root",
    "download_dataset",
    "download_file",
    "file_sha256",
    "read_download_record",
    "unpack_zip",
]

USER_AGENT = "jaxseq-downloader/0.1 (Python urllib)"
DEFAULT_CHUNK_SIZE = 1 << 20  # 1 MiB
DOWNLOAD_RECORD = ".jaxseq-download.json"
_IGNORED_TOP_LEVEL = {"__MACOSX"}  # resource forks added by macOS archivers


class DownloadError(OSError):
    """A download failed (HTTP error, unreachable host, connection lost). Names the URL."""

    def __init__(self, message: str, *, url: str, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status

    def __str__(self) -> str:  # OSError's default adds nothing useful here
        return self.args[0]


class _Interrupted(Exception):
    """The transfer stopped part-way; the `.part` file holds what arrived. Worth a retry."""


# --------------------------------------------------------------------------------------
# Data set registry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set comes from and how its zip is laid out on disk.

    `target` is the folder under the data root that ends up holding the data. If the zip's
    members all sit in one folder called `top_folder`, that folder is unwrapped
    (`keep_top_folder=False`: its contents become `target`) or kept
    (`keep_top_folder=True`: `target/top_folder/...`, created if the zip lacks it).
    `required` lists paths, relative to `target`, that must exist after unpacking.
    """

    name: str
    url: str
    filename: str
    target: str
    top_folder: str | None
    keep_top_folder: bool
    required: tuple[str, ...]
    description: str
    sha256: str | None = None  # no published checksum: the computed one is printed


DATASETS: dict[str, DatasetSpec] = {
    "coco": DatasetSpec(
        name="coco",
        url="http://cs231n.stanford.edu/coco_captioning.zip",
        filename="coco_captioning.zip",
        target="coco_captioning",
        top_folder="coco_captioning",
        keep_top_folder=False,
        required=("coco2014_captions.h5", "coco2014_vocab.json"),
        description="COCO captions with VGG-16 fc7 features, in the course's HDF5 format",
    ),
    "cola": DatasetSpec(
        name="cola",
        url="https://nyu-mll.github.io/CoLA/cola_public_1.1.zip",
        filename="cola_public_1.1.zip",
        target="cola",
        top_folder="cola_public",
        keep_top_folder=True,
        required=(
            "cola_public/raw/in_domain_train.tsv",
            "cola_public/raw/in_domain_dev.tsv",
            "cola_public/raw/out_of_domain_dev.tsv",
        ),
        description="The Corpus of Linguistic Acceptability, public release 1.1",
    ),
}


def default_data_root() -> Path:
    """`$JAXSEQ_DATA` if set, else `~/.cache/jaxseq`."""
    env = os.environ.get("JAXSEQ_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "jaxseq"


# --------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------


def _check_sha256(value: str | None, what: str = "expected_sha256") -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"{what} must be 64 hexadecimal digits (a SHA-256), got {value!r}")
    return text


def file_sha256(path: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK_SIZE) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """`bytes START-END/TOTAL` or `bytes */TOTAL` -> (start, end, total); unknowns are None."""
    if not value:
        return None, None, None
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value)
    if not match:
        return None, None, None
    start = int(match[1]) if match[1] is not None else None
    end = int(match[2]) if match[2] is not None else None
    total = int(match[3]) if match[3] != "*" else None
    return start, end, total


def _content_length(headers) -> int | None:
    value = headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


_TRANSIENT_ERRORS = (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException)


def _open(url: str, offset: int, timeout: float):
    """urlopen with our headers; a Range header when resuming from `offset`."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError:
        raise  # handled by the caller, which knows the offset
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, _TRANSIENT_ERRORS) and not isinstance(
            reason, ConnectionRefusedError
        ):
            raise _Interrupted(f"connection to {url} failed: {reason}") from error
        raise DownloadError(f"cannot reach {url}: {reason}", url=url) from None
    except _TRANSIENT_ERRORS as error:
        raise _Interrupted(f"connection to {url} failed: {error}") from error


def _fetch_into(url: str, part: Path, *, chunk_size: int, progress: bool, timeout: float,
                desc: str) -> str:
    """One attempt: fetch (the rest of) `url` into `part`; returns the whole file's SHA-256.

    Raises `_Interrupted` when the transfer stops early (the bytes that arrived stay in
    `part`), `DownloadError` for a failure that retrying will not fix.
    """
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        status = error.code
        content_range = error.headers.get("Content-Range") if error.headers else None
        error.close()
        if status == 416 and offset:
            # The server has nothing after `offset`: either the part file is already the
            # whole file, or it is longer than the file (stale): then start over.
            _, _, total = _parse_content_range(content_range)
            if total is not None and total == offset:
                return file_sha256(part, chunk_size)
            part.unlink()
            return _fetch_into(url, part, chunk_size=chunk_size, progress=progress,
                               timeout=timeout, desc=desc)
        if status >= 500 or status == 408:
            raise _Interrupted(f"{url} answered HTTP {status} {error.reason}") from None
        raise DownloadError(f"downloading {url} failed: HTTP {status} {error.reason}",
                            url=url, status=status) from None

    with response:
        status = response.status
        length = _content_length(response.headers)
        hasher = hashlib.sha256()
        if status == 206 and offset:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                # Not the range we asked for: discard what we have and start over.
                response.close()
                part.unlink()
                return _fetch_into(url, part, chunk_size=chunk_size, progress=progress,
                                   timeout=timeout, desc=desc)
            with open(part, "rb") as handle:  # the resumed prefix counts in the digest
                for chunk in iter(lambda: handle.read(chunk_size), b""):
                    hasher.update(chunk)
            mode = "ab"
            expected_total = total if total is not None else (
                offset + length if length is not None else None)
        elif status == 200:
            # A fresh download, or a server that ignores Range and sends the whole file.
            offset = 0
            mode = "wb"
            expected_total = length
        else:
            raise DownloadError(f"downloading {url} failed: unexpected HTTP {status} "
                                f"{response.reason}", url=url, status=status)

        from tqdm.auto import tqdm

        received = offset
        bar = tqdm(total=expected_total, initial=offset, unit="B", unit_scale=True,
                   unit_divisor=1024, desc=desc, disable=not progress)
        complete = False
        try:
            with open(part, mode) as handle:
                while True:
                    try:
                        chunk = response.read(chunk_size)
                    except _TRANSIENT_ERRORS as error:
                        raise _Interrupted(f"connection lost after {received} bytes: "
                                           f"{error}") from error
                    if not chunk:
                        break
                    handle.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if expected_total is not None and received != expected_total:
                raise _Interrupted(f"connection closed after {received} of {expected_total} "
                                   "bytes")
            complete = True
        finally:
            bar.leave = complete  # one bar on screen per file, not one per attempt
            bar.close()
    return hasher.hexdigest()


def download_file(
    url: str,
    destination: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    retry_wait: float = 1.0,
) -> str:
    """Download `url` to `destination`, resumably; return the file's SHA-256 (hex).

    Bytes go to `destination + ".part"`. If that file exists, only the rest is requested
    (`Range: bytes=N-`): a 206 answer is appended, a 200 answer (server ignores ranges)
    restarts from scratch, a 416 answer means the part file is already complete (or stale,
    then it restarts). A connection lost mid-transfer is retried `retries` times, resuming
    each time (waiting `retry_wait`, doubled each try); if it still fails, a
    `DownloadError` is raised and the part file stays for the next call to resume.

    The digest covers the whole file, resumed prefix included. If `expected_sha256` is
    given and differs, the part file is deleted and a ValueError names the URL and both
    digests. Only a complete, verified file is renamed (`os.replace`) to `destination`.
    HTTP errors raise `DownloadError` naming the URL and the status.
    """
    expected = _check_sha256(expected_sha256)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    attempt = 0
    while True:
        try:
            digest = _fetch_into(url, part, chunk_size=chunk_size, progress=progress,
                                 timeout=timeout, desc=destination.name)
            break
        except _Interrupted as error:
            attempt += 1
            if attempt > retries:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"download of {url} interrupted ({error}); {kept} bytes are kept in "
                    f"{part}: run again to resume", url=url) from error
            if retry_wait > 0:
                time.sleep(min(retry_wait * 2 ** (attempt - 1), 30.0))
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise ValueError(f"checksum mismatch for {url}: expected sha256 {expected}, "
                         f"got {digest}; the downloaded file was deleted")
    os.replace(part, destination)
    return digest


# --------------------------------------------------------------------------------------
# Unpacking
# --------------------------------------------------------------------------------------


def _check_member_name(name: str, archive: Path) -> None:
    """Reject absolute paths, drive letters and `..` components (zip-slip)."""
    windows = PureWindowsPath(name)
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or windows.drive or windows.root or ".." in posix.parts:
        raise ValueError(f"{archive}: refusing to unpack member '{name}': it would be "
                         "written outside the target folder (absolute path or '..')")


def _is_ignored(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and (parts[0] in _IGNORED_TOP_LEVEL or parts[-1] == ".DS_Store")


def unpack_zip(
    archive: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    top_folder: str | None = None,
    keep_top_folder: bool = False,
    required: tuple[str, ...] | list[str] = (),
) -> Path:
    """Unpack `archive` into `target_dir`, atomically; returns `target_dir`.

    Everything is extracted into a temporary folder next to the target, checked, then
    renamed into place, so `target_dir` never exists half-filled; an existing `target_dir`
    is replaced only once the new one is complete. Members with absolute paths or `..`
    are rejected before anything is written. A corrupt or truncated zip raises a
    ValueError naming the file. `__MACOSX/` and `.DS_Store` entries are skipped.

    If every member lies in one folder named `top_folder`, that folder is unwrapped
    (default) or, with `keep_top_folder=True`, kept as `target_dir/top_folder` (and
    created if the zip lacks it). `required` paths (relative to `target_dir`) must exist
    afterwards, else a ValueError lists the missing ones and nothing is put in place.
    """
    archive = Path(archive)
    target = Path(target_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(f"{archive} is not a valid zip file ({error})") from None

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpacking-", dir=target.parent))
    old = None
    try:
        with zf:
            members = [info for info in zf.infolist() if not _is_ignored(info.filename)]
            for info in members:
                _check_member_name(info.filename, archive)
            if not any(not info.is_dir() for info in members):
                raise ValueError(f"{archive} contains no files")
            for info in members:
                try:
                    zf.extract(info, staging)
                except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                    raise ValueError(f"{archive} is corrupt: cannot extract member "
                                     f"'{info.filename}' ({error})") from None

        entries = list(staging.iterdir())
        has_top = (top_folder is not None and len(entries) == 1 and entries[0].is_dir()
                   and entries[0].name == top_folder)
        if top_folder is not None and keep_top_folder:
            content = staging
            if not (staging / top_folder).is_dir():  # wrap loose contents into the folder
                wrapper = Path(tempfile.mkdtemp(prefix=".wrap-", dir=staging))
                for entry in entries:
                    entry.rename(wrapper / entry.name)
                wrapper.rename(staging / top_folder)
        else:
            content = staging / top_folder if has_top else staging

        missing = [name for name in required if not (content / name).exists()]
        if missing:
            raise ValueError(f"{archive} does not hold the expected files: missing "
                             f"{', '.join(missing)}")

        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
            os.rename(target, old)
        try:
            os.rename(content, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
                old = None
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------


def read_download_record(target_dir: str | os.PathLike) -> dict | None:
    """What `download_dataset` recorded about the download of `target_dir` (URL, sha256)."""
    path = Path(target_dir) / DOWNLOAD_RECORD
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_record(target: Path, record: dict) -> None:
    path = target / DOWNLOAD_RECORD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def download_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    url: str | None = None,
    expected_sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
    *,
    keep_archive: bool = False,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Download and unpack data set `name` (a key of `DATASETS`); returns its folder.

    The data lands in `<root>/<spec.target>` (root defaults to `default_data_root()`).
    If that folder exists the download is skipped, unless `force`. `url` overrides the
    registry's URL (a mirror, or a local server in tests). The zip is downloaded to
    `<root>/<spec.filename>` through a `.part` file that survives an interruption, so
    running again resumes; the zip is deleted after unpacking unless `keep_archive`.
    The SHA-256 of the zip is logged and recorded in `<target>/.jaxseq-download.json`;
    with `expected_sha256`, a mismatch is a ValueError and nothing is unpacked. An archive
    that cannot be unpacked (corrupt, unsafe member paths, expected files missing) is
    deleted and reported as a ValueError.
    """
    say = log or (lambda message: None)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    expected = _check_sha256(expected_sha256) or spec.sha256
    root = Path(root).expanduser() if root is not None else default_data_root()
    target = root / spec.target
    if target.exists() and not force:
        say(f"{name}: already present in {target} (use force / --force to download again)")
        return target

    root.mkdir(parents=True, exist_ok=True)
    archive = root / spec.filename
    part = archive.with_name(archive.name + ".part")
    source = url or spec.url
    if force:
        archive.unlink(missing_ok=True)
        part.unlink(missing_ok=True)

    if archive.is_file():
        say(f"{name}: using the already downloaded {archive}")
        digest = file_sha256(archive)
        if expected is not None and digest != expected:
            archive.unlink()
            raise ValueError(f"checksum mismatch for {archive}: expected sha256 {expected}, "
                             f"got {digest}; the file was deleted, run again to download it")
    else:
        if part.exists():
            say(f"{name}: resuming {source} from {part.stat().st_size} bytes into {archive}")
        else:
            say(f"{name}: downloading {source} to {archive}")
        digest = download_file(source, archive, expected_sha256=expected, progress=progress)
    say(f"{name}: sha256 {digest}  {archive.name}")

    say(f"{name}: unpacking into {target}")
    try:
        unpack_zip(archive, target, top_folder=spec.top_folder,
                   keep_top_folder=spec.keep_top_folder, required=spec.required)
    except ValueError as error:  # corrupt, unsafe or wrong archive: useless, so drop it
        archive.unlink(missing_ok=True)
        raise ValueError(f"{error}; the archive was deleted, run again to download it "
                         "afresh") from None
    _write_record(target, {"dataset": name, "url": source, "archive": spec.filename,
                           "sha256": digest})
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return target
