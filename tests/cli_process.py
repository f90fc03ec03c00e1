"""Running the real `jaxseq` entry point in a child process, as a user's shell would.

In-process calls of `jaxseq.cli.main` let an unexpected exception escape into pytest; a
child process shows what a user sees: the exit status and exactly what reaches stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def run_jaxseq(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m jaxseq.cli ARGV...` in the repository root, output captured as text."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "jaxseq.cli", *argv], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed (non-zero status) with one line on stderr, no traceback, holding
    every fragment; returns that line."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
