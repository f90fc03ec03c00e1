"""One process of a 2-process training run with checkpoints, stopped by SIGTERM or not:

    python multiprocess_stop.py COORDINATOR NUM_PROCESSES PROCESS_ID TRAINER FOLDER MODE OUT.json

TRAINER is captioner (3 epochs of 4 steps) or classifier (3 epochs of 8 steps). MODE
straight: train into FOLDER. MODE signal: the same, but every process sends itself SIGTERM
after its own step (process 0 after step 9, process 1 after step 11, as a scheduler's
signals land at different moments); the processes must agree and stop after the same
step with one checkpoint, exiting 128 + SIGTERM. MODE disk-full: process 0's second
checkpoint write fails (OSError ENOSPC); every process must stop there, exiting 1, instead
of waiting for process 0 in the next collective. MODE resume: continue the run in FOLDER
to the end. Process 0 writes the final parameters and loss history to OUT.json (straight,
resume).
"""

import json
import os
import signal
import sys

coordinator, num_processes, process_id, trainer, folder, mode, out = sys.argv[1:8]

from plain_install import hide_torch  # noqa: E402  (beside this script)

hide_torch()

from jaxseq.train.parallel import initialize_distributed  # noqa: E402

initialize_distributed(coordinator, int(num_processes), int(process_id))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxseq.train import TrainingInterrupted, classifier, steps  # noqa: E402

signal_after = 9 + 2 * jax.process_index()
EPOCHS = 3  # a stop after step 10 falls inside an epoch, before the end


def signalling(step_fn):
    """`step_fn` that sends this process SIGTERM after its `signal_after`-th call."""
    calls = [0]

    def step(state, data):
        result = step_fn(state, data)
        calls[0] += 1
        if calls[0] == signal_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    return step


def train_captioner():
    from jaxseq.data import random_captioning_data
    from jaxseq.models import CaptioningRNN
    from jaxseq.train import CaptioningSolver

    data = random_captioning_data(64, 8, feature_dim=24, caption_length=9, vocab_size=40, min_words=4, seed=0)
    model = CaptioningRNN(40, wordvec_dim=16, hidden_dim=32, cell_type="lstm")
    solver = CaptioningSolver(model, data, optim_config={"learning_rate": 5e-3}, num_epochs=EPOCHS, batch_size=16,
                              verbose=False, seed=3, devices=jax.device_count(), checkpoint_dir=folder)
    if mode == "signal":
        solver._step = signalling(solver._step)
    solver.train()
    return solver.params, solver.loss_history


def train_classifier():
    from jaxseq.data.bracket_nesting import bracket_nesting_task
    from jaxseq.data.vocabulary import Vocabulary
    from jaxseq.models import ClassificationTransformer

    splits = bracket_nesting_task(256, 64, 8, seed=0, max_pairs=6)
    vocab = Vocabulary.build(splits.train.sentences)
    train, _ = vocab.encode_labelled(splits.train, 14)
    val, _ = vocab.encode_labelled(splits.val, 14)
    model = ClassificationTransformer(len(vocab), max_length=14, hidden_dim=16, num_heads=2, dim_k=8, dim_q=8,
                                      dim_v=8, dim_feedforward=32, dropout=0.1)
    config = classifier.ClassifierTrainConfig(epochs=EPOCHS, batch_size=32, learning_rate=3e-3)
    if mode == "signal":
        classifier.make_train_step = lambda *args, **kwargs: signalling(steps.make_train_step(*args, **kwargs))
    result = classifier.train_classifier(model, train, val, config, checkpoint_dir=folder, resume=mode == "resume",
                                         devices=jax.device_count(), progress=False, log=None)
    history = [{k: v for k, v in record.items() if "seconds" not in k} for record in result.history]
    return result.params, history


if mode == "disk-full" and jax.process_index() == 0:
    from full_disk import fill_the_disk_after  # beside this script

    fill_the_disk_after(1)

try:
    params, history = {"captioner": train_captioner, "classifier": train_classifier}[trainer]()
except TrainingInterrupted as stopped:
    print(stopped, file=sys.stderr)
    sys.exit(stopped.exit_code)
except OSError as failed:
    print(failed, file=sys.stderr)
    sys.exit(1)
if jax.process_index() == 0:
    flat = {jax.tree_util.keystr(path): np.asarray(value).ravel().tolist()
            for path, value in jax.tree_util.tree_leaves_with_path(params)}
    with open(out, "w") as handle:
        json.dump({"params": flat, "history": history}, handle)
