"""Downloading and unpacking the data sets: streamed, resumable, checksummed, atomic.

`download_file` streams an http(s) URL into `<destination>.part`; if that file is already
there (an earlier run was interrupted) it asks the server for the rest with a `Range`
request and carries on, so the SHA-256 it returns always covers the whole file. Only a
complete download is renamed to `<destination>`. `jaxseq.data.archive.unpack_zip` (also
importable from here) extracts into a staging folder next to the target, within limits, and
renames it into place, so the target never exists half-filled. `download_dataset` puts the
two together for the data sets in `DATASETS`, each bounded by its known unpacked size.

A server may lie or crawl, so a download is bounded (`DownloadLimits`): a size bound
(`max_bytes`: a declared length above it is refused before a byte is read, and reading stops
the moment the body passes it), a stall rule (at least `stall_bytes` every `stall_window`
seconds) and an overall `deadline`. The data sets' defaults come from their known archive
sizes (`DatasetSpec.download_limits`).

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from jaxseq.checks import check_positive_int
from jaxseq.data.archive import UnpackLimits, remove_stale_staging, required_file_problems, unpack_zip
from jaxseq.data.locations import download_root

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DownloadError",
    "DownloadLimits",
    "DOWNLOAD_SIZE_MARGIN",
    "UNPACKED_SIZE_MARGIN",
    "check_url",
    "default_data_root",
    "default_deadline",
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
DOWNLOAD_SIZE_MARGIN = 2  # and its archive may be twice its known size
STALL_WINDOW = 60.0  # seconds: the stall rule wants at least STALL_BYTES in every window
STALL_BYTES = 16_384  # (a link of 273 bytes/s passes it)
SLOW_LINK_RATE = 100_000  # bytes/s: the default deadline lets a link this slow fetch max_bytes
DEADLINE_FLOOR = 600.0  # seconds added to that, for the handshake and slow starts


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


@dataclass(frozen=True)
class DownloadLimits:
    """How much and how slowly a server may send before a download is given up.

    `max_bytes`: the most the file may hold (None: no bound); a declared length (Content-Length,
    Content-Range) above it is refused before a byte is read, and a body that passes it is
    cut off there (a ValueError: the server lied). `stall_bytes` / `stall_window`: at least
    that many bytes must arrive in every `stall_window` seconds. `deadline`: seconds for the
    whole download, retries included (None: `default_deadline(max_bytes)`, or no deadline
    without a size bound). A stall or a passed deadline is a `DownloadError` that keeps the
    `.part` file for the next run to resume.
    """

    max_bytes: int | None = None
    stall_bytes: int = STALL_BYTES
    stall_window: float = STALL_WINDOW
    deadline: float | None = None

    def __post_init__(self):
        check_positive_int("max_bytes", self.max_bytes, allow_none=True)
        if isinstance(self.stall_bytes, bool) or not isinstance(self.stall_bytes, int) or self.stall_bytes < 0:
            raise ValueError(f"stall_bytes must be an int >= 0, got {self.stall_bytes!r}")
        _check_seconds("stall_window", self.stall_window)
        if self.deadline is not None:
            _check_seconds("deadline", self.deadline)

    @property
    def seconds(self) -> float | None:
        """The deadline in seconds, the default one filled in."""
        if self.deadline is not None:
            return self.deadline
        return None if self.max_bytes is None else default_deadline(self.max_bytes)


def default_deadline(max_bytes: int) -> float:
    """`DEADLINE_FLOOR` seconds plus the time `max_bytes` take at `SLOW_LINK_RATE` bytes/s."""
    return DEADLINE_FLOOR + max_bytes / SLOW_LINK_RATE


def _check_seconds(name: str, value) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    if not ok:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


class _Clock:
    """The deadline of one `download_file` call and the stall rule's current window."""

    def __init__(self, limits: DownloadLimits):
        self.limits = limits
        self.start = time.monotonic()
        seconds = limits.seconds
        self.end = None if seconds is None else self.start + seconds

    def remaining(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()

    def socket_timeout(self, timeout: float) -> float:
        """No single wait outlasts the stall window or the deadline."""
        return max(0.01, min(timeout, self.limits.stall_window, self.remaining()))

    def start_window(self, received: int) -> None:
        self.window_start, self.window_bytes = time.monotonic(), received

    def check(self, url: str, received: int, part: Path) -> None:
        """DownloadError once the deadline has passed or the last window saw too few bytes."""
        now = time.monotonic()
        if self.end is not None and now >= self.end:
            raise DownloadError(
                f"download of {url} passed its deadline of {_seconds(self.end - self.start)} (the deadline rule; "
                f"--deadline); {_kept(part)}", url=url)
        if now - self.window_start >= self.limits.stall_window:
            arrived = received - self.window_bytes
            if arrived < self.limits.stall_bytes:
                raise DownloadError(
                    f"download of {url} stalled: {arrived:,} bytes in {now - self.window_start:.1f} s, fewer "
                    f"than {self.limits.stall_bytes:,} in {_seconds(self.limits.stall_window)} (the stall rule; "
                    f"--stall-bytes, --stall-window); {_kept(part)}", url=url)
            self.start_window(received)


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 10 else f"{value:g} s"


def _kept(part: Path) -> str:
    kept = part.stat().st_size if part.exists() else 0
    return f"{kept:,} bytes are kept in {part}: run again to resume"



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
    `archive_size` is about the size of the zip itself; `download_limits` allows
    `DOWNLOAD_SIZE_MARGIN` times that to be downloaded.
    """

    name: str
    url: str
    filename: str
    target: str
    top_folder: str | None
    keep_top_folder: bool
    required: tuple[str, ...]
    unpacked_size: int
    archive_size: int
    description: str
    sha256: str | None = None  # no published checksum: the computed one is printed

    @property
    def unpack_limits(self) -> UnpackLimits:
        """How much its zip may unpack to (size, compression ratio, member count)."""
        return UnpackLimits(max_bytes=UNPACKED_SIZE_MARGIN * self.unpacked_size)

    @property
    def download_limits(self) -> DownloadLimits:
        """How large its zip may be (and so the default deadline), and the stall rule."""
        return DownloadLimits(max_bytes=DOWNLOAD_SIZE_MARGIN * self.archive_size)


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
        # float32 features hardly deflate: the zip is about as large as what it holds.
        archive_size=2_330_000_000,
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
        archive_size=255_000,  # cola_public_1.1.zip is about 0.25 MB
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


def _content_length(headers, url: str) -> int | None:
    """The declared Content-Length, None if there is none; one that is not a count of bytes
    (negative, not a number) is a ValueError: no body could ever match it."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    if not re.fullmatch(r"\s*\d+\s*", value):
        raise ValueError(f"{url} declares an invalid Content-Length {_shown(value)}, expected a "
                         "number of bytes >= 0; refusing the download")
    return int(value)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:20] + "...")


def _one_line(text) -> str:
    """A server's text (a reason phrase, urllib's redirect message) on one line."""
    return " ".join(str(text).split())


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
                desc: str, clock: _Clock) -> str:
    """One attempt: fetch (the rest of) `url` into `part`; returns the whole file's SHA-256.

    Raises `_Interrupted` when the transfer stops early (the bytes that arrived stay in
    `part`), `DownloadError` for a failure that retrying will not fix (a stall, the deadline:
    `part` stays), ValueError for a server that lies (a length above `max_bytes` or not a
    number, a body longer than `max_bytes`: nothing is read, or `part` is deleted).
    """
    offset = part.stat().st_size if part.exists() else 0
    max_bytes = clock.limits.max_bytes
    retry = lambda: _fetch_into(url, part, chunk_size=chunk_size, progress=progress,  # noqa: E731
                                timeout=timeout, desc=desc, clock=clock)
    try:
        response = _open(url, offset, clock.socket_timeout(timeout))
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
            return retry()
        reason = _one_line(error.reason)
        if status >= 500 or status == 408:
            raise _Interrupted(f"{url} answered HTTP {status} {reason}") from None
        if 300 <= status < 400:  # urllib gave up following: a loop, or more than it follows
            raise DownloadError(f"downloading {url} failed: its redirects (HTTP {status}) loop or go on for "
                                f"more than {urllib.request.HTTPRedirectHandler.max_redirections} hops",
                                url=url, status=status) from None
        raise DownloadError(f"downloading {url} failed: HTTP {status} {reason}",
                            url=url, status=status) from None

    with response:
        status = response.status
        length = _content_length(response.headers, url)
        hasher = hashlib.sha256()
        if status == 206 and offset:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                # Not the range we asked for: discard what we have and start over.
                response.close()
                part.unlink()
                return retry()
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
                                f"{_one_line(response.reason)}", url=url, status=status)
        if max_bytes is not None and expected_total is not None and expected_total > max_bytes:
            # Refused before a byte is read; a part file from earlier stays (it is within the bound).
            raise ValueError(f"{url} declares {expected_total:,} bytes, more than the limit of {max_bytes:,} "
                             "bytes (max_bytes / --max-bytes); refused before reading")

        from jaxseq.progress import progress_bar  # on stderr, when it is a terminal

        received = offset
        clock.start_window(received)
        bar = progress_bar(expected_total, initial=offset, description=desc, enabled=progress, leave=True,
                           unit="B", unit_scale=True, unit_divisor=1024)
        complete = False
        try:
            with open(part, mode) as handle:
                while True:
                    clock.check(url, received, part)
                    try:  # read1: whatever has arrived, so that a trickle cannot hold a read
                        chunk = response.read1(chunk_size)
                    except _TRANSIENT_ERRORS as error:
                        raise _Interrupted(f"connection lost after {received} bytes: "
                                           f"{error}") from error
                    if not chunk:
                        break
                    if max_bytes is not None and received + len(chunk) > max_bytes:
                        handle.close()
                        part.unlink()  # longer than any file it may be: no resume can use it
                        raise ValueError(f"{url} sent more than the limit of {max_bytes:,} bytes (max_bytes / "
                                         "--max-bytes); stopped reading there and deleted the partial file")
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
    limits: DownloadLimits | None = None,
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
    HTTP errors raise `DownloadError` naming the URL and the status, as do a redirect to
    anything but http(s) and a redirect loop. A URL that is not http(s) is a ValueError,
    raised before anything is written.

    `limits` (a `DownloadLimits`; default: no size bound, the stall rule, no deadline)
    bound the download: a declared length above `max_bytes`, or one that is not a number of
    bytes, is a ValueError before a byte is read; a body that passes `max_bytes` is a
    ValueError the moment it does (the part file is deleted: no resume could use it). Fewer
    than `stall_bytes` in a `stall_window`, or the `deadline` passing, is a DownloadError
    saying which rule fired; the part file stays, to resume.
    """
    check_url(url)
    expected = _check_sha256(expected_sha256)
    clock = _Clock(limits if limits is not None else DownloadLimits())
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    attempt = 0
    while True:
        try:
            digest = _fetch_into(url, part, chunk_size=chunk_size, progress=progress,
                                 timeout=timeout, desc=destination.name, clock=clock)
            break
        except _Interrupted as error:
            attempt += 1
            if attempt > retries:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"download of {url} interrupted ({error}); {kept} bytes are kept in "
                    f"{part}: run again to resume", url=url) from error
            if retry_wait > 0:
                time.sleep(max(0.0, min(retry_wait * 2 ** (attempt - 1), 30.0, clock.remaining())))
            clock.start_window(0)
            clock.check(url, 0, part)  # the deadline may have passed while waiting
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
    max_bytes: int | None = None,
    stall_bytes: int | None = None,
    stall_window: float | None = None,
    deadline: float | None = None,
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

    The download is bounded as `download_file` describes (`DownloadLimits`); each bound left
    None is the data set's default (`spec.download_limits`): `max_bytes` twice its known
    archive size, the stall rule (`STALL_BYTES` every `STALL_WINDOW` seconds) and a
    deadline of `default_deadline(max_bytes)`.
    """
    say = log or (lambda message: None)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    source = check_url(url) if url is not None else spec.url
    given: dict[str, Any] = {"max_bytes": max_bytes, "stall_bytes": stall_bytes, "stall_window": stall_window,
             "deadline": deadline}
    limits = replace(spec.download_limits, **{key: value for key, value in given.items() if value is not None})
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
        digest = download_file(source, archive, expected_sha256=expected, progress=progress, limits=limits)
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
