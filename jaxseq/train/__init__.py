"""Training: the one loop (`jaxseq.train.loop`) and its three trainers, optax optimizers and
schedules, checkpoints, data parallelism.

    solver = CaptioningSolver(model, data, num_epochs=10).train()        # the course's face
    result = train_classifier(model, train, val, ClassifierTrainConfig())
    run = fit_sentence_classifier(splits, architecture="lstm")          # vocabulary + training + scores
    run = train_language_model(model, corpus, LMTrainConfig(bptt=128))  # truncated BPTT on text

Loading a trained run back for prediction is `jaxseq.inference`.
"""

from jaxseq.train.captioning import CaptioningSolver, train_captioner
from jaxseq.train.checkpoint import (
    RunKindError,
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from jaxseq.train.classifier import (
    ClassifierResult,
    ClassifierTrainConfig,
    SentenceClassifierRun,
    evaluate_classifier,
    fit_sentence_classifier,
    train_classifier,
)
from jaxseq.train.interrupt import TrainingInterrupted
from jaxseq.train.language_model import (
    LanguageModelResult,
    LMTrainConfig,
    evaluate_language_model,
    train_language_model,
)
from jaxseq.train.loop import LoopSettings, RunProgress, TrainingLoop
from jaxseq.train.optim import UPDATE_RULES, epoch_decay_schedule, make_optimizer
from jaxseq.train.parallel import DataParallel, initialize_distributed
from jaxseq.train.run_folder import RunFolderBusyError
from jaxseq.train.steps import NonFiniteLossError, TrainState, init_train_state, make_train_step

__all__ = [
    "CaptioningSolver",
    "ClassifierResult",
    "ClassifierTrainConfig",
    "DataParallel",
    "LMTrainConfig",
    "LanguageModelResult",
    "LoopSettings",
    "NonFiniteLossError",
    "RunFolderBusyError",
    "RunKindError",
    "RunProgress",
    "SentenceClassifierRun",
    "TrainState",
    "TrainingInterrupted",
    "TrainingLoop",
    "UPDATE_RULES",
    "best_checkpoint",
    "evaluate_language_model",
    "epoch_decay_schedule",
    "evaluate_classifier",
    "fit_sentence_classifier",
    "init_train_state",
    "initialize_distributed",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "make_optimizer",
    "make_train_step",
    "save_checkpoint",
    "train_captioner",
    "train_classifier",
    "train_language_model",
]
