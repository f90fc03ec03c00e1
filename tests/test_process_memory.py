"""The `jaxseq` command's process keeps freed memory (`jaxseq.process_memory`): a large block
freed by a worker thread and allocated again is not page-faulted in anew; JAXSEQ_MALLOC=system
keeps glibc's defaults, and importing jaxseq changes nothing."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from jaxseq import cli, process_memory

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting is glibc's")

# A worker thread allocates a 64 MB block, writes every page, frees it, three times; prints the
# minor page faults of the last two rounds (the first faults the memory in either way).
CHILD = """
import ctypes, resource, sys, threading
{prelude}
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
faults = []
def rounds():
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=rounds)
thread.start()
thread.join()
print(sum(faults[1:]))
"""


def faults_after_the_first_round(prelude: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD.replace("{prelude}", prelude)], capture_output=True,
                          text=True, timeout=120, check=True)
    return int(done.stdout)


@glibc_only
def test_a_freed_block_is_reused_without_page_faults():
    pages = (64 << 20) // 4096
    default = faults_after_the_first_round("")
    kept = faults_after_the_first_round("from jaxseq import process_memory\nassert process_memory.keep_freed_memory()")
    assert default > pages, default  # glibc maps the block afresh each time: every page faults again
    assert kept < pages // 20, kept


@glibc_only
def test_importing_jaxseq_changes_nothing():
    pages = (64 << 20) // 4096
    assert faults_after_the_first_round("import jaxseq, jaxseq.cli, jaxseq.process_memory") > pages


@pytest.fixture
def entry(monkeypatch):
    """entry_point with the setting and main recorded instead of run."""
    calls = []
    monkeypatch.setattr(process_memory, "keep_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 0)
    return calls


def test_the_command_keeps_freed_memory_before_anything_else(entry, monkeypatch):
    monkeypatch.delenv(process_memory.ENV, raising=False)
    assert cli.entry_point() == 0 and entry == ["kept", "main"]


def test_jaxseq_malloc_system_keeps_the_defaults(entry, monkeypatch):
    monkeypatch.setenv(process_memory.ENV, "system")
    assert cli.entry_point() == 0 and entry == ["main"]


def test_a_wrong_jaxseq_malloc_is_one_line_naming_it(entry, monkeypatch, capsys):
    monkeypatch.setenv(process_memory.ENV, "fast")
    assert cli.entry_point() == 2 and entry == []
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "JAXSEQ_MALLOC" in error and "'fast'" in error

