"""The type check of the package: mypy (pinned in the dev extra), configured in
pyproject.toml's [tool.mypy] (the files it checks — all of jaxseq — the ignores that remain and
why), passes.

mypy keeps its cache in .mypy_cache/ (git-ignored): a fresh clone's first run analyses jax,
flax and numpy's annotations too (about 20 s of CPU), later runs take seconds.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["mypy"]


def _mypy(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is in the dev extra: pip install -e '.[dev]'")
    return subprocess.run([sys.executable, "-m", "mypy", "--no-color-output", "--no-error-summary", *args],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=600)


def test_the_whole_package_type_checks():
    assert CONFIG["files"] == ["jaxseq"]
    result = _mypy()  # the files and options of [tool.mypy]
    assert result.returncode == 0, f"mypy found type errors:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"


def test_type_check_sees_the_package_annotations(tmp_path):
    """A user's misuse of an annotated public name is an error to mypy: the check (and a user's
    own, through py.typed) reads jaxseq's annotations rather than treating it as Any."""
    misuse = tmp_path / "misuse.py"
    misuse.write_text("from jaxseq.data.vocabulary import Vocabulary\n"
                      "Vocabulary(('<NULL>', '<START>', '<END>'), min_count='two')\n")
    result = _mypy(str(misuse))  # a file given replaces [tool.mypy]'s files, not its options
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Argument "min_count" to "Vocabulary" has incompatible type "str"; expected "int"' in result.stdout, \
        result.stdout
