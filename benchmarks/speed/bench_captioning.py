"""Captioning train step (issue 5, case 3): jaxseq against the same model in PyTorch.

One training step of the course's captioning model at N=64, 17-token captions (T=16 steps),
V=1004, W=256, H=512, D=512, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), for the LSTM and the
vanilla RNN:

- jaxseq   `jaxseq.models.CaptioningRNN.loss` + `jax.value_and_grad` + the optax Adam update,
           one jitted call built by `jaxseq.train.steps.make_train_step` (the step the solver
           runs), drawing a fixed batch
- torch    `torch_models.CaptioningRNN` (Linear features -> h0, nn.Embedding, nn.LSTM /
           nn.RNN(tanh) batch_first, Linear to the vocabulary, masked cross-entropy summed over
           time / N) with the same weights; `zero_grad(set_to_none=True)`, forward, backward,
           `torch.optim.Adam(fused=True).step()` (its fastest Adam here), 2 threads

Before timing, `check_agreement` asserts that both compute the same loss and the same first
Adam step: Adam's first moments (0.1 x the gradients) and the parameter updates (beyond what
Adam's g / (|g| + eps) makes of the gradients' float32 differences where |g| ~ eps, and
beyond float32 rounding of the new weights: `update_errors`), each to 1e-4 of its scale.

FLOP count (matmuls only; embedding gathers/scatters, softmax, gate math and Adam left out),
G = 4 (LSTM) or 1 (RNN):
    forward   2 N D H  +  2 N T (W + H) G H  +  2 N T H V      (h0, recurrence, vocabulary)
    backward  2 N D H  +  2 (2 N T (W + H) G H + 2 N T H V)     (features need no gradient)
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from jaxseq.contenders import assert_agree  # noqa: E402
from jaxseq.gradcheck import FLOAT32_TOL  # noqa: E402

# N batch, caption length (T + 1), V vocabulary, W word vector, H hidden, D feature size
SHAPE = dict(N=64, L=17, V=1004, W=256, H=512, D=512)
QUICK_SHAPE = dict(N=4, L=6, V=23, W=8, H=12, D=10)
CELLS = ("lstm", "rnn")
LEARNING_RATE = 1e-3
ADAM_B1, ADAM_EPS = 0.9, 1e-8  # optax and PyTorch defaults (b2 = 0.999 on both)
AGREEMENT_RTOL = FLOAT32_TOL  # the ladder's float32 tolerance (jaxseq.gradcheck)
NULL, START, END = 0, 1, 2


def shape_label(N, L, V, W, H, D) -> str:
    return f"N={N} T={L - 1} V={V} W={W} H={H} D={D}"


def train_step_flops(N, L, V, W, H, D, cell: str) -> float:
    """Matmul FLOPs of one train step (module docstring)."""
    G = 4 if cell == "lstm" else 1
    T = L - 1
    proj = 2.0 * N * D * H
    body = 2.0 * N * T * (W + H) * G * H + 2.0 * N * T * H * V
    return 2 * proj + 3 * body


def make_batch(N, L, V, D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) float32 and captions (N, L) int32: <START>, words, <END>, <NULL> padding
    (lengths vary, so the mask matters)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((N, D)).astype(np.float32)
    captions = np.full((N, L), NULL, np.int32)
    captions[:, 0] = START
    for n, length in enumerate(rng.integers(max(1, L // 3), L - 1, N, endpoint=True)):
        captions[n, 1:length] = rng.integers(3, V, length - 1)
        captions[n, length] = END
    return features, captions


def init_params(model, features, captions, seed: int = 0) -> dict:
    """The model's initialization, with small random biases (zero biases would hide a
    mis-copied bias from the agreement check)."""
    import jax

    params = jax.device_get(model.init(jax.random.key(seed), features, captions[:, :-1])["params"])
    rng = np.random.default_rng(seed + 1)
    for name in ("b_proj", "b", "b_vocab"):
        params[name] = (0.1 * rng.standard_normal(np.shape(params[name]))).astype(np.float32)
    return params


class Contender:
    """A train step that can be run once more (`step()`) and inspected after its first step."""

    def __init__(self, step, first_step):
        self.step = step  # () -> its outputs (torch: the loss; jaxseq: (state, loss)); the timed callable
        self.first_step = first_step  # () -> {"loss", "update/<name>", "m/<name>"} from the initial weights


def jaxseq_contender(cell: str, params: dict, features, captions, V, W, H) -> Contender:
    import jax
    import optax

    from jaxseq.models import CaptioningRNN
    from jaxseq.train.steps import init_train_state, make_train_step

    model = CaptioningRNN(vocab_size=V, wordvec_dim=W, hidden_dim=H, cell_type=cell, null_idx=NULL)
    optimizer = optax.adam(LEARNING_RATE)

    def loss_fn(p, batch):
        f, c = batch
        return model.apply({"params": p}, f, c, method="loss")

    step = make_train_step(loss_fn, optimizer, lambda key, data: data)  # a fixed batch
    state = init_train_state(jax.device_put(params), optimizer, seed=0)
    data = jax.device_put((features, captions))

    def first_step():
        new, loss = step(state, data)
        new = jax.device_get(new)
        mu = new.opt_state[0].mu
        out = {"loss": np.asarray(loss)}
        for name in params:
            out[f"update/{name}"] = np.asarray(new.params[name]) - params[name]
            out[f"m/{name}"] = np.asarray(mu[name])
        return out

    return Contender(lambda: jax.block_until_ready(step(state, data)), first_step)


def torch_adam(parameters):
    """torch.optim.Adam, fused (one kernel over all tensors; on the CPU since PyTorch 2.4):
    the fastest of its three implementations here (default for-loop, foreach, fused)."""
    import torch

    return torch.optim.Adam(parameters, lr=LEARNING_RATE, fused=True)


def torch_contender(cell: str, params: dict, features, captions) -> Contender:
    import torch

    from torch_models import captioning_from_jax

    model = captioning_from_jax(params, cell, null_idx=NULL)
    optimizer = torch_adam(model.trainable_parameters())
    f = torch.from_numpy(features)
    c = torch.from_numpy(captions.astype(np.int64))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(f, c)
        loss.backward()
        optimizer.step()
        return loss

    def first_step():
        fresh = captioning_from_jax(params, cell, null_idx=NULL)  # leave the timed model alone
        opt = torch_adam(fresh.trainable_parameters())
        opt.zero_grad(set_to_none=True)
        loss = fresh.loss(f, c)
        loss.backward()
        opt.step()
        new = fresh.jax_params()
        # Adam's first moment (1 - beta1) * grad, in jaxseq's layout: load it into a model's
        # weights and read them back by jaxseq's names
        moments = captioning_from_jax(params, cell, null_idx=NULL)
        with torch.no_grad():
            for p_m, p_f in zip(moments.parameters(), fresh.parameters()):
                p_m.copy_(opt.state[p_f]["exp_avg"] if p_f.requires_grad else torch.zeros_like(p_m))
        mu = moments.jax_params()
        out = {"loss": np.asarray(loss.item(), np.float32)}
        for name in params:
            out[f"update/{name}"] = new[name] - params[name]
            out[f"m/{name}"] = mu[name]
        return out

    return Contender(step, first_step)


def make_contenders(cell: str, shape: dict, seed: int = 0) -> tuple[dict[str, Contender], dict]:
    """The contenders of one cell and the initial weights they start from (jaxseq's names)."""
    from jaxseq.models import CaptioningRNN

    N, L, V, W, H, D = (shape[k] for k in ("N", "L", "V", "W", "H", "D"))
    features, captions = make_batch(N, L, V, D, seed)
    model = CaptioningRNN(vocab_size=V, wordvec_dim=W, hidden_dim=H, cell_type=cell, null_idx=NULL)
    params = init_params(model, features, captions, seed)
    contenders = {
        "jaxseq": jaxseq_contender(cell, params, features, captions, V, W, H),
        "torch": torch_contender(cell, params, features, captions),
    }
    return contenders, params


def update_errors(actual: dict, expected: dict, params: dict) -> dict:
    """Relative errors of the first-step updates (new - initial weights), beyond what Adam's
    own formula makes of the gradient differences and beyond float32 rounding.

    Adam's first step moves each weight by u(g) = -lr g / (|g| + eps): an element whose
    gradient is near eps = 1e-8 (unused embedding rows, weights of near-dead units) turns a
    gradient difference of 1e-9 into a different update of a few percent of lr. So the
    allowance per element is |du/dg| * |g_a - g_e| = lr eps / (|g| + eps)**2 * |g_a - g_e|
    (|g| the smaller of the two gradients, 0 if their signs differ; the gradients themselves
    are checked to 1e-4 of their scale, via Adam's first moments), plus the float32 rounding
    of the new weight (a unit in its last place: the update of ~lr = 1e-3 on a weight |p| ~ 1
    carries ~1e-4 of itself in rounding alone). What exceeds the allowance is the error.
    """
    errors = {}
    for name, p in params.items():
        a, e = (np.asarray(d[f"update/{name}"], np.float64) for d in (actual, expected))
        ga, ge = (np.asarray(d[f"m/{name}"], np.float64) / (1.0 - ADAM_B1) for d in (actual, expected))
        g = np.where(ga * ge > 0, np.minimum(np.abs(ga), np.abs(ge)), 0.0)
        slope = LEARNING_RATE * ADAM_EPS / (g + ADAM_EPS) ** 2
        rounding = np.spacing(np.abs(p + e).astype(np.float32)).astype(np.float64)
        allowance = slope * np.abs(ga - ge) + rounding
        scale = max(float(np.max(np.abs(e))), 1e-30)
        errors[f"update/{name}"] = float(np.max(np.maximum(np.abs(a - e) - allowance, 0.0))) / scale
    return errors


def check_agreement(contenders: dict[str, Contender], params: dict, rtol: float = AGREEMENT_RTOL,
                    reference: str = "jaxseq") -> dict:
    """Assert that every contender's loss, Adam first moments ((1 - beta1) * gradient) and
    first-step parameter updates match the reference's to `rtol` of each array's scale;
    returns {contender: {array: relative error}}."""
    expected = contenders[reference].first_step()
    exact = lambda d: {k: v for k, v in d.items() if not k.startswith("update/")}  # noqa: E731
    errors = {}
    for name, contender in contenders.items():
        if name == reference:
            continue
        actual = contender.first_step()
        errs = assert_agree(name, exact(actual), exact(expected), rtol, reference)
        errs.update(update_errors(actual, expected, params))
        bad = {k: v for k, v in errs.items() if not v < rtol}
        if bad:
            detail = ", ".join(f"{k}: {v:.2e}" for k, v in bad.items())
            raise AssertionError(f"{name} disagrees with {reference} beyond relative {rtol:g}: {detail}")
        errors[name] = errs
    return errors


def run(quick: bool = False) -> list[dict]:
    """Case 3 for the LSTM and the RNN; `quick`: tiny shapes, few repetitions (a smoke test)."""
    harness.setup()
    shape = QUICK_SHAPE if quick else SHAPE
    reps, warmup = harness.repetitions(quick)
    results = []
    for cell in CELLS:
        contenders, params = make_contenders(cell, shape)
        errors = check_agreement(contenders, params)
        worst = max(max(e.values()) for e in errors.values())
        results += harness.bench(
            "captioning", [(name, c.step) for name, c in contenders.items()],
            variant=f"{cell} train step (fwd+bwd+adam)", shape=shape_label(**shape),
            flops=train_step_flops(**shape, cell=cell), reps=reps, warmup=warmup,
            notes=f"torch agrees with jaxseq: loss, first Adam step (largest relative error {worst:.1e})")
        del contenders
    return results


if __name__ == "__main__":
    harness.main(run, "captioning train step", __doc__.splitlines()[0])
