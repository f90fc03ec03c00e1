"""`jaxseq.nn` RNN / LSTM / GRU against `torch.nn` on packed sequences, float32.

Same weights (PyTorch's own init, loaded with `params_from_torch`), random lengths with 1 and
T among them, random initial states; compared: outputs, final states and the gradients of x,
of the initial states and of every parameter (`params_to_torch` of the gradient tree against
each torch parameter's `.grad`), on a loss that weighs every output and final state.
Scaled errors max|a - b| / max|b| < 1e-4. The LSTM climbs every num_layers x direction; the
tanh and relu RNN, the GRU and the LSTM with projections each num_layers once and both
directions (the test budget; `python -m tests.test_nn_torch_parity` prints the errors of
every num_layers x direction of each), their 2-layer bidirectional stacks (the GRU's too)
once more with bias=False and batch_first=False.
"""

from __future__ import annotations

import pytest

from jaxseq.gradcheck import FLOAT32_TOL
from tests.helpers import scaled_error
from tests.nn_torch_twin import jaxseq_run, make_pair, random_batch, torch_run

TORCH_TOL = FLOAT32_TOL
N, T, D, H = 5, 6, 3, 4

P = 2  # proj_size
EVERY_DEPTH_AND_DIRECTION = [(layers, bidirectional) for layers in (1, 2, 3) for bidirectional in (False, True)]
EACH_DEPTH_AND_DIRECTION = [(1, False), (2, True), (3, True)]
RELU, PROJECTION, NO_BIAS_TIME_MAJOR = {"nonlinearity": "relu"}, {"proj_size": P}, {"bias": False, "batch_first": False}
CONFIGS = (
    [("lstm", layers, bidirectional, {}) for layers, bidirectional in EVERY_DEPTH_AND_DIRECTION]
    + [(cell, layers, bidirectional, options)
       for cell, options in (("rnn", {}), ("gru", {}), ("rnn", RELU), ("lstm", PROJECTION))
       for layers, bidirectional in EACH_DEPTH_AND_DIRECTION]
    + [(cell, 2, True, {**options, **NO_BIAS_TIME_MAJOR}) for cell, options in (("rnn", RELU), ("gru", {}),
                                                                              ("lstm", PROJECTION))]
)


def config_id(config) -> str:
    cell, layers, bidirectional, options = config
    return "-".join([cell, f"{layers}layers", "bi" if bidirectional else "uni",
                     *(f"{name}={value}" for name, value in options.items())])


def parity_errors(cell: str, num_layers: int, bidirectional: bool, seed: int = 0, **options) -> dict[str, float]:
    """The largest scaled error of the outputs, the final states and all gradients."""
    module, variables, torch_module = make_pair(cell, D, H, num_layers, bidirectional, seed=seed, **options)
    batch = random_batch(cell, N, T, D, H, num_layers, 2 if bidirectional else 1, seed=seed,
                         proj_size=options.get("proj_size", 0))
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


@pytest.mark.parametrize("cell,num_layers,bidirectional,options", CONFIGS, ids=[config_id(c) for c in CONFIGS])
def test_outputs_states_and_gradients_match_torch_on_packed_sequences(cell, num_layers, bidirectional, options):
    errors = parity_errors(cell, num_layers, bidirectional, seed=num_layers + 3 * bidirectional, **options)
    assert max(errors.values()) < TORCH_TOL, errors


def print_errors(configs) -> None:
    for cell, layers, bidirectional, options in configs:
        errors = parity_errors(cell, layers, bidirectional, seed=layers + 3 * bidirectional, **options)
        label = config_id((cell, layers, bidirectional, options))
        print(f"{label:<60} " + "  ".join(f"{name} {value:.1e}" for name, value in errors.items()), flush=True)


if __name__ == "__main__":  # the errors of every num_layers x direction, for the record
    print_errors([(cell, layers, bidirectional, options)
                  for cell, options in (("rnn", RELU), ("lstm", PROJECTION), ("lstm", {}), ("rnn", {}), ("gru", {}))
                  for layers, bidirectional in EVERY_DEPTH_AND_DIRECTION] + CONFIGS[-3:])
