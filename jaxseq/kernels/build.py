"""Building and loading the compiled CPU loops: once per machine, on first use, cached.

The C++ sources ship in the package (`lstm_cpu.cc`, `gru_cpu.cc`, and the `cpu_loops.h` they
share). The first program that needs one compiles it with the machine's C++ compiler (`$CXX`,
else `c++`; `-O3 -march=native`: the vector width of this CPU) against the XLA FFI headers that
jaxlib ships (`jax.ffi.include_dir()`), into

    $JAXSEQ_KERNEL_CACHE, else $XDG_CACHE_HOME/jaxseq/kernels, else ~/.cache/jaxseq/kernels

as `<name>-<key>.so`, where the key hashes everything the binary depends on: the source and
the headers next to it, the compiler command and version, jaxlib's version and this CPU's
instruction sets (a cache shared between machines never hands one a binary built for
another's). A cached library is loaded only when it and its folder belong to this user and
nobody else can write them (`check_trusted`). The compiler writes to a temporary name that is
renamed into place, so processes that build at once (pytest workers) each end with a complete
file. Later processes only load it.

When it cannot be built or loaded (no compiler, a read-only cache, another platform), the
reason is kept (`unavailable_reason`), a one-line warning says so once, and the layers run
their XLA loops, which compute the same values: nothing fails for want of a compiler.
`JAXSEQ_KERNELS=off` skips the compiled loops altogether (`kernels_enabled`); below a step's
state of `MIN_STEP_STATE` values (N H; `$JAXSEQ_KERNEL_MIN_STATE` sets another) the layers run
their XLA loops too, which are as fast there (`loops_apply`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jaxlib

SOURCE_DIR = Path(__file__).resolve().parent
COMPILE_TIMEOUT_S = 300

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}
_failures: dict[str, str] = {}
_trace_settings = {"xla_loops": 0, "at_every_size": 0}  # depth of each context of that name


def cache_dir() -> Path:
    """Where built kernels are kept (module docstring)."""
    if os.environ.get("JAXSEQ_KERNEL_CACHE"):
        return Path(os.environ["JAXSEQ_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxseq" / "kernels"


def compiler() -> str | None:
    """The C++ compiler's path: $CXX, else c++ on the PATH; None when there is none."""
    return shutil.which(os.environ.get("CXX", "c++"))


def compile_command(cxx: str, source: Path, output: Path) -> list[str]:
    """The command that builds `source` into the shared library `output`."""
    return [cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC",
            "-isystem", jax.ffi.include_dir(), str(source), "-o", str(output), "-lpthread"]


def cpu_features() -> str:
    """This CPU's instruction-set flags (Linux: /proc/cpuinfo), else the platform's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def headers(source: Path) -> list[Path]:
    """The headers next to `source` (`cpu_loops.h`), which it may include."""
    return sorted(source.parent.glob("*.h"))


def build_key(source: Path, cxx: str) -> str:
    """16 hex digits of a hash of what the built library depends on (module docstring)."""
    parts = [source.read_bytes(), *(header.read_bytes() for header in headers(source)),
             " ".join(compile_command(cxx, Path("src"), Path("out"))).encode(),
             _compiler_version(cxx).encode(), jaxlib.__version__.encode(), cpu_features().encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def check_trusted(path: Path) -> None:
    """Raises RuntimeError unless `path` and its folder belong to this user and no one else can
    write them: loading a library runs its code, and a cache that others can write (a shared
    `$JAXSEQ_KERNEL_CACHE`) could hold theirs under the expected name."""
    if not hasattr(os, "getuid"):
        return
    for checked in (path.parent, path):
        info = checked.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise RuntimeError(f"{checked} is not this user's alone (owner uid {info.st_uid}, mode "
                               f"{info.st_mode & 0o777:o}); not loading the library from it")


def build(name: str) -> Path:
    """The path of `name`'s shared library, compiling `<name>.cc` first when it is not in the
    cache. Raises RuntimeError (one line: what failed) when it cannot be built."""
    source = SOURCE_DIR / f"{name}.cc"
    cxx = compiler()
    if cxx is None:
        raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX', 'c++')} is not on the PATH)")
    target = cache_dir() / f"{name}-{build_key(source, cxx)}.so"
    if target.is_file():
        check_trusted(target)
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=target.parent)
        os.close(handle)
    except OSError as e:
        raise RuntimeError(f"cannot write to the kernel cache {target.parent}: {e.strerror or e}") from None
    try:
        done = subprocess.run(compile_command(cxx, source, Path(temporary)), capture_output=True, text=True,
                              timeout=COMPILE_TIMEOUT_S)
        if done.returncode != 0:
            first_error = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip())
            raise RuntimeError(f"{cxx} could not build {source.name}: {first_error[:300]}")
        os.chmod(temporary, 0o700)  # this user's alone, whatever the umask (check_trusted)
        os.replace(temporary, target)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{cxx} took more than {COMPILE_TIMEOUT_S} s to build {source.name}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return target


def kernels_enabled() -> bool:
    """False under `JAXSEQ_KERNELS=off` (or 0, false, no) and inside `xla_loops()`."""
    return _trace_settings["xla_loops"] == 0 and os.environ.get("JAXSEQ_KERNELS", "on").lower() not in ("off", "0", "false", "no")


@contextlib.contextmanager
def _trace_setting(name: str):
    """A setting of `_trace_settings` for the programs traced within. The choice of loop is made
    when a function is traced, and JAX reuses traces of the same function at the same shapes (a
    custom_vjp rule's, a scan body's), so JAX's caches are cleared when it starts and ends."""
    jax.clear_caches()
    _trace_settings[name] += 1
    try:
        yield
    finally:
        _trace_settings[name] -= 1
        jax.clear_caches()


def xla_loops():
    """Within this context, programs traced use the layers' XLA loops, not the compiled ones
    (for comparisons): trace and compile inside it what should run without the compiled loops
    (`_trace_setting`)."""
    return _trace_setting("xla_loops")


def load(name: str, symbols: tuple[str, ...]) -> ctypes.CDLL | None:
    """`name`'s library, built and loaded once per process, with `symbols` checked; None when
    it cannot be (the reason: `unavailable_reason(name)`; warned once, except on a system other
    than Linux, where the loops are not built at all)."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if name in _failures:
            return None
        if platform.system() != "Linux":
            _failures[name] = f"compiled loops are built on Linux only, not {platform.system()}"
            return None
        try:
            path = build(name)
            library = ctypes.CDLL(str(path))
            missing = [symbol for symbol in symbols if not hasattr(library, symbol)]
            if missing:
                raise RuntimeError(f"{path} lacks {', '.join(missing)} (delete it to rebuild)")
            _loaded[name] = library
            return library
        except (RuntimeError, OSError) as e:
            reason = " ".join(str(e).split())  # one line: a loader's message may hold newlines
        _failures[name] = reason
        warnings.warn(f"jaxseq: the compiled CPU loops ({name}) are not available, the XLA loops run instead: "
                      f"{reason}", RuntimeWarning, stacklevel=3)
        return None


def unavailable_reason(name: str) -> str | None:
    """Why `load(name)` gave None in this process, or None when it did not (or was not called)."""
    return _failures.get(name)


_registered: dict[str, bool] = {}
_register_lock = threading.Lock()  # held around `load`, which takes `_lock` itself


def loops_available(name: str, targets: dict[str, str]) -> bool:
    """Whether `name`'s library is loaded (`load`) with its FFI handlers registered with JAX for
    the CPU, `targets` mapping each target name to its handler's symbol; once per process."""
    with _register_lock:
        if name not in _registered:
            library = load(name, tuple(targets.values()))
            if library is not None:
                for target, symbol in targets.items():
                    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
            _registered[name] = library is not None
        return _registered[name]


# Below this many values in a step's state (N H), the XLA loops were as fast or faster: a step's
# product is then too small for what the compiled loops add to it (the threads' hand-off at every
# step) to pay. One layer's forward and backward, N rows, H units, T = 35, 2-core Xeon, compiled
# against XLA loops: LSTM N H = 2,560 (20 x 128) 0.85x, 4,000 (20 x 200) 0.88-0.99x, 4,096
# (32 x 128) 0.94x; 5,120 (20 x 256) 1.04-1.13x, 6,144 (64 x 96) 1.06x, 8,192 (five shapes) 1.01-1.22x,
# 10,240 (20 x 512) 1.05x, 12,800 (64 x 200) 1.02x, 32,768 (64 x 512) 1.01x (the loops alone
# at T = 128: 1.25x). GRU: 4,000 0.96x, 4,096 0.99x, 6,144 1.08x, 8,192 1.01x, 10,240 1.18x
# (benchmarks/results/lm_speed.md).
MIN_STEP_STATE = 5000
MIN_STEP_STATE_VARIABLE = "JAXSEQ_KERNEL_MIN_STATE"


def at_every_size():
    """Within this context, programs traced run the compiled loops at every size (no
    `min_step_state()`): what the correctness checks want, whose small layers then check the
    compiled loops (`jaxseq.gradcheck.builtin_layer_checks`, `jaxseq check`; `_trace_setting`)."""
    return _trace_setting("at_every_size")


def min_step_state() -> int:
    """The smallest N H for which the compiled loops run: 0 inside `at_every_size()`, else
    $JAXSEQ_KERNEL_MIN_STATE (a non-negative integer; 0 runs them at every size), else
    MIN_STEP_STATE. A one-line ValueError naming the variable for anything else."""
    if _trace_settings["at_every_size"]:
        return 0
    value = os.environ.get(MIN_STEP_STATE_VARIABLE)
    if value is None or value.strip() == "":
        return MIN_STEP_STATE
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"{MIN_STEP_STATE_VARIABLE} must be a non-negative integer (the smallest N*H for the "
                         f"compiled loops), got {value!r}")
    return count


def kernel_applies(array, name: str, targets: dict[str, str]) -> bool:
    """The conditions every compiled kernel shares, decided when a function is traced, for a
    call whose main operand is `array`: switched on (`kernels_enabled`), one device (XLA's
    partitioner cannot split a foreign call: with several devices it would run whole on each),
    float32 or float64, no empty axis, and the library available (`loops_available`)."""
    if not kernels_enabled() or jax.device_count() != 1:
        return False
    if jax.numpy.dtype(array.dtype) not in (jax.numpy.float32, jax.numpy.float64) or min(array.shape) == 0:
        return False
    return loops_available(name, targets)


def every_size() -> bool:
    """Whether the compiled kernels run at every size: `min_step_state()` is 0 (inside
    `at_every_size()`, or $JAXSEQ_KERNEL_MIN_STATE=0), which lifts the decoder kernel's bounds
    (`jaxseq.kernels.decoder_loss.MIN_VOCABULARY`, `MAX_INPUTS`) too."""
    return min_step_state() == 0


def loops_apply(gates_buffer, name: str, targets: dict[str, str], gates: int) -> bool:
    """Whether a compiled loop runs for a cell of `gates` gates whose steps' gate buffer is
    (T, N, gates H): `kernel_applies`, and a step's state N H of at least `min_step_state()`."""
    _, N, G = gates_buffer.shape
    if N * (G // gates) < min_step_state():
        return False
    return kernel_applies(gates_buffer, name, targets)


def as_rows(gates_tm):
    """(T, N, G) -> (T N, G), the form in which a loop takes and returns its gate-sized buffers:
    XLA copies a product's result that reaches a foreign call reshaped (a bitcast), but not the
    result itself, and the (T, N, G) the layers pass is such a reshape of a (T N, G) product (64 MB
    a layer for the char language model; the rows' reshape and the layer's cancel out)."""
    T, N, G = gates_tm.shape
    return gates_tm.reshape(T * N, G)


def step_counts(lengths, T: int, N: int):
    """The loops' lengths argument: (N,) int32, T for every row without lengths."""
    return jax.numpy.full((N,), T, jax.numpy.int32) if lengths is None else lengths.astype(jax.numpy.int32)
