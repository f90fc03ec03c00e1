"""Language-model speed (issue 22): training throughput of one full step, and generation.

Training, tokens/s of ONE FULL STEP (forward from the carried state, mean cross-entropy per
token, backward, clipping by global norm, the optimizer update, the carried state in and out):

    char   2-layer LSTM H=512, embedding E=128, N=64 streams, bptt T=128, V=65,
           AdamW (lr 2e-3, no weight decay, constant rate), clip 1.0
    word   PyTorch's word_language_model example defaults: E=200, 2-layer LSTM H=200, T=35,
           N=20, V=10,000, SGD lr 20, clip 0.25

Contenders (the same weights, ported by name; dropout off; float32):

- jaxseq  the trainer's own step: `make_train_step(lm_training_loss(model), lm_optimizer(config),
          segment_sampler(T), has_aux=True)` on `SegmentData(streams, carry, start)` (what
          `jaxseq lm train` runs), one jitted call; on the CPU it runs the compiled kernels
          where they apply (`jaxseq.kernels`: the char model's LSTM loops, the word model's
          decoder and loss)
- jaxseq-xla-loops  the same step without them (`jaxseq.kernels.xla_loops()`: the LSTM's XLA
          loops, XLA's decoder and loss): what the compiled kernels add
- flax    `nn.RNN(nn.OptimizedLSTMCell(H), return_carry=True)` layers with the same embedding
          (a gather from a (V, E) matrix) and decoder (`nn.Dense`), optax's cross-entropy; the
          same step builder and optimizer (`make_train_step`, `lm_optimizer`), so that only the
          model differs
- torch   `torch_models.LanguageModel` (the example's `RNNModel`, batch first): zero_grad,
          forward from the detached state, `F.cross_entropy`, backward,
          `clip_grad_norm_`, `SGD.step()` / `Adam(fused=True).step()` (Adam with no weight decay
          = AdamW's), the state detached for the next step (`repackage_hidden`); 2 threads

Before timing, `check_agreement` asserts on the same weights and a random entering state that
all three give the same loss, final state and every gradient (PyTorch's names, 1e-4 of each
array's scale), and then that the first steps of the timed callables (clip, update and carried
state included) give the same losses.

Generation (`gen` case): 1,000 characters at batch 1 from the char model, from a one-character
prompt: jaxseq's jitted sampler (`jaxseq.models.text_sampling.generate`, the loop
`jaxseq lm generate` / `generate_text` runs: one `lax.scan` of `generation_step.fast_step` in
one jitted call, the weights converted once per call), the same loop on the readable step
(`jaxseq-apply`: `model.apply` per token, what `generate` ran before the fast step) and the
PyTorch twin in a per-token Python loop, as the example's generate.py does (`model(input,
hidden)`, `output.squeeze().div(temperature).exp()`, `torch.multinomial`, `input.fill_`, under
`no_grad`). Checked first: the logits PyTorch's loop computed at every step equal jaxseq's model
reading the same tokens in one pass. Then the roofline (`generation_roofline`): weight bytes
read per token, this machine's matrix-vector bandwidth (NumPy, one thread, in a subprocess),
the floor per token they give, XLA's matrix-vector products alone, and PyTorch's fixed cost per
token (its loop on an E = H = 8 twin): what ratio to PyTorch the hardware allows.

Targets (issue 22): training >= 1.0x PyTorch and >= 1.3x Flax in both cases; generation >= 10x
PyTorch's loop. Ratios are contender median / jaxseq median (> 1: jaxseq faster), so they are
also jaxseq's tokens/s over the contender's.

PyTorch's OpenMP wait policy (OMP_WAIT_POLICY, read once when torch loads) is recorded in each
case's notes: unset, libgomp's default spins a while after each parallel region (busy-wait),
PASSIVE sleeps at once. Run the module under each to compare.

    python benchmarks/speed/bench_lm.py [--quick] [--case gen] [--single-core] [--tune-malloc] [--out benchmarks/results]

--tune-malloc tells glibc's malloc to keep freed memory (`harness.tune_malloc`, process-wide,
so for every contender alike): without it each step page-faults its large buffers in again
(XLA's temporary buffer, PyTorch's activations), which `page faults/call` in the tables counts.
"""

from __future__ import annotations

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

if __name__ == "__main__" and "--single-core" in sys.argv:  # before NumPy, JAX or PyTorch start threads
    harness.single_core_mode()
if __name__ == "__main__" and "--tune-malloc" in sys.argv:  # before any thread has an arena of its own
    harness.tune_malloc()

import numpy as np  # noqa: E402

from jaxseq.contenders import assert_agree  # noqa: E402

CASES = {
    "char": dict(N=64, T=128, E=128, H=512, S=2, V=65, optimizer="adamw", learning_rate=2e-3, clip=1.0),
    "word": dict(N=20, T=35, E=200, H=200, S=2, V=10_000, optimizer="sgd", learning_rate=20.0, clip=0.25),
}
QUICK_CASES = {
    "char": dict(N=4, T=8, E=8, H=16, S=2, V=13, optimizer="adamw", learning_rate=2e-3, clip=1.0),
    "word": dict(N=3, T=5, E=12, H=12, S=2, V=50, optimizer="sgd", learning_rate=20.0, clip=0.25),
}
GEN_LENGTH, QUICK_GEN_LENGTH = 1000, 20
REPS, WARMUP = 7, 2  # full mode: a modest number of interleaved rounds (the steps take seconds)
GEN_REPS = 5
OVERHEAD_LENGTH = 200  # tokens per timing of PyTorch's per-token overhead (the tiny twin)
CHECK_STEPS = 3
AGREEMENT_RTOL = 1e-4
# The losses of the first CHECK_STEPS timed steps check the wiring (clipping, the update, the
# carried state: a mistake there is an O(1) difference), not precision (the gradients above are
# checked to 1e-4): updates amplify float32 differences (Adam's first steps move each weight by
# ~lr g / (|g| + eps), so where |g| ~ eps a tiny gradient difference is a different update; see
# bench_captioning.update_errors). Only the PyTorch twin's are compared: Flax's LSTM has one
# bias per gate where PyTorch and jaxseq have two (bias_ih, bias_hh, each given the same
# gradient), so the same optimizer moves their summed bias twice as far as Flax's and the
# clipping norm counts that gradient twice: the same model and gradients, a different
# parametrisation to update (measured: Flax's third loss 1.1e-2 away at the quick word shape).
STEP_LOSSES_RTOL = 1e-2
STEP_CHECKED = ("torch",)
TARGETS = {"train": {"torch": 1.0, "flax": 1.3}, "gen": {"torch": 10.0}}
TORCH_DEVICE = {"name": "cpu"}  # benchmarks/gpu/bench_gpu.py sets "cuda" where there is one
TOTAL_STEPS = 1_000_000  # the optimizer's horizon: the rate is constant (no schedule reaches it)


def wait_policy() -> str:
    """PyTorch's OpenMP wait policy in this process, as the notes state it."""
    value = os.environ.get("OMP_WAIT_POLICY")
    return f"OMP_WAIT_POLICY={value}" if value else "OMP_WAIT_POLICY unset (libgomp default: busy-wait, then sleep)"


def torch_setting() -> str:
    if TORCH_DEVICE["name"] != "cpu":
        return f"torch on {TORCH_DEVICE['name']}"
    return f"torch threads {harness.MODE['torch_threads']}, {wait_policy()}"


def shape_label(c: dict) -> str:
    return (f"N={c['N']} T={c['T']} E={c['E']} H={c['H']} layers={c['S']} V={c['V']}, "
            f"{c['optimizer']} lr {c['learning_rate']:g} clip {c['clip']:g}")


def train_step_flops(c: dict) -> float:
    """Matmul FLOPs of one step: 3x the forward's recurrent and decoder matmuls."""
    N, T, E, H, S, V = (c[k] for k in ("N", "T", "E", "H", "S", "V"))
    recurrent = sum(2.0 * N * T * ((E if layer == 0 else H) + H) * 4 * H for layer in range(S))
    return 3 * (recurrent + 2.0 * N * T * H * V)


# ----------------------------------------------------------------------------- the problem


def make_problem(c: dict, seed: int = 0) -> dict:
    """The jaxseq model, its weights (PyTorch's names), token streams (N, 2T + 1) and a random
    entering state (S, N, H) x 2 for the agreement check."""
    import jax

    from jaxseq.models import LanguageModel
    from jaxseq.models.language_model import lm_params_to_torch

    model = LanguageModel(vocab_size=c["V"], embed_size=c["E"], hidden_size=c["H"], num_layers=c["S"])
    variables = jax.jit(model.init)(jax.random.key(seed), np.zeros((1, 2), np.int32))
    state_dict = lm_params_to_torch(model, variables)
    rng = np.random.default_rng(seed)
    state_dict["decoder.bias"] = (0.1 * rng.standard_normal(c["V"])).astype(np.float32)  # 0 would hide a mix-up
    streams = rng.integers(0, c["V"], (c["N"], 2 * c["T"] + 1)).astype(np.int32)
    shape = (c["S"], c["N"], c["H"])
    state = tuple((0.5 * rng.standard_normal(shape)).astype(np.float32) for _ in range(2))
    return {"model": model, "state_dict": state_dict, "streams": streams, "state": state, "config": c}


def _train_config(c: dict):
    from jaxseq.train.language_model import LMTrainConfig

    schedule = "constant" if c["optimizer"] == "adamw" else "plateau"
    return LMTrainConfig(batch_size=c["N"], bptt=c["T"], optimizer=c["optimizer"], learning_rate=c["learning_rate"],
                         clip_norm=c["clip"], schedule=schedule)


class Contender:
    """step(): one timed training step (state carried in and out; returns its outputs);
    losses(k): the next k steps' losses (floats); grads(state): (loss, final state (h, c),
    {PyTorch name: gradient}) of the first segment entered with `state`, without updating."""

    def __init__(self, step, losses, grads):
        self.step, self.losses, self.grads = step, losses, grads


def _jax_contender(loss_fn, params, p: dict, to_torch) -> Contender:
    """A JAX contender on the trainer's step builder: `loss_fn(params, (x, y, carry, key)) ->
    (loss, carry after)` with the carry stream-major (N, S, H), as `lm_training_loss`'s. Its
    step and gradient function are compiled here (ahead of time), so that a contender made
    inside `jaxseq.kernels.xla_loops()` keeps the XLA loops when it runs outside."""
    import jax
    import jax.numpy as jnp

    from jaxseq.train.language_model import SegmentData, from_streams, lm_optimizer, segment_sampler, to_streams
    from jaxseq.train.steps import init_train_state, make_train_step

    c = p["config"]
    optimizer = lm_optimizer(_train_config(c), TOTAL_STEPS)
    step = make_train_step(loss_fn, optimizer, segment_sampler(c["T"]), has_aux=True)
    streams = jax.device_put(p["streams"])
    start = jnp.int32(0)
    box = {"state": init_train_state(jax.device_put(params), optimizer, seed=0),
           "carry": to_streams(tuple(jnp.zeros_like(s) for s in p["state"]))}
    step = step.lower(box["state"], SegmentData(streams, box["carry"], start)).compile()

    def run():
        box["state"], loss, box["carry"] = step(box["state"], SegmentData(streams, box["carry"], start))
        return jax.block_until_ready((box["state"], loss, box["carry"]))

    def losses(k):
        return [float(run()[1]) for _ in range(k)]

    x, y = p["streams"][:, :c["T"]], p["streams"][:, 1:c["T"] + 1]
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True)).lower(
        params, (x, y, box["carry"], jax.random.key(1))).compile()

    def grads(state):
        (loss, carry), g = grad_fn(params, (x, y, to_streams(tuple(map(jnp.asarray, state))), jax.random.key(1)))
        return float(loss), tuple(np.asarray(s) for s in from_streams(carry)), to_torch(g)

    return Contender(run, losses, grads)


def jaxseq_contender(p: dict) -> Contender:
    from jaxseq.models.language_model import lm_params_from_torch, lm_params_to_torch
    from jaxseq.train.language_model import lm_training_loss

    model = p["model"]
    params = lm_params_from_torch(model, p["state_dict"])["params"]
    return _jax_contender(lm_training_loss(model), params, p, lambda g: lm_params_to_torch(model, {"params": g}))


def jaxseq_xla_loops_contender(p: dict) -> Contender:
    """jaxseq's step without the compiled kernels (`jaxseq.kernels`: the LSTM's XLA loops, XLA's
    decoder and loss): what they add, measured in the same process."""
    from jaxseq import kernels

    with kernels.xla_loops():
        return jaxseq_contender(p)


# ----------------------------------------------------------------------------- Flax


@functools.lru_cache(maxsize=None)
def flax_model(V: int, E: int, H: int, S: int):
    """Embedding (V, E), S `nn.RNN(nn.OptimizedLSTMCell(H))` layers, `nn.Dense(V)`:
    (tokens (N, T), carries: one (c, h) per layer) -> (logits (N, T, V), carries)."""
    import flax.linen as nn
    import jax.numpy as jnp

    class FlaxLanguageModel(nn.Module):
        @nn.compact
        def __call__(self, tokens, carries):
            W = self.param("encoder", nn.initializers.uniform(0.1), (V, E))
            x = jnp.take(W, tokens, axis=0)
            finals = []
            for layer in range(S):
                cell = nn.OptimizedLSTMCell(H, name=f"cell_{layer}")  # params at the top: cell_<k>
                carry, x = nn.RNN(cell)(
                    x, initial_carry=carries[layer], return_carry=True)
                finals.append(carry)
            return nn.Dense(V, name="decoder")(x), tuple(finals)

    return FlaxLanguageModel()


def flax_params(p: dict) -> dict:
    """The Flax model's params from PyTorch's state_dict (LSTM gates per
    `bench_stacked._jaxseq_layout` and `bench_layers.flax_lstm_cell`: h{gate} bias = bias_ih + bias_hh)."""
    import bench_layers as bl
    import bench_stacked as bs

    sd, S = p["state_dict"], p["config"]["S"]
    params = {"encoder": sd["encoder.weight"],
              "decoder": {"kernel": np.ascontiguousarray(sd["decoder.weight"].T), "bias": sd["decoder.bias"]}}
    for layer in range(S):
        w = {k: sd[f"rnn.{k}_l{layer}"] for k in bs.TORCH_KINDS}
        params[f"cell_{layer}"] = (bl.flax_lstm_cell(*bs._jaxseq_layout("lstm", w)))
    return params


def flax_grads_to_torch(g: dict, S: int, H: int) -> dict:
    import bench_layers as bl
    import bench_stacked as bs

    out = {"encoder.weight": np.asarray(g["encoder"]), "decoder.weight": np.asarray(g["decoder"]["kernel"]).T,
           "decoder.bias": np.asarray(g["decoder"]["bias"])}
    for layer in range(S):
        torch_layout = bs._torch_layout_grads("lstm", bl.flax_lstm_weight_grads(g[f"cell_{layer}"]), H)
        out.update({f"rnn.{k}_l{layer}": v for k, v in torch_layout.items()})
    return out


def flax_loss(V: int, E: int, H: int, S: int):
    """loss_fn(params, (x, y, carry, key)) -> (mean cross-entropy, carry after), the carry
    stream-major ((N, S, H), (N, S, H)) = (h, c) as the trainer's; Flax's carries are (c, h)."""
    import jax.numpy as jnp
    import optax

    model = flax_model(V, E, H, S)

    def loss_fn(params, batch):
        x, y, carry, _ = batch
        h, c = (jnp.swapaxes(a, 0, 1) for a in carry)
        logits, finals = model.apply({"params": params}, x, tuple((c[k], h[k]) for k in range(S)))
        h_n = jnp.stack([f[1] for f in finals])
        c_n = jnp.stack([f[0] for f in finals])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (jnp.swapaxes(h_n, 0, 1), jnp.swapaxes(c_n, 0, 1))

    return loss_fn


def flax_contender(p: dict) -> Contender:
    c = p["config"]
    dims = (c["V"], c["E"], c["H"], c["S"])
    return _jax_contender(flax_loss(*dims), flax_params(p), p, lambda g: flax_grads_to_torch(g, c["S"], c["H"]))


# ----------------------------------------------------------------------------- PyTorch


def _torch_sync():
    import torch

    if TORCH_DEVICE["name"] != "cpu":
        torch.cuda.synchronize()


def torch_contender(p: dict) -> Contender:
    import torch

    from jaxseq.models.language_model import language_model_config
    from torch_models import detach_state, language_model_from_jax

    c = p["config"]
    device = torch.device(TORCH_DEVICE["name"])
    config = language_model_config(p["model"])
    model = language_model_from_jax(config, p["state_dict"]).to(device)
    if c["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=c["learning_rate"])
    else:  # AdamW with weight decay 0 is Adam; fused: its fastest implementation here
        optimizer = torch.optim.Adam(model.parameters(), lr=c["learning_rate"], fused=True)
    x = torch.from_numpy(p["streams"][:, :c["T"]].astype(np.int64)).to(device)
    y = torch.from_numpy(p["streams"][:, 1:c["T"] + 1].astype(np.int64)).to(device)
    box = {"state": tuple(s.to(device) for s in model.init_state(c["N"]))}

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, state = model.loss(x, y, box["state"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"])
        optimizer.step()
        box["state"] = detach_state(state)
        _torch_sync()
        return loss

    def losses(k):
        return [float(step().item()) for _ in range(k)]

    def grads(state):
        fresh = language_model_from_jax(config, p["state_dict"]).to(device)
        loss, (h, cc) = fresh.loss(x, y, tuple(torch.from_numpy(s).to(device) for s in state))
        loss.backward()
        return (float(loss.item()), (h.detach().cpu().numpy(), cc.detach().cpu().numpy()),
                {name: q.grad.cpu().numpy() for name, q in fresh.named_parameters()})

    return Contender(step, losses, grads)


def make_contenders(p: dict) -> dict[str, Contender]:
    return {"jaxseq": jaxseq_contender(p), "jaxseq-xla-loops": jaxseq_xla_loops_contender(p), "flax": flax_contender(p),
            "torch": torch_contender(p)}


def check_agreement(contenders: dict[str, Contender], p: dict, rtol: float | None = None) -> dict:
    """Assert that every contender's loss, final state and gradients (entered with the
    problem's random state) match jaxseq's to `rtol`, and the first CHECK_STEPS timed steps'
    losses of those in STEP_CHECKED to STEP_LOSSES_RTOL; returns {contender: {array: relative
    error}}. Runs the timed steps (a warm-up). rtol None: AGREEMENT_RTOL (read at the call)."""
    rtol = AGREEMENT_RTOL if rtol is None else rtol

    def outputs(contender):
        loss, (h, c), g = contender.grads(p["state"])
        return {"loss": np.asarray(loss), "h_n": h, "c_n": c, **{f"grad/{k}": v for k, v in g.items()}}

    def steps(contender):
        return {"step_losses": np.asarray(contender.losses(CHECK_STEPS))}

    expected, expected_steps = outputs(contenders["jaxseq"]), steps(contenders["jaxseq"])
    errors = {}
    for name, contender in contenders.items():
        if name != "jaxseq":
            errors[name] = assert_agree(name, outputs(contender), expected, rtol, "jaxseq")
            if name in STEP_CHECKED:
                errors[name].update(assert_agree(name, steps(contender), expected_steps, STEP_LOSSES_RTOL, "jaxseq"))
            else:
                contender.losses(CHECK_STEPS)  # the same warm-up as the others
    return errors


# ----------------------------------------------------------------------------- generation


def generation_contenders(p: dict, length: int, temperature: float = 1.0) -> dict:
    """{"jaxseq", "jaxseq-apply", "torch", "torch-no-onednn": ...}: `length` tokens at batch 1
    after a one-token prompt; each returns the tokens (NumPy (length,)) and torch's also fills
    `logits_seen`. jaxseq-apply is the same jitted loop on the readable step (`model.apply` per
    token, `generation_step.model_step`): what `generate` ran before its fast step.
    torch-no-onednn is generate.py's loop with `torch.backends.mkldnn` off: on CPU PyTorch's
    LSTM otherwise runs oneDNN's kernel, which at batch 1 costs ~3x more per token here."""
    import warnings

    import jax
    import torch

    from jaxseq.models import text_sampling
    from jaxseq.models.generation_step import model_step
    from jaxseq.models.language_model import language_model_config, lm_params_from_torch
    from jaxseq.models.text_sampling import generate
    from torch_models import language_model_from_jax

    model = p["model"]
    variables = lm_params_from_torch(model, p["state_dict"])
    prompt = np.asarray([[int(p["streams"][0, 0])]], np.int32)
    keys = iter(range(1, 10**9))

    def jaxseq_generate():
        tokens = generate(model, variables, prompt, length, jax.random.PRNGKey(next(keys)), temperature=temperature)
        return np.asarray(tokens)[0]

    def jaxseq_apply_generate():
        sampler = text_sampling.start_sampling(model, variables, prompt, jax.random.PRNGKey(next(keys)))
        options = text_sampling._options(temperature, None, None, model.vocab_size)
        return np.asarray(text_sampling._sample(model_step, model, variables, sampler, length, options)[0])[0]

    device = torch.device(TORCH_DEVICE["name"])
    twin = language_model_from_jax(language_model_config(model), p["state_dict"]).eval().to(device)
    seen: list[np.ndarray] = []

    def torch_generate(record: bool = False):
        # word_language_model/generate.py, batch first
        hidden = tuple(s.to(device) for s in twin.init_state(1))
        inp = torch.tensor([[int(prompt[0, 0])]], dtype=torch.long, device=device)
        out = []
        with torch.no_grad():
            for _ in range(length):
                output, hidden = twin(inp, hidden)
                if record:
                    seen.append(output[0, 0].cpu().numpy().copy())
                word_weights = output.squeeze().div(temperature).exp().cpu()
                word_idx = torch.multinomial(word_weights, 1)[0]
                inp.fill_(word_idx)
                out.append(int(word_idx))  # generate.py writes each word out as it goes
        return np.asarray(out)

    def torch_generate_without_onednn():
        with warnings.catch_warnings():  # the switch warns that TF32 on oneDNN needs an Intel GPU
            warnings.simplefilter("ignore", UserWarning)
            with torch.backends.mkldnn.flags(enabled=False):  # PyTorch's own LSTM kernel, not oneDNN's
                return torch_generate()

    return {"jaxseq": jaxseq_generate, "jaxseq-apply": jaxseq_apply_generate, "torch": torch_generate,
            "torch-no-onednn": torch_generate_without_onednn,
            "torch_record": lambda: torch_generate(True), "logits_seen": seen, "prompt": prompt,
            "variables": variables}


def check_generation(gen: dict, p: dict, rtol: float | None = None) -> float:
    """The logits PyTorch's loop saw at every step equal jaxseq's model reading the prompt and
    the sampled tokens in one pass; jaxseq's sampler gives valid tokens. Returns the error."""
    rtol = AGREEMENT_RTOL if rtol is None else rtol
    tokens = gen["torch_record"]()
    model = p["model"]
    read = np.concatenate([gen["prompt"][0], tokens[:-1]])[None, :]
    logits, _ = model.apply(gen["variables"], read, model.initial_state(1))
    errors = assert_agree("torch loop", {"logits": np.stack(gen["logits_seen"])}, {"logits": np.asarray(logits)[0]},
                          rtol, "jaxseq")
    ours = gen["jaxseq"]()
    assert ours.shape == tokens.shape and ours.min() >= 0 and ours.max() < p["config"]["V"]
    return errors["logits"]


# ----------------------------------------------------------------------------- generation roofline

_NUMPY_MATVEC = """
import sys, time, numpy as np
rows, cols, reps = (int(a) for a in sys.argv[1:4])
W = np.full((rows, cols), 0.5, np.float32)
x = np.ones(cols, np.float32)
times = []
for _ in range(reps):
    t = time.process_time(); W @ x; times.append(time.process_time() - t)
print(float(np.median(times[reps // 5:])))
"""


def numpy_matvec_bandwidth(nbytes: int, reps: int) -> float:
    """GB/s of a float32 NumPy matrix-vector product A x with A of `nbytes` (512 columns), the
    median of `reps` (the first fifth dropped: A comes into cache), in a fresh process on ONE
    BLAS thread, timed by its CPU time (on this shared machine a second thread, or the wall
    clock, mostly measures waiting for a busy core)."""
    import subprocess

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = max(1, nbytes // (4 * 512))
    out = subprocess.run([sys.executable, "-c", _NUMPY_MATVEC, str(rows), "512", str(reps)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return rows * 512 * 4 / float(out) / 1e9


def step_bytes(weights) -> int:
    """Bytes of weights jaxseq's fast step reads per token: every matrix and bias of
    `prepare_step`'s StepWeights, but one row of the (V, G*H) table."""
    import jax

    leaves = jax.tree_util.tree_leaves(weights._replace(table=weights.table[0]))
    return int(sum(np.asarray(leaf).nbytes for leaf in leaves))


def torch_step_bytes(state_dict: dict) -> int:
    """Bytes PyTorch's step reads per token: every weight but the encoder, one encoder row."""
    others = sum(v.nbytes for k, v in state_dict.items() if k != "encoder.weight")
    return int(others + state_dict["encoder.weight"][0].nbytes)


def xla_matvecs_per_token(weights, length: int, reps: int) -> float:
    """Seconds per token of the fast step's matrix-vector products alone (each layer's Wx and
    Wh, the decoder), chained through a tanh so that none can be hoisted, in one jitted loop of
    `length` steps: the memory-bound work of a token as XLA runs it, without the cells'
    elementwise math, the sampling or the RNG."""
    import statistics

    import jax
    import jax.numpy as jnp

    H = weights.layers[0].Wh.shape[0]
    clock = harness.MODE["clock"]

    @jax.jit
    def loop(w, h):
        def body(_, h):
            below = h[0]
            rows = []
            for layer, cell in enumerate(w.layers):
                a = h[layer] @ cell.Wh if layer == 0 else below @ cell.Wx + h[layer] @ cell.Wh
                below = jnp.tanh(a[:, :H])
                rows.append(below)
            return jnp.stack(rows) + 1e-3 * jnp.tanh(below @ w.decoder_weight).sum()
        return jax.lax.fori_loop(0, length, body, h)

    h = jnp.zeros((len(weights.layers), 1, H), weights.table.dtype)
    jax.block_until_ready(loop(weights, h))
    times = []
    for _ in range(reps):
        start = clock()
        jax.block_until_ready(loop(weights, h))
        times.append(clock() - start)
    return statistics.median(times) / length


def torch_overhead_per_token(c: dict, length: int, reps: int) -> float:
    """Seconds per token of PyTorch's generate.py loop on a twin with E = H = 8 (the same V,
    layers and loop; its weights are ~20 KB): the loop's fixed cost per token, Python, module
    calls, multinomial, that no bandwidth removes."""
    import statistics

    tiny = generation_contenders(make_problem(dict(c, E=8, H=8)), min(length, OVERHEAD_LENGTH))["torch"]
    tiny()
    clock, times = harness.MODE["clock"], []
    for _ in range(reps):
        start = clock()
        tiny()
        times.append(clock() - start)
    return statistics.median(times) / min(length, OVERHEAD_LENGTH)


def generation_roofline(c: dict, p: dict, variables, length: int, reps: int = 5) -> dict:
    """What the weights allow at batch 1 (each step a matrix-vector product per matrix, so
    memory bound): bytes per token, this machine's bandwidth, the floor per token = bytes /
    bandwidth, and PyTorch's fixed per-token overhead. Times in microseconds per token."""
    from jaxseq.models.generation_step import prepare_step

    weights = prepare_step(p["model"], variables)
    ours, theirs = step_bytes(weights), torch_step_bytes(p["state_dict"])
    cache_bw = numpy_matvec_bandwidth(ours, reps=200)
    dram_bw = numpy_matvec_bandwidth(256 * 2**20, reps=max(3, 2 * reps))
    return {"jaxseq_bytes_per_token": ours, "torch_bytes_per_token": theirs,
            "numpy_matvec_gbps_in_cache": cache_bw, "numpy_matvec_gbps_dram": dram_bw,
            "floor_us_in_cache": ours / cache_bw / 1e3, "floor_us_dram": ours / dram_bw / 1e3,
            "xla_matvecs_us": 1e6 * xla_matvecs_per_token(weights, length, reps),
            "torch_overhead_us": 1e6 * torch_overhead_per_token(c, length, max(3, reps))}


def roofline_lines(r: dict, medians_us: dict) -> list[str]:
    """Markdown bullets of `generation_roofline`'s numbers against the measured µs per token,
    with the best ratio to PyTorch those allow."""
    floor = r["floor_us_in_cache"]
    torch_floor = r["torch_overhead_us"] + r["torch_bytes_per_token"] / r["numpy_matvec_gbps_in_cache"] / 1e3
    lines = [
        f"- Weights read per token: jaxseq's fast step {r['jaxseq_bytes_per_token'] / 1e6:.2f} MB (one row of "
        f"the folded (V, 4H) table instead of the embedding row and layer 0's W_ih), PyTorch's step "
        f"{r['torch_bytes_per_token'] / 1e6:.2f} MB. At batch 1 every step is a matrix-vector product per matrix: "
        f"2 flops per 4 bytes read, memory bound.",
        f"- This machine's float32 matrix-vector bandwidth (NumPy, one BLAS thread, CPU time, medians): "
        f"{r['numpy_matvec_gbps_in_cache']:.1f} GB/s on a matrix of jaxseq's per-token bytes (it stays in the "
        f"32 MB L3, as the weights do in a generation loop), {r['numpy_matvec_gbps_dram']:.1f} GB/s on 256 MB "
        f"(DRAM).",
        f"- Floor per token = bytes / bandwidth: {floor:.0f} µs from cache ({r['floor_us_dram']:.0f} µs from "
        f"DRAM). XLA's own matrix-vector products of the fast step, alone in a jitted loop ({harness.MODE['name']}): "
        f"{r['xla_matvecs_us']:.0f} µs per token.",
        f"- PyTorch's fixed cost per token (the same generate.py loop on an E = H = 8 twin, weights ~20 KB): "
        f"{r['torch_overhead_us']:.0f} µs. A PyTorch loop whose model ran at the bandwidth would take ~"
        f"{torch_floor:.0f} µs per token (that + its bytes / bandwidth): against it, jaxseq at its floor could be "
        f"at most ~{torch_floor / floor:.1f}x faster, so a 10x ratio measures PyTorch's batch-1 kernels "
        "(oneDNN's LSTM by default on CPU), not Python.",
        "- Measured per token (medians): " + ", ".join(f"{k} {v:,.0f} µs" for k, v in medians_us.items()) + ".",
    ]
    return lines


# ----------------------------------------------------------------------------- cases


def speedups(results: list[dict]) -> dict[str, float]:
    medians = {r["contender"]: r["median_ms"] for r in results}
    return {name: m / medians["jaxseq"] for name, m in medians.items() if name != "jaxseq"}


def speedup_summary(ups: dict[str, float], targets: dict[str, float]) -> str:
    parts = []
    for name, up in ups.items():
        target = targets.get(name)
        verdict = "" if target is None else f" (target >= {target:g}x: {'met' if up >= target else 'MISSED'})"
        parts.append(f"{name} {up:.2f}x{verdict}")
    return "jaxseq speed-up: " + ", ".join(parts)


def bench_train(name: str, c: dict, *, reps: int, warmup: int) -> list[dict]:
    p = make_problem(c)
    contenders = make_contenders(p)
    errors = check_agreement(contenders, p)
    worst = max(max(e.values()) for e in errors.values())
    tokens = c["N"] * c["T"]
    note = (f"{name}: one full step (fwd from the carried state, loss, bwd, clip, update, state out); flax and torch "
            f"agree with jaxseq on loss, final state and every gradient, torch also on {CHECK_STEPS} steps' losses "
            f"(largest relative error {worst:.1e}; flax's LSTM has one bias per gate, so its updates differ); {torch_setting()}")
    case = harness.bench("lm train", [(k, v.step) for k, v in contenders.items()], variant=f"{name} train step",
                         shape=shape_label(c), flops=train_step_flops(c), reps=reps, warmup=warmup, notes=note)
    ups = speedups(case)
    summary = speedup_summary(ups, TARGETS["train"])
    print(summary, flush=True)
    for r in case:
        r["tokens_per_s"] = tokens / (r["median_ms"] * 1e-3)
        r["tokens_per_step"] = tokens
        r["speedups"] = ups
        r["notes"] = f"{summary}; {r['notes']}"
    return case


def bench_generation(c: dict, length: int, *, reps: int, warmup: int) -> list[dict]:
    p = make_problem(c)
    gen = generation_contenders(p, length)
    error = check_generation(gen, p)
    note = (f"{length} tokens at batch 1 after a 1-token prompt, temperature 1; jaxseq: text_sampling.generate "
            f"(one jitted lax.scan of generation_step.fast_step on weights prepared once per call); jaxseq-apply: "
            f"the same loop on model.apply per token (the readable step, what generate ran before); torch: the "
            f"twin in a per-token Python loop as generate.py (multinomial); torch-no-onednn: the same with "
            f"torch.backends.mkldnn off (PyTorch's own LSTM kernel); torch's per-step logits agree with "
            f"jaxseq's model (relative error {error:.1e}); {torch_setting()}")
    names = ("jaxseq", "jaxseq-apply", "torch", "torch-no-onednn")
    case = harness.bench("lm generate", [(name, gen[name]) for name in names], variant=f"char model, {length} tokens",
                         shape=f"batch 1, E={c['E']} H={c['H']} layers={c['S']} V={c['V']}",
                         reps=reps, warmup=warmup, notes=note, steps=length)
    ups = speedups(case)
    summary = speedup_summary(ups, TARGETS["gen"])
    print(summary, flush=True)
    roofline = generation_roofline(c, p, gen["variables"], length, reps=reps)
    per_token_us = {r["contender"]: 1e3 * r["median_ms"] / length for r in case}
    print("\n".join(roofline_lines(roofline, per_token_us)), flush=True)
    for r in case:
        r["tokens_per_s"] = length / (r["median_ms"] * 1e-3)
        r["speedups"] = ups
        r["notes"] = f"{summary}; {r['notes']}"
        r["roofline"] = roofline
    return case


def run(quick: bool = False, cases=("char", "word", "gen")) -> list[dict]:
    """The training cases and the generation case (those of `cases`); `quick`: tiny shapes."""
    harness.setup()
    shapes = QUICK_CASES if quick else CASES
    reps, warmup = harness.repetitions(True) if quick else (REPS, WARMUP)
    results = []
    for name in cases:
        if name == "gen":
            gen_reps, gen_warmup = (reps, warmup) if quick else (GEN_REPS, WARMUP)
            results += bench_generation(shapes["char"], QUICK_GEN_LENGTH if quick else GEN_LENGTH,
                                        reps=gen_reps, warmup=gen_warmup)
        elif name in shapes:
            results += bench_train(name, shapes[name], reps=reps, warmup=warmup)
        else:
            raise ValueError(f"unknown case {name!r}; expected char, word or gen")
    return results


def throughput_table(results: list[dict]) -> str:
    """Markdown: one row per case, tokens/s of each contender and the speed-ups."""
    lines = ["| case (shape) | jaxseq tokens/s | jaxseq, kernels off (XLA loops and decoder) | flax tokens/s | "
             "torch tokens/s | jaxseq / kernels off | jaxseq / flax | jaxseq / torch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows: dict[tuple, dict] = {}
    for r in results:
        if "tokens_per_s" in r:
            rows.setdefault((r["case"], r["variant"], r["shape"]), {})[r["contender"]] = r
    for (case, variant, shape), by in rows.items():
        rate = lambda k: f"{by[k]['tokens_per_s']:,.0f}" if k in by else ""  # noqa: E731
        up = lambda k: f"{by['jaxseq']['speedups'][k]:.2f}x" if k in by else ""  # noqa: E731
        lines.append(f"| {case}, {variant} ({shape}) | {rate('jaxseq')} | {rate('jaxseq-xla-loops')} | {rate('flax')} | "
                     f"{rate('torch')} | {up('jaxseq-xla-loops')} | {up('flax')} | {up('torch')} |")
    return "\n".join(lines)


def write_results(results: list[dict], directory, stem: str, meta: dict) -> dict:
    """`<stem>.md` / `.json` / `.png` (harness.write_outputs), the md starting with the
    throughput table and the settings of torch's threads."""
    from pathlib import Path

    meta = {**meta, "torch_setting": torch_setting()}
    paths = harness.write_outputs(results, Path(directory), stem=stem, meta=meta, title="language-model speed")
    table = paths["md"].read_text()
    head, sep, rest = table.partition("\n- Machine")
    summary = (f"\n## Throughput (tokens/s; ratio = jaxseq tokens/s / contender tokens/s)\n\n"
               f"{throughput_table(results)}\n\n{torch_setting()}\n")
    generation = [r for r in results if "roofline" in r]
    if generation:
        medians = {r["contender"]: 1e3 * r["median_ms"] / r["steps"] for r in generation}
        summary += ("\n## Generation roofline (batch 1, per token)\n\n"
                    + "\n".join(roofline_lines(generation[0]["roofline"], medians)) + "\n")
    paths["md"].write_text(head + summary + "\n## Details\n" + sep + rest)
    return paths


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repetitions (a smoke test)")
    parser.add_argument("--case", action="append", choices=("char", "word", "gen"), default=None,
                        help="run only this case (repeatable)")
    parser.add_argument("--out", default=None, help="write <stem>.md/.json/.png there (default: print only)")
    parser.add_argument("--stem", default="lm_speed")
    parser.add_argument("--single-core", action="store_true",
                        help="pinned to one CPU, one thread per library, timed by CPU time (harness.single_core_mode)")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="glibc malloc keeps freed memory, for every contender (harness.tune_malloc)")
    args = parser.parse_args(argv)
    harness.setup()
    meta = harness.machine_info()
    meta["mode"] = "quick (smoke test)" if args.quick else "full"
    results = run(args.quick, cases=tuple(args.case or ("char", "word", "gen")))
    meta["load_average_end"] = harness.load_average()
    print(throughput_table(results))
    if args.out:
        for path in write_results(results, args.out, args.stem, meta).values():
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
