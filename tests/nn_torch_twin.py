"""A `jaxseq.nn` module and its `torch.nn` twin on the same weights and packed batch:
outputs, final states and the gradients of every input and parameter, from both sides.

Shared by the `jaxseq.nn` test files. Shapes: N batch, T time, D input, H hidden,
S = num_layers * num_directions, R the hidden state's width (proj_size P, or H). Arrays of a
batch are batch-major; a pair made with batch_first=False is fed and read time-major.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from jaxseq import nn as jnn

MODULES = {"rnn": (jnn.RNN, torch.nn.RNN), "lstm": (jnn.LSTM, torch.nn.LSTM), "gru": (jnn.GRU, torch.nn.GRU)}


def make_pair(cell: str, D: int, H: int, num_layers: int, bidirectional: bool, seed: int = 0, **options):
    """(jaxseq module, its variables, torch module) with PyTorch's own random weights.

    options: PyTorch's other constructor arguments, which both sides name alike
    (nonlinearity, bias, batch_first (default True here), proj_size)."""
    ours, theirs = MODULES[cell]
    options = {"batch_first": True, **options}
    torch.manual_seed(seed)
    torch_module = theirs(D, H, num_layers=num_layers, bidirectional=bidirectional, **options)
    module = ours(hidden_size=H, num_layers=num_layers, bidirectional=bidirectional, **options)
    return module, jnn.params_from_torch(module, torch_module.state_dict()), torch_module


def random_batch(cell, N, T, D, H, num_layers, num_directions, seed=0, proj_size=0):
    """x (N, T, D), lengths (N,) with 1 and T among them (torch cannot pack 0), initial
    states h (S, N, R) (and c (S, N, H) for the LSTM), and random cotangents dout
    (N, T, num_directions*R) and dstates shaped as the states: the loss is
    sum(out * dout) + sum(final * dstates). R = proj_size or H."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    S, R = num_layers * num_directions, proj_size or H
    widths = (R, H) if cell == "lstm" else (R,)
    lengths = rng.integers(1, T + 1, size=N)
    lengths[: min(N, 2)] = [1, T][: min(N, 2)]
    return {
        "x": normal(N, T, D),
        "lengths": lengths,
        "states": tuple(normal(S, N, width) for width in widths),
        "dout": normal(N, T, num_directions * R),
        "dstates": tuple(normal(S, N, width) for width in widths),
    }


def _time_major_unless(batch_first: bool, a):
    """a (N, T, ...) as the module reads or writes it: unchanged, or (T, N, ...). Its own inverse."""
    return a if batch_first else np.swapaxes(a, 0, 1)


def _as_tuple(states):
    return states if isinstance(states, tuple) else (states,)


def differentiate_run(call, params, batch_first, grad, jit, to_torch, x, lengths, states, dout, dstates):
    """The one loss and gradient run of a module, whichever front-end: `call(params, x,
    lengths, initial_state) -> (out, final)`, differentiated by `grad` (jax.grad or nnx.grad)
    under `jit` with respect to params, x and the initial states; `to_torch` names the
    parameter gradients as PyTorch does. Arrays in and out are batch-major; a module with
    batch_first=False is fed and read time-major.

    Returns (out, final states tuple, grads {"x", "states", "params" (torch names)})."""
    layout = lambda a: _time_major_unless(batch_first, a)  # noqa: E731

    def loss(params, x, states):
        initial = states if len(states) > 1 else states[0]
        out, final = call(params, x, lengths, initial)
        final = _as_tuple(final)
        total = jnp.sum(out * layout(dout)) + sum(jnp.sum(f * d) for f, d in zip(final, dstates))
        return total, (out, final)

    grad_fn = jit(grad(loss, argnums=(0, 1, 2), has_aux=True))
    (dparams, dx, dstates0), (out, final) = grad_fn(params, layout(x), states)
    grads = {"x": layout(np.asarray(dx)), "states": tuple(map(np.asarray, dstates0)), "params": to_torch(dparams)}
    return layout(np.asarray(out)), tuple(map(np.asarray, final)), grads


def jaxseq_run(module, variables, x, lengths, states, dout, dstates):
    """`differentiate_run` of a Linen module: returns (out, final states tuple, grads)."""
    return differentiate_run(
        lambda v, x, lengths, initial: module.apply(v, x, lengths=lengths, initial_state=initial),
        variables, module.batch_first, jax.grad, jax.jit, lambda d: jnn.params_to_torch(module, d),
        x, lengths, states, dout, dstates)


def torch_run(torch_module, x, lengths, states, dout, dstates):
    """The same on the torch module with packed sequences (enforce_sorted=False)."""
    batch_first = torch_module.batch_first
    layout = lambda a: _time_major_unless(batch_first, a)  # noqa: E731
    torch_module.zero_grad()
    x_t = torch.tensor(layout(x), requires_grad=True)
    states_t = tuple(torch.tensor(s, requires_grad=True) for s in states)
    T = x.shape[1]
    packed = pack_padded_sequence(x_t, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    out_packed, final = torch_module(packed, states_t if len(states_t) > 1 else states_t[0])
    out, _ = pad_packed_sequence(out_packed, batch_first=batch_first, total_length=T)
    final = _as_tuple(final)
    total = (out * torch.tensor(layout(dout))).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(final, dstates))
    total.backward()
    grads = {"x": layout(x_t.grad.numpy()), "states": tuple(s.grad.numpy() for s in states_t),
             "params": {name: p.grad.numpy() for name, p in torch_module.named_parameters()}}
    return layout(out.detach().numpy()), tuple(f.detach().numpy() for f in final), grads
