"""Train the captioner on 1 device and on every host device; print the largest difference.

    python data_parallel_captioning.py CELL...    # rnn, lstm

Run in a subprocess with several host CPU devices (JAX_NUM_CPU_DEVICES=8), so the rest of
the test suite keeps its single device; one process for every cell asked for. Prints one
JSON line, {cell: report}.
"""

import json
import sys

from plain_install import hide_torch  # beside this script

hide_torch()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxseq.data import random_captioning_data  # noqa: E402
from jaxseq.models import CaptioningRNN  # noqa: E402
from jaxseq.train import CaptioningSolver  # noqa: E402


def report(cell: str) -> dict:
    data = random_captioning_data(64, 8, feature_dim=24, caption_length=9, vocab_size=40, min_words=4, seed=0)
    model = CaptioningRNN(40, wordvec_dim=16, hidden_dim=32, cell_type=cell)
    params = {}
    for devices in (1, jax.device_count()):
        solver = CaptioningSolver(model, data, optim_config={"learning_rate": 5e-3}, num_epochs=3,
                                  batch_size=16, verbose=False, seed=3, devices=devices)
        params[devices] = jax.device_get(solver.train().params)
    # The step of the run on every device (the last solver): its data sharded, its compiled
    # program partitioned (all-reduces of the gradients).
    sharding = solver._train["features"].sharding
    hlo = solver._step.lower(solver.state, solver._train).compile().as_text()
    single, multi = params[1], params[jax.device_count()]
    worst = max(
        float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))
        for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(multi))
    )
    return {"devices": jax.device_count(), "max_relative_difference": worst,
            "data_devices": len(sharding.device_set), "all_reduces": hlo.count("all-reduce(")}


if __name__ == "__main__":
    print(json.dumps({cell: report(cell) for cell in sys.argv[1:]}))
