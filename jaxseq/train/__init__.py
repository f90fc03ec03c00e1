"""Trainers: jit-compiled steps, optax optimizers, schedules, checkpoints, progress."""

from jaxseq.train.checkpoint import (
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from jaxseq.train.interrupt import TrainingInterrupted
from jaxseq.train.optim import UPDATE_RULES, epoch_decay_schedule, make_optimizer
from jaxseq.train.captioning import CaptioningSolver, load_captioning_checkpoint
from jaxseq.train.steps import NonFiniteLossError, TrainState, init_train_state, make_train_step, random_rows
from jaxseq.train.classifier import ClassifierTrainConfig, evaluate_classifier, train_classifier
from jaxseq.train.sentence_classifier import fit_sentence_classifier, load_sentence_classifier
