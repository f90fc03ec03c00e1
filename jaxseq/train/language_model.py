"""Trainer for recurrent language models (`jaxseq.models.LanguageModel`) with truncated
backpropagation through time, run by the one training loop (`jaxseq.train.loop`).

    run = train_language_model(model, corpus, LMTrainConfig(bptt=128), checkpoint_dir="runs/lm")
    scores = evaluate_language_model(model, params, corpus.val, batch_size=10, bptt=128)

The training split is laid out as N = `batch_size` parallel streams (`jaxseq.data.batchify`,
PyTorch's word_language_model example) and an epoch walks them in segments of `bptt` steps
(the last one shorter when bptt does not divide L - 1, as in PyTorch's epoch). Each step is
one compiled call: the segment sliced from the streams held on the device, the forward from
the state the previous segment left, the mean cross-entropy per token, its gradient (the
carried state is an input of the step, so no gradient crosses a segment boundary: truncated
BPTT), clipping by global norm and the optax update. The state is reset to zeros at each
epoch's start, as PyTorch's example does.

The carried state is part of the run: the task keeps it in `extra_state` (stream-major,
(N, S, H) per state array, so the streams split over devices like any batch), which the loop
saves beside the TrainState in every checkpoint; a run stopped in the middle of an epoch
resumes bit-identical, carried state included.

Optimisers: "sgd" (PyTorch's example: plain SGD, the learning rate divided by
`plateau_factor` after every epoch whose validation loss is not a new best; the rate of each
epoch follows from the validation history, which checkpoints hold, so resuming recomputes it)
and "adamw" (linear warm-up over `warmup_steps`, then cosine decay to 0 at the last step, or
constant). After every epoch: validation loss (nats per token), perplexity and bits per token
(bits per character at character level), the state carried over the whole split
(`evaluate_language_model`); the best epoch by validation loss is kept, early stopping after
`patience` epochs without a better one.

Shapes: N streams, L stream length, T = bptt steps, V vocabulary, S layers, H hidden size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq.checks import check_positive_int
from jaxseq.data.text_corpus import TextCorpus
from jaxseq.data.text_streams import batchify
from jaxseq.models.language_model import LanguageModel, language_model_config, token_losses
from jaxseq.train.loop import (
    EpochResult,
    LoopSettings,
    RunProgress,
    TrainingLoop,
    progress_from_metadata,
    progress_metadata,
)
from jaxseq.train.parallel import Placement
from jaxseq.train.run_log import DEFAULT_LOG_EVERY
from jaxseq.train.run_metadata import check_language_model_progress, check_run_metadata
from jaxseq.train.steps import checkpoint_template, init_train_state, make_train_step
from jaxseq.train.vocabulary_file import vocabulary_file_keeper

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("plateau", "cosine", "constant")
VOCAB_FILE = "vocab.json"
RESUMABLE_KEYS = ("epoch", "history", "best_epoch", "best_val_loss", "best_step")


@dataclass(frozen=True)
class LMTrainConfig:
    """How a language model is trained (the model's own settings, dropout included, live on
    the model).

    epochs; batch_size: N streams; bptt: T, steps per segment; eval_batch_size: streams of
      the evaluation (PyTorch's example: 10).
    optimizer: "sgd" or "adamw"; learning_rate: the (peak) rate; weight_decay: AdamW's.
    schedule (either optimizer): "plateau" (divide the rate by `plateau_factor` after each
      epoch whose validation loss is not a new best; PyTorch's example), "cosine" (after a
      linear warm-up of `warmup_steps`, to 0 at the last step) or "constant" (after the warm-up).
    clip_norm: clip the gradients' global norm (None: no clipping).
    patience: stop after this many epochs without a better validation loss (None: never).
    seed: initialisation and dropout.
    """

    epochs: int = 40
    batch_size: int = 20
    bptt: int = 35
    optimizer: str = "sgd"
    learning_rate: float = 20.0
    weight_decay: float = 0.0
    schedule: str = "plateau"
    plateau_factor: float = 4.0
    warmup_steps: int = 0
    clip_norm: float | None = 0.25
    patience: int | None = None
    eval_batch_size: int = 10
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "bptt", "eval_batch_size"):
            check_positive_int(name, getattr(self, name), owner="LMTrainConfig")
        check_positive_int("patience", self.patience, owner="LMTrainConfig", allow_none=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name, low in (("learning_rate", 0.0), ("plateau_factor", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not value > low:
                raise ValueError(f"{name} must be a finite number > {low:g}, got {value!r}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if self.clip_norm is not None and (isinstance(self.clip_norm, bool) or not isinstance(self.clip_norm, (int, float))
                                           or not 0 < self.clip_norm < math.inf):
            raise ValueError(f"clip_norm must be a finite number > 0 or None, got {self.clip_norm!r}")
        if self.optimizer == "sgd" and self.weight_decay:
            raise ValueError("weight_decay is for optimizer 'adamw' (PyTorch's example's SGD has none)")
        if self.schedule == "plateau" and self.warmup_steps:
            raise ValueError("warmup_steps is for the cosine and constant schedules (plateau starts at the full rate)")


# --- the carried state, stream-major --------------------------------------------------------

def to_streams(state: Any) -> Any:
    """The model's state (S, N, H) per array -> (N, S, H): streams first, as batches are."""
    return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), state)


def from_streams(carry: Any) -> Any:
    """The inverse of `to_streams`: (N, S, H) -> the model's (S, N, H)."""
    return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), carry)


def zero_carry(model: LanguageModel, num_streams: int) -> Any:
    """The zero state of `num_streams` streams, stream-major (N, S, H) per array."""
    return to_streams(model.initial_state(num_streams))


# --- evaluation -------------------------------------------------------------------------------

@partial(jax.jit, static_argnames=("model",))
def _segment_loss_sums(model: LanguageModel, params, x, y, carry):
    """(summed cross-entropy of segment x -> y, the carried state after it); x, y (N, T)."""
    logits, state = model.apply({"params": params}, x, from_streams(carry))
    return jnp.sum(token_losses(logits, y)), to_streams(state)


@partial(jax.jit, static_argnames=("model", "bptt"))
def _split_loss_sum(model: LanguageModel, params, streams, bptt: int):
    """The summed loss of every full segment of `streams` (N, L), the state carried through all
    of them in one compiled scan; returns (sum, the state after them)."""
    N, L = streams.shape
    count = (L - 1) // bptt

    def body(carry, index):
        start = index * bptt
        x = jax.lax.dynamic_slice_in_dim(streams, start, bptt, axis=1)
        y = jax.lax.dynamic_slice_in_dim(streams, start + 1, bptt, axis=1)
        total, state = _segment_loss_sums(model, params, x, y, carry)
        return state, total

    state, totals = jax.lax.scan(body, zero_carry(model, N), jnp.arange(count))
    return jnp.sum(totals), state


def evaluate_language_model(model: LanguageModel, params, ids: np.ndarray, *, batch_size: int = 10,
                            bptt: int = 35, name: str = "eval") -> dict[str, float]:
    """Loss (mean cross-entropy per token, nats), perplexity and bits per token of `ids` (L,)
    under `model` with `params`: PyTorch's example's evaluation, the text as `batch_size`
    streams read in segments of `bptt` steps with the state carried over the whole split
    (equal to one forward over each stream), every target counted once.

    Returns: {"loss", "perplexity", "bits_per_token", "tokens"}.
    """
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 1:
        raise ValueError(f"{name} ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= model.vocab_size):
        bad = ids[(ids < 0) | (ids >= model.vocab_size)][0]
        raise ValueError(f"{name} ids: token id {bad} is outside the model's vocabulary [0, {model.vocab_size})")
    if len(ids) // batch_size < 2:
        raise ValueError(f"{name}: {len(ids)} tokens cannot make {batch_size} streams of at least 2 tokens; "
                         "give more text or a smaller batch size")
    streams = jnp.asarray(batchify(ids.astype(np.int32), batch_size))
    N, L = streams.shape
    bptt = min(bptt, L - 1)  # a segment longer than the streams is the whole of them
    total, carry = _split_loss_sum(model, params, streams, bptt)
    done = (L - 1) // bptt * bptt
    if done < L - 1:  # the shorter last segment, as PyTorch's evaluation reads it
        rest, _ = _segment_loss_sums(model, params, streams[:, done:L - 1], streams[:, done + 1:], carry)
        total = total + rest
    tokens = N * (L - 1)
    loss = float(total) / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2),
            "tokens": tokens}


# --- training ---------------------------------------------------------------------------------

def lm_schedule(config: LMTrainConfig, total_steps: int) -> float | optax.Schedule:
    """The rate per update of a run of `total_steps` on the "cosine" or "constant" schedule: a
    linear warm-up over `warmup_steps` from 0, then cosine decay to 0 at the last step, or the
    peak; a float when there is neither warm-up nor decay. (The plateau rate: `plateau_rate`.)"""
    warmup, peak = min(config.warmup_steps, total_steps - 1), config.learning_rate
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total_steps, end_value=0.0)
    if warmup == 0:
        return peak
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup])


def lm_optimizer(config: LMTrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer of a run of `total_steps` updates, `optax.chain(clipping, rule)`: clipping
    by global norm (identity when `clip_norm` is None), then SGD or AdamW, on `lm_schedule`,
    or, on the plateau schedule, with the rate in the optimizer's state (set between epochs
    by `set_learning_rate`)."""
    clip = optax.identity() if config.clip_norm is None else optax.clip_by_global_norm(config.clip_norm)
    rule = optax.sgd if config.optimizer == "sgd" else optax.adamw
    decay = {"weight_decay": config.weight_decay} if config.optimizer == "adamw" else {}
    if config.schedule == "plateau":
        return optax.chain(clip, optax.inject_hyperparams(rule)(learning_rate=config.learning_rate, **decay))
    return optax.chain(clip, rule(lm_schedule(config, total_steps), **decay))


def learning_rate_of(opt_state: Any) -> float:
    """The learning rate a plateau `lm_optimizer` state holds (what its next update uses)."""
    return float(opt_state[1].hyperparams["learning_rate"])


def set_learning_rate(opt_state: Any, rate: float) -> Any:
    """A plateau `lm_optimizer` state with its learning rate set to `rate`."""
    clip, rule = opt_state
    current = rule.hyperparams["learning_rate"]
    return clip, rule._replace(hyperparams={**rule.hyperparams, "learning_rate": jnp.asarray(rate, current.dtype)})


def plateau_rate(config: LMTrainConfig, history: list[dict]) -> float:
    """The plateau schedule's rate after the epochs of `history`: the initial rate divided by
    `plateau_factor` once for every epoch whose validation loss was not below all before it
    (PyTorch's example: `lr /= 4.0` when the validation loss does not improve)."""
    best, rate = math.inf, config.learning_rate
    for record in history:
        if record["val_loss"] < best:
            best = record["val_loss"]
        else:
            rate /= config.plateau_factor
    return rate


class SegmentData(NamedTuple):
    """What the jitted step reads, on the device: streams (N, L) of the training split, the
    carried state (N, S, H) per array, and start: () int, the segment's first step."""

    streams: jax.Array
    carry: Any
    start: jax.Array


def segment_sampler(bptt: int) -> Callable:
    """`sample_batch(key, data) -> (x (N, T), y (N, T), carry, key)`: the segment of T = `bptt`
    steps from `data.start` and its targets, one step later (`make_train_step` splits the
    batch over the devices by stream when the run is data-parallel)."""

    def sample_batch(key, data: SegmentData):
        x = jax.lax.dynamic_slice_in_dim(data.streams, data.start, bptt, axis=1)
        y = jax.lax.dynamic_slice_in_dim(data.streams, data.start + 1, bptt, axis=1)
        return x, y, data.carry, key

    return sample_batch


def lm_training_loss(model: LanguageModel) -> Callable:
    """`loss_fn(params, batch) -> (mean loss per token, the carried state after the segment)`:
    the model's `fast_loss` (its `loss`, the decoder and the loss fused) with its dropouts on
    (rng from the batch's key), entered with the batch's carry."""

    def loss_fn(params, batch):
        x, y, carry, key = batch
        loss, state = model.apply({"params": params}, x, y, from_streams(carry), deterministic=False,
                                  rngs={"dropout": key}, method="fast_loss")
        return loss, to_streams(state)

    return loss_fn


def ids_fingerprint(ids: np.ndarray) -> str:
    """A short hash of a split's ids: a resumed run must see the very same text."""
    array = np.ascontiguousarray(ids, dtype=np.int32)
    return hashlib.sha256(str(array.shape).encode() + array.tobytes()).hexdigest()[:16]


def lm_checkpoint_template(model: LanguageModel, config: LMTrainConfig, total_steps: int) -> Any:
    """Shapes and dtypes of everything a checkpoint of `train_language_model` holds (the
    TrainState and the carried state): what loading one needs, even for its parameters."""
    params = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 2), jnp.int32))["params"]
    carry = jax.eval_shape(lambda: zero_carry(model, config.batch_size))
    return checkpoint_template(params, lm_optimizer(config, total_steps), {"carry": carry})


class LanguageModelResult(NamedTuple):
    """params: the best parameters (by validation loss), on the host; history: one dict per
    epoch (epoch, train_loss, val_loss, val_perplexity, val_bits_per_token, learning_rate,
    seconds, eval_seconds); best_epoch / best_val_loss; checkpoint: the best checkpoint's
    folder (None without a checkpoint folder)."""

    params: Any
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    checkpoint: Path | None


class LanguageModelTask:
    """What the loop runs for a language model (see `jaxseq.train.loop.TrainingTask`): the
    segments of each epoch, the carried state beside the TrainState, the validation loss
    (lower is better), the plateau schedule."""

    kind = "language_model"

    def __init__(self, model: LanguageModel, corpus: TextCorpus, config: LMTrainConfig,
                 metadata: dict[str, Any], placement: Placement):
        self.model, self.corpus, self.config, self.metadata, self.placement = (model, corpus, config, metadata,
                                                                               placement)
        train = np.asarray(corpus.train, np.int32)
        if len(train) // config.batch_size < 2:
            raise ValueError(f"the training text ({len(train)} tokens) is too short for {config.batch_size} streams "
                             "of at least 2 tokens; give more text or a smaller batch size")
        self.streams_host = batchify(train, config.batch_size)
        L = self.streams_host.shape[1]
        self.starts = list(range(0, L - 1, config.bptt))
        self.steps_per_epoch = len(self.starts)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.optimizer, self.schedule = lm_optimizer(config, self.total_steps), lm_schedule(config, self.total_steps)
        init_key, self.step_key = jax.random.split(jax.random.PRNGKey(config.seed))
        self.params = jax.jit(model.init)(init_key, jnp.zeros((1, 2), jnp.int32))["params"]
        self.streams = placement.data(jnp.asarray(self.streams_host))
        self.history: list[dict] = []
        self.extra_state = {"carry": self._zero_carry()}
        # One compiled step per segment length: bptt, and the shorter last segment's, if any.
        self.segment_lengths = [min(config.bptt, L - 1 - start) for start in self.starts]
        self.steps = {T: make_train_step(lm_training_loss(model), self.optimizer, segment_sampler(T),
                                         parallel=placement.parallel, has_aux=True)
                      for T in sorted(set(self.segment_lengths))}
        self.settings = {"model": language_model_config(model), "lm_train_config": dataclasses.asdict(config),
                         "train_data": ids_fingerprint(train), "val_data": ids_fingerprint(corpus.val)}

    def _zero_carry(self):
        return self.placement.data(zero_carry(self.model, self.config.batch_size))

    def initial_state(self):
        return self.placement.state(init_train_state(self.params, self.optimizer, self.step_key))

    def place(self, state):
        return self.placement.state(state)

    def run_settings(self) -> dict[str, Any]:
        return self.settings

    def epoch_step(self, epoch: int):
        rate = plateau_rate(self.config, self.history) if self.config.schedule == "plateau" else None
        pending_rate = [rate is not None]  # set once, at this epoch's first step (resumed or not)

        def step(state, batch: int):
            if batch == 0:  # each epoch starts from the zero state (PyTorch's init_hidden)
                self.extra_state = {"carry": self._zero_carry()}
            if rate is not None and pending_rate[0]:
                host = jax.device_get(state.opt_state)
                state = state._replace(opt_state=self.placement.state(set_learning_rate(host, rate)))
                pending_rate[0] = False
            data = SegmentData(self.streams, self.extra_state["carry"], jnp.int32(self.starts[batch]))
            state, loss, carry = self.steps[self.segment_lengths[batch]](state, data)
            self.extra_state = {"carry": carry}
            return state, loss

        return step

    def interim_record(self, state) -> dict[str, float]:
        """The validation loss, perplexity and bits per token of `state`'s parameters (the
        state carried over the whole split), as the history's entries name them."""
        scores = evaluate_language_model(self.model, state.params, self.corpus.val,
                                         batch_size=self.config.eval_batch_size, bptt=self.config.bptt, name="val")
        return {"val_loss": scores["loss"], "val_perplexity": scores["perplexity"],
                "val_bits_per_token": scores["bits_per_token"]}

    def evaluate(self, state, epoch: int, losses: list[float], seconds: float) -> EpochResult:
        start = time.perf_counter()
        scores = self.interim_record(state)
        train_loss = float(np.average(losses, weights=self.segment_lengths))  # per token, as evaluation
        record = {"epoch": epoch, "train_loss": train_loss, **scores,
                  "learning_rate": self.learning_rate(int(state.step)), "seconds": seconds,
                  "eval_seconds": time.perf_counter() - start}
        self.history.append(record)
        unit = "bpc" if self.corpus.vocab.level == "char" else "bits/token"
        line = lambda improved: (  # noqa: E731
            f"epoch {epoch:3d}/{self.config.epochs}  loss {train_loss:.4f}  val loss {record['val_loss']:.4f}  "
            f"val ppl {record['val_perplexity']:.2f}  val {unit} {record['val_bits_per_token']:.4f}"
            f"{' *' if improved else '  '}  lr {record['learning_rate']:.4g}  {seconds:.1f} s")
        return EpochResult(record["val_loss"], record, line)

    def learning_rate(self, step: int) -> float:
        """The rate of update `step` (1-based): the plateau rate of its epoch, or the schedule's."""
        if self.config.schedule == "plateau":
            return plateau_rate(self.config, self.history[:(step - 1) // self.steps_per_epoch])
        return float(self.schedule(step - 1) if callable(self.schedule) else self.schedule)

    def checkpoint_metadata(self, progress: RunProgress) -> dict[str, Any]:
        """The caller's entries, the last epoch's scores (at an epoch's end), what resuming
        needs, and the text's level."""
        return {**self.metadata, **progress_metadata(progress, self.steps_per_epoch, "best_val_loss"),
                "level": self.corpus.vocab.level}

    def check_resumable(self, meta: dict[str, Any], path: Path) -> None:
        check_run_metadata(meta, path, self.kind)
        missing = [key for key in RESUMABLE_KEYS if key not in meta]
        if missing:
            raise ValueError(f"checkpoint {path}: no resumable training state (metadata lacks {missing})")

    def restored(self, meta: dict[str, Any], path: Path, extra: dict[str, Any]) -> RunProgress:
        """The progress of checkpoint `path`, its carried state and validation history."""
        check_language_model_progress(meta, path, self.steps_per_epoch)
        self.extra_state = {"carry": self.placement.data(extra["carry"])}
        self.history = list(meta["history"])
        return progress_from_metadata(meta, path, "best_val_loss")


def train_language_model(model: LanguageModel, corpus: TextCorpus, config: LMTrainConfig = LMTrainConfig(), *,
                         checkpoint_dir: str | os.PathLike | None = None, metadata: dict[str, Any] | None = None,
                         overwrite: bool = False, resume: bool = False, keep: int = 2,
                         checkpoint_every: int | None = None, progress: bool = True,
                         log: Callable[[str], None] | None = print, devices: int | None = None,
                         log_dir: str | os.PathLike | None = None, log_every: int = DEFAULT_LOG_EVERY,
                         eval_every: int | None = None) -> LanguageModelResult:
    """Train `model` on `corpus.train` with truncated BPTT, select by validation loss.

    Inputs:
      model: a LanguageModel whose vocab_size is len(corpus.vocab); corpus: TextCorpus.
      checkpoint_dir: if given, the whole training state (parameters, optimizer state, step,
        dropout key, the carried state) is saved there atomically after every epoch (and
        every `checkpoint_every` steps) with the metadata, the configs, the data's
        fingerprints and the history; the vocabulary as vocab.json. The last `keep` and the
        best (by validation loss) are kept. Existing checkpoints are an error unless
        `resume` (continue exactly from the latest: same settings and text) or `overwrite`.
      log_dir, log_every, progress, log, devices: as `jaxseq.train.train_classifier`
        (devices: the streams split over that many devices; batch_size must divide by it).
      eval_every: also evaluate on the validation split every this many steps inside an
        epoch, into the run log (val/loss, val/perplexity, val/bits_per_token): for long epochs.
    Returns: LanguageModelResult.
    """
    if model.vocab_size != len(corpus.vocab):
        raise ValueError(f"the model's vocab_size ({model.vocab_size}) is not the corpus vocabulary's size "
                         f"({len(corpus.vocab)})")
    check_positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    task = LanguageModelTask(model, corpus, config, dict(metadata or {}),
                             Placement.create(devices, config.batch_size))
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    settings = LoopSettings(
        num_epochs=config.epochs, steps_per_epoch=task.steps_per_epoch, checkpoint_dir=folder, resume=resume,
        overwrite=overwrite, checkpoint_every=checkpoint_every, keep=keep, higher_is_better=False,
        patience=config.patience, progress=progress, description="lm train", metric_name="validation loss",
        log=log, prepare_folder=vocabulary_file_keeper(corpus.vocab, VOCAB_FILE, task.kind), log_dir=log_dir,
        log_every=log_every, eval_every=eval_every)
    run = TrainingLoop(task, settings).run().progress
    best = run.best_metric if run.best_metric is not None else math.inf
    return LanguageModelResult(run.best_params, run.history, run.best_epoch, best, run.best_path)
