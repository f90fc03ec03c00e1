"""The data downloader, against a local HTTP server on 127.0.0.1 (no internet needed).

The server serves zips the tests build in the real layouts (the course's
`coco_captioning.zip`, CoLA's `cola_public_1.1.zip`), honours `Range: bytes=N-`, and can
be told to drop the connection part-way through a file, to ignore ranges, or to redirect.
It can also lie (`Lie`): declare any Content-Length or none, send more or fewer bytes than
it declares, and trickle them; each such body is bounded in bytes and in time.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxseq.data import download as dl
from tests.cli_process import assert_one_line_error, run_jaxseq
from tests.zip_files import (COCO_FILES, COLA_FILES, big_payload, coco_zip, leftovers, make_zip,
                             set_declared_size, sha)

# --------------------------------------------------------------------------------------
# The local server
# --------------------------------------------------------------------------------------


@dataclass
class Lie:
    """A hostile answer: `length` is the Content-Length header as sent (None: no header, the
    body ends when the connection closes); then `size` zero bytes (at most) go out in chunks
    of `chunk`, `delay` seconds apart, for at most `seconds`."""

    length: str | None
    size: int
    chunk: int = 65_536
    delay: float = 0.0
    seconds: float = 10.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        path = urlsplit(self.path).path
        range_header = self.headers.get("Range")
        server.requests.append((path, range_header))
        if path in server.redirects:
            self.send_response(302)
            self.send_header("Location", server.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path in server.lies:
            self.lie(server.lies[path])
            return
        data = server.files.get(path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start, status = 0, 200
        if range_header and not server.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            assert match, range_header
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        drops = server.drop_after.get(path)
        if drops:  # send part of the body, then cut the connection
            cut = drops.pop(0)
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def lie(self, lie: Lie):
        self.send_response(200)
        if lie.length is not None:
            self.send_header("Content-Length", lie.length)
        self.end_headers()
        self.close_connection = True
        sent, stop = 0, time.monotonic() + lie.seconds  # bounded in bytes and in time
        try:
            while sent < lie.size and time.monotonic() < stop:
                piece = min(lie.chunk, lie.size - sent)
                self.wfile.write(bytes(piece))
                self.wfile.flush()
                sent += piece
                if lie.delay:
                    time.sleep(lie.delay)
        except OSError:  # the client gave up: what the tests want
            pass
        self.server.sent.append(sent)


class LocalServer:
    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.files = {}
        self.httpd.requests = []
        self.httpd.redirects = {}
        self.httpd.drop_after = {}  # path -> list of byte counts, one per request to cut
        self.httpd.ignore_range = False
        self.httpd.lies = {}  # path -> Lie
        self.httpd.sent = []  # bytes each lie got out before the client stopped reading
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, data: bytes) -> str:
        self.httpd.files[path] = data
        return self.url(path)

    @property
    def requests(self):
        return self.httpd.requests

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    local = LocalServer()
    yield local
    local.close()


# --------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------


def test_full_download_and_checksum(server, tmp_path):
    data = big_payload()
    url = server.add("/file.bin", data)
    dest = tmp_path / "sub" / "file.bin"
    digest = dl.download_file(url, dest, expected_sha256=sha(data).upper(), progress=False,
                              chunk_size=8192)
    assert digest == sha(data)
    assert dest.read_bytes() == data
    assert not (tmp_path / "sub" / "file.bin.part").exists()
    assert server.requests == [("/file.bin", None)]


def test_progress_bar_runs(server, tmp_path, capsys):
    data = big_payload(50_000)
    url = server.add("/file.bin", data)
    assert dl.download_file(url, tmp_path / "f", progress=True) == sha(data)
    assert "file" not in capsys.readouterr().out  # the bar goes to stderr, not stdout


def test_resume_after_interruption(server, tmp_path):
    data = big_payload()
    url = server.add("/file.bin", data)
    server.httpd.drop_after["/file.bin"] = [123_457]
    dest = tmp_path / "file.bin"
    part = tmp_path / "file.bin.part"
    with pytest.raises(dl.DownloadError, match=r"interrupted.*run again to resume") as info:
        dl.download_file(url, dest, progress=False, retries=0, chunk_size=4096)
    assert url in str(info.value)
    assert not dest.exists()
    assert part.read_bytes() == data[:123_457]

    digest = dl.download_file(url, dest, expected_sha256=sha(data), progress=False,
                              retries=0, chunk_size=4096)
    assert digest == sha(data)
    assert dest.read_bytes() == data
    assert not part.exists()
    assert server.requests[-1] == ("/file.bin", "bytes=123457-")


def test_retries_resume_within_one_call(server, tmp_path):
    data = big_payload()
    url = server.add("/file.bin", data)
    server.httpd.drop_after["/file.bin"] = [70_000, 50_000]  # two cuts, then complete
    dest = tmp_path / "file.bin"
    digest = dl.download_file(url, dest, progress=False, retries=2, retry_wait=0)
    assert digest == sha(data) and dest.read_bytes() == data
    assert [r for _, r in server.requests] == [None, "bytes=70000-", "bytes=120000-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    data = big_payload()
    url = server.add("/file.bin", data)
    server.httpd.ignore_range = True
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes from another file" * 100)
    digest = dl.download_file(url, dest, progress=False)
    assert server.requests == [("/file.bin", "bytes=2900-")]  # asked, got 200 + whole file
    assert digest == sha(data) and dest.read_bytes() == data


def test_416_with_complete_part_finishes(server, tmp_path):
    data = big_payload(10_000)
    url = server.add("/file.bin", data)
    (tmp_path / "file.bin.part").write_bytes(data)
    assert dl.download_file(url, tmp_path / "file.bin", progress=False) == sha(data)
    assert (tmp_path / "file.bin").read_bytes() == data


def test_416_with_too_long_part_restarts(server, tmp_path):
    data = big_payload(10_000)
    url = server.add("/file.bin", data)
    (tmp_path / "file.bin.part").write_bytes(b"x" * 20_000)
    assert dl.download_file(url, tmp_path / "file.bin", progress=False) == sha(data)
    assert (tmp_path / "file.bin").read_bytes() == data
    assert [r for _, r in server.requests] == ["bytes=20000-", None]


def test_checksum_mismatch(server, tmp_path):
    data = big_payload(10_000)
    url = server.add("/file.bin", data)
    wrong = "0" * 64
    with pytest.raises(ValueError) as info:
        dl.download_file(url, tmp_path / "file.bin", expected_sha256=wrong, progress=False)
    message = str(info.value)
    assert url in message and wrong in message and sha(data) in message
    assert not (tmp_path / "file.bin").exists()
    assert not (tmp_path / "file.bin.part").exists()


def test_bad_expected_sha256_is_rejected_before_download(server, tmp_path):
    url = server.add("/file.bin", b"abc")
    with pytest.raises(ValueError, match="64 hexadecimal"):
        dl.download_file(url, tmp_path / "f", expected_sha256="abc", progress=False)
    assert server.requests == []


def test_http_404_names_url_and_status(server, tmp_path):
    url = server.url("/missing.zip")
    with pytest.raises(dl.DownloadError) as info:
        dl.download_file(url, tmp_path / "missing.zip", progress=False)
    assert url in str(info.value) and "404" in str(info.value)
    assert info.value.status == 404
    assert not (tmp_path / "missing.zip").exists()
    assert len(server.requests) == 1  # a 404 is not retried


def test_unreachable_host(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/x.zip"
    with pytest.raises(dl.DownloadError, match=re.escape(url)):
        dl.download_file(url, tmp_path / "x.zip", progress=False, retry_wait=0)


def test_redirect_is_followed(server, tmp_path):
    data = big_payload(5_000)
    target = server.add("/real.zip", data)
    server.httpd.redirects["/old.zip"] = target
    assert dl.download_file(server.url("/old.zip"), tmp_path / "a.zip",
                            progress=False) == sha(data)


def test_redirect_to_a_non_http_url_is_refused(server, tmp_path):
    server.httpd.redirects["/old.zip"] = "ftp://127.0.0.1/cola.zip"
    with pytest.raises(dl.DownloadError, match=r"redirects to ftp://127\.0\.0\.1/cola\.zip, "
                                               r"which is not an http\(s\) URL"):
        dl.download_file(server.url("/old.zip"), tmp_path / "a.zip", progress=False)
    assert leftovers(tmp_path) == []


BAD_URLS = [
    ("file:///etc/services", "must be an http:// or https:// URL, got 'file:///etc/services'"),
    ("data:,hello", "must be an http:// or https:// URL, got 'data:,hello'"),
    ("ftp://127.0.0.1/cola.zip", "must be an http:// or https:// URL"),
    ("127.0.0.1/cola.zip", "must be an http:// or https:// URL"),
    ("http://[::1", "is not a valid URL (Invalid IPv6 URL): 'http://[::1'"),
    ("http://127.0.0.1:99999/cola.zip", "is not a valid URL (Port out of range"),
    ("http:///cola.zip", "has no host name: 'http:///cola.zip'"),
]


@pytest.mark.parametrize("url, problem", BAD_URLS)
def test_download_file_accepts_only_http_urls(tmp_path, url, problem):
    with pytest.raises(ValueError, match=re.escape(f"url {problem}")):
        dl.download_file(url, tmp_path / "x.zip", progress=False)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------
# Registry, data root, download_dataset
# --------------------------------------------------------------------------------------


def test_registry_and_cli_names_agree():
    from jaxseq.commands.data import DATASET_NAMES

    assert sorted(DATASET_NAMES) == sorted(dl.DATASETS)
    assert dl.DATASETS["coco"].url == "http://cs231n.stanford.edu/coco_captioning.zip"
    assert dl.DATASETS["cola"].url == "https://nyu-mll.github.io/CoLA/cola_public_1.1.zip"


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXSEQ_DATA", str(tmp_path / "d"))
    assert dl.default_data_root() == tmp_path / "d"
    monkeypatch.delenv("JAXSEQ_DATA")
    assert dl.default_data_root() == Path.home() / ".cache" / "jaxseq"


def test_download_dataset_uses_env_root_and_skips_when_present(server, tmp_path,
                                                                monkeypatch):
    blob = coco_zip()
    url = server.add("/coco_captioning.zip", blob)
    monkeypatch.setenv("JAXSEQ_DATA", str(tmp_path))
    path = dl.download_dataset("coco", url=url, progress=False, log=None)
    assert path == tmp_path / "coco_captioning"
    assert dl.read_download_record(path)["sha256"] == sha(blob)
    assert not (tmp_path / "coco_captioning.zip").exists()  # deleted after unpacking
    assert dl.download_dataset("coco", url=url, progress=False, log=None) == path
    assert len(server.requests) == 1  # the second call did not download
    dl.download_dataset("coco", url=url, progress=False, force=True, log=None)
    assert len(server.requests) == 2


def test_download_dataset_resumes_partial_zip(server, tmp_path):
    blob = make_zip(COLA_FILES, compression=zipfile.ZIP_STORED)
    url = server.add("/cola_public_1.1.zip", blob)
    (tmp_path / "cola_public_1.1.zip.part").write_bytes(blob[:500])
    path = dl.download_dataset("cola", root=tmp_path, url=url, progress=False, log=None)
    assert server.requests == [("/cola_public_1.1.zip", "bytes=500-")]
    assert dl.read_download_record(path)["sha256"] == sha(blob)
    assert (path / "cola_public" / "raw" / "in_domain_train.tsv").is_file()


def test_download_dataset_wrong_archive_is_deleted(server, tmp_path):
    url = server.add("/cola_public_1.1.zip", coco_zip())  # the wrong data set
    with pytest.raises(ValueError, match=r"missing cola_public/raw/in_domain_train.tsv.*"
                                         r"archive was deleted"):
        dl.download_dataset("cola", root=tmp_path, url=url, progress=False, log=None)
    assert leftovers(tmp_path) == []


def test_download_dataset_checks_the_present_files(server, tmp_path):
    # Data left by an older jaxseq that accepted a directory for a required file.
    broken = tmp_path / "cola" / "cola_public" / "raw"
    (broken / "in_domain_train.tsv").mkdir(parents=True)
    (broken / "in_domain_dev.tsv").write_text("gj04\t0\t*\tThey drank the pub.\n")
    (broken / "out_of_domain_dev.tsv").write_text("")
    url = server.add("/cola_public_1.1.zip", make_zip(COLA_FILES))
    with pytest.raises(ValueError) as info:
        dl.download_dataset("cola", root=tmp_path, url=url, progress=False, log=None)
    assert str(info.value) == (
        f"cola: {tmp_path / 'cola'} is incomplete: cola_public/raw/in_domain_train.tsv is a "
        "directory, not a file; cola_public/raw/out_of_domain_dev.tsv is empty; download it "
        "again with force=True / --force")
    assert server.requests == []
    dl.download_dataset("cola", root=tmp_path, url=url, progress=False, force=True, log=None)
    assert (broken / "in_domain_train.tsv").read_bytes() == COLA_FILES["cola_public/raw/in_domain_train.tsv"]


def test_download_dataset_removes_stale_staging_even_when_present(server, tmp_path):
    url = server.add("/cola_public_1.1.zip", make_zip(COLA_FILES))
    dl.download_dataset("cola", root=tmp_path, url=url, progress=False, log=None)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process that is gone, as a killed run is
    stale = tmp_path / f".cola.unpacking-{child.pid}-{socket.gethostname()}-abc123"
    (stale / "cola_public").mkdir(parents=True)
    dl.download_dataset("cola", root=tmp_path, url=url, progress=False, log=None)
    assert leftovers(tmp_path) == ["cola"]


def test_download_dataset_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        dl.download_dataset("mnist", root=tmp_path, log=None)


# --------------------------------------------------------------------------------------
# The command line, end to end
# --------------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    from jaxseq.cli import main

    return main(["data", "download", *argv])


@pytest.mark.parametrize("top_folder", [True, False], ids=["with-top-folder", "flat"])
def test_cli_coco(server, tmp_path, capsys, top_folder):
    blob = coco_zip(top_folder)
    url = server.add("/coco_captioning.zip", blob)
    assert run_cli("coco", "--root", str(tmp_path), "--url", url, "--no-progress") == 0
    out = capsys.readouterr().out
    target = tmp_path / "coco_captioning"
    assert str(target) in out and sha(blob) in out
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) \
        == sorted(COCO_FILES)
    for name, data in COCO_FILES.items():
        assert (target / name).read_bytes() == data
    assert leftovers(tmp_path) == ["coco_captioning"]  # no zip, part or staging left


@pytest.mark.parametrize("top_folder", [True, False], ids=["with-top-folder", "flat"])
def test_cli_cola(server, tmp_path, capsys, top_folder):
    files = COLA_FILES if top_folder else {
        name.removeprefix("cola_public/"): data for name, data in COLA_FILES.items()}
    blob = make_zip(files)
    url = server.add("/cola_public_1.1.zip", blob)
    assert run_cli("cola", "--root", str(tmp_path), "--url", url, "--no-progress",
                   "--sha256", sha(blob)) == 0
    out = capsys.readouterr().out
    target = tmp_path / "cola"
    assert str(target) in out and sha(blob) in out
    for name, data in COLA_FILES.items():
        assert (target / name).read_bytes() == data
    assert leftovers(tmp_path) == ["cola"]


def test_cli_checksum_mismatch(server, tmp_path, capsys):
    url = server.add("/coco_captioning.zip", coco_zip())
    code = run_cli("coco", "--root", str(tmp_path), "--url", url, "--no-progress",
                   "--sha256", "ab" * 32)
    assert code == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and url in err and "ab" * 32 in err
    assert leftovers(tmp_path) == []


def test_cli_rejects_malformed_sha256(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("coco", "--root", str(tmp_path), "--sha256", "xyz")
    assert info.value.code == 2
    assert "--sha256" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("url, problem", BAD_URLS)
def test_cli_refuses_bad_urls_in_one_line(tmp_path, capsys, url, problem):
    root = tmp_path / "root"
    assert run_cli("cola", "--root", str(root), "--url", url, "--no-progress") == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxseq data: error: --url ") and problem in err and err.count("\n") == 1, err
    assert not root.exists()  # refused before anything was created


def test_cli_bad_url_through_the_real_entry_point(tmp_path):
    result = run_jaxseq("data", "download", "cola", "--root", str(tmp_path), "--url",
                        "file:///etc/services", "--no-progress")
    assert result.returncode == 2
    assert_one_line_error(result, "--url must be an http:// or https:// URL")
    assert leftovers(tmp_path) == []


def test_cli_refuses_a_zip_bomb(server, tmp_path):
    # 2.2 MB of CoLA-like lines (under CoLA's 3 MB bound) squeezed about 500 times.
    files = dict(COLA_FILES)
    files["cola_public/raw/in_domain_train.tsv"] = b"gj04\t1\t\tA.\n" * 200_000
    blob = make_zip(files)
    assert len(blob) < 20_000
    url = server.add("/cola_public_1.1.zip", blob)
    result = run_jaxseq("data", "download", "cola", "--root", str(tmp_path), "--url", url, "--no-progress")
    assert result.returncode == 2
    assert_one_line_error(result, "cola_public_1.1.zip", "member 'cola_public/raw/in_domain_train.tsv'",
                          "more than the limit of 100 times", "the archive was deleted")
    assert leftovers(tmp_path) == []


def test_cli_refuses_a_zip_that_declares_gigabytes(server, tmp_path, capsys):
    blob = set_declared_size(make_zip(COLA_FILES), "cola_public/README", 2 << 30)
    url = server.add("/cola_public_1.1.zip", blob)
    assert run_cli("cola", "--root", str(tmp_path), "--url", url, "--no-progress") == 2
    err = capsys.readouterr().err
    assert "would unpack to 2,147,4" in err and "more than the limit of 3,000,000 bytes" in err
    assert err.count("\n") == 1
    assert leftovers(tmp_path) == []


def test_cli_directory_for_a_required_file_is_refused(server, tmp_path, capsys):
    files = dict(COLA_FILES)
    del files["cola_public/raw/in_domain_train.tsv"]
    files["cola_public/raw/in_domain_train.tsv/"] = b""
    url = server.add("/cola_public_1.1.zip", make_zip(files, dirs=False))
    assert run_cli("cola", "--root", str(tmp_path), "--url", url, "--no-progress") == 2
    assert "cola_public/raw/in_domain_train.tsv is a directory, not a file" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


def test_cli_http_error(server, tmp_path, capsys):
    url = server.url("/nope.zip")
    assert run_cli("cola", "--root", str(tmp_path), "--url", url, "--no-progress") == 1
    err = capsys.readouterr().err
    assert "404" in err and url in err
    assert not (tmp_path / "cola").exists()


def test_cli_interrupted_then_resumed(server, tmp_path, capsys, monkeypatch):
    blob = coco_zip()
    url = server.add("/coco_captioning.zip", blob)
    server.httpd.drop_after["/coco_captioning.zip"] = [1000] * 4  # more cuts than retries
    monkeypatch.setattr(dl.time, "sleep", lambda seconds: None)
    assert run_cli("coco", "--root", str(tmp_path), "--url", url, "--no-progress") == 1
    err = capsys.readouterr().err
    assert "resume" in err
    assert (tmp_path / "coco_captioning.zip.part").is_file()
    assert not (tmp_path / "coco_captioning").exists()
    assert run_cli("coco", "--root", str(tmp_path), "--url", url, "--no-progress") == 0
    assert sha(blob) in capsys.readouterr().out
    assert (tmp_path / "coco_captioning" / "coco2014_vocab.json").is_file()


# --------------------------------------------------------------------------------------
# Servers that lie or crawl: the size bound, the stall rule, the deadline
# --------------------------------------------------------------------------------------

FAST = dict(progress=False, retries=0, retry_wait=0, timeout=5)


def test_the_data_sets_download_bounds():
    cola, coco = dl.DATASETS["cola"].download_limits, dl.DATASETS["coco"].download_limits
    assert cola.max_bytes == 510_000  # twice CoLA's 0.25 MB archive
    assert coco.max_bytes == 4_660_000_000
    assert (cola.stall_bytes, cola.stall_window) == (16_384, 60.0)
    assert cola.seconds == pytest.approx(605.1)  # 10 minutes, plus 510 kB at 100 kB/s
    assert coco.seconds == pytest.approx(47_200)  # 4.66 GB at 100 kB/s: 13 hours


def test_a_declared_length_above_the_bound_is_refused_before_reading(server, tmp_path):
    url = server.url("/cola.zip")
    server.httpd.lies["/cola.zip"] = Lie(length="1000000000000000", size=50_000_000)
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        dl.download_file(url, tmp_path / "cola.zip", limits=dl.DownloadLimits(max_bytes=510_000), **FAST)
    assert str(info.value) == (f"{url} declares 1,000,000,000,000,000 bytes, more than the limit of 510,000 "
                               "bytes (max_bytes / --max-bytes); refused before reading")
    assert leftovers(tmp_path) == []
    assert time.monotonic() - start < 5


def test_a_body_passing_the_bound_is_cut_off_and_deleted(server, tmp_path):
    url = server.url("/cola.zip")
    server.httpd.lies["/cola.zip"] = Lie(length=None, size=50_000_000)  # 50 MB of zeros, no length
    with pytest.raises(ValueError, match=r"sent more than the limit of 510,000 bytes .*stopped reading there "
                                         r"and deleted the partial file"):
        dl.download_file(url, tmp_path / "cola.zip", limits=dl.DownloadLimits(max_bytes=510_000), **FAST)
    assert leftovers(tmp_path) == []


def test_a_resumed_total_above_the_bound_keeps_the_part(server, tmp_path):
    data = big_payload(10_000)
    url = server.add("/file.bin", data)
    (tmp_path / "file.bin.part").write_bytes(data[:4_000])
    with pytest.raises(ValueError, match=r"declares 10,000 bytes, more than the limit of 9,999"):
        dl.download_file(url, tmp_path / "file.bin", limits=dl.DownloadLimits(max_bytes=9_999), **FAST)
    assert (tmp_path / "file.bin.part").read_bytes() == data[:4_000]  # still good for a resume
    assert dl.download_file(url, tmp_path / "file.bin", limits=dl.DownloadLimits(max_bytes=10_000),
                            **FAST) == sha(data)


@pytest.mark.parametrize("length", ["-5", "abc", "1e3", ""])
def test_a_content_length_that_is_not_a_count_is_refused(server, tmp_path, length):
    url = server.url("/cola.zip")
    server.httpd.lies["/cola.zip"] = Lie(length=length, size=100)
    with pytest.raises(ValueError) as info:
        dl.download_file(url, tmp_path / "cola.zip", **FAST)
    assert str(info.value) == (f"{url} declares an invalid Content-Length {length!r}, expected a number of "
                               "bytes >= 0; refusing the download")
    assert leftovers(tmp_path) == []


def test_a_trickle_trips_the_stall_rule(server, tmp_path):
    url = server.url("/cola.zip")
    server.httpd.lies["/cola.zip"] = Lie(length="100", size=100, chunk=1, delay=0.05, seconds=5)
    limits = dl.DownloadLimits(max_bytes=510_000, stall_bytes=50, stall_window=0.4)
    start = time.monotonic()
    with pytest.raises(dl.DownloadError) as info:
        dl.download_file(url, tmp_path / "cola.zip", limits=limits, **FAST)
    message = str(info.value)
    assert re.fullmatch(rf"download of {re.escape(url)} stalled: \d+ bytes in 0\.\d s, fewer than 50 in 0\.4 s "
                        r"\(the stall rule; --stall-bytes, --stall-window\); \d+ bytes are kept in .*cola\.zip\.part: "
                        "run again to resume", message), message
    assert 0 < (tmp_path / "cola.zip.part").stat().st_size < 50  # kept, to resume
    assert time.monotonic() - start < 3


def test_a_silent_server_trips_the_stall_rule_too(server, tmp_path):
    url = server.url("/cola.zip")
    server.httpd.lies["/cola.zip"] = Lie(length="100", size=1, delay=3, seconds=3)  # one byte, then silence
    limits = dl.DownloadLimits(stall_bytes=1, stall_window=0.3)
    start = time.monotonic()
    with pytest.raises(dl.DownloadError, match=r"interrupted \(connection lost after 1 bytes: timed out\)"):
        dl.download_file(url, tmp_path / "cola.zip", limits=limits, **{**FAST, "timeout": 60})
    assert time.monotonic() - start < 2  # the socket waits no longer than the stall window


def test_a_steady_crawl_trips_the_deadline(server, tmp_path):
    url = server.url("/cola.zip")
    server.httpd.lies["/cola.zip"] = Lie(length="100000", size=100_000, chunk=500, delay=0.02, seconds=5)
    limits = dl.DownloadLimits(stall_bytes=100, stall_window=0.2, deadline=0.6)  # the crawl passes the stall rule
    start = time.monotonic()
    with pytest.raises(dl.DownloadError) as info:
        dl.download_file(url, tmp_path / "cola.zip", limits=limits, **FAST)
    assert re.fullmatch(rf"download of {re.escape(url)} passed its deadline of 0\.6 s \(the deadline rule; "
                        r"--deadline\); [\d,]+ bytes are kept in .*: run again to resume", str(info.value)), info.value
    assert time.monotonic() - start < 2
    assert (tmp_path / "cola.zip.part").stat().st_size > 0


def test_a_slow_but_steady_link_passes(server, tmp_path):
    url = server.url("/cola.zip")
    server.httpd.lies["/cola.zip"] = Lie(length="4000", size=4000, chunk=400, delay=0.03)
    limits = dl.DownloadLimits(max_bytes=4000, stall_bytes=400, stall_window=0.2, deadline=5)
    assert dl.download_file(url, tmp_path / "cola.zip", limits=limits, **FAST) == sha(bytes(4000))


def test_a_redirect_loop_is_one_line(server, tmp_path, capsys):
    server.httpd.redirects["/a.zip"] = server.url("/b.zip")
    server.httpd.redirects["/b.zip"] = server.url("/a.zip")
    assert run_cli("cola", "--root", str(tmp_path), "--url", server.url("/a.zip"), "--no-progress") == 1
    err = capsys.readouterr().err
    assert err == (f"jaxseq data download: error: downloading {server.url('/a.zip')} failed: its redirects "
                   "(HTTP 302) loop or go on for more than 10 hops\n")
    assert leftovers(tmp_path) == []


def test_cli_refuses_a_lying_length_in_one_line(server, tmp_path):
    url = server.url("/cola_public_1.1.zip")
    server.httpd.lies["/cola_public_1.1.zip"] = Lie(length="1000000000000000", size=10_000_000)
    result = run_jaxseq("data", "download", "cola", "--root", str(tmp_path), "--url", url, "--no-progress")
    assert result.returncode == 2
    assert_one_line_error(result, "declares 1,000,000,000,000,000 bytes, more than the limit of 510,000 bytes")
    assert leftovers(tmp_path) == []


def test_cli_bounds_are_options(server, tmp_path, capsys):
    blob = make_zip(COLA_FILES)
    url = server.add("/cola_public_1.1.zip", blob)
    assert run_cli("cola", "--root", str(tmp_path), "--url", url, "--no-progress",
                   "--max-bytes", str(len(blob) - 1)) == 2
    assert f"declares {len(blob):,} bytes, more than the limit of {len(blob) - 1:,}" in capsys.readouterr().err
    server.httpd.lies["/slow.zip"] = Lie(length="100", size=100, chunk=1, delay=0.05, seconds=5)
    assert run_cli("cola", "--root", str(tmp_path), "--url", server.url("/slow.zip"), "--no-progress",
                   "--stall-bytes", "1000", "--stall-window", "0.3") == 1
    assert "(the stall rule; --stall-bytes, --stall-window)" in capsys.readouterr().err
    assert run_cli("cola", "--root", str(tmp_path), "--url", server.url("/slow.zip"), "--no-progress",
                   "--stall-bytes", "0", "--deadline", "0.4") == 1
    assert "passed its deadline of 0.4 s (the deadline rule; --deadline)" in capsys.readouterr().err
    for option, value in [("--max-bytes", "0"), ("--deadline", "-1"), ("--stall-window", "inf"),
                          ("--stall-bytes", "-1")]:
        with pytest.raises(SystemExit):
            run_cli("cola", "--root", str(tmp_path), option, value)
        assert option in capsys.readouterr().err


@pytest.mark.parametrize("field, value", [("max_bytes", 0), ("stall_bytes", -1), ("stall_window", 0.0),
                                          ("deadline", float("nan")), ("max_bytes", 1.5)])
def test_download_limits_are_checked(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        dl.DownloadLimits(**{field: value})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.one_of(st.none(), st.sampled_from(["-5", "x", " 7", "99999999999999999999"]),
                        st.integers(0, 3000).map(str)),
       size=st.integers(0, 3000), max_bytes=st.integers(1, 2500), resume=st.integers(0, 200))
def test_lying_servers_never_leave_more_than_the_bound(server, tmp_path_factory, length, size, max_bytes, resume):
    """Whatever a server declares and sends, the download either succeeds with what was
    sent (within the bound) or fails with one of the documented errors, leaving at most
    a part file within the bound."""
    folder = tmp_path_factory.mktemp("lie")
    server.httpd.lies["/f"] = Lie(length=length, size=size, chunk=700, seconds=2)
    if resume:
        (folder / "f.part").write_bytes(bytes(resume))
    limits = dl.DownloadLimits(max_bytes=max_bytes, stall_bytes=0, deadline=5)
    try:
        digest = dl.download_file(server.url("/f"), folder / "f", limits=limits, **{**FAST, "timeout": 2})
    except (ValueError, dl.DownloadError) as error:
        assert "\n" not in str(error)
    else:
        body = size if length is None else int(length)  # a body past its declared length is not read
        assert body <= size and body <= max_bytes and digest == sha(bytes(body))
        assert (folder / "f").stat().st_size == body
    part = folder / "f.part"
    assert not part.exists() or part.stat().st_size <= max(max_bytes, resume)
