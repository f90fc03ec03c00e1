"""`jaxseq.kernels`: the LSTM's loops compiled for the CPU, and what the GRU's share with them
(building, vmap, shard_map, a GPU's program, where they apply by default; the GRU's loops
themselves: test_kernels_gru.py).

- The compiled forward and backward loops give the XLA loops' arrays (outputs, final states,
  the cache the backward reads, the backward's pre-activation and state gradients): float32
  to 5e-6 and float64 to 1e-13 of each array's scale, both directions, over shapes that take
  every tail of the kernel (N not a multiple of its row tile, H not a multiple of its vector
  width, N = T = H = 1).
- Through the differentiable layers (`lstm`, `lstm_lookup`), the gradients on the compiled
  loops equal those on the XLA loops (float64, 1e-12), and the program really calls them.
  (Hand vs jax.grad vs numerical gradients with the compiled loops: the built-in check
  "lstm_fast+rev", test_gradcheck.py.)
- One thread or two: the same bits; a packed weight above the 64 MB kept between calls gets
  memory of its own (H = 2,100); the kept one is on huge pages where the system gives them.
  vmap runs (sequentially). A GPU's program has no foreign call (lowered for CUDA here,
  without a GPU).
- With lengths (0 and T among them) the same arrays and gradients.
- The loops take their gate-sized buffers as (T, N, 4H) or as rows (T N, 4H), the same bits;
  the layers hand over rows, so the forward loop reads the input projection itself, not a copy.
- Where they apply: not with projections, other dtypes, several devices, or JAXSEQ_KERNELS=off.
- Building: one cached library per key (no temporary file left), a new key when the source
  changes; a broken source, no compiler, or a cached file that lies (not a library, one
  without the handlers, one that others could have written) is a one-line reason, warned
  once, and the layers still give the right values on their XLA loops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import kernels
from jaxseq import layers as L
from jaxseq.kernels import build
from jaxseq.kernels import gru as KG
from jaxseq.kernels import lstm as K
from jaxseq.layers import lstm_fast as F
from tests.helpers import scaled_error
from tests.kernel_checks import (assert_layer_gradients_match_the_xla_loops, assert_same_bits_on_one_and_two_threads,
                                 compiled_and_xla, layer_loss, some_lengths)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loop_problem(N, T, H, dtype, seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), dtype)

    return dict(xw=normal(T, N, 4 * H, scale=0.7), h0=normal(N, H, scale=0.5), c0=normal(N, H),
                Wh=normal(H, 4 * H, scale=1 / np.sqrt(H)), b=normal(4 * H, scale=0.1), dh=normal(N, T, H),
                dh_n=normal(N, H), dc_n=normal(N, H))


def both_loops(p, reverse, lengths=None):
    """Every array the forward and backward loops produce, (compiled, XLA)."""

    def run(xw, h0, c0, Wh, b, dh, dh_n, dc_n):
        h, h_n, c_n, cache = F.recurrence_forward(None, h0, c0, None, Wh, b, None, lengths, reverse, xw,
                                                  compiled_loop=True)
        dh0, dc0, da_tm, _, _ = F.recurrence_backward(dh, cache, dh_n, dc_n)
        return dict(h=h, h_n=h_n, c_n=c_n, P_tm=cache.P_tm, q_tm=cache.q_tm, f_tm=cache.f_tm, dh0=dh0, dc0=dc0,
                    da_tm=da_tm)

    return compiled_and_xla(run, p)


SHAPES = [(1, 1, 1), (3, 2, 5), (7, 5, 17), (13, 9, 64), (20, 6, 200), (64, 4, 512)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N,T,H", SHAPES)
def test_compiled_loops_equal_the_xla_loops_in_float32(N, T, H, reverse):
    compiled, xla = both_loops(loop_problem(N, T, H, jnp.float32), reverse)
    for name in xla:
        assert compiled[name].shape == xla[name].shape, name
        assert scaled_error(compiled[name], xla[name]) < 5e-6, name


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N,T,H", SHAPES[:4])
def test_compiled_loops_equal_the_xla_loops_in_float64(x64, N, T, H, reverse):
    compiled, xla = both_loops(loop_problem(N, T, H, jnp.float64), reverse)
    for name in xla:
        assert compiled[name].dtype == jnp.float64
        assert scaled_error(compiled[name], xla[name]) < 1e-13, name


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N,T,H", [(1, 1, 1), (3, 2, 5), (7, 5, 17), (13, 9, 64), (64, 6, 200)])
def test_with_lengths_the_compiled_loops_equal_the_xla_loops(N, T, H, reverse):
    """Rows outside their sequence carry their state and gradients (the header of
    lstm_cpu.cc), as the XLA loops' masks do: every array agrees, zero and full lengths among
    them."""
    compiled, xla = both_loops(loop_problem(N, T, H, jnp.float32), reverse, some_lengths(N, T))
    for name in xla:
        assert scaled_error(compiled[name], xla[name]) < 5e-6, name


@pytest.mark.parametrize("reverse", [False, True])
def test_with_lengths_the_compiled_loops_equal_the_xla_loops_in_float64(x64, reverse):
    compiled, xla = both_loops(loop_problem(13, 9, 64, jnp.float64), reverse, some_lengths(13, 9, seed=1))
    for name in xla:
        assert scaled_error(compiled[name], xla[name]) < 1e-13, name


def test_a_weight_beyond_the_kept_workspace_gets_memory_of_its_own():
    """H = 2,100 in float32: the packed weight (about 71 MB) is above the 64 MB the kernel keeps
    between calls, so the call allocates its own; the results are the same."""
    compiled, xla = both_loops(loop_problem(2, 2, 2100, jnp.float32), False)
    for name in xla:
        assert scaled_error(compiled[name], xla[name]) < 5e-6, name


def forward_call(xw):
    """The forward loop's foreign call on xw as given (3-D, or the rows form), on loop_problem's
    other arrays."""
    p = loop_problem(5, 3, 17, jnp.float32)
    T, N, G = 3, 5, 68
    shapes = [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((T, N, G // 4), tuple(xw.shape), (T, N, G // 4),
                                                               (T, N, G // 4), (N, G // 4))]
    call = jax.ffi.ffi_call(K.FORWARD_TARGET, shapes, input_output_aliases={0: 1})
    return call(xw, p["h0"], p["c0"], p["Wh"], p["b"], jnp.full((N,), T, jnp.int32), reverse=False)


def test_the_loops_take_their_gate_buffers_as_rows_and_the_same_bits_come_out():
    """(T, N, 4H) and its rows (T N, 4H) are the same buffer to the loops (jaxseq.kernels.lstm
    hands them rows: XLA copies a product's result that reaches a foreign call reshaped); rows
    that are not a multiple of N are a one-line error naming the buffer and both forms."""
    xw = loop_problem(5, 3, 17, jnp.float32)["xw"]
    assert K.applies(xw, None)
    as_3d, as_rows = forward_call(xw), forward_call(xw.reshape(15, 68))
    for a, b in zip(as_3d, as_rows):
        np.testing.assert_array_equal(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1))
    with pytest.raises(Exception, match=r"xw must be \(T, N, 4H\) or \(T N, 4H\)"):
        jax.block_until_ready(forward_call(xw.reshape(15, 68)[:14]))


def test_the_forward_loop_reads_the_input_projection_without_a_copy():
    """A layer on x (not a lookup): the forward loop's foreign call takes the product x Wx itself
    (through `build.as_rows`), not a copy of it (64 MB a layer for the char language model, 5 ms
    of its 731 ms step: benchmarks/results/lm_speed.md)."""
    rng = np.random.default_rng(0)
    x, Wx, Wh = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((4, 6, 8), (8, 64), (16, 64)))
    h0, b = jnp.zeros((4, 16), jnp.float32), jnp.zeros(64, jnp.float32)
    gradients = jax.jit(jax.grad(lambda x, Wx: L.lstm(x, h0, Wx, Wh, b).sum(), argnums=(0, 1)))
    with kernels.at_every_size():
        lines = gradients.lower(x, Wx).compile().as_text().splitlines()
    call = next(line for line in lines if f'custom_call_target="{K.FORWARD_TARGET}"' in line)
    operand = call.split("custom-call(")[1].split(",")[0].strip()
    producer = next(line for line in lines if line.strip().startswith(f"{operand} ="))
    assert " copy(" not in producer, producer
    if "calls=" in producer:  # a fusion: its computation's result must not be a copy either
        called = producer.split("calls=")[1].split(",")[0]
        start = next(i for i, line in enumerate(lines) if line.startswith(called + " "))
        root = next(line for line in lines[start:] if line.strip().startswith("ROOT"))
        assert " copy(" not in root, (producer, root)


def transparent_huge_page_policy() -> str:
    """The kernel's transparent huge page policy ("always", "madvise", "never"; "" where none)."""
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return ""
    return text[text.index("[") + 1:text.index("]")] if "[" in text else ""


def test_the_kept_workspace_is_on_huge_pages_where_the_system_gives_them():
    """The packed weight of H = 512 (4 MB in float32) is advised to huge pages (cpu_loops.h's
    HugePageMemory): in a fresh process, the forward loop's call adds at least 4 MB of huge
    pages to the process's anonymous memory. Skipped where the system gives none to memory
    advised to them (a control: an 8 MB anonymous map, advised and written first)."""
    if transparent_huge_page_policy() not in ("always", "madvise"):
        pytest.skip("this kernel gives no transparent huge pages")
    code = textwrap.dedent("""
        import mmap
        import jax, jax.numpy as jnp
        from jaxseq.kernels import lstm as K
        def huge_kb():
            text = open("/proc/self/smaps_rollup").read()
            return int(text.split("AnonHugePages:")[1].split()[0])
        before = huge_kb()
        control = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        control.madvise(mmap.MADV_HUGEPAGE)
        control.write(b"x" * (8 << 20))
        print("control", huge_kb() - before)
        T, N, H = 2, 6, 512
        xw, z = jnp.full((T, N, 4 * H), 0.01), jnp.zeros((N, H))
        Wh, b = jnp.full((H, 4 * H), 0.01), jnp.zeros(4 * H)
        assert K.applies(xw, None)
        compiled = jax.jit(lambda xw: K.forward_loop(xw, z, z, Wh, b, None, reverse=False)).lower(xw).compile()
        jax.block_until_ready((xw, z, Wh, b))
        before = huge_kb()
        jax.block_until_ready(compiled(xw))
        print("workspace", huge_kb() - before)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAXSEQ_KERNEL_MIN_STATE": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    added = dict(line.split() for line in done.stdout.splitlines() if line.startswith(("control", "workspace")))
    if int(added["control"]) < 2048:
        pytest.skip(f"the system gave no huge page to advised memory here ({added['control']} kB)")
    assert int(added["workspace"]) >= 4096, done.stdout


def test_one_thread_or_two_give_the_same_bits(monkeypatch):
    p = loop_problem(13, 7, 130, jnp.float32)
    assert_same_bits_on_one_and_two_threads(monkeypatch, lambda: both_loops(p, False)[0])


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_layer_gradients_on_the_compiled_loops_equal_the_xla_loops(x64, reverse, with_lengths):
    rng = np.random.default_rng(1)
    N, T, D, H, V = 5, 6, 4, 9, 11
    lengths = jnp.array([6, 0, 3, 1, 5]) if with_lengths else None
    x, h0, c0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    Wx, Wh, b = 0.5 * rng.standard_normal((D, 4 * H)), 0.5 * rng.standard_normal((H, 4 * H)), rng.standard_normal(4 * H)
    tokens, table = rng.integers(0, V, (N, T)), rng.standard_normal((V, 4 * H))
    cases = {
        "lstm": (layer_loss(lambda x, h0, c0, Wx, Wh, b: L.lstm(x, h0, Wx, Wh, b, c0=c0, lengths=lengths,
                                                                  reverse=reverse, return_state=True)),
                 (x, h0, c0, Wx, Wh, b)),
        "lstm_lookup": (layer_loss(lambda table, h0, c0, Wh: L.lstm_lookup(tokens, table, h0, Wh, c0=c0,
                                                                            lengths=lengths, reverse=reverse,
                                                                            return_state=True)),
                        (table, h0, c0, Wh)),
    }
    assert_layer_gradients_match_the_xla_loops(cases, (K.FORWARD_TARGET, K.BACKWARD_TARGET))


CELLS = {  # layer (x, h0, Wx, Wh, b), gates, its compiled loops' FFI targets
    "lstm": (L.lstm, 4, (K.FORWARD_TARGET, K.BACKWARD_TARGET)),
    "gru": (lambda x, h0, Wx, Wh, b: L.gru(x, h0, Wx, Wh, b, b), 3, (KG.FORWARD_TARGET, KG.BACKWARD_TARGET)),
}


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_vmap_of_the_layer_runs_the_compiled_loops_per_item(cell):
    layer, gates, _ = CELLS[cell]
    rng = np.random.default_rng(2)
    B, N, T, D, H = 3, 2, 4, 3, 5
    x = jnp.asarray(rng.standard_normal((B, N, T, D)), jnp.float32)
    h0 = jnp.zeros((N, H))
    Wx = jnp.asarray(rng.standard_normal((D, gates * H)), jnp.float32)
    Wh = jnp.asarray(rng.standard_normal((H, gates * H)), jnp.float32)
    b = jnp.zeros(gates * H)
    grad = jax.grad(lambda Wh, x: jnp.sum(layer(x, h0, Wx, Wh, b) ** 2))
    batched = jax.vmap(grad, in_axes=(None, 0))(Wh, x)
    for i in range(B):
        assert scaled_error(batched[i], grad(Wh, x[i])) < 1e-6


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_gpu_program_runs_the_xla_loops(cell):
    layer, gates, targets = CELLS[cell]
    x, h0 = jnp.ones((2, 3, 4)), jnp.zeros((2, 8))
    Wx, Wh, b = jnp.full((4, 8 * gates), 0.1), jnp.full((8, 8 * gates), 0.1), jnp.zeros(8 * gates)
    step = jax.jit(jax.grad(lambda Wh: jnp.sum(layer(x, h0, Wx, Wh, b))))
    foreign = [jax.export.DisabledSafetyCheck.custom_call(t) for t in targets]
    cpu = jax.export.export(step, platforms=["cpu"], disabled_checks=foreign)(Wh).mlir_module()
    cuda = jax.export.export(step, platforms=["cuda"], disabled_checks=foreign)(Wh).mlir_module()
    assert all(t in cpu for t in targets)
    assert not any(t in cuda for t in targets) and "while" in cuda


def test_where_the_compiled_loops_apply(monkeypatch):
    xw = jnp.zeros((3, 2, 8))
    assert K.applies(xw, None)
    assert not K.applies(xw, jnp.zeros((2, 1)))  # a projection
    assert not K.applies(xw.astype(jnp.bfloat16), None)
    assert not K.applies(jnp.zeros((0, 2, 8)), None)
    with kernels.xla_loops():
        assert not K.applies(xw, None) and not kernels.kernels_enabled()
    assert kernels.kernels_enabled()
    monkeypatch.setenv("JAXSEQ_KERNELS", "off")
    assert not K.applies(xw, None)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_by_default_small_steps_run_the_xla_loops(cell, monkeypatch):
    """Below MIN_STEP_STATE values in a step's state (N H) the layers trace the XLA loops (as fast
    there, build.py), at and above it the compiled ones; the variable moves the bound, and a bad
    value is a one-line error naming it."""
    layer, gates, targets = CELLS[cell]

    def calls_the_loops(N: int, H: int) -> bool:
        x, h0 = jnp.ones((N, 2, 3)), jnp.zeros((N, H))
        Wx, Wh, b = jnp.full((3, gates * H), 0.1), jnp.full((H, gates * H), 0.01), jnp.zeros(gates * H)
        text = jax.jit(jax.grad(lambda Wh: jnp.sum(layer(x, h0, Wx, Wh, b)))).lower(Wh).as_text()
        return all(t in text for t in targets)

    monkeypatch.delenv(build.MIN_STEP_STATE_VARIABLE)
    assert build.min_step_state() == build.MIN_STEP_STATE == 5000
    assert not calls_the_loops(20, 200)  # PyTorch's word-level example: N H = 4,000
    assert not calls_the_loops(20, 249)  # 4,980
    assert calls_the_loops(20, 250)  # 5,000
    with kernels.at_every_size():  # the correctness checks' setting
        assert build.min_step_state() == 0 and calls_the_loops(20, 200)
    assert not calls_the_loops(20, 200)
    monkeypatch.setenv(build.MIN_STEP_STATE_VARIABLE, "4000")
    assert calls_the_loops(20, 200) and not calls_the_loops(20, 199)
    for bad in ("-1", "many", "1e4"):
        monkeypatch.setenv(build.MIN_STEP_STATE_VARIABLE, bad)
        with pytest.raises(ValueError, match=f"^JAXSEQ_KERNEL_MIN_STATE must be a non-negative integer .*{bad!r}$"):
            build.min_step_state()


def test_a_bad_bound_stops_a_command_before_it_does_anything(tmp_path, monkeypatch, capsys):
    from jaxseq import cli

    monkeypatch.setenv(build.MIN_STEP_STATE_VARIABLE, "a lot")
    assert cli.main(["lm", "train", "--epochs", "1", "--checkpoint-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("jaxseq lm: error: JAXSEQ_KERNEL_MIN_STATE must be")
    assert not (tmp_path / "run").exists()


def test_the_library_is_built_once_per_key_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSEQ_KERNEL_CACHE", str(tmp_path / "cache"))
    umask = os.umask(0o002)  # a group-writable default (user private groups) still gives this user's own files
    try:
        built = build.build("lstm_cpu")
    finally:
        os.umask(umask)
    assert built.parent == tmp_path / "cache" and built.name.startswith("lstm_cpu-")
    assert built.stat().st_mode & 0o777 == 0o700 and built.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in built.parent.iterdir()) == [built.name]  # no temporary file left
    mtime = built.stat().st_mtime_ns
    assert build.build("lstm_cpu") == built and built.stat().st_mtime_ns == mtime  # found, not rebuilt
    source = tmp_path / "lstm_cpu.cc"
    source.write_text(build.SOURCE_DIR.joinpath("lstm_cpu.cc").read_text() + "\n// changed\n")
    cxx = build.compiler()
    original = build.build_key(build.SOURCE_DIR / "lstm_cpu.cc", cxx)
    assert build.build_key(source, cxx) != original
    # the shared header is part of the key: the same source next to a changed header is another
    (tmp_path / "cpu_loops.h").write_text(build.SOURCE_DIR.joinpath("cpu_loops.h").read_text() + "\n// changed\n")
    source.write_text(build.SOURCE_DIR.joinpath("lstm_cpu.cc").read_text())
    assert build.headers(source) == [tmp_path / "cpu_loops.h"]
    assert build.build_key(source, cxx) != original


def test_a_source_that_does_not_compile_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken.cc").write_text("this is not C++\n")
    monkeypatch.setattr(build, "SOURCE_DIR", tmp_path)
    monkeypatch.setenv("JAXSEQ_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError) as error:
        build.build("broken")
    message = str(error.value)
    assert "\n" not in message and "could not build broken.cc" in message and "error" in message
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # the failed output is removed


def lstm_gradient_sums(scale: float = 1.0) -> list[float]:
    """The sums of dWx and dWh of scale * sum(tanh(lstm(...))) on fixed float32 inputs: what a
    child process computes on the XLA loops and this one checks it against (each call traces
    anew: a fresh loss function)."""
    rng = np.random.default_rng(0)
    args = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((2, 3, 4), (2, 5), (4, 20), (5, 20), (20,))]
    grads = jax.grad(lambda *a: scale * jnp.sum(jnp.tanh(L.lstm(*a))), argnums=(2, 3))(*args)
    return [float(jnp.sum(g)) for g in grads]


CHILD = textwrap.dedent("""
    import warnings
    from jaxseq import kernels
    from jaxseq.kernels import build
    from tests.test_kernels import lstm_gradient_sums
    {prelude}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sums = lstm_gradient_sums()
        lstm_gradient_sums(scale=2.0)  # traced again: no second warning
    print(repr([str(w.message) for w in caught if "compiled CPU loops" in str(w.message)]))
    print(kernels.unavailable_reason("lstm_cpu"))
    print(*sums)
""")


def _child_without_kernels(tmp_path, prelude="", **env):
    """In a child process with its own kernel cache: (the loop warnings, the reason given, the
    gradient sums), after asserting that the sums are the right ones (this process's)."""
    env = {**os.environ, "JAXSEQ_KERNEL_CACHE": str(tmp_path / "cache"), "PYTHONPATH": REPO_ROOT, **env}
    done = subprocess.run([sys.executable, "-c", CHILD.replace("{prelude}", prelude)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    warned, reason, sums = done.stdout.strip().splitlines()[-3:]
    np.testing.assert_allclose([float(v) for v in sums.split()], lstm_gradient_sums(), rtol=1e-5)
    return eval(warned), reason


def test_without_a_compiler_the_layers_warn_once_and_run_their_xla_loops(tmp_path):
    warned, reason = _child_without_kernels(tmp_path, CXX=str(tmp_path / "no-such-compiler"))
    assert len(warned) == 1 and "no C++ compiler" in warned[0]
    assert reason.startswith("no C++ compiler") and str(tmp_path / "no-such-compiler") in reason


# a cached file that lies: not a library at all, a library without the handlers, or one that
# others could have written
CORRUPT_CACHE = {
    "writable by others": "built = build.build('lstm_cpu'); assert built == target; target.chmod(0o777)",
    "not a library": "target.write_bytes(b'not an ELF file, whatever its name says')",
    "no handlers": ("import subprocess; src = target.with_suffix('.c'); src.write_text('int other(void) { return 1; }');"
                    " subprocess.run([build.compiler(), '-shared', '-fPIC', '-x', 'c', str(src), '-o', str(target)],"
                    " check=True)"),
}


@pytest.mark.parametrize("lie", sorted(CORRUPT_CACHE))
def test_a_corrupt_cached_library_is_one_line_and_the_xla_loops_run(tmp_path, lie):
    prelude = ("source = build.SOURCE_DIR / 'lstm_cpu.cc'\n"
               "target = build.cache_dir() / f'lstm_cpu-{build.build_key(source, build.compiler())}.so'\n"
               "target.parent.mkdir(parents=True, mode=0o700)\n" + CORRUPT_CACHE[lie])
    warned, reason = _child_without_kernels(tmp_path, prelude=prelude)
    assert len(warned) == 1 and "\n" not in warned[0]
    expected = {"no handlers": "lacks JaxseqLstmForward, JaxseqLstmBackward (delete it to rebuild)",
                "writable by others": "mode 777); not loading the library from it", "not a library": "lstm_cpu-"}
    assert expected[lie] in reason, reason


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_inside_shard_map_the_compiled_loops_give_the_plain_gradients(cell):
    """A foreign call's results vary along no mesh axis; the layer gives them its inputs' (the
    XLA loop's type), so the loops run inside `jax.shard_map` too (one device here: several
    run the XLA loops)."""
    layer, gates, (target, _) = CELLS[cell]
    from functools import partial

    from jax import lax
    from jax.sharding import NamedSharding, PartitionSpec as P

    rng = np.random.default_rng(3)
    N, T, D, H = 4, 5, 3, 8
    x, h0 = jnp.asarray(rng.standard_normal((N, T, D)), jnp.float32), jnp.asarray(rng.standard_normal((N, H)), jnp.float32)
    params = tuple(jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((D, gates * H), (H, gates * H), (gates * H,)))
    mesh = jax.make_mesh((1,), ("d",))

    def loss(p, x, h0):
        return jnp.mean(layer(x, h0, *p) ** 2)

    @jax.jit
    @partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("d"), P("d")), out_specs=(P(), P()))
    def sharded(p, x, h0):
        return jax.value_and_grad(lambda p: lax.pmean(loss(p, x, h0), "d"))(p)

    split = NamedSharding(mesh, P("d"))
    xs, h0s = jax.device_put(x, split), jax.device_put(h0, split)
    assert target in sharded.lower(params, xs, h0s).as_text()
    got = sharded(params, xs, h0s)
    want = jax.jit(jax.value_and_grad(loss))(params, x, h0)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert scaled_error(a, b) < 1e-6
