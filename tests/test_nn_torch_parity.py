"""`jaxseq.nn` RNN / LSTM / GRU against `torch.nn` on packed sequences, float32.

Same weights (PyTorch's own init, loaded with `params_from_torch`), random lengths with 1 and
T among them, random initial states; compared: outputs, final states and the gradients of x,
of the initial states and of every parameter (`params_to_torch` of the gradient tree against
each torch parameter's `.grad`), on a loss that weighs every output and final state.
Scaled errors max|a - b| / max|b| < 1e-4. The LSTM climbs every num_layers x direction;
RNN and GRU each num_layers once and both directions.
"""

from __future__ import annotations

import pytest

from jaxseq.gradcheck import FLOAT32_TOL
from tests.helpers import scaled_error
from tests.nn_torch_twin import jaxseq_run, make_pair, random_batch, torch_run

TORCH_TOL = FLOAT32_TOL
N, T, D, H = 5, 6, 3, 4

CONFIGS = [("lstm", layers, bidirectional) for layers in (1, 2, 3) for bidirectional in (False, True)] + [
    (cell, layers, bidirectional)
    for cell in ("rnn", "gru")
    for layers, bidirectional in ((1, False), (2, True), (3, True))
]


def parity_errors(cell: str, num_layers: int, bidirectional: bool, seed: int = 0) -> dict[str, float]:
    """The largest scaled error of the outputs, the final states and all gradients."""
    module, variables, torch_module = make_pair(cell, D, H, num_layers, bidirectional, seed=seed)
    batch = random_batch(cell, N, T, D, H, num_layers, 2 if bidirectional else 1, seed=seed)
    out, final, grads = jaxseq_run(module, variables, **batch)
    out_t, final_t, grads_t = torch_run(torch_module, **batch)
    assert list(grads["params"]) == list(grads_t["params"])  # every parameter, torch's order
    gradient_errors = [scaled_error(grads["x"], grads_t["x"])]
    gradient_errors += [scaled_error(a, b) for a, b in zip(grads["states"], grads_t["states"], strict=True)]
    gradient_errors += [scaled_error(grads["params"][name], g) for name, g in grads_t["params"].items()]
    return {
        "outputs": scaled_error(out, out_t),
        "states": max(scaled_error(a, b) for a, b in zip(final, final_t, strict=True)),
        "gradients": max(gradient_errors),
    }


@pytest.mark.parametrize("cell,num_layers,bidirectional", CONFIGS)
def test_outputs_states_and_gradients_match_torch_on_packed_sequences(cell, num_layers, bidirectional):
    errors = parity_errors(cell, num_layers, bidirectional, seed=num_layers + 3 * bidirectional)
    assert max(errors.values()) < TORCH_TOL, errors
