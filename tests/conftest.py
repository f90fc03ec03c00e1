"""Shared pytest fixtures.

float64 tests use the `x64` fixture (JAX's x64 mode only inside that test), so the rest of
the suite runs in the default float32 mode.

One compilation cache for the whole session: the suite trains the same small models again
and again, in this process and in the command lines and worker processes it starts, and
XLA's compilation is most of that time. JAX's persistent cache (a folder made for this
session, removed at its end, or by the next session when a signal ended this one before
that; child processes find it through the environment) compiles
each program once; a hit runs the same executable a fresh compilation would build. An
entry a SIGKILLed child left half-written is only read as a miss: JAX warns and compiles
again, and that warning is filtered so that it cannot show up in the stderr the tests read.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# A shell starts a background job (`pytest &`, `nohup`) with SIGINT ignored, and every child
# inherits that: the Ctrl-C tests (here and in the command lines they start) would find
# Ctrl-C ignored instead of Python's KeyboardInterrupt. Give the suite the handler a
# terminal gives Python.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_CACHE_PREFIX = "jaxseq-tests-jit-cache-"


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: it exists
        return False
    return False


def remove_stale_jit_caches(root: Path) -> list[Path]:
    """Remove the caches under `root` whose session ended without removing them (a pytest
    killed by a signal never runs atexit): a folder is named after the pid that made it, and
    it goes once that process is gone. Returns the folders removed."""
    removed = []
    for folder in root.glob(f"{_CACHE_PREFIX}*-*"):
        pid = folder.name[len(_CACHE_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and _process_is_gone(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


# A pytest-xdist worker finds the folder its controller made; the controller removes it.
_JIT_CACHE = os.environ.get("JAXSEQ_TESTS_JIT_CACHE")
_MADE_HERE = not _JIT_CACHE
if _MADE_HERE:
    remove_stale_jit_caches(Path(tempfile.gettempdir()))
    _OWNER = os.getpid()  # a forked child exiting must not remove it
    _JIT_CACHE = tempfile.mkdtemp(prefix=f"{_CACHE_PREFIX}{_OWNER}-")
    atexit.register(lambda: os.getpid() == _OWNER and shutil.rmtree(_JIT_CACHE, ignore_errors=True))
os.environ.update({
    "JAXSEQ_TESTS_JIT_CACHE": _JIT_CACHE,
    "JAX_COMPILATION_CACHE_DIR": _JIT_CACHE,
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    # the compiled CPU loops (jaxseq.kernels) are built once per session, here, not in ~/.cache
    "JAXSEQ_KERNEL_CACHE": os.path.join(_JIT_CACHE, "kernels"),
    # ... and run at every size, so that the suite's small layers exercise them; where they apply
    # by default (build.MIN_STEP_STATE, decoder_loss.MIN_VOCABULARY and MAX_INPUTS) is
    # test_kernels.py's and test_kernels_decoder.py's to check
    "JAXSEQ_KERNEL_MIN_STATE": "0",
    "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"),
                                             "ignore:Error reading persistent compilation cache entry"])),
})

# XLA compiles fast and runs slower: LLVM unoptimised and the older elemental fusion emitter.
# The suite compiles hundreds of small programs and runs most for milliseconds, so compiling
# is what costs: a small LSTM language model's training step compiles in 0.5 s of CPU instead
# of 4 s and runs 1.5-2x slower (the contributing guide has the measurements). The programs
# are the same JAX programs, compiled with less optimisation; their float32 results differ in
# the last bits (this tanh's largest error on [-10, 10] is 3.7e-7 against 2.6e-7 at XLA's
# defaults, and tanh(9) is 0.99999982, not 1), which every tolerance here absorbs. A test that
# pins XLA's default rounding bit for bit is marked `xla_defaults`: it runs in a child pytest
# compiled with XLA's own settings (below).
# JAXSEQ_TESTS_XLA_FLAGS="" tests everything with XLA's own settings (benchmarks/gpu/run.sh
# does), or set it to other flags. Child processes inherit XLA_FLAGS, so the command lines and
# notebook kernels the tests start compile the same way.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def with_flags(current: str, extra: str) -> str:
    """`current` XLA flags with those of `extra` not already in it appended."""
    flags = current.split()
    return " ".join(flags + [flag for flag in extra.split() if flag not in flags])


# The user's own XLA_FLAGS, kept for the `xla_defaults` children (a worker process finds its
# controller's flags, ours added, in XLA_FLAGS, and the user's here).
os.environ.setdefault("JAXSEQ_TESTS_USER_XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
_ADDED_XLA_FLAGS = os.environ.get("JAXSEQ_TESTS_XLA_FLAGS", TEST_XLA_FLAGS)
os.environ["XLA_FLAGS"] = with_flags(os.environ["JAXSEQ_TESTS_USER_XLA_FLAGS"], _ADDED_XLA_FLAGS)

import jax  # noqa: E402  (after the cache settings: JAX reads them when it is imported)
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", _JIT_CACHE)  # in case a plugin imported JAX first
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def users_xla_env(**extra: str) -> dict[str, str]:
    """The environment for a child process that compiles with the user's XLA flags alone (XLA's
    defaults, not TEST_XLA_FLAGS): for a test whose claim is about what users run bit for bit
    (8 devices equal one), or whose time is execution rather than compilation (the language
    model's long segments run ~2x faster compiled as users do). `extra` is added."""
    return {**os.environ, "XLA_FLAGS": os.environ["JAXSEQ_TESTS_USER_XLA_FLAGS"], "JAXSEQ_TESTS_XLA_FLAGS": "",
            **extra}


def command_env(argv) -> dict[str, str] | None:
    """The environment for a `jaxseq argv` child: a language model's runs (`lm ...`) compile as
    users do, since their long segments make their time execution (the resume tests' runs of
    200-step segments: 39 -> 19 s and 44 -> 19 s); any other command line inherits the suite's
    flags (None), its time being compilation."""
    return users_xla_env() if argv[0] == "lm" else None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test marked `xla_defaults` runs in a child pytest whose XLA compiles with the user's
    own flags (XLA's defaults), when this session compiles with TEST_XLA_FLAGS."""
    if pyfuncitem.get_closest_marker("xla_defaults") is None or not _ADDED_XLA_FLAGS.split():
        return None
    child = subprocess.run([sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-p", "no:xdist",
                            "-p", "no:cacheprovider", "-o", "addopts=", "--no-header"],
                           capture_output=True, text=True, cwd=REPO_ROOT, env=users_xla_env(), timeout=600)
    if child.returncode != 0 or "1 passed" not in child.stdout:
        pytest.fail(f"with XLA's own flags, in a child pytest (exit {child.returncode}):\n"
                    f"{child.stdout[-4000:]}{child.stderr[-2000:]}", pytrace=False)
    return True


def cola_data_dir() -> Path | None:
    """The real CoLA folder: $JAXSEQ_DATA/cola, else ../shared/data/cola next to the repo."""
    candidates = []
    if os.environ.get("JAXSEQ_DATA"):
        candidates.append(Path(os.environ["JAXSEQ_DATA"]) / "cola")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "cola")
    for candidate in candidates:
        if (candidate / "train.tsv").is_file():
            return candidate
    return None


@pytest.fixture
def cola_dir() -> Path:
    path = cola_data_dir()
    if path is None:
        pytest.skip("real CoLA data not found: set JAXSEQ_DATA or place it in ../shared/data/cola")
    return path


@pytest.fixture(autouse=True)
def signal_handlers_are_left_as_found():
    """A test that leaves a SIGTERM / SIGINT handler behind changes what the next one sees
    (the trainers save and restore them): name it at once instead."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    after = {signum: signal.getsignal(signum) for signum in before}
    changed = [signal.Signals(signum).name for signum in before if after[signum] is not before[signum]]
    for signum in before:
        signal.signal(signum, before[signum])
    assert not changed, f"the test left its own handler of {', '.join(changed)} installed: {after}"
