"""One process of a multi-process captioning run (or the single-process reference).

    python multiprocess_captioning.py COORDINATOR NUM_PROCESSES PROCESS_ID OUT.json
    python multiprocess_captioning.py - 1 0 OUT.json          # single process, no coordinator

Every process loads the same (generated) data, joins the run with
`jax.distributed.initialize` (Gloo collectives on CPU), trains data-parallel over all
processes' devices, and process 0 writes the final parameters' norms and a sample of values.
The single-process reference is `train(OUT)` in any process with one device (the test calls
it in its own, which has JAX imported already).
"""

import json
import sys


def train(out: str) -> None:
    """Train over every device of the run (of all its processes); process 0 writes `out`."""
    import jax
    import numpy as np

    from jaxseq.data import random_captioning_data
    from jaxseq.models import CaptioningRNN
    from jaxseq.train import CaptioningSolver

    data = random_captioning_data(64, 8, feature_dim=24, caption_length=9, vocab_size=40, min_words=4, seed=0)
    model = CaptioningRNN(40, wordvec_dim=16, hidden_dim=32, cell_type="lstm")
    solver = CaptioningSolver(model, data, optim_config={"learning_rate": 5e-3}, num_epochs=2, batch_size=16,
                              verbose=False, seed=3, devices=jax.device_count())
    solver.train()
    params = {name: np.asarray(value).ravel().tolist() for name, value in solver.params.items()}
    if jax.process_index() == 0:
        with open(out, "w") as handle:
            json.dump({"processes": jax.process_count(), "devices": jax.device_count(), "params": params,
                       "loss_history": solver.loss_history}, handle)


if __name__ == "__main__":
    coordinator, num_processes, process_id, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    from plain_install import hide_torch  # beside this script

    hide_torch()
    if coordinator != "-":
        from jaxseq.train.parallel import initialize_distributed

        initialize_distributed(coordinator, num_processes, process_id)
    train(out)
