"""Trainers: jit-compiled steps, optax optimizers, schedules, checkpoints, progress."""

from jaxseq.train.checkpoint import (
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from jaxseq.train.optim import UPDATE_RULES, epoch_decay_schedule, make_optimizer
