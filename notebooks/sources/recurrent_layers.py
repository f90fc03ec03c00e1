# %% [markdown]
# # Recurrent layers: padded batches, PyTorch's weights, the GRU, speed
#
# Real sequences have different lengths. To run them as one batch we pad them to a common
# length T and pass their true `lengths`; a recurrent layer must then act as if the padding
# were not there. This notebook walks through how `jaxseq.nn.LSTM` does that (PyTorch's
# packed-sequence semantics, forward and bidirectional) and shows its Flax NNX twin
# `jaxseq.nnx.LSTM` beside it, loads a `torch.nn.LSTM`'s weights and checks that both give
# the same numbers, writes down the GRU and checks its hand-written backward, and ends with
# how fast these layers are.
#
# `FULL = False` keeps the run to well under a minute on a laptop CPU; `FULL = True` only
# times the layers for longer, at a larger shape.

# %%
FULL = False

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseq import layers as L
from jaxseq.gradcheck import check_layer, format_results, random_sequence_inputs, sequence_layer_case
from jaxseq.nn import LSTM, params_from_torch, params_to_torch

print("jax", jax.__version__, "on", jax.devices()[0].platform)

# %% [markdown]
# ## 1. A padded batch through `jaxseq.nn.LSTM`
#
# Four sequences of lengths 6, 3, 1 and 4, padded to T = 6: sequence n is real at steps
# t < lengths[n] and padding after. We fill the padding with a large value (99) on purpose:
# if it leaked into the computation, we would see it.
#
# `LSTM(hidden_size=H)` has PyTorch's semantics (`batch_first=True`). With `lengths`:
#
# - sequence n is read at steps t < lengths[n] only; its state stops changing after that;
# - the outputs past each length are exactly 0;
# - `h_n` and `c_n` are the hidden and cell states at each sequence's **last valid step**
#   (not at step T - 1, which for a short sequence is padding).
#
# Shapes: x (N, T, D) -> out (N, T, H), and h_n, c_n (num_layers * num_directions, N, H):
# here (1, N, H).

# %% tags=lengths
N, T, D, H = 4, 6, 3, 5
lengths = np.array([6, 3, 1, 4])  # one full sequence, one of length 1
rng = np.random.default_rng(0)
x = rng.standard_normal((N, T, D)).astype(np.float32)
for n, length in enumerate(lengths):
    x[n, length:] = 99.0  # the padding: it must change nothing

lstm = LSTM(hidden_size=H)
variables = lstm.init(jax.random.key(0), x)
out, (h_n, c_n) = lstm.apply(variables, x, lengths=lengths)
print("out", out.shape, "  h_n", h_n.shape, "  c_n", c_n.shape)
for n, length in enumerate(lengths):
    past = np.abs(out[n, length:]).max(initial=0.0)
    last = np.abs(h_n[0, n] - out[n, length - 1]).max()
    print(f"sequence {n} (length {length}): max |out past the length| = {past}   "
          f"max |h_n - out at step {length - 1}| = {last}")

# %% [markdown]
# Does the padding really change nothing? Run each sequence alone, cut to its length (no
# padding, no `lengths`), and compare its outputs and final states with the batch's. The
# differences are float32 round-off at most (a different batch size can change the order of
# a sum), i.e. zero or about 1e-7:

# %% tags=lengths
def alone(module, variables, n):
    """Sequence n of the batch run by itself, without its padding: (out, h_n, c_n)."""
    out_n, (h_n_n, c_n_n) = module.apply(variables, x[n:n + 1, :lengths[n]])
    return out_n[0], h_n_n[:, 0], c_n_n[:, 0]


for n, length in enumerate(lengths):
    out_n, h_alone, c_alone = alone(lstm, variables, n)
    print(f"sequence {n} alone: max difference in out {np.abs(out[n, :length] - out_n).max():.1e}, "
          f"h_n {np.abs(h_n[:, n] - h_alone).max():.1e}, c_n {np.abs(c_n[:, n] - c_alone).max():.1e}")

# %% [markdown]
# ### Bidirectional, two layers
#
# `bidirectional=True` adds a second LSTM per layer that reads each sequence **backwards,
# from its own last valid step** (not from step T - 1) down to step 0. Its output at step t
# is its state after reading x[t], ..., x[length - 1], so `out[:, t]` stays aligned with
# `x[:, t]`; its final state is the state after reading back to step 0. A layer's output is
# the two directions concatenated, [forward | backward], and the next layer reads it.
#
# The rows of h_n and c_n are ordered as in PyTorch: row `l * num_directions + d` is layer l,
# direction d (0 = forward, 1 = backward). For the top layer we can read both directions'
# final states off `out`: the forward one at step length - 1 (first H features), the
# backward one at step 0 (last H features). For layer 0, a one-layer bidirectional LSTM with
# layer 0's weights gives that layer's outputs.

# %% tags=lengths
num_layers = 2
bilstm = LSTM(hidden_size=H, num_layers=num_layers, bidirectional=True)
bi_variables = bilstm.init(jax.random.key(1), x)
bi_out, (bi_h_n, bi_c_n) = bilstm.apply(bi_variables, x, lengths=lengths)
print("out", bi_out.shape, "= (N, T, 2H)   h_n", bi_h_n.shape, "c_n", bi_c_n.shape,
      "= (num_layers * num_directions, N, H)")
print("parameters:", ", ".join(f"{name} {value.shape}" for name, value in bi_variables["params"].items()))

layer0 = LSTM(hidden_size=H, bidirectional=True)
layer0_variables = {"params": {name: value for name, value in bi_variables["params"].items() if "_l0" in name}}
layer_out = {0: layer0.apply(layer0_variables, x, lengths=lengths)[0], 1: bi_out}

print()
for l in range(num_layers):
    for d, direction in enumerate(("forward", "backward")):
        row = l * 2 + d
        worst = 0.0
        for n, length in enumerate(lengths):
            # forward: its state at the last valid step; backward: its state at step 0
            final = layer_out[l][n, length - 1, :H] if d == 0 else layer_out[l][n, 0, H:]
            worst = max(worst, float(np.abs(bi_h_n[row, n] - final).max()))
        print(f"h_n[{row}] = layer {l}, {direction:<8}: max |h_n[{row}] - its final state in out| = {worst}")

print()
for n, length in enumerate(lengths):
    print(f"sequence {n} (length {length}): max |out past the length| = {np.abs(bi_out[n, length:]).max(initial=0.0)}")

# %% [markdown]
# And each sequence alone, without its padding, gives the same outputs and states: had the
# backward direction started at step T - 1, it would have read the padding (99) first and
# the differences would be large.

# %% tags=lengths
for n, length in enumerate(lengths):
    out_n, h_alone, c_alone = alone(bilstm, bi_variables, n)
    print(f"sequence {n} alone: max difference in out {np.abs(bi_out[n, :length] - out_n).max():.1e}, "
          f"h_n {np.abs(bi_h_n[:, n] - h_alone).max():.1e}, c_n {np.abs(bi_c_n[:, n] - c_alone).max():.1e}")

# %% [markdown]
# ### The same stack as a Flax NNX module
#
# Flax's newer API, NNX, keeps parameters inside the module object instead of in a separate
# `variables` dict. `jaxseq.nnx.LSTM` is the NNX front-end of the same stack: PyTorch's
# constructor, `LSTM(input_size, hidden_size, num_layers, ..., rngs=nnx.Rngs(0))`, and call,
# `out, (h_n, c_n) = model(x, lengths=...)`, with the parameters as attributes under PyTorch's
# names. Underneath it runs the Linen module above on its own parameters, so the two give the
# same numbers. `from_linen` builds one from a Linen module and its variables (`to_linen` goes
# back). Dropout between layers is on in NNX's training mode, the default, and off after
# `model.eval()`.

# %% tags=nnx
from flax import nnx

import jaxseq.nnx

nnx_lstm = jaxseq.nnx.from_linen(bilstm, bi_variables)
nnx_lstm.eval()
nnx_out, (nnx_h_n, nnx_c_n) = nnx_lstm(x, lengths=lengths)
print(f"{type(nnx_lstm).__module__}.{type(nnx_lstm).__name__}   weight_ih_l1_reverse",
      nnx_lstm.weight_ih_l1_reverse.shape)
print("its parameters:", len(nnx.state(nnx_lstm, nnx.Param)), "nnx.Params, the Linen module's:",
      len(bi_variables["params"]))
print(f"NNX vs Linen: max difference in out {np.abs(nnx_out - bi_out).max()}, h_n {np.abs(nnx_h_n - bi_h_n).max()}, "
      f"c_n {np.abs(nnx_c_n - bi_c_n).max()}")

# %% [markdown]
# ## 2. A `torch.nn.LSTM`'s weights in jaxseq
#
# `jaxseq.nn` modules name and shape their parameters as PyTorch does: `weight_ih_l{k}`
# (4H, D_in), `weight_hh_l{k}` (4H, H), `bias_ih_l{k}`, `bias_hh_l{k}` (4H,), with the
# suffix `_reverse` for the backward direction; D_in = D for layer 0 and 2H after. So a
# PyTorch model's `state_dict()` loads with `params_from_torch`, and `params_to_torch` gives
# one back. Inside the call the weights become jaxseq's layout: transposed, the gates
# reordered from PyTorch's i, f, g, o to the course's i, f, o, g, and the two biases summed
# (for the LSTM they only ever enter as a sum).
#
# PyTorch runs a padded batch of different lengths as a *packed sequence*:
# `pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)` (the lengths in
# any order), and `pad_packed_sequence` pads its output back with zeros. torch is a
# development dependency of jaxseq (`make test` installs it); without it this part is
# skipped.

# %%
try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    print("torch", torch.__version__)
except ImportError as missing:
    torch = None
    print(f"torch is not installed ({missing}): skipping the comparison with torch.nn.LSTM "
          "(pip install -e '.[dev]' or `make test` installs it)")

# %% tags=torch
if torch is None:
    print("skipped: torch is not installed")
else:
    torch.manual_seed(0)
    torch_lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True)
    ported = params_from_torch(bilstm, torch_lstm.state_dict())
    j_out, (j_h_n, j_c_n) = bilstm.apply(ported, x, lengths=lengths)

    packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True,
                                  enforce_sorted=False)
    with torch.no_grad():
        t_out, (t_h_n, t_c_n) = torch_lstm(packed)
    t_out = pad_packed_sequence(t_out, batch_first=True, total_length=T)[0].numpy()
    t_h_n, t_c_n = t_h_n.numpy(), t_c_n.numpy()

    print("shapes: torch out", t_out.shape, "h_n", t_h_n.shape, "   jaxseq out", j_out.shape, "h_n", j_h_n.shape)
    print(f"largest difference |jaxseq - torch|: out {np.abs(j_out - t_out).max():.1e}   "
          f"h_n {np.abs(j_h_n - t_h_n).max():.1e}   c_n {np.abs(j_c_n - t_c_n).max():.1e}")

# %% [markdown]
# The round trip: `params_to_torch` gives PyTorch's names, shapes and order back, equal bit
# for bit to the state_dict we started from, and a fresh `torch.nn.LSTM` that loads it
# computes exactly what the first one did.

# %% tags=torch
if torch is None:
    print("skipped: torch is not installed")
else:
    state_dict = params_to_torch(bilstm, ported)
    original = torch_lstm.state_dict()
    print("same names, in the same order:", list(state_dict) == list(original))
    print("bit for bit equal:", all(np.array_equal(state_dict[name], original[name].numpy()) for name in original))

    fresh = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True)
    fresh.load_state_dict({name: torch.from_numpy(value) for name, value in state_dict.items()})
    with torch.no_grad():
        again = pad_packed_sequence(fresh(packed)[0], batch_first=True, total_length=T)[0].numpy()
    print("fresh torch.nn.LSTM with the round-tripped weights: largest difference in out "
          f"{np.abs(again - t_out).max():.1e}")

# %% [markdown]
# ## 3. The GRU and its gradient check
#
# The GRU (gated recurrent unit) keeps one state h, no separate cell. jaxseq follows
# PyTorch's equations and gate order **r, z, n** along the 3H axis, with two biases: b
# (PyTorch's `bias_ih`) on the input side and bh (`bias_hh`) on the hidden side. With
# $x_t$ (N, D), $h_{t-1}$ (N, H), $W_x$ (D, 3H), $W_h$ (H, 3H):
#
# $$r = \sigma(x_t W_{x,r} + b_r + h_{t-1} W_{h,r} + bh_r), \qquad
# z = \sigma(x_t W_{x,z} + b_z + h_{t-1} W_{h,z} + bh_z),$$
# $$n = \tanh\big(x_t W_{x,n} + b_n + r \odot (h_{t-1} W_{h,n} + bh_n)\big), \qquad
# h_t = (1 - z) \odot n + z \odot h_{t-1}.$$
#
# The reset gate r decides how much of the old state goes into the candidate n, the update
# gate z how much of the old state to keep. For r and z the two biases only enter as a sum,
# but $bh_n$ sits inside $r \odot (\cdot)$, so it cannot be folded into $b_n$: that is why
# there are two.
#
# The backward (see `jaxseq/layers/gru.py`), given the total gradient $dh_t$ of the step's
# output: $dn = dh_t \odot (1 - z)$, $dz = dh_t \odot (h_{t-1} - n)$,
# $da_n = dn \odot (1 - n^2)$, $da_r = da_n \odot (h_{t-1} W_{h,n} + bh_n) \odot r(1 - r)$,
# $da_z = dz \odot z(1 - z)$; the input side gets $[da_r, da_z, da_n]$, the hidden side
# $[da_r, da_z, da_n \odot r]$, and $dh_{t-1} = [da_r, da_z, da_n \odot r]\, W_h^\top + dh_t \odot z$.
#
# `check_layer` compares the hand-written backward with `jax.grad` of the forward and with
# numerical gradients (fourth-order central differences), in float64; the last column is
# `jax.grad` through the `custom_vjp` function `L.gru_step` / `L.gru` against the hand
# backward, which must be 0. `sequence_layer_case` makes the sequence layer's check cover
# `lengths` and `reverse` too: the layer is called with `return_state=True`, so the final
# state h_n is an output and its gradient flows into the backward. The lengths include a
# full sequence, one of length 1 and one of length 0 (jaxseq allows it: zero outputs and
# h_n = h0).

# %% tags=gradcheck
rng = np.random.default_rng(0)
N, T, D, H = 4, 5, 3, 6
step_inputs = dict(x=rng.standard_normal((N, D)), prev_h=rng.standard_normal((N, H)),
                   Wx=0.5 * rng.standard_normal((D, 3 * H)), Wh=0.5 * rng.standard_normal((H, 3 * H)),
                   b=rng.standard_normal(3 * H), bh=rng.standard_normal(3 * H))
results = check_layer("gru_step", L.gru_step_forward, L.gru_step_backward, step_inputs, list(step_inputs),
                      differentiable=L.gru_step)

inputs = random_sequence_inputs("gru", rng, N, T, D, H)  # x, h0, Wx, Wh, b, bh
results += check_layer("gru", L.gru_forward, L.gru_backward, inputs, list(inputs), differentiable=L.gru)

gru_lengths = np.array([5, 3, 1, 0])
for reverse in (False, True):
    forward, backward, differentiable, names = sequence_layer_case("gru", lengths=gru_lengths, reverse=reverse)
    results += check_layer("gru_lengths_reverse" if reverse else "gru_lengths", forward, backward, inputs,
                           list(names), differentiable=differentiable)

print(format_results(results))
worst_autodiff = max(max(r.hand_vs_autodiff, r.custom_vjp_vs_hand) for r in results)
worst_numerical = max(r.hand_vs_numerical for r in results)
print()
print(f"largest error vs jax.grad (and custom_vjp vs hand): {worst_autodiff:.2e}")
print(f"largest error vs numerical: {worst_numerical:.2e}")

# %% [markdown]
# ## 4. How fast?
#
# The measurements live in `benchmarks/`: every contender (jaxseq, autodiff of a plain
# `lax.scan`, Flax, PyTorch, NumPy) first checked to compute the same values, then timed
# interleaved, medians of 11 rounds, on a quiet machine. The recurrent cases are the GRU,
# the LSTM and GRU with lengths, and the T sweep (time against the sequence length). Here
# are their rows in `benchmarks/results/latest.md`, where that run is recorded.

# %% tags=speed
RESULTS = Path("../benchmarks/results/latest.md")  # the notebook runs in notebooks/
RECURRENT = ("gru", "lstm lengths", "gru lengths", "T sweep")  # and any case of stacked layers


def recurrent_sections(markdown: str) -> list[str]:
    """The "### case · variant · shape" sections of a results file whose case is recurrent."""
    sections = []
    for section in markdown.split("\n### ")[1:]:
        case = section.split(" · ")[0]
        if case in RECURRENT or "stack" in case:
            sections.append("### " + section.strip())
    return sections


found = recurrent_sections(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else []
if found:
    print(f"{len(found)} recurrent cases in {RESULTS}:\n")
    for section in found:
        lines = section.splitlines()
        print("\n".join(line for line in lines if line.startswith(("###", "|"))), end="\n\n")
else:
    print(("no recurrent cases in " if RESULTS.is_file() else "no benchmark results at ") + f"{RESULTS}.\n"
          "Measure them from the repository root with\n"
          "    jaxseq bench --only recurrent --only t_sweep\n"
          "(GRU, lengths, T sweep; it writes bench-output/latest.md; `--out benchmarks/results` records the\n"
          " run here, replacing the file of a full run).")

# %% [markdown]
# ### A tiny live timing (indicative only)
#
# To see the idea at work: the gradient of $\sum h \odot dout$ through `jaxseq.layers.lstm`
# (its hand-written backward) against `jax.grad` of the same LSTM written as a plain
# `lax.scan` (autodiff), both jitted, at a small shape, a few calls each. On a small shape
# and a shared laptop the numbers move a lot from run to run: they are **indicative only**.
# The real measurements are those of `benchmarks/`, above.

# %% tags=timing
def scan_lstm(x, h0, Wx, Wh, b):
    """The course's LSTM (gates i, f, o, g) as a plain lax.scan, for autodiff."""
    def step(carry, xw_t):
        h, c = carry
        a_i, a_f, a_o, a_g = jnp.split(xw_t + h @ Wh, 4, axis=-1)
        c = jax.nn.sigmoid(a_f) * c + jax.nn.sigmoid(a_i) * jnp.tanh(a_g)
        h = jax.nn.sigmoid(a_o) * jnp.tanh(c)
        return (h, c), h
    xw = jnp.einsum("ntd,dg->tng", x, Wx) + b
    _, hs = lax.scan(step, (h0, jnp.zeros_like(h0)), xw)
    return jnp.swapaxes(hs, 0, 1)


N, T, D, H = (64, 32, 128, 256) if FULL else (16, 16, 32, 64)
calls = 50 if FULL else 10
rng = np.random.default_rng(0)
args = [rng.standard_normal(shape).astype(np.float32) * scale for shape, scale in
        [((N, T, D), 1.0), ((N, H), 1.0), ((D, 4 * H), 0.1), ((H, 4 * H), 0.1), ((4 * H,), 0.1)]]
dout = rng.standard_normal((N, T, H)).astype(np.float32)


def gradient_of(layer):
    loss = lambda *a: jnp.sum(layer(*a) * dout)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))


contenders = {"jaxseq.layers.lstm": gradient_of(L.lstm), "autodiff lax.scan": gradient_of(scan_lstm)}
grads = {name: jax.block_until_ready(fn(*args)) for name, fn in contenders.items()}  # compiles
agree = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(*grads.values()))
print(f"fwd+bwd, N={N} T={T} D={D} H={H}, float32; the two gradients agree to {agree:.1e} (relative)")

times = {name: [] for name in contenders}
for _ in range(calls):  # interleaved, so a change in the machine's load hits both alike
    for name, fn in contenders.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times[name].append(time.perf_counter() - start)
medians = {name: 1e3 * float(np.median(ts)) for name, ts in times.items()}
for name, ms in medians.items():
    print(f"  {name:<20} median of {calls} calls: {ms:.3f} ms")
print(f"autodiff / jaxseq: {medians['autodiff lax.scan'] / medians['jaxseq.layers.lstm']:.2f}x "
      "(indicative only: a tiny shape, a few calls; the measurements are in benchmarks/)")
