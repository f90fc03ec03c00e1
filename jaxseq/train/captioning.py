"""`CaptioningSolver`: the course's captioning trainer on optax and one jitted step.

    solver = CaptioningSolver(model, data, update_rule="adam",
                              optim_config={"learning_rate": 5e-3}, lr_decay=0.95,
                              num_epochs=50, batch_size=25, verbose=False)
    solver.train()
    solver.loss_history, solver.params

`data` is in the captioning data layout (`jaxseq.data.coco`); it is validated, and every
caption id is checked against the model's vocabulary, before anything reaches `jit` (JAX
would clamp a bad id silently). The training split then lives on the device; each step
draws its batch there (uniformly with replacement, as the course's
`sample_coco_minibatch`), runs forward, loss, the hand-written backward passes and the
optax update in one compiled call. An epoch is `max(N_train // batch_size, 1)` steps and
the learning rate is multiplied by `lr_decay` after each. After every epoch the loss on a
fixed subset of up to 1,000 val captions is recorded.

With `checkpoint_dir`, the whole train state (parameters, optimizer state, step, random
key) is saved atomically after every epoch, with the model's config and the vocabulary in
the metadata (so `jaxseq caption sample/eval --checkpoint` can rebuild the model). A
solver pointed at a folder that already holds checkpoints of the same run resumes from the
latest one and continues to `num_epochs`, drawing the same batches as an uninterrupted run.
SIGTERM or Ctrl-C during `train()` (with a checkpoint folder) checkpoints the state after
the current step, in the middle of an epoch if need be, and raises `TrainingInterrupted`.
A NaN or infinite loss stops training with `NonFiniteLossError` naming the step; the last
good checkpoint stays in place.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.data.coco import check_captioning_data
from jaxseq.data.json_fields import check_fields
from jaxseq.train.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    load_run_checkpoint,
    notice_on_stderr,
    save_checkpoint,
)
from jaxseq.train.interrupt import TrainingInterrupted, stop_on_signals
from jaxseq.train.optim import make_optimizer
from jaxseq.train.parallel import DataParallel
from jaxseq.train.progress import progress_bar
from jaxseq.train.run_metadata import check_state_step, read_run_metadata
from jaxseq.train.steps import (
    NonFiniteLossError,
    init_train_state,
    losses_to_host,
    make_train_step,
    random_rows,
)

# The course's default learning rate per update rule.
DEFAULT_LEARNING_RATE = {"sgd": 1e-2, "sgd_momentum": 1e-2, "rmsprop": 1e-2, "adam": 1e-3, "adamw": 1e-3}
VAL_LOSS_CAPTIONS = 1000


def check_caption_ids(data: dict[str, Any], vocab_size: int) -> None:
    """ValueError naming the split and the position of the first caption id outside [0, V)."""
    for split in ("train", "val"):
        captions = data[f"{split}_captions"]
        bad = (captions < 0) | (captions >= vocab_size)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"{split}_captions: token id {captions[row, col]} at row {row}, position {col} is "
                f"outside the model's vocabulary [0, {vocab_size})"
            )


def build_optimizer(update_rule: str, optim_config: dict[str, float], lr_decay: float,
                    iterations_per_epoch: int, clip_norm: float | None):
    """The solver's optax optimizer; `optim_config` holds learning_rate and the rule's keys."""
    config = dict(optim_config)
    learning_rate = config.pop("learning_rate", DEFAULT_LEARNING_RATE.get(update_rule, 1e-3))
    return make_optimizer(update_rule, learning_rate, lr_decay=lr_decay, steps_per_epoch=iterations_per_epoch,
                          clip_norm=clip_norm, **config)


def caption_batch(key: jax.Array, split: dict[str, jax.Array], batch_size: int) -> tuple[jax.Array, jax.Array]:
    """A random batch from a split on the device: (features (B, D), captions (B, T+1))."""
    rows = random_rows(key, split["captions"].shape[0], batch_size)
    return split["features"][split["image_idxs"][rows]], split["captions"][rows]


class CaptioningSolver:
    """Trains a `CaptioningRNN` on captioning data.

    Inputs (the course's knobs):
      update_rule: "sgd", "sgd_momentum", "adam", "adamw" or "rmsprop".
      optim_config: {"learning_rate": ..., plus the rule's keys (beta1, beta2, epsilon,
        momentum, decay_rate)}.
      lr_decay: learning-rate factor applied after every epoch.
      num_epochs, batch_size, print_every (iterations between loss lines; 0: only a line
        per epoch), verbose (progress bar and loss lines), seed (initialization and batches),
      checkpoint_dir (None: no checkpoints), clip_norm (global gradient-norm clipping),
      checkpoint_every: also checkpoint every this many steps inside an epoch (None: only
        at epoch ends), so a hard kill loses at most that many steps,
      metadata: extra JSON-able entries for the checkpoints (e.g. where the data came from).
      devices: data parallelism over this many devices (None: one device, no mesh); the
        batch is split over them, parameters and optimizer state are replicated, and
        batch_size must divide by the device count.
    Attributes after `train()`: params, loss_history (one float per step), val_loss_history
      (one per epoch), epoch, steps_per_second (compilation excluded).
    """

    def __init__(
        self,
        model,
        data: dict[str, Any],
        *,
        update_rule: str = "adam",
        optim_config: dict[str, float] | None = None,
        lr_decay: float = 1.0,
        num_epochs: int = 10,
        batch_size: int = 100,
        print_every: int = 10,
        verbose: bool = True,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        clip_norm: float | None = None,
        metadata: dict[str, Any] | None = None,
        devices: int | None = None,
        checkpoint_every: int | None = None,
    ):
        for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size),
                            ("checkpoint_every", 1 if checkpoint_every is None else checkpoint_every)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(print_every, int) or print_every < 0:
            raise ValueError(f"print_every must be an int >= 0, got {print_every!r}")
        data = check_captioning_data(data)
        check_caption_ids(data, model.vocab_size)

        self.model = model
        self.data = data
        self.update_rule = update_rule
        self.optim_config = dict(optim_config or {})
        self.lr_decay = lr_decay
        self.num_epochs = num_epochs
        self.batch_size = batch_size
        self.print_every = print_every
        self.verbose = verbose
        self.seed = seed
        self.clip_norm = clip_norm
        self.checkpoint_every = checkpoint_every
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.metadata = dict(metadata or {})
        self.parallel = DataParallel.create(devices) if devices is not None else None
        if self.parallel is not None:
            self.parallel.check_batch_size(batch_size)

        num_train = data["train_captions"].shape[0]
        self.iterations_per_epoch = max(num_train // batch_size, 1)
        self.optimizer = build_optimizer(update_rule, self.optim_config, lr_decay, self.iterations_per_epoch,
                                         clip_norm)

        self._train = self._to_device("train")
        self._val = self._val_subset()
        init_key, batch_key = jax.random.split(jax.random.PRNGKey(seed))
        features, captions = self._train["features"][:1], self._train["captions"][:1]
        params = model.init(init_key, features, captions[:, :-1])["params"]
        self.state = self._place(init_train_state(params, self.optimizer, batch_key))

        def loss_fn(params, batch):
            features, captions = batch
            return model.apply({"params": params}, features, captions, method="loss")

        self._step = make_train_step(loss_fn, self.optimizer,
                                     lambda key, split: caption_batch(key, split, batch_size),
                                     parallel=self.parallel)
        self._loss = jax.jit(lambda params, features, captions: loss_fn(params, (features, captions)))
        self.epoch = 0
        self.loss_history: list[float] = []
        self.val_loss_history: list[float] = []
        self.steps_per_second: float | None = None

    @property
    def params(self) -> Any:
        return self.state.params

    def _place(self, state):
        """The train state on the device, or replicated over the mesh."""
        return self.parallel.replicate(state) if self.parallel is not None else jax.device_put(state)

    def _to_device(self, split: str) -> dict[str, jax.Array]:
        arrays = {
            "features": np.asarray(self.data[f"{split}_features"]),
            "captions": np.asarray(self.data[f"{split}_captions"]),
            "image_idxs": np.asarray(self.data[f"{split}_image_idxs"]),
        }
        return self.parallel.put_data(arrays) if self.parallel is not None else jax.device_put(arrays)

    def _val_subset(self) -> tuple[jax.Array, jax.Array] | None:
        captions = self.data["val_captions"]
        if captions.shape[0] == 0:
            return None
        rows = np.random.default_rng(self.seed).permutation(captions.shape[0])[:VAL_LOSS_CAPTIONS]
        subset = (self.data["val_features"][self.data["val_image_idxs"][rows]], captions[rows])
        return self.parallel.put_data(subset) if self.parallel is not None else jax.device_put(subset)

    def run_config(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run that wrote the checkpoint."""
        return {"model": self.model.config(), "update_rule": self.update_rule,
                "optim_config": self.optim_config, "lr_decay": self.lr_decay,
                "batch_size": self.batch_size, "seed": self.seed, "clip_norm": self.clip_norm,
                "iterations_per_epoch": self.iterations_per_epoch,
                "feature_dim": int(self.data["train_features"].shape[1])}

    def _checkpoint_metadata(self) -> dict[str, Any]:
        return {**self.metadata, **self.run_config(), "idx_to_word": self.data["idx_to_word"],
                "epoch": self.epoch, "num_epochs": self.num_epochs, "loss_history": self.loss_history,
                "val_loss_history": self.val_loss_history}

    def _resume(self) -> Path | None:
        path = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        if path is None:
            return None
        meta = read_run_metadata(path, "captioner")
        wanted = self.run_config()
        differ = sorted(key for key in wanted if meta.get(key) != wanted[key])
        if differ:
            raise ValueError(
                f"checkpoint {path} is from a different run (settings {differ} differ); "
                f"give a new checkpoint_dir or the same settings to resume"
            )
        if meta.get("idx_to_word") != self.data["idx_to_word"]:
            raise ValueError(f"checkpoint {path} was trained with a different vocabulary")
        state, meta = load_checkpoint(path, self.state)
        check_state_step(state.step, meta, path)
        self.state = self._place(state)
        self.epoch = int(meta["epoch"])
        self.loss_history = list(meta.get("loss_history", []))
        self.val_loss_history = list(meta.get("val_loss_history", []))
        return path

    def _log(self, bar, message: str) -> None:
        if self.verbose:
            bar.write(message)

    def train(self) -> "CaptioningSolver":
        """Run the remaining epochs (all of them, unless resuming). Returns self.

        With a checkpoint folder, SIGTERM or Ctrl-C stops training after the current step
        (in a multi-process run: within 10 steps, the same step in every process) with a
        checkpoint of it: `TrainingInterrupted` says where; a new
        solver on the same folder continues from there.
        """
        resumed = self._resume()
        last_good = resumed
        total = self.num_epochs * self.iterations_per_epoch
        step = int(self.state.step)  # the resumed checkpoint may be in the middle of an epoch
        compiled, timed_steps, timed_seconds = False, 0, 0.0
        writes = self.checkpoint_dir is not None
        with progress_bar(total, initial=step, description="caption train", enabled=self.verbose) as bar, \
                stop_on_signals(enabled=writes) as stop:
            if resumed is not None:
                self._log(bar, f"resuming from {resumed} (epoch {self.epoch} of {self.num_epochs}, step {step})")
            for epoch in range(self.epoch + 1, self.num_epochs + 1):
                pending: list[jax.Array] = []
                start, epoch_steps = time.perf_counter(), 0
                for it in range(step - (epoch - 1) * self.iterations_per_epoch, self.iterations_per_epoch):
                    self.state, loss = self._step(self.state, self._train)
                    pending.append(loss)
                    step += 1
                    bar.update(1)
                    if not compiled:  # the first call compiles: keep it out of the timing
                        jax.block_until_ready(loss)
                        compiled, start = True, time.perf_counter()
                    else:
                        epoch_steps += 1
                    report = self.print_every > 0 and step % self.print_every == 0
                    mid_epoch = it < self.iterations_per_epoch - 1  # the epoch's end saves anyway
                    stopping = stop.poll(step) if writes else None  # the same answer in every process
                    save_now = writes and mid_epoch and (
                        stopping or (self.checkpoint_every and step % self.checkpoint_every == 0))
                    if report or not mid_epoch or save_now:
                        self._flush(pending, step - len(pending) + 1, last_good)
                        pending = []
                        bar.set_postfix(epoch=epoch, loss=f"{self.loss_history[-1]:.4f}")
                        if report:
                            self._log(bar, f"(Iteration {step} / {total}) loss: {self.loss_history[-1]:f}")
                    if save_now:
                        last_good = self._save(step)
                        if stopping:
                            raise TrainingInterrupted(stopping, step, last_good)
                timed_steps += epoch_steps
                timed_seconds += time.perf_counter() - start  # the flush above synchronized
                self.epoch = epoch
                self._end_of_epoch(bar)
                if writes:
                    last_good = self._save(step, self.val_loss_history[-1] if self._val is not None else None)
                    stopping = stop.poll(step, force=True)  # a signal during the epoch's evaluation or save
                    if stopping:
                        raise TrainingInterrupted(stopping, step, last_good)
        if timed_steps and timed_seconds > 0:
            self.steps_per_second = timed_steps / timed_seconds
        return self

    def _save(self, step: int, val_loss: float | None = None) -> Path:
        """Checkpoint the state after `step` (val_loss: None in the middle of an epoch); only
        process 0 writes. Returns the checkpoint's folder (on every process)."""
        if jax.process_index() != 0:
            return checkpoint_path(self.checkpoint_dir, step)
        return save_checkpoint(self.checkpoint_dir, step, self.state, metadata=self._checkpoint_metadata(),
                               metric=val_loss, higher_is_better=False)

    def _flush(self, pending: list[jax.Array], first_step: int, last_good: Path | None) -> None:
        try:
            self.loss_history.extend(losses_to_host(pending, first_step))
        except NonFiniteLossError as error:
            kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written"
            raise NonFiniteLossError(
                f"{error}; stopped ({kept}); try a lower learning rate or gradient clipping (clip_norm)"
            ) from None

    def _end_of_epoch(self, bar) -> None:
        message = f"(Epoch {self.epoch} / {self.num_epochs}) train loss: {self.loss_history[-1]:f}"
        if self._val is not None:
            self.val_loss_history.append(float(self._loss(self.state.params, *self._val)))
            message += f"  val loss: {self.val_loss_history[-1]:f}"
        self._log(bar, message)


def _load_captioner_checkpoint(path: Path, fields=None) -> tuple[Any, Any, dict[str, Any]]:
    """(model, params, metadata) of one checkpoint folder; ValueError naming the file and
    the entry for anything that does not check out (`fields`: a further spec the metadata
    must meet)."""
    from jaxseq.models.captioning import CaptioningRNN

    meta = read_run_metadata(path, "captioner")
    if fields is not None:
        check_fields(meta, fields, f"checkpoint {path / 'meta.json'}")
    try:  # sizes and settings that do not fit together
        model = CaptioningRNN.from_config(meta["model"])
        optimizer = build_optimizer(meta["update_rule"], meta["optim_config"], meta["lr_decay"],
                                    meta["iterations_per_epoch"], meta.get("clip_norm"))
    except ValueError as error:
        raise ValueError(f"checkpoint {path / 'meta.json'}: {error}") from None

    def template():
        features = jnp.zeros((1, meta["feature_dim"]), model.param_dtype)
        params = model.init(jax.random.PRNGKey(0), features, jnp.zeros((1, 1), jnp.int32))["params"]
        return init_train_state(params, optimizer, 0)

    state, meta = load_checkpoint(path, jax.eval_shape(template))
    return model, jax.device_put(state.params), meta


def load_captioning_checkpoint(path: str | Path, *, fields=None,
                               log=notice_on_stderr) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild the model and its parameters from a checkpoint written by `CaptioningSolver`.

    Inputs: path, a checkpoint folder (`ckpt-<step>`) or a run folder holding them (its
      latest checkpoint is used; if that one cannot be used, a corrupt or invalid file, the
      one before, saying on `log` (default: stderr) which was skipped and why).
      fields: a `jaxseq.data.json_fields` spec the metadata must also meet (the entries a
        caller added through `CaptioningSolver(metadata=...)`).
    Returns: (model: CaptioningRNN, params, metadata) — metadata holds `idx_to_word`,
      `epoch`, the loss histories and the run settings.
    Raises: FileNotFoundError without a checkpoint; ValueError naming the file and entry
      for anything that does not check out (`jaxseq.train.run_metadata`, dtypes, shapes,
      finite values); RunKindError for a classifier's checkpoint.
    """
    path = Path(path)
    load = lambda checkpoint: _load_captioner_checkpoint(checkpoint, fields)  # noqa: E731
    loaded = load_run_checkpoint(path, load, prefer="latest", log=log) if path.exists() else None
    if loaded is None:
        raise FileNotFoundError(f"no captioning checkpoint found at {path}")
    return loaded
