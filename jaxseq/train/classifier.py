"""Trainer for binary sentence classifiers (`ClassificationTransformer`, `RecurrentClassifier`:
any model with `logits(ids, pad_mask, deterministic)`, `vocab_size` and `max_length`).

One jitted train step does everything for a batch: gather the batch from the training set
held on the device (by a shuffled index order drawn on the device once per epoch), forward
with dropout, `optax.sigmoid_binary_cross_entropy` on the logits (optionally with label
smoothing), backward and the optax Adam/AdamW update with an optional warm-up and decay
schedule. After every epoch the validation accuracy and Matthews correlation (MCC) are
computed; the parameters with the best validation MCC are kept, and training stops early
after `patience` epochs without improvement. With a checkpoint folder, the whole training
state is saved after every epoch (last `keep` + best), and `resume=True` continues an
interrupted run bit for bit: the data order of epoch e is a permutation drawn from
fold_in(shuffle_key, e), and the shuffling key is part of the saved state.

Shapes: N examples, T tokens per example (`[CLS]` first, `[PAD]` = 0 after the sentence),
B batch size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq.data.sentences import ClassificationData
from jaxseq.data.vocabulary import PAD_ID
from jaxseq.metrics import accuracy, confusion_matrix, matthews_corrcoef
from jaxseq.models.classifiers import SentenceClassifier
from jaxseq.train.checkpoint import checkpoint_path, prepare_checkpoint_dir
from jaxseq.train.classifier_run import RunProgress, restore_run, run_settings, save_run
from jaxseq.train.interrupt import TrainingInterrupted, stop_on_signals
from jaxseq.train.optim import make_optimizer
from jaxseq.train.parallel import DataParallel
from jaxseq.train.progress import progress_bar
from jaxseq.train.steps import NonFiniteLossError, init_train_state, losses_to_host, make_train_step

SCHEDULES = ("constant", "cosine", "linear")


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
        positive = ("epochs", "batch_size", "learning_rate", "eval_batch_size")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("weight_decay and warmup_epochs must be >= 0, got "
                             f"{self.weight_decay} and {self.warmup_epochs}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
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


def check_classification_data(data: ClassificationData, name: str, model: SentenceClassifier) -> None:
    """ValueError naming `name` unless ids are (N, T) integers in [0, vocab_size) with
    T <= max_length and labels are (N,) of 0/1 (JAX would clamp bad ids silently)."""
    ids, labels = np.asarray(data.ids), np.asarray(data.labels)
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} ids must be a non-empty (N, T) array, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} ids must be integers, got dtype {ids.dtype}")
    if ids.shape[1] > model.max_length:
        raise ValueError(f"{name} ids have T={ids.shape[1]} tokens, more than the model's max_length {model.max_length}")
    bad = (ids < 0) | (ids >= model.vocab_size)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} ids: token id {ids[row, col]} at row {row}, position {col} is outside the "
            f"vocabulary [0, {model.vocab_size})"
        )
    if labels.shape != (ids.shape[0],):
        raise ValueError(f"{name} labels must have shape ({ids.shape[0]},), got {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{name} labels must be 0 or 1, found {labels[~np.isin(labels, (0, 1))][0]!r}")


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


def _pad_mask(ids: jax.Array, use_pad_mask: bool) -> jax.Array | None:
    return ids != PAD_ID if use_pad_mask else None


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
        logits = model.apply({"params": params}, ids, _pad_mask(ids, config.use_pad_mask),
                             deterministic=False, rngs={"dropout": key}, method="logits")
        targets = labels.astype(jnp.float32) * (1.0 - smoothing) + 0.5 * smoothing
        losses = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets)
        return jnp.sum(losses * weight) / jnp.sum(weight)

    return loss_fn


def make_logits_fn(model: SentenceClassifier, use_pad_mask: bool = True) -> Callable:
    """Jitted `(params, ids (B, T)) -> logits (B,)`, deterministic."""
    return jax.jit(lambda params, ids: model.apply({"params": params}, ids, _pad_mask(ids, use_pad_mask),
                                                   method="logits"))


def predict_logits(logits_fn: Callable, params, ids: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits (N,) of ids (N, T), in fixed-size batches (the last one padded) to compile once."""
    ids = np.asarray(ids, dtype=np.int32)
    size = min(batch_size, len(ids))
    out = []
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk), ids.shape[1]), np.int32)])
        out.append(np.asarray(logits_fn(params, chunk)))
    return np.concatenate(out)[: len(ids)].astype(np.float64)


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """loss (mean binary cross-entropy), accuracy, mcc and confusion matrix of logits (N,)
    thresholded at 0 (probability 0.5)."""
    labels = np.asarray(labels).astype(np.int64)
    predictions = (logits >= 0).astype(np.int64)
    loss = float(np.mean(np.logaddexp(0.0, logits) - labels * logits))
    return {
        "loss": loss,
        "accuracy": accuracy(labels, predictions),
        "mcc": matthews_corrcoef(labels, predictions),
        "confusion": confusion_matrix(labels, predictions).tolist(),
    }


def evaluate_classifier(model: SentenceClassifier, params, data: ClassificationData, *,
                        batch_size: int = 1024, use_pad_mask: bool = True, name: str = "eval") -> dict[str, Any]:
    """classification_metrics of `model` with `params` on `data` (checked first)."""
    check_classification_data(data, name, model)
    logits = predict_logits(make_logits_fn(model, use_pad_mask), params, data.ids, batch_size)
    return classification_metrics(logits, data.labels)


def train_classifier(
    model: SentenceClassifier,
    train: ClassificationData,
    val: ClassificationData,
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    *,
    checkpoint_dir: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    keep: int = 2,
    checkpoint_every: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    devices: int | None = None,
) -> ClassifierResult:
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
        uninterrupted run's) or `overwrite` (delete them). checkpoint_every: also save every
        this many steps inside an epoch (None: at epoch ends only).
      progress: show a tqdm bar per epoch; log: per-epoch summary lines (None: silent).
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
    check_classification_data(train, "train", model)
    check_classification_data(val, "val", model)
    if checkpoint_every is not None and not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every must be a positive int or None, got {checkpoint_every!r}")
    resume_from = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        resume_from = prepare_checkpoint_dir(checkpoint_dir, overwrite=overwrite, resume=resume)
    say = log or (lambda line: None)

    num_train = len(train.ids)
    size = config.batch_size
    steps_per_epoch = math.ceil(num_train / size)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    optimizer = make_optimizer(
        "adamw" if config.weight_decay > 0 else "adam", schedule, clip_norm=config.clip_norm,
        **({"weight_decay": config.weight_decay} if config.weight_decay > 0 else {}),
    )

    parallel = DataParallel.create(devices) if devices is not None else None
    if parallel is not None:
        parallel.check_batch_size(size)
    place_data = parallel.put_data if parallel is not None else jax.device_put
    place_state = parallel.replicate if parallel is not None else jax.device_put

    init_key, step_key, shuffle_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    ids_all, labels_all = place_data((np.asarray(train.ids, np.int32), np.asarray(train.labels, np.int32)))
    first = jnp.asarray(train.ids[:1], dtype=jnp.int32)
    params = jax.jit(model.init)(init_key, first, _pad_mask(first, config.use_pad_mask))["params"]
    state = init_train_state(params, optimizer, step_key)
    train_step = make_train_step(classifier_loss(model, config), optimizer, epoch_batch_sampler(size, num_train),
                                 parallel=parallel)
    logits_fn = make_logits_fn(model, config.use_pad_mask)
    padded = steps_per_epoch * size

    @jax.jit
    def epoch_order(shuffle_key, epoch):
        order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), num_train)
        return jnp.resize(order, (padded,))  # wraps around: the extra entries get weight 0

    batch_weights = np.minimum(size, num_train - size * np.arange(steps_per_epoch))
    settings = run_settings(model, config, train, val)
    run = RunProgress()
    if resume_from is not None:
        state, shuffle_key, run = restore_run(resume_from, state, shuffle_key, settings, steps_per_epoch)
        partial = f" and {len(run.epoch_losses)} steps" if run.epoch_losses else ""
        say(f"resuming from {resume_from} (epoch {run.epochs_done}{partial} of {config.epochs}, "
            f"best: epoch {run.best_epoch})")
    step = int(state.step)
    state = place_state(state)
    base_meta = {**(metadata or {}), **settings}
    checkpoints = checkpoint_dir is not None

    def save(record: dict | None = None) -> Path:
        """Checkpoint the state now: after an epoch (`record`: its scores) or in the middle
        of one (`run.epoch_losses` holds its losses so far). Process 0 writes; every process
        returns the folder."""
        if jax.process_index() != 0:
            return checkpoint_path(checkpoint_dir, int(state.step))
        return save_run(checkpoint_dir, state, shuffle_key,
                        {**base_meta, **(record or {}), **run.metadata(steps_per_epoch)},
                        metric=None if record is None else record["val_mcc"], keep=keep)

    first_epoch = run.epochs_done + 1
    if config.patience is not None and run.epochs_done - run.best_epoch >= config.patience:
        first_epoch = config.epochs + 1  # the run being resumed had stopped early
    with stop_on_signals(enabled=checkpoints) as stop:
        for epoch in range(first_epoch, config.epochs + 1):
            start = time.perf_counter()
            order = place_data(epoch_order(shuffle_key, epoch))
            first = step - (epoch - 1) * steps_per_epoch  # > 0 when resuming in the middle of the epoch
            carried, losses = run.epoch_losses, []

            def epoch_losses() -> list[float]:
                """The epoch's losses so far, on the host, checked for NaN/inf."""
                try:
                    return carried + losses_to_host(losses, step + 1)
                except NonFiniteLossError as error:
                    where = f"kept in {run.best_path}" if run.best_path else "not saved"
                    raise NonFiniteLossError(
                        f"{error} (epoch {epoch}); stopped. Best parameters (epoch {run.best_epoch}) "
                        f"{where}; try a lower learning rate or gradient clipping (clip_norm)") from None

            with progress_bar(steps_per_epoch, initial=first, description=f"epoch {epoch}/{config.epochs}",
                              enabled=progress) as bar:
                for batch in range(first, steps_per_epoch):
                    state, loss = train_step(state, EpochData(ids_all, labels_all, order, jnp.int32(batch)))
                    losses.append(loss)
                    bar.update(1)
                    if batch % 50 == 49:
                        bar.set_postfix(loss=f"{float(loss):.4f}")
                    done = step + len(losses)
                    stopping = stop.poll(done) if checkpoints else None  # the same in every process
                    due = checkpoint_every is not None and done % checkpoint_every == 0
                    if checkpoints and batch < steps_per_epoch - 1 and (stopping or due):  # the end saves anyway
                        run.epoch_losses = epoch_losses()
                        written = save()
                        if stopping:
                            raise TrainingInterrupted(stopping, done, written)
                run.epoch_losses = epoch_losses()
            step += len(losses)
            seconds = time.perf_counter() - start

            eval_start = time.perf_counter()
            scores = classification_metrics(
                predict_logits(logits_fn, state.params, val.ids, config.eval_batch_size), val.labels)
            rate = schedule(step - 1) if callable(schedule) else schedule
            record = {
                "epoch": epoch,
                "train_loss": float(np.sum(np.asarray(run.epoch_losses) * batch_weights) / num_train),
                "val_loss": scores["loss"],
                "val_accuracy": scores["accuracy"],
                "val_mcc": scores["mcc"],
                "seconds": seconds,
                "eval_seconds": time.perf_counter() - eval_start,
                "learning_rate": float(rate),
            }
            best_path = checkpoint_path(checkpoint_dir, step) if checkpoints else None  # if this epoch is best
            improved = run.finish_epoch(record, state.params, best_path)
            written = save(record) if checkpoints else None
            say(
                f"epoch {epoch:3d}/{config.epochs}  loss {record['train_loss']:.4f}  "
                f"val loss {record['val_loss']:.4f}  val acc {record['val_accuracy']:.4f}  "
                f"val MCC {record['val_mcc']:+.4f}{' *' if improved else '  '}  {seconds:.1f} s"
            )
            stopping = stop.poll(step, force=True) if checkpoints else None  # during evaluation or save
            if stopping:
                raise TrainingInterrupted(stopping, step, written)
            if config.patience is not None and epoch - run.best_epoch >= config.patience:
                say(f"early stop: no better validation MCC for {config.patience} epochs "
                    f"(best: epoch {run.best_epoch})")
                break
    return ClassifierResult(run.best_params, run.history, run.best_epoch,
                            run.best_val_mcc, run.best_path)
