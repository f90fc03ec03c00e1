"""Trainer for binary sentence classifiers (`ClassificationTransformer`, `RecurrentClassifier`:
any model with `logits(ids, pad_mask, deterministic)`, `vocab_size` and `max_length`), run by
the one training loop (`jaxseq.train.loop`).

    run = fit_sentence_classifier(splits, architecture="lstm", checkpoint_dir="runs/cola")
    result = train_classifier(model, train, val, ClassifierTrainConfig(epochs=10))

One jitted train step does everything for a batch: gather the batch from the training set
held on the device (by a shuffled index order drawn on the device once per epoch), forward
with dropout, `optax.sigmoid_binary_cross_entropy` on the logits (optionally with label
smoothing), backward and the optax Adam/AdamW update with an optional warm-up and decay
schedule. After every epoch the validation accuracy and Matthews correlation (MCC) are
computed; the parameters with the best validation MCC are kept, and training stops early
after `patience` epochs without improvement. With a checkpoint folder, the whole training
state is saved after every epoch (last `keep` + best), and `resume=True` continues an
interrupted run bit for bit: the data order of epoch e is a permutation drawn from
fold_in(shuffle_key, e), and the shuffling key is saved beside the state.

Shapes: N examples, T tokens per example (`[CLS]` first, `[PAD]` = 0 after the sentence),
B batch size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq.checks import check_positive_int, check_rate
from jaxseq.data.sentences import ClassificationData, SentenceSplits
from jaxseq.data.vocabulary import Vocabulary, check_classification_data
from jaxseq.metrics import classification_metrics
from jaxseq.models.classifiers import (
    SentenceClassifier,
    build_classifier,
    classifier_config,
    make_logits_fn,
    pad_mask,
    predict_logits,
)
from jaxseq.train.loop import (
    EpochResult,
    LoopSettings,
    RunProgress,
    TrainingLoop,
    progress_from_metadata,
    progress_metadata,
)
from jaxseq.train.optim import make_optimizer
from jaxseq.train.parallel import Placement
from jaxseq.train.run_log import DEFAULT_LOG_EVERY
from jaxseq.train.run_metadata import check_classifier_progress, check_run_kind, check_run_metadata
from jaxseq.train.steps import checkpoint_template, init_train_state, make_train_step
from jaxseq.train.vocabulary_file import vocabulary_file_keeper

SCHEDULES = ("constant", "cosine", "linear")
RESUMABLE_KEYS = ("epoch", "history", "best_epoch", "best_val_mcc", "best_step")
VOCAB_FILE = "vocab.json"


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Optimization settings (the model's own settings, dropout included, live on the model).

    learning_rate: peak rate; weight_decay > 0 switches Adam to AdamW (decoupled decay).
    schedule: "constant", "cosine" (to 0 at the last planned step) or "linear" (to 0),
      after a linear warm-up from 0 over `warmup_epochs` (may be fractional).
    label_smoothing: targets become y * (1 - s) + s / 2.
    patience: stop after this many epochs without a better validation MCC (None: never).
    use_pad_mask: mask `[PAD]` keys in attention (False: the course's unmasked model); a
      recurrent model reads its lengths from the `[PAD]` ids either way.
    """

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    clip_norm: float | None = None
    patience: int | None = None
    use_pad_mask: bool = True
    eval_batch_size: int = 1024
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "learning_rate", "eval_batch_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("weight_decay and warmup_epochs must be >= 0, got "
                             f"{self.weight_decay} and {self.warmup_epochs}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs:g}) is longer than the run (epochs {self.epochs}): "
                             "the learning rate would still be warming up when training ends; give a warm-up of "
                             "at most the epochs")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check_rate("label_smoothing", self.label_smoothing)
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")


class ClassifierResult(NamedTuple):
    """params: the best parameters (by validation MCC), on the host.
    history: one dict per epoch (epoch, train_loss, val_loss, val_accuracy, val_mcc,
      seconds (training time of the epoch, compilation included in the first),
      eval_seconds, learning_rate at the epoch's end).
    best_epoch / best_val_mcc: where the kept parameters come from.
    checkpoint: the best checkpoint's folder, or None without a checkpoint folder.
    """

    params: Any
    history: list[dict]
    best_epoch: int
    best_val_mcc: float
    checkpoint: Path | None


class EpochData(NamedTuple):
    """What the jitted step reads, all on the device: ids (N, T) and labels (N,) of the whole
    training set; order: the epoch's shuffled row indices, wrapped around to fill whole
    batches (S * B,); batch: () int, which B-slice of `order` this step takes."""

    ids: jax.Array
    labels: jax.Array
    order: jax.Array
    batch: jax.Array


def learning_rate_schedule(config: ClassifierTrainConfig, steps_per_epoch: int) -> float | optax.Schedule:
    """The learning rate per step: linear warm-up from 0, then constant, cosine or linear decay."""
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    peak = config.learning_rate
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total, end_value=0.0)
    if config.schedule == "linear":
        decay = optax.linear_schedule(peak, 0.0, total - warmup)
    elif warmup == 0:
        return peak
    else:
        decay = optax.constant_schedule(peak)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def classifier_optimizer(config: ClassifierTrainConfig,
                         steps_per_epoch: int) -> tuple[optax.GradientTransformation, float | optax.Schedule]:
    """(optimizer, learning-rate schedule) of a classifier run: Adam, or AdamW when
    `weight_decay` > 0, on `learning_rate_schedule`, after clipping when `clip_norm` is set."""
    schedule = learning_rate_schedule(config, steps_per_epoch)
    decay: dict[str, Any] = {"weight_decay": config.weight_decay} if config.weight_decay > 0 else {}
    return make_optimizer("adamw" if decay else "adam", schedule, clip_norm=config.clip_norm, **decay), schedule


def recorded_steps_per_epoch(meta: dict[str, Any]) -> int:
    """The steps per epoch of the run that wrote a classifier checkpoint's (checked) metadata:
    recorded since checkpoints had to be read whole; before that, derived from the step
    reached, the epochs done and the losses of the epoch in progress."""
    if "steps_per_epoch" in meta:
        return meta["steps_per_epoch"]
    done = meta["step"] - len(meta.get("epoch_losses", ()))
    return done // meta["epoch"] if meta.get("epoch") else max(1, meta["step"] + 1)


def classifier_checkpoint_template(model: SentenceClassifier, config: ClassifierTrainConfig,
                                   steps_per_epoch: int) -> Any:
    """Shapes and dtypes of everything a checkpoint of `train_classifier` holds (the
    TrainState and the shuffling key): what loading one needs, even for its parameters."""
    params = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 2), jnp.int32))["params"]
    optimizer, _ = classifier_optimizer(config, steps_per_epoch)
    return checkpoint_template(params, optimizer, {"shuffle_key": jax.ShapeDtypeStruct((2,), jnp.uint32)})


def epoch_batch_sampler(batch_size: int, num_examples: int) -> Callable:
    """`sample_batch(key, data: EpochData) -> (ids (B, T), labels (B,), weight (B,), key)` for
    `jaxseq.train.steps.make_train_step`: rows `order[batch*B:(batch+1)*B]`, gathered on
    the device; weight 0 marks the wrapped-around entries that fill the last batch; the key
    seeds dropout."""

    def sample_batch(key, data: EpochData):
        start = data.batch * batch_size
        index = jax.lax.dynamic_slice(data.order, (start,), (batch_size,))
        weight = (start + jnp.arange(batch_size) < num_examples).astype(jnp.float32)
        return data.ids[index], data.labels[index], weight, key

    return sample_batch


def classifier_loss(model: SentenceClassifier, config: ClassifierTrainConfig) -> Callable:
    """`loss_fn(params, batch) -> ()`: weighted mean of `optax.sigmoid_binary_cross_entropy`
    of the logits (dropout on, rng from the batch's key) against the labels, smoothed to
    y * (1 - s) + s / 2."""
    smoothing = config.label_smoothing

    def loss_fn(params, batch):
        ids, labels, weight, key = batch
        logits = model.apply({"params": params}, ids, pad_mask(ids, config.use_pad_mask),
                             deterministic=False, rngs={"dropout": key}, method="logits")
        targets = labels.astype(jnp.float32) * (1.0 - smoothing) + 0.5 * smoothing
        losses = optax.sigmoid_binary_cross_entropy(jnp.asarray(logits, jnp.float32), targets)
        return jnp.sum(losses * weight) / jnp.sum(weight)

    return loss_fn


def evaluate_classifier(model: SentenceClassifier, params, data: ClassificationData, *, batch_size: int = 1024,
                     use_pad_mask: bool = True, logits_fn: Callable | None = None,
                     name: str = "eval") -> dict[str, Any]:
    """`classification_metrics` (loss, accuracy, mcc, confusion) of `model` with `params` on
    `data` (ids checked against the model first; `name` says which data in the errors)."""
    check_classification_data(data, name, model.vocab_size, model.max_length)
    logits_fn = logits_fn or make_logits_fn(model, use_pad_mask)
    return classification_metrics(predict_logits(logits_fn, params, data.ids, batch_size), data.labels)


def data_fingerprint(data: ClassificationData) -> str:
    """A short hash of ids and labels: a resumed run must see the very same examples."""
    digest = hashlib.sha256()
    for array in (data.ids, data.labels):
        array = np.ascontiguousarray(array, dtype=np.int32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


class ClassifierTask:
    """What the loop runs for a classifier (see `jaxseq.train.loop.TrainingTask`): the shuffled
    epochs, the loss, the validation MCC (higher is better), the shuffling key beside the state."""

    kind = "classifier"

    def __init__(self, model: SentenceClassifier, train: ClassificationData, val: ClassificationData,
                 config: ClassifierTrainConfig, metadata: dict[str, Any], placement: Placement):
        self.model, self.val, self.config, self.metadata, self.placement = model, val, config, metadata, placement
        self.num_train = len(train.ids)
        self.steps_per_epoch = math.ceil(self.num_train / config.batch_size)
        self.optimizer, self.schedule = classifier_optimizer(config, self.steps_per_epoch)
        init_key, self.step_key, shuffle_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
        self.extra_state = {"shuffle_key": shuffle_key}
        self.ids, self.labels = placement.data((np.asarray(train.ids, np.int32), np.asarray(train.labels, np.int32)))
        first = jnp.asarray(train.ids[:1], dtype=jnp.int32)
        self.params = jax.jit(model.init)(init_key, first, pad_mask(first, config.use_pad_mask))["params"]
        self.train_step = make_train_step(classifier_loss(model, config), self.optimizer,
                                          epoch_batch_sampler(config.batch_size, self.num_train),
                                          parallel=placement.parallel)
        self.logits_fn = make_logits_fn(model, config.use_pad_mask)
        padded = self.steps_per_epoch * config.batch_size
        self.epoch_order = jax.jit(lambda key, epoch: jnp.resize(  # wraps around: extra entries get weight 0
            jax.random.permutation(jax.random.fold_in(key, epoch), self.num_train), (padded,)))
        self.batch_weights = np.minimum(config.batch_size,
                                        self.num_train - config.batch_size * np.arange(self.steps_per_epoch))
        self.settings = {"model": classifier_config(model), "train_config": dataclasses.asdict(config),
                         "train_data": data_fingerprint(train), "val_data": data_fingerprint(val)}

    def initial_state(self):
        return self.placement.state(init_train_state(self.params, self.optimizer, self.step_key))

    def place(self, state):
        return self.placement.state(state)

    def run_settings(self) -> dict[str, Any]:
        return self.settings

    def epoch_step(self, epoch: int):
        order = self.placement.data(self.epoch_order(self.extra_state["shuffle_key"], epoch))
        return lambda state, batch: self.train_step(state, EpochData(self.ids, self.labels, order, jnp.int32(batch)))

    def evaluate(self, state, epoch: int, losses: list[float], seconds: float) -> EpochResult:
        start = time.perf_counter()
        scores = evaluate_classifier(self.model, state.params, self.val, batch_size=self.config.eval_batch_size,
                                  logits_fn=self.logits_fn, name="val")
        rate = self.learning_rate(int(state.step))
        record = {"epoch": epoch, "train_loss": float(np.sum(np.asarray(losses) * self.batch_weights) / self.num_train),
                  "val_loss": scores["loss"], "val_accuracy": scores["accuracy"], "val_mcc": scores["mcc"],
                  "seconds": seconds, "eval_seconds": time.perf_counter() - start, "learning_rate": float(rate)}
        line = lambda improved: (  # noqa: E731
            f"epoch {epoch:3d}/{self.config.epochs}  loss {record['train_loss']:.4f}  val loss {record['val_loss']:.4f}"
            f"  val acc {record['val_accuracy']:.4f}  val MCC {record['val_mcc']:+.4f}{' *' if improved else '  '}"
            f"  {seconds:.1f} s")
        return EpochResult(record["val_mcc"], record, line)

    def learning_rate(self, step: int) -> float:
        """The rate of update `step` (1-based), from the warm-up and decay schedule."""
        return float(self.schedule(step - 1) if callable(self.schedule) else self.schedule)

    def checkpoint_metadata(self, progress: RunProgress) -> dict[str, Any]:
        """The caller's entries, the last epoch's scores (at an epoch's end), and what resuming needs."""
        return {**self.metadata, **progress_metadata(progress, self.steps_per_epoch, "best_val_mcc")}

    def check_resumable(self, meta: dict[str, Any], path: Path) -> None:
        check_run_kind(meta, path, self.kind)
        missing = [key for key in RESUMABLE_KEYS if key not in meta]
        if missing:
            raise ValueError(f"checkpoint {path}: no resumable training state (metadata lacks {missing}); "
                             "it was not written by train_classifier after every epoch")
        check_run_metadata(meta, path, self.kind)

    def restored(self, meta: dict[str, Any], path: Path, extra: dict[str, Any]) -> RunProgress:
        """The progress of checkpoint `path`; the best epoch's parameters from its checkpoint."""
        check_classifier_progress(meta, path, self.steps_per_epoch)
        self.extra_state = dict(extra)
        return progress_from_metadata(meta, path, "best_val_mcc")


def train_classifier(model: SentenceClassifier, train: ClassificationData, val: ClassificationData,
                     config: ClassifierTrainConfig = ClassifierTrainConfig(), *,
                     checkpoint_dir: str | os.PathLike | None = None, metadata: dict[str, Any] | None = None,
                     overwrite: bool = False, resume: bool = False, keep: int = 2, checkpoint_every: int | None = None,
                     progress: bool = True, log: Callable[[str], None] | None = print, devices: int | None = None,
                     vocab: Vocabulary | None = None, log_dir: str | os.PathLike | None = None,
                     log_every: int = DEFAULT_LOG_EVERY) -> ClassifierResult:
    """Train `model` on `train`, select by validation MCC on `val`.

    Inputs:
      train, val: ClassificationData; ids (N, T) with T <= model.max_length, inside
        [0, vocab_size) (checked here, before anything reaches jit).
      checkpoint_dir: if given, the whole training state (parameters, optimizer state,
        step, dropout key, shuffling key) is saved there atomically after every epoch with
        `metadata`, the model's and training config, the data's fingerprints, the epoch's
        scores and the history; the last `keep` epochs and the best one (by validation
        MCC) are kept. Existing checkpoints there are an error unless `resume` (continue
        exactly from the latest: same settings and data required; the result equals an
        uninterrupted run's) or `overwrite` (delete them, once every option checked out).
        The folder is locked while training. checkpoint_every: also save every this many
        steps inside an epoch (None: at epoch ends only). vocab: written beside the
        checkpoints as vocab.json (resuming: must equal the saved one).
      progress: show a tqdm bar; log: per-epoch summary lines (None: silent).
      log_dir: TensorBoard event files and metrics.jsonl (`jaxseq.train.run_log`) go there:
        the train loss, learning rate and steps/s every `log_every` steps, the validation
        loss, accuracy and MCC per epoch (None: `<checkpoint_dir>/logs`, or no log without
        a checkpoint folder); an unwritable one is a ValueError before training.
      devices: data parallelism over this many devices (None: one device): each batch is
        split over them, parameters and optimizer state are replicated; batch_size must
        divide by the device count.
    Returns: ClassifierResult.
    Raises NonFiniteLossError naming the step when the loss becomes NaN/inf (the best
    parameters so far stay in the checkpoint folder). With a checkpoint folder, SIGTERM or
    Ctrl-C stops training after the current step (multi-process: within 10 steps, the same
    one everywhere), checkpoints that state (mid-epoch too) and raises
    `jaxseq.train.interrupt.TrainingInterrupted`.
    """
    check_classification_data(train, "train", model.vocab_size, model.max_length)
    check_classification_data(val, "val", model.vocab_size, model.max_length)
    check_positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    task = ClassifierTask(model, train, val, config, dict(metadata or {}),
                          Placement.create(devices, config.batch_size))
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    settings = LoopSettings(
        num_epochs=config.epochs, steps_per_epoch=task.steps_per_epoch, checkpoint_dir=folder, resume=resume,
        overwrite=overwrite, checkpoint_every=checkpoint_every, keep=keep, higher_is_better=True,
        patience=config.patience, progress=progress, description="classifier train", metric_name="validation MCC",
        log=log, prepare_folder=vocabulary_file_keeper(vocab, VOCAB_FILE, "classifier") if vocab is not None else None, log_dir=log_dir,
        log_every=log_every)
    run = TrainingLoop(task, settings).run().progress
    best = run.best_metric if run.best_metric is not None else -math.inf
    return ClassifierResult(run.best_params, run.history, run.best_epoch, best, run.best_path)


class SentenceClassifierRun(NamedTuple):
    """model, best params and vocabulary; the trainer's result; scores of the best params on
    validation and (when the splits have one) test: dicts of loss, accuracy, mcc, confusion;
    num_truncated: sentences cut to max_length per split."""

    model: SentenceClassifier
    params: Any
    vocab: Vocabulary
    result: ClassifierResult
    val_scores: dict
    test_scores: dict | None
    num_truncated: dict[str, int]


def fit_sentence_classifier(splits: SentenceSplits, *, min_count: int = 5, max_length: int = 43,
                            architecture: str = "transformer", model_kwargs: dict[str, Any] | None = None,
                            config: ClassifierTrainConfig = ClassifierTrainConfig(),
                            metadata: dict[str, Any] | None = None, log: Callable[[str], None] | None = print,
                            **training: Any) -> SentenceClassifierRun:
    """Build the vocabulary on `splits.train` (words seen >= `min_count` times), encode every
    split to `max_length` tokens (`[CLS]` included), train the classifier `architecture`
    ("transformer", "lstm" or "gru", see `jaxseq.models.classifiers`; `model_kwargs`: its
    fields other than vocab_size, max_length and cell) and score the best parameters on
    validation and test. `training`: the keywords of `train_classifier` (checkpoint_dir,
    overwrite, resume, checkpoint_every, progress, devices, log_dir, log_every); with a checkpoint folder the
    vocabulary is written there as vocab.json (resuming: it must equal the saved one)."""
    vocab = Vocabulary.build(splits.train.sentences, min_count)
    encoded, truncated = {}, {}
    for name in ("train", "val", "test"):
        if getattr(splits, name) is not None:
            encoded[name], truncated[name] = vocab.encode_labelled(getattr(splits, name), max_length)
    if log is not None:
        log(f"vocabulary: {len(vocab)} tokens (words seen >= {min_count} times in training); "
            + ", ".join(f"{name} {len(data.ids)} sentences ({truncated[name]} truncated to {max_length})"
                        for name, data in encoded.items()))
    model = build_classifier(architecture, len(vocab), max_length, **(model_kwargs or {}))
    result = train_classifier(model, encoded["train"], encoded["val"], config, vocab=vocab, log=log,
                              metadata={**(metadata or {}), "min_count": min_count}, **training)
    scores = {name: evaluate_classifier(model, result.params, data, use_pad_mask=config.use_pad_mask, name=name)
              for name, data in encoded.items() if name != "train"}
    return SentenceClassifierRun(model, result.params, vocab, result, scores["val"], scores.get("test"), truncated)
