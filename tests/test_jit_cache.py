"""The test suite's own compilation cache (tests/conftest.py): a cache a killed session left
behind is removed by the next one, and only that one."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import remove_stale_jit_caches


def test_only_the_caches_of_ended_sessions_are_removed(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(ended.stdout)
    dead = tmp_path / f"jaxseq-tests-jit-cache-{dead_pid}-abc"
    alive = tmp_path / f"jaxseq-tests-jit-cache-{os.getpid()}-def"
    unnamed = tmp_path / "jaxseq-tests-jit-cache-xyz-1"  # no pid: not ours to judge
    other = tmp_path / f"something-else-{dead_pid}-1"
    for folder in (dead, alive, unnamed, other):
        (folder / "entry").mkdir(parents=True)

    assert remove_stale_jit_caches(tmp_path) == [dead]
    assert not dead.exists()
    assert alive.exists() and unnamed.exists() and other.exists()


def test_the_running_session_s_cache_is_never_taken_for_stale():
    """Under pytest-xdist too: the cache is named after the controller, which is alive."""
    cache = Path(os.environ["JAXSEQ_TESTS_JIT_CACHE"])
    assert cache.name.startswith("jaxseq-tests-jit-cache-")
    assert cache not in remove_stale_jit_caches(cache.parent)
    assert cache.is_dir()
