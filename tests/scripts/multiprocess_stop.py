"""One process of a 2-process captioning run with checkpoints, stopped by SIGTERM or not:

    python multiprocess_stop.py COORDINATOR NUM_PROCESSES PROCESS_ID FOLDER MODE OUT.json

MODE straight: train 6 epochs of 4 steps into FOLDER. MODE signal: the same, but every
process sends itself SIGTERM after its own step (process 0 after step 9, process 1 after
step 11, as a scheduler's signals land at different moments); the processes must agree
and stop after the same step with one checkpoint, exiting 128 + SIGTERM. MODE resume:
continue the run in FOLDER to the end. Process 0 writes the final parameters and loss
history to OUT.json (straight, resume).
"""

import json
import os
import signal
import sys

coordinator, num_processes, process_id, folder, mode, out = sys.argv[1:7]

from jaxseq.train.parallel import initialize_distributed  # noqa: E402

initialize_distributed(coordinator, int(num_processes), int(process_id))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxseq.data import random_captioning_data  # noqa: E402
from jaxseq.models import CaptioningRNN  # noqa: E402
from jaxseq.train import CaptioningSolver, TrainingInterrupted  # noqa: E402

data = random_captioning_data(64, 8, feature_dim=24, caption_length=9, vocab_size=40, min_words=4, seed=0)
model = CaptioningRNN(40, wordvec_dim=16, hidden_dim=32, cell_type="lstm")
solver = CaptioningSolver(model, data, optim_config={"learning_rate": 5e-3}, num_epochs=6, batch_size=16,
                          verbose=False, seed=3, devices=jax.device_count(), checkpoint_dir=folder)
if mode == "signal":
    step, calls, signal_after = solver._step, [0], 9 + 2 * jax.process_index()

    def signalling_step(state, data):
        result = step(state, data)
        calls[0] += 1
        if calls[0] == signal_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    solver._step = signalling_step
try:
    solver.train()
except TrainingInterrupted as stopped:
    print(stopped, file=sys.stderr)
    sys.exit(stopped.exit_code)
if jax.process_index() == 0:
    params = {name: np.asarray(value).ravel().tolist() for name, value in solver.params.items()}
    with open(out, "w") as handle:
        json.dump({"params": params, "loss_history": solver.loss_history}, handle)
