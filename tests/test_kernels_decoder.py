"""`jaxseq.kernels.decoder_loss`: the decoder and the softmax loss compiled as one CPU kernel.

- Its per-row losses and the gradients of their sum equal a float64 NumPy reference (float32
  to 2e-6 of each array's scale, float64 to 1e-13), over shapes that take every tail of the
  kernel (rows not a multiple of its row tile, inputs not a multiple of the vector width, a
  vocabulary that leaves a panel one entry wide, 1 x 1 x 1), with row weights of 0, targets
  outside the vocabulary (a NaN loss and no one-hot term, as the XLA version), scores far
  beyond exp's range (1e4: the log-sum-exp stays exact), a bias of -inf over whole panels, and a
  NaN input (NaN where the reference has it). A workspace beyond the machine's memory is XLA's
  RESOURCE_EXHAUSTED error, not an abort.
- Through the layer (`temporal_affine_softmax_loss`): value and gradients equal the XLA
  version's (float64 1e-12, float32 5e-6), the program calls the kernel (and not inside
  `xla_loops()`), vmap runs it per item, `shard_map` gets the plain gradients, a GPU's program
  does not call it. The language model's training loss (`fast_loss`, tied and untied) runs
  it and equals `LanguageModel.loss`'s gradients.
- One thread or two: the same bits; a workspace beyond the 64 MB kept between calls gets
  memory of its own. Where it applies: float32 / float64 of one dtype, by default a vocabulary of
  at least MIN_VOCABULARY entries and rows of at most MAX_INPUTS values (every size under
  JAXSEQ_KERNEL_MIN_STATE=0, as the suite sets, or inside `at_every_size()`), not with
  JAXSEQ_KERNELS=off.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import kernels, layers
from jaxseq.kernels import build
from jaxseq.kernels import decoder_loss as K
from jaxseq.models import LanguageModel
from tests.helpers import scaled_error
from tests.kernel_checks import assert_same_bits_on_one_and_two_threads

TARGETS = (K.LOSS_TARGET, K.GRADIENTS_TARGET)


def problem(M, D, V, dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((M, D))
    w = rng.uniform(-0.5, 0.5, (V, D))
    b = rng.standard_normal(V)
    y = rng.integers(0, V, M)
    r = rng.random(M) / max(M, 1)
    r[::5] = 0.0  # rows that do not count
    return tuple(jnp.asarray(a, dtype) for a in (x, w, b)) + (jnp.asarray(y, jnp.int32), jnp.asarray(r, dtype))


def reference(x, w, b, y, r):
    """(losses, dx, dw, db) in float64 NumPy (module docstring)."""
    x, w, b, r = (np.asarray(a, np.float64) for a in (x, w, b, r))
    y = np.asarray(y)
    s = x @ w.T + b
    top = s.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(s - top).sum(axis=1, keepdims=True)))[:, 0]
    known = (y >= 0) & (y < w.shape[0])
    picked = np.where(known, s[np.arange(len(y)), np.clip(y, 0, w.shape[0] - 1)], np.nan)
    ds = np.exp(s - lse[:, None])
    ds[np.arange(len(y))[known], y[known]] -= 1.0
    ds *= r[:, None]
    return r * (lse - picked), ds @ w, ds.T @ x, ds.sum(axis=0)


def assert_close(got, want, tol):
    for name, a, e in zip(("losses", "dx", "dw", "db"), got, want):
        a = np.asarray(a, np.float64)
        assert a.shape == e.shape, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=name)
        assert scaled_error(np.nan_to_num(a), np.nan_to_num(e)) < tol, name


SHAPES = [(1, 1, 1), (7, 3, 5), (13, 17, 65), (35, 200, 517), (64, 33, 1000)]


@pytest.mark.parametrize("M,D,V", SHAPES)
def test_the_kernel_equals_the_reference_in_float32(M, D, V):
    p = problem(M, D, V, jnp.float32)
    want = reference(*p)
    assert_close(K.losses_and_gradients(*p), want, 2e-6)
    assert_close((K.losses(*p),), want[:1], 2e-6)


@pytest.mark.parametrize("M,D,V", SHAPES[:4])
def test_the_kernel_equals_the_reference_in_float64(x64, M, D, V):
    p = problem(M, D, V, jnp.float64)
    want = reference(*p)
    assert_close(K.losses_and_gradients(*p), want, 1e-13)
    assert_close((K.losses(*p),), want[:1], 1e-13)


def test_targets_outside_the_vocabulary_give_a_nan_loss_and_no_one_hot_term():
    x, w, b, y, r = problem(9, 6, 70, jnp.float32)
    y = y.at[2].set(-1).at[4].set(70)
    want = reference(x, w, b, y, r)
    assert np.isnan(want[0][[2, 4]]).all() and not np.isnan(want[0][[0, 1, 3]]).any()
    assert_close(K.losses_and_gradients(x, w, b, y, r), want, 2e-6)


def test_scores_far_beyond_exp_range_keep_the_log_sum_exp_exact(x64):
    """Scores of about +-1e4 (exp overflows above 88): exact in float64; in float32 the losses to
    float32's precision, the gradients to 1e-3 (a score of 1e4 is only known to 1e-3 in float32,
    which moves its softmax by that much: the reference starts from the same float32 inputs)."""
    p = problem(11, 8, 300, jnp.float64, scale=2000.0)
    want = reference(*p)
    assert np.abs(np.asarray(p[0]) @ np.asarray(p[1]).T).max() > 5000
    assert_close(K.losses_and_gradients(*p), want, 1e-12)
    single = tuple(a.astype(jnp.float32) if a.dtype == jnp.float64 else a for a in p)
    want = reference(*single)
    got = K.losses_and_gradients(*single)
    assert_close(got[:1], want[:1], 2e-6)
    assert_close(got, want, 1e-3)


def test_a_bias_that_masks_whole_panels_gives_the_references_values():
    """Entries 0-99 masked by a bias of -inf (the first panel entirely): their softmax is 0 and
    the rest is exact, as XLA's version gives (not NaN from -inf - -inf)."""
    x, w, b, y, r = problem(9, 6, 300, jnp.float32)
    b = b.at[:100].set(-jnp.inf)
    y = 100 + y % 200
    got = K.losses_and_gradients(x, w, b, y, r)
    assert np.isfinite(np.asarray(got[0])).all()
    assert_close(got, reference(x, w, b, y, r), 2e-6)


def test_a_nan_input_gives_nan_where_the_reference_has_it():
    x, w, b, y, r = problem(9, 6, 300, jnp.float32)
    x = x.at[3, 2].set(jnp.nan)
    r = r.at[3].set(0.5)
    want = reference(x, w, b, y, r)
    assert np.isnan(want[0][3]) and np.isfinite(np.delete(want[0], 3)).all()
    assert_close(K.losses_and_gradients(x, w, b, y, r), want, 2e-6)


def test_a_workspace_beyond_the_machines_memory_is_an_error_not_an_abort(tmp_path):
    """200,000 rows by 200,000 entries: 160 GB of exponentials. The call returns XLA's
    RESOURCE_EXHAUSTED naming the kernel (an exception must not cross into XLA, which would abort
    the process); run in a child process all the same."""
    import subprocess
    import sys

    if open("/proc/sys/vm/overcommit_memory").read().strip() == "1":
        pytest.skip("the kernel always overcommits memory here: the allocation would not fail")
    code = (
        "import jax, jax.numpy as jnp\n"
        "from jaxseq.kernels import decoder_loss as K\n"
        "M = V = 200_000\n"
        "args = (jnp.ones((M, 1)), jnp.ones((V, 1)), jnp.zeros(V), jnp.zeros(M, jnp.int32), jnp.ones(M))\n"
        "try:\n"
        "    jax.block_until_ready(K.losses_and_gradients(*args))\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, str(e).splitlines()[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RESOURCE_EXHAUSTED" in done.stdout and "jaxseq decoder-loss kernel: not enough memory" in done.stdout


def test_one_thread_or_two_give_the_same_bits(monkeypatch):
    p = problem(50, 40, 700, jnp.float32)
    assert_same_bits_on_one_and_two_threads(
        monkeypatch, lambda: dict(zip(("losses", "dx", "dw", "db"), K.losses_and_gradients(*p))))


def test_a_workspace_beyond_the_kept_memory_gets_memory_of_its_own():
    """2,000 rows x 9,000 entries: the exponentials alone are 72 MB in float32, above the 64 MB
    kept between calls (dx sums 9,000 products in float32: 1e-5)."""
    p = problem(2000, 3, 9000, jnp.float32)
    assert_close(K.losses_and_gradients(*p), reference(*p), 1e-5)


def layer_problem(N, T, D, V, dtype):
    x, w, b, y, _ = problem(N * T, D, V, dtype)
    mask = np.random.default_rng(1).random((N, T)) < 0.8
    return x.reshape(N, T, D), w.T, b, y.reshape(N, T), jnp.asarray(mask)


def layer_value_and_grad(x, w, b, y, mask):
    return jax.value_and_grad(layers.temporal_affine_softmax_loss, argnums=(0, 1, 2))(x, w, b, y, mask)


@pytest.mark.parametrize("dtype,tol", [("float32", 5e-6), ("float64", 1e-12)])
def test_the_layer_on_the_kernel_equals_the_xla_version(dtype, tol):
    with jax.enable_x64(dtype == "float64"):
        p = layer_problem(3, 7, 19, 600, jnp.dtype(dtype))
        for fn, targets in ((layer_value_and_grad, (K.GRADIENTS_TARGET,)),
                            (layers.temporal_affine_softmax_loss, (K.LOSS_TARGET,))):
            compiled = jax.jit(fn)
            assert all(t in compiled.lower(*p).as_text() for t in targets)
            got = compiled(*p)
            with kernels.xla_loops():
                xla = jax.jit(fn)
                assert not any(t in xla.lower(*p).as_text() for t in TARGETS)
                want = xla(*p)
            for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                assert a.dtype == e.dtype and scaled_error(a, e) < tol


def test_vmap_of_the_layer_runs_the_kernel_per_item():
    x, w, b, y, mask = layer_problem(2, 3, 5, 40, jnp.float32)
    xs = jnp.stack([x, 2 * x, -x])
    batched = jax.vmap(layer_value_and_grad, in_axes=(0, None, None, None, None))(xs, w, b, y, mask)
    for i in range(3):
        single = layer_value_and_grad(xs[i], w, b, y, mask)
        for a, e in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            assert scaled_error(a[i], e) < 1e-6


def test_inside_shard_map_the_kernel_gives_the_plain_gradients():
    from jax import lax
    from jax.sharding import NamedSharding, PartitionSpec as P

    x, w, b, y, mask = layer_problem(4, 3, 6, 50, jnp.float32)
    mesh = jax.make_mesh((1,), ("d",))

    def loss(p, x, y, mask):
        return layers.temporal_affine_softmax_loss(x, p[0], p[1], y, mask)

    @jax.jit
    @partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("d"), P("d"), P("d")), out_specs=(P(), P()))
    def sharded(p, x, y, mask):
        return jax.value_and_grad(lambda p: lax.pmean(loss(p, x, y, mask), "d"))(p)

    split = NamedSharding(mesh, P("d"))
    args = ((w, b), *(jax.device_put(a, split) for a in (x, y, mask)))
    assert K.GRADIENTS_TARGET in sharded.lower(*args).as_text()
    got = sharded(*args)
    want = jax.jit(jax.value_and_grad(loss))((w, b), x, y, mask)
    for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert scaled_error(a, e) < 1e-6


def test_a_gpu_program_does_not_call_the_kernel():
    p = layer_problem(2, 3, 4, 30, jnp.float32)
    step = jax.jit(layer_value_and_grad)
    foreign = [jax.export.DisabledSafetyCheck.custom_call(t) for t in TARGETS]
    cpu = jax.export.export(step, platforms=["cpu"], disabled_checks=foreign)(*p).mlir_module()
    cuda = jax.export.export(step, platforms=["cuda"], disabled_checks=foreign)(*p).mlir_module()
    assert K.GRADIENTS_TARGET in cpu and not any(t in cuda for t in TARGETS)


@pytest.mark.parametrize("tie_weights", [False, True])
def test_the_language_models_training_loss_runs_the_kernel(x64, tie_weights):
    model = LanguageModel(vocab_size=70, embed_size=6, hidden_size=6, num_layers=2, tie_weights=tie_weights,
                          param_dtype=jnp.float64)
    rng = np.random.default_rng(4)
    tokens, targets = (jnp.asarray(rng.integers(0, 70, (3, 5)), jnp.int32) for _ in range(2))
    variables = model.init(jax.random.key(0), tokens)
    state = model.initial_state(3)

    def grads(method):
        return jax.jit(jax.grad(lambda v: model.apply(v, tokens, targets, state, method=method)[0]))

    fast = grads(LanguageModel.fast_loss)
    assert K.GRADIENTS_TARGET in fast.lower(variables).as_text()
    for a, e in zip(jax.tree.leaves(fast(variables)), jax.tree.leaves(grads(LanguageModel.loss)(variables))):
        assert scaled_error(a, e) < 1e-12


def test_where_the_kernel_applies(monkeypatch):
    x, w = jnp.zeros((4, 3), jnp.float32), jnp.zeros((600, 3), jnp.float32)
    assert K.applies(x, w)
    assert not K.applies(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
    assert not K.applies(x, jnp.zeros((600, 0))) and not K.applies(jnp.zeros((0, 3)), w)
    with jax.enable_x64(True):
        assert not K.applies(x, w.astype(jnp.float64))  # dtypes differ
    with kernels.xla_loops():
        assert not K.applies(x, w)
    monkeypatch.setenv("JAXSEQ_KERNELS", "off")
    assert not K.applies(x, w)
    monkeypatch.delenv("JAXSEQ_KERNELS")
    small = jnp.zeros((K.MIN_VOCABULARY - 1, 3), jnp.float32)
    assert K.applies(x, small)  # the suite's JAXSEQ_KERNEL_MIN_STATE=0: every size
    monkeypatch.delenv(build.MIN_STEP_STATE_VARIABLE)
    assert K.MIN_VOCABULARY == 512 and not K.applies(x, small) and K.applies(x, jnp.zeros((512, 3), jnp.float32))
    assert K.MAX_INPUTS == 400 and K.applies(jnp.zeros((4, 400), jnp.float32), jnp.zeros((600, 400), jnp.float32))
    assert not K.applies(jnp.zeros((4, 401), jnp.float32), jnp.zeros((600, 401), jnp.float32))
    with kernels.at_every_size():
        assert K.applies(x, small) and K.applies(jnp.zeros((4, 401), jnp.float32), jnp.zeros((600, 401), jnp.float32))
