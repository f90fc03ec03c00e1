"""The suite's own XLA settings (tests/conftest.py): it compiles with TEST_XLA_FLAGS added to
the user's XLA_FLAGS, children included, and a test marked `xla_defaults` runs in a child
pytest compiled with the user's flags alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, TEST_XLA_FLAGS, with_flags


def test_with_flags_appends_only_the_flags_not_already_given():
    assert with_flags("", "--a=0 --b=1") == "--a=0 --b=1"
    assert with_flags("--b=1 --c=2", "--a=0 --b=1") == "--b=1 --c=2 --a=0"
    assert with_flags("--a=0", "") == "--a=0"
    assert with_flags(" ", " ") == ""


def _added_flags() -> list[str]:
    return os.environ.get("JAXSEQ_TESTS_XLA_FLAGS", TEST_XLA_FLAGS).split()


def test_the_session_and_its_children_compile_with_the_test_flags():
    expected = with_flags(os.environ["JAXSEQ_TESTS_USER_XLA_FLAGS"], " ".join(_added_flags()))
    assert os.environ["XLA_FLAGS"] == expected
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['XLA_FLAGS'])"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == expected


@pytest.mark.xla_defaults
def test_a_test_marked_xla_defaults_runs_with_the_users_flags_only():
    assert os.environ["XLA_FLAGS"].split() == os.environ["JAXSEQ_TESTS_USER_XLA_FLAGS"].split()
    assert os.environ["JAXSEQ_TESTS_XLA_FLAGS"] == "" or not _added_flags()


def test_a_failing_xla_defaults_test_fails_with_the_childs_output():
    """The child's failure reaches the parent: the marker cannot turn a failure into a pass."""
    if not _added_flags():
        pytest.skip("this session compiles with the user's flags: no child pytest to check")
    test_file = REPO_ROOT / "tests" / f"test_zz_xla_defaults_probe_{os.getpid()}.py"
    test_file.write_text("import pytest\n\n\n@pytest.mark.xla_defaults\n"
                         "def test_probe():\n    assert 1 == 2, 'the probe fails'\n")
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:xdist",
                                 "-p", "no:cacheprovider", "-o", "addopts="],
                                capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    finally:
        test_file.unlink()
    assert result.returncode == 1, result.stdout[-3000:]
    assert "with XLA's own flags, in a child pytest" in result.stdout and "the probe fails" in result.stdout
