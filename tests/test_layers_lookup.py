"""`jaxseq.layers.lstm_lookup` and `gru_lookup`: the LSTM and the GRU over token ids whose
input side is a table lookup.

- Each is its projecting layer (`lstm`, `gru`) on embedded tokens with the table folded in: for
  x = E[tokens] and table = E Wx + b, outputs, final states and the gradients of E, Wx, b
  (through the table), h0, c0, Wh, bh and Wr equal the projecting layer's in float64 (to
  1e-12), with and without lengths, reverse and (LSTM) a projection. (Hand vs jax.grad vs
  numerical gradients: the built-in checks "lstm_lookup+len+rev", "lstm_lookup_proj+len+rev"
  and "gru_lookup+len+rev", test_gradcheck.py.)
- Float32 against PyTorch: `torch.nn.LSTM` / `GRU` on `nn.Embedding` rows, output and the
  gradients of the embedding and every weight.
- Bad arguments are one-line ValueErrors naming the argument.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxseq import layers as L
from jaxseq.nn.cells import torch_lstm_gates_to_jaxseq
from tests.helpers import scaled_error

N, T, V, D, H = 3, 5, 7, 4, 6


def problem(seed: int, projection: bool):
    rng = np.random.default_rng(seed)
    P = 3 if projection else H
    arrays = dict(E=rng.standard_normal((V, D)), Wx=0.5 * rng.standard_normal((D, 4 * H)), b=rng.standard_normal(4 * H),
                  Wh=0.5 * rng.standard_normal((P, 4 * H)), h0=rng.standard_normal((N, P)),
                  c0=rng.standard_normal((N, H)), Wr=0.5 * rng.standard_normal((H, P)) if projection else None)
    upstream = dict(dh=rng.standard_normal((N, T, P)), dh_n=rng.standard_normal((N, P)),
                    dc_n=rng.standard_normal((N, H)))
    tokens = rng.integers(0, V, (N, T))
    tokens[0, :2] = tokens[0, 2]  # a token read several times: its table row's gradient is a sum
    return tokens, arrays, upstream


def projected(outputs, upstream):
    h, h_n, c_n = outputs
    return jnp.sum(h * upstream["dh"]) + jnp.sum(h_n * upstream["dh_n"]) + jnp.sum(c_n * upstream["dc_n"])


@pytest.mark.parametrize("lengths,reverse", [(None, False), (None, True), ([0, 2, 5], False), ([5, 1, 3], True)])
def test_the_gru_lookup_equals_the_projecting_gru_on_embedded_tokens(x64, lengths, reverse):
    rng = np.random.default_rng(len(str(lengths)) + reverse)
    tokens = rng.integers(0, V, (N, T))
    tokens[0, :2] = tokens[0, 2]
    arrays = dict(E=rng.standard_normal((V, D)), Wx=0.5 * rng.standard_normal((D, 3 * H)),
                  b=rng.standard_normal(3 * H), Wh=0.5 * rng.standard_normal((H, 3 * H)),
                  bh=rng.standard_normal(3 * H), h0=rng.standard_normal((N, H)))
    dh, dh_n = rng.standard_normal((N, T, H)), rng.standard_normal((N, H))
    options = dict(lengths=None if lengths is None else np.array(lengths), reverse=reverse, return_state=True)

    def lookup(E, Wx, b, Wh, bh, h0):
        return L.gru_lookup(tokens, E @ Wx + b, h0, Wh, bh, **options)

    def projecting(E, Wx, b, Wh, bh, h0):
        return L.gru(jnp.take(E, tokens, axis=0), h0, Wx, Wh, b, bh, **options)

    def loss(layer):
        def value(*values):
            h, h_n = layer(*values)
            return jnp.sum(h * dh) + jnp.sum(h_n * dh_n)
        return value

    args = list(arrays.values())
    for ours, theirs in zip(lookup(*args), projecting(*args)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    grads = jax.grad(loss(lookup), argnums=tuple(range(len(args))))(*args)
    expected = jax.grad(loss(projecting), argnums=tuple(range(len(args))))(*args)
    for name, ours, theirs in zip(arrays, grads, expected):
        assert scaled_error(ours, theirs) < 1e-12, name


def test_the_gru_lookup_matches_torch_gru_on_embedding_rows_in_float32():
    torch.manual_seed(2)
    embedding, gru = torch.nn.Embedding(V, D), torch.nn.GRU(D, H, batch_first=True)
    tokens = np.random.default_rng(3).integers(0, V, (N, T))
    h0 = 0.5 * torch.randn(1, N, H)
    out, h_n = gru(embedding(torch.tensor(tokens)), h0)
    dout, dh_n = torch.randn_like(out), torch.randn_like(h_n)
    (torch.sum(out * dout) + torch.sum(h_n * dh_n)).backward()

    weights = {name: p.detach().numpy() for name, p in gru.named_parameters()}
    params = dict(E=embedding.weight.detach().numpy(), Wx=weights["weight_ih_l0"].T, b=weights["bias_ih_l0"],
                  Wh=weights["weight_hh_l0"].T, bh=weights["bias_hh_l0"])

    def outputs(p):
        return L.gru_lookup(tokens, p["E"] @ p["Wx"] + p["b"], h0[0].numpy(), p["Wh"], p["bh"], return_state=True)

    for a, b in zip(outputs(params), (out, h_n[0])):
        assert scaled_error(a, b.detach().numpy()) < 1e-5
    def loss(p):
        h, h_last = outputs(p)
        return jnp.sum(h * dout.numpy()) + jnp.sum(h_last * dh_n[0].numpy())

    grads = jax.grad(loss)(params)
    assert scaled_error(grads["E"], embedding.weight.grad.numpy()) < 1e-5
    for ours, theirs in (("Wx", "weight_ih_l0"), ("Wh", "weight_hh_l0")):
        assert scaled_error(grads[ours], getattr(gru, theirs).grad.numpy().T) < 1e-5, ours
    for ours, theirs in (("b", "bias_ih_l0"), ("bh", "bias_hh_l0")):
        assert scaled_error(grads[ours], getattr(gru, theirs).grad.numpy()) < 1e-5, ours


@pytest.mark.parametrize("projection", [False, True])
@pytest.mark.parametrize("lengths,reverse", [(None, False), (None, True), ([0, 2, 5], False), ([5, 1, 3], True)])
def test_the_lookup_equals_the_projecting_lstm_on_embedded_tokens(x64, projection, lengths, reverse):
    tokens, arrays, upstream = problem(seed=len(str(lengths)) + reverse, projection=projection)
    lengths = None if lengths is None else np.array(lengths)
    options = dict(lengths=lengths, reverse=reverse, return_state=True)

    def lookup(E, Wx, b, Wh, h0, c0, Wr):
        return L.lstm_lookup(tokens, E @ Wx + b, h0, Wh, c0=c0, Wr=Wr, **options)

    def projecting(E, Wx, b, Wh, h0, c0, Wr):
        return L.lstm(jnp.take(E, tokens, axis=0), h0, Wx, Wh, b, c0=c0, Wr=Wr, **options)

    names = [name for name, value in arrays.items() if value is not None]
    args = [arrays[name] for name in names]

    def loss(layer):
        return lambda *values: projected(layer(**dict(arrays, **dict(zip(names, values)))), upstream)

    for ours, theirs in zip(lookup(**arrays), projecting(**arrays)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    grads = jax.grad(loss(lookup), argnums=tuple(range(len(names))))(*args)
    expected = jax.grad(loss(projecting), argnums=tuple(range(len(names))))(*args)
    for name, ours, theirs in zip(names, grads, expected):
        assert scaled_error(ours, theirs) < 1e-12, name


def test_the_table_gradient_is_a_scatter_add_over_the_tokens_read(x64):
    """Rows of tokens never read get exactly zero; a token read k times gets the sum of its k
    steps' pre-activation gradients (here: checked against a one-hot product)."""
    tokens, arrays, upstream = problem(seed=3, projection=False)
    tokens = np.where(tokens == V - 1, 0, tokens)  # token V-1 never read
    table = arrays["E"] @ arrays["Wx"] + arrays["b"]
    h, h_n, c_n, cache = L.lstm_lookup_forward(tokens, table, arrays["h0"], arrays["Wh"], c0=arrays["c0"],
                                               return_state=True)
    dtable, *_ = L.lstm_lookup_backward(upstream["dh"], cache, dh_n=upstream["dh_n"], dc_n=upstream["dc_n"])
    assert np.all(np.asarray(dtable)[V - 1] == 0)
    # the same pre-activation gradients through the projecting layer with Wx = I: its dx
    _, _, _, dense_cache = L.lstm_fast_forward(np.asarray(table)[tokens], arrays["h0"], np.eye(4 * H), arrays["Wh"],
                                               np.zeros(4 * H), c0=arrays["c0"], return_state=True)
    da = L.lstm_fast_backward(upstream["dh"], dense_cache, dh_n=upstream["dh_n"], dc_n=upstream["dc_n"])[0]
    one_hot = np.eye(V)[tokens.reshape(-1)]  # (N T, V)
    np.testing.assert_allclose(dtable, one_hot.T @ np.asarray(da).reshape(N * T, 4 * H), rtol=1e-12, atol=1e-12)


def test_matches_torch_lstm_on_embedding_rows_in_float32():
    torch.manual_seed(0)
    embedding, lstm = torch.nn.Embedding(V, D), torch.nn.LSTM(D, H, batch_first=True)
    tokens = np.random.default_rng(1).integers(0, V, (N, T))
    h0, c0 = (0.5 * torch.randn(1, N, H) for _ in range(2))
    out, (h_n, c_n) = lstm(embedding(torch.tensor(tokens)), (h0, c0))
    upstream = [torch.randn_like(a) for a in (out, h_n, c_n)]
    sum(torch.sum(a * d) for a, d in zip((out, h_n, c_n), upstream)).backward()

    weights = {name: p.detach().numpy() for name, p in lstm.named_parameters()}
    params = dict(E=embedding.weight.detach().numpy(), Wx=torch_lstm_gates_to_jaxseq(weights["weight_ih_l0"]).T,
                  Wh=torch_lstm_gates_to_jaxseq(weights["weight_hh_l0"]).T,
                  b=torch_lstm_gates_to_jaxseq(weights["bias_ih_l0"] + weights["bias_hh_l0"]))

    def outputs(params):
        table = params["E"] @ params["Wx"] + params["b"]
        return L.lstm_lookup(tokens, table, h0[0].numpy(), params["Wh"], c0=c0[0].numpy(), return_state=True)

    ours = outputs(params)
    for a, b in zip(ours, (out, h_n[0], c_n[0])):
        assert scaled_error(a, b.detach().numpy()) < 1e-5
    douts = [u.numpy() for u in upstream]
    douts[1:] = [d[0] for d in douts[1:]]
    grads = jax.grad(lambda p: projected(outputs(p), dict(zip(("dh", "dh_n", "dc_n"), douts))))(params)
    assert scaled_error(grads["E"], embedding.weight.grad.numpy()) < 1e-5
    assert scaled_error(grads["Wx"], torch_lstm_gates_to_jaxseq(lstm.weight_ih_l0.grad.numpy()).T) < 1e-5
    assert scaled_error(grads["Wh"], torch_lstm_gates_to_jaxseq(lstm.weight_hh_l0.grad.numpy()).T) < 1e-5
    assert scaled_error(grads["b"], torch_lstm_gates_to_jaxseq(lstm.bias_ih_l0.grad.numpy())) < 1e-5


@pytest.mark.parametrize("change,message", [
    (dict(tokens=np.full((N, T), V)), rf"tokens holds token id {V}, outside the valid range \[0, {V}\)"),
    (dict(tokens=np.zeros((N, T), np.float32)), "tokens must be an integer array, got dtype float32"),
    (dict(tokens=np.zeros(N, np.int32)), r"tokens must have rank 2, got shape \(3,\)"),
    (dict(table=np.zeros((V, 3 * H))), r"table must have shape \(V, 4H\) = \(7, 24\), got \(7, 18\)"),
    (dict(h0=np.zeros((N + 1, H))), r"h0 must have shape \(N, H\) = \(3, 6\), got \(4, 6\)"),
    (dict(Wh=np.zeros((H, H))), r"Wh must have shape \(H, 4H\) = \(6, 24\), got \(6, 6\)"),
    (dict(c0=np.zeros((N, H + 1))), r"c0 must have shape \(N, H\) = \(3, 6\), got \(3, 7\)"),
    (dict(lengths=np.array([0, 1, T + 1])), rf"lengths holds {T + 1}, outside the valid range \[0, T\] = \[0, {T}\]"),
])
def test_bad_arguments_are_one_line_errors_naming_them(change, message):
    args = dict(tokens=np.zeros((N, T), np.int32), table=np.zeros((V, 4 * H), np.float32),
                h0=np.zeros((N, H), np.float32), Wh=np.zeros((H, 4 * H), np.float32), c0=None, lengths=None)
    args.update(change)
    with pytest.raises(ValueError, match=message) as error:
        L.lstm_lookup(**args)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("change,message", [
    (dict(tokens=np.full((N, T), -1)), rf"tokens holds token id -1, outside the valid range \[0, {V}\)"),
    (dict(table=np.zeros((V, 4 * H))), r"table must have shape \(V, 3H\) = \(7, 18\), got \(7, 24\)"),
    (dict(bh=np.zeros(H)), r"bh must have shape \(3H,\) = \(18,\), got \(6,\)"),
    (dict(Wh=np.zeros((H, 4 * H))), r"Wh must have shape \(H, 3H\) = \(6, 18\), got \(6, 24\)"),
])
def test_bad_gru_lookup_arguments_are_one_line_errors_naming_them(change, message):
    args = dict(tokens=np.zeros((N, T), np.int32), table=np.zeros((V, 3 * H), np.float32),
                h0=np.zeros((N, H), np.float32), Wh=np.zeros((H, 3 * H), np.float32), bh=np.zeros(3 * H, np.float32))
    args.update(change)
    with pytest.raises(ValueError, match=message) as error:
        L.gru_lookup(**args)
    assert "\n" not in str(error.value)
