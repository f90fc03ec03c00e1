"""Downloading and unpacking the data sets: streamed, resumable, checksummed, atomic.

`download_file` streams an http(s) URL into `<destination>.part`; if that file is already
there (an earlier run was interrupted) it asks the server for the rest with a `Range`
request and carries on, so the SHA-256 it returns always covers the whole file. Only a
complete download is renamed to `<destination>`. `jaxseq.data.archive.unpack_zip` (also
importable from here) extracts into a staging folder next to the target, within limits, and
renames it into place, so the target never exists half-filled. `download_dataset` puts the
two together for the data sets in `DATASETS`, each bounded by its known unpacked size.

Only the standard library is used (plus tqdm for the progress bar, via jaxseq.progress, imported when needed),
so importing this module is cheap and needs no JAX.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from jaxseq.data.archive import UnpackLimits, remove_stale_staging, required_file_problems, unpack_zip
from jaxseq.data.locations import download_root

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DownloadError",
    "UNPACKED_SIZE_MARGIN",
    "check_url",
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
HTTP_SCHEMES = ("http", "https")
UNPACKED_SIZE_MARGIN = 2  # a data set's zip may unpack to twice its known size, no more


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
    `required` lists paths, relative to `target`, that must be regular, non-empty files
    after unpacking (and for the data to count as present). `unpacked_size` is about what
    the real zip unpacks to; `unpack_limits` allows `UNPACKED_SIZE_MARGIN` times that.
    """

    name: str
    url: str
    filename: str
    target: str
    top_folder: str | None
    keep_top_folder: bool
    required: tuple[str, ...]
    unpacked_size: int
    description: str
    sha256: str | None = None  # no published checksum: the computed one is printed

    @property
    def unpack_limits(self) -> UnpackLimits:
        """How much its zip may unpack to (size, compression ratio, member count)."""
        return UnpackLimits(max_bytes=UNPACKED_SIZE_MARGIN * self.unpacked_size)


DATASETS: dict[str, DatasetSpec] = {
    "coco": DatasetSpec(
        name="coco",
        url="http://cs231n.stanford.edu/coco_captioning.zip",
        filename="coco_captioning.zip",
        target="coco_captioning",
        top_folder="coco_captioning",
        keep_top_folder=False,
        required=("coco2014_captions.h5", "coco2014_vocab.json"),
        # fc7 features (82,783 train + 40,504 val images x 4,096 float32) 2.03 GB, their
        # 512-d PCA 0.25 GB, captions 43 MB, URL lists 7 MB, vocabulary 20 kB.
        unpacked_size=2_330_000_000,
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
        unpacked_size=1_500_000,  # raw and tokenized TSV files and a README
        description="The Corpus of Linguistic Acceptability, public release 1.1",
    ),
}


def default_data_root() -> Path:
    """`$JAXSEQ_DATA` if set, else `~/.cache/jaxseq`: `jaxseq.data.locations.download_root`,
    the first roots the loaders look in, so what is downloaded is found."""
    return download_root()


# --------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------


def check_url(url: str, what: str = "url") -> str:
    """`url` if it is a well-formed http:// or https:// URL with a host name; otherwise a
    one-line ValueError naming `what` (the argument, e.g. "--url") and what is wrong."""
    try:
        parts = urlsplit(url)
        parts.port  # a port out of range or not a number raises here
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{what} is not a valid URL ({error}): {url!r}") from None
    if parts.scheme.lower() not in HTTP_SCHEMES:
        raise ValueError(f"{what} must be an http:// or https:// URL, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"{what} has no host name: {url!r}")
    if re.search(r"[\x00-\x20\x7f]", url):
        raise ValueError(f"{what} must not contain spaces or control characters: {url!r}")
    return url


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


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only (urllib's own handler also follows ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in HTTP_SCHEMES:
            fp.close()
            raise DownloadError(f"{req.full_url} redirects to {newurl}, which is not an "
                                "http(s) URL", url=req.full_url)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpRedirectsOnly)


def _open(url: str, offset: int, timeout: float):
    """urlopen with our headers; a Range header when resuming from `offset`."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return _OPENER.open(request, timeout=timeout)
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

        from jaxseq.progress import progress_bar  # on stderr, when it is a terminal

        received = offset
        bar = progress_bar(expected_total, initial=offset, description=desc, enabled=progress, leave=True,
                           unit="B", unit_scale=True, unit_divisor=1024)
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
    """Download the http(s) `url` to `destination`, resumably; return the file's SHA-256 (hex).

    Bytes go to `destination + ".part"`. If that file exists, only the rest is requested
    (`Range: bytes=N-`): a 206 answer is appended, a 200 answer (server ignores ranges)
    restarts from scratch, a 416 answer means the part file is already complete (or stale,
    then it restarts). A connection lost mid-transfer is retried `retries` times, resuming
    each time (waiting `retry_wait`, doubled each try); if it still fails, a
    `DownloadError` is raised and the part file stays for the next call to resume.

    The digest covers the whole file, resumed prefix included. If `expected_sha256` is
    given and differs, the part file is deleted and a ValueError names the URL and both
    digests. Only a complete, verified file is renamed (`os.replace`) to `destination`.
    HTTP errors raise `DownloadError` naming the URL and the status, as does a redirect to
    anything but http(s). A URL that is not http(s) is a ValueError, raised before anything
    is written.
    """
    check_url(url)
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
    that cannot be unpacked (corrupt, unsafe member paths, larger than `spec.unpack_limits`
    allow, expected files missing, empty or not files) is deleted and reported as a
    ValueError. Staging folders that killed runs left are removed first, and a present
    folder whose required files are not all regular, non-empty files is an error (nothing
    is downloaded; `force` replaces it). A `url` that is not http(s) is a ValueError,
    raised before anything is created.
    """
    say = log or (lambda message: None)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    source = check_url(url) if url is not None else spec.url
    expected = _check_sha256(expected_sha256) or spec.sha256
    root = Path(root).expanduser() if root is not None else default_data_root()
    target = root / spec.target
    remove_stale_staging(target)
    if target.exists() and not force:
        problems = required_file_problems(target, spec.required)
        if problems:
            raise ValueError(f"{name}: {target} is incomplete: {'; '.join(problems)}; download "
                             "it again with force=True / --force")
        say(f"{name}: already present in {target} (use force / --force to download again)")
        return target

    root.mkdir(parents=True, exist_ok=True)
    archive = root / spec.filename
    part = archive.with_name(archive.name + ".part")
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
        unpack_zip(archive, target, top_folder=spec.top_folder, keep_top_folder=spec.keep_top_folder,
                   required=spec.required, limits=spec.unpack_limits)
    except ValueError as error:  # corrupt, unsafe, oversized or wrong archive: drop it
        archive.unlink(missing_ok=True)
        raise ValueError(f"{error}; the archive was deleted, run again to download it "
                         "afresh") from None
    _write_record(target, {"dataset": name, "url": source, "archive": spec.filename,
                           "sha256": digest})
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return target
