"""`CaptioningSolver`: the course's captioning trainer, run by the one training loop.

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
latest one and continues to `num_epochs`, drawing the same batches as an uninterrupted run
(`resume=False` makes existing checkpoints an error, `overwrite=True` replaces them).
With a log folder (`log_dir`, by default `<checkpoint_dir>/logs`), the loop writes
TensorBoard event files and metrics.jsonl (`jaxseq.train.run_log`): the train loss, the
learning rate and steps/s every `log_every` steps, the val loss after every epoch.
SIGTERM or Ctrl-C during `train()` (with a checkpoint folder) checkpoints the state after
the current step, in the middle of an epoch if need be, and raises `TrainingInterrupted`.
A NaN or infinite loss stops training with `NonFiniteLossError` naming the step; the last
good checkpoint stays in place. The loop itself is `jaxseq.train.loop`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxseq.checks import check_positive_int
from jaxseq.data.coco import check_captioning_data
from jaxseq.data.vocabulary import check_token_ids
from jaxseq.train.loop import EpochResult, LoopSettings, RunProgress, TrainingLoop
from jaxseq.train.optim import make_optimizer
from jaxseq.train.parallel import Placement
from jaxseq.train.run_log import DEFAULT_LOG_EVERY, resolve_log_dir
from jaxseq.train.run_metadata import check_run_metadata
from jaxseq.train.steps import init_train_state, make_train_step, random_rows

# The course's default learning rate per update rule.
DEFAULT_LEARNING_RATE = {"sgd": 1e-2, "sgd_momentum": 1e-2, "rmsprop": 1e-2, "adam": 1e-3, "adamw": 1e-3}
VAL_LOSS_CAPTIONS = 1000
KEEP_CHECKPOINTS = 3


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


def _check_counts(num_epochs, batch_size, print_every, checkpoint_every, log_every) -> None:
    for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size), ("log_every", log_every)):
        check_positive_int(name, value)
    check_positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    if not isinstance(print_every, int) or print_every < 0:
        raise ValueError(f"print_every must be an int >= 0, got {print_every!r}")


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
      resume (default True: continue a run found in checkpoint_dir; False: such a run is an
        error) and overwrite (replace it), checked when `train()` opens the folder.
      log_dir: TensorBoard event files and metrics.jsonl go there (None: `<checkpoint_dir>/logs`,
        or none without a checkpoint folder); checked here. log_every: steps between loss points.
    Attributes after `train()`: params, loss_history (one float per step), val_loss_history
      (one per epoch), epoch, steps_per_second (compilation excluded).
    """

    kind = "captioner"
    extra_state: dict[str, Any] = {}

    def __init__(self, model, data: dict[str, Any], *, update_rule: str = "adam",
                 optim_config: dict[str, float] | None = None, lr_decay: float = 1.0, num_epochs: int = 10,
                 batch_size: int = 100, print_every: int = 10, verbose: bool = True, seed: int = 0,
                 checkpoint_dir: str | Path | None = None, clip_norm: float | None = None,
                 metadata: dict[str, Any] | None = None, devices: int | None = None,
                 checkpoint_every: int | None = None, resume: bool = True, overwrite: bool = False,
                 log_dir: str | Path | None = None, log_every: int = DEFAULT_LOG_EVERY):
        _check_counts(num_epochs, batch_size, print_every, checkpoint_every, log_every)
        self.data = data = check_captioning_data(data)
        for split in ("train", "val"):
            check_token_ids(data[f"{split}_captions"], model.vocab_size, f"{split}_captions")
        self.model, self.update_rule, self.optim_config = model, update_rule, dict(optim_config or {})
        self.lr_decay, self.num_epochs, self.batch_size, self.seed = lr_decay, num_epochs, batch_size, seed
        self.print_every, self.verbose, self.clip_norm = print_every, verbose, clip_norm
        self.checkpoint_every, self.resume, self.overwrite = checkpoint_every, resume, overwrite
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.log_dir, self.log_every = resolve_log_dir(log_dir, checkpoint_dir), log_every
        self.metadata = dict(metadata or {})
        self.placement = Placement.create(devices, batch_size)
        self.parallel = self.placement.parallel
        self.iterations_per_epoch = max(data["train_captions"].shape[0] // batch_size, 1)
        self._learning_rate = self.optim_config.get("learning_rate", DEFAULT_LEARNING_RATE.get(update_rule, 1e-3))
        self.optimizer = build_optimizer(update_rule, self.optim_config, lr_decay, self.iterations_per_epoch,
                                         clip_norm)
        self._train, self._val = self._to_device("train"), self._val_subset()
        init_key, self._batch_key = jax.random.split(jax.random.PRNGKey(seed))
        features, captions = self._train["features"][:1], self._train["captions"][:1]
        self._init_params = model.init(init_key, features, captions[:, :-1])["params"]
        self.state = self.initial_state()
        self._compile_steps()
        self.epoch = 0
        self.steps_per_second: float | None = None
        self.loss_history: list[float] = []
        self.val_loss_history: list[float] = []

    def _compile_steps(self) -> None:
        model, batch_size = self.model, self.batch_size

        def loss_fn(params, batch):
            features, captions = batch
            return model.apply({"params": params}, features, captions, method="loss")

        self._step = make_train_step(loss_fn, self.optimizer, lambda key, split: caption_batch(key, split, batch_size),
                                     parallel=self.parallel)
        self._loss = jax.jit(lambda params, features, captions: loss_fn(params, (features, captions)))

    @property
    def params(self) -> Any:
        return self.state.params

    def _to_device(self, split: str) -> dict[str, jax.Array]:
        return self.placement.data({name: np.asarray(self.data[f"{split}_{name}"])
                                    for name in ("features", "captions", "image_idxs")})

    def _val_subset(self) -> tuple[jax.Array, jax.Array] | None:
        captions = self.data["val_captions"]
        if captions.shape[0] == 0:
            return None
        rows = np.random.default_rng(self.seed).permutation(captions.shape[0])[:VAL_LOSS_CAPTIONS]
        return self.placement.data((self.data["val_features"][self.data["val_image_idxs"][rows]], captions[rows]))

    def run_config(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run that wrote the checkpoint."""
        return {"model": self.model.config(), "update_rule": self.update_rule,
                "optim_config": self.optim_config, "lr_decay": self.lr_decay,
                "batch_size": self.batch_size, "seed": self.seed, "clip_norm": self.clip_norm,
                "iterations_per_epoch": self.iterations_per_epoch,
                "feature_dim": int(self.data["train_features"].shape[1])}

    def train(self) -> "CaptioningSolver":
        """Run the remaining epochs (all of them, unless resuming). Returns self.

        With a checkpoint folder, SIGTERM or Ctrl-C stops training after the current step
        (in a multi-process run: within 10 steps, the same step in every process) with a
        checkpoint of it: `TrainingInterrupted` says where; a new solver on the same folder
        continues from there.
        """
        settings = LoopSettings(
            num_epochs=self.num_epochs, steps_per_epoch=self.iterations_per_epoch, checkpoint_dir=self.checkpoint_dir,
            resume=self.resume, overwrite=self.overwrite, checkpoint_every=self.checkpoint_every,
            keep=KEEP_CHECKPOINTS, higher_is_better=False, print_every=self.print_every, progress=self.verbose,
            description="caption train", metric_name="validation loss", log=print if self.verbose else None,
            log_dir=self.log_dir, log_every=self.log_every)
        result = TrainingLoop(self, settings).run()
        self.state, self.steps_per_second = result.state, result.steps_per_second
        self.epoch = result.progress.epochs_done
        return self

    # --- the loop's TrainingTask --------------------------------------------------------

    def initial_state(self):
        return self.placement.state(init_train_state(self._init_params, self.optimizer, self._batch_key))

    def place(self, state):
        return self.placement.state(state)

    def run_settings(self) -> dict[str, Any]:
        return {**self.run_config(), "idx_to_word": self.data["idx_to_word"]}

    def epoch_step(self, epoch: int):
        return lambda state, batch: self._step(state, self._train)

    def evaluate(self, state, epoch: int, losses: list[float], seconds: float) -> EpochResult:
        """The epoch's losses onto loss_history, the val loss onto val_loss_history."""
        self.loss_history.extend(losses)
        message = f"(Epoch {epoch} / {self.num_epochs}) train loss: {self.loss_history[-1]:f}"
        val_loss = None
        if self._val is not None:
            val_loss = float(self._loss(state.params, *self._val))
            self.val_loss_history.append(val_loss)
            message += f"  val loss: {val_loss:f}"
        record = {"epoch": epoch, "train_loss": self.loss_history[-1], "val_loss": val_loss}
        return EpochResult(val_loss, record, lambda improved: message)

    def learning_rate(self, step: int) -> float:
        """The rate of update `step` (1-based): multiplied by lr_decay after every epoch."""
        return float(self._learning_rate * self.lr_decay ** ((step - 1) // self.iterations_per_epoch))

    def checkpoint_metadata(self, progress: RunProgress) -> dict[str, Any]:
        return {**self.metadata, "epoch": progress.epochs_done, "num_epochs": self.num_epochs,
                "loss_history": self.loss_history + progress.epoch_losses,
                "val_loss_history": self.val_loss_history}

    def check_resumable(self, meta: dict[str, Any], path: Path) -> None:
        check_run_metadata(meta, path, self.kind)

    def restored(self, meta: dict[str, Any], path: Path, extra: dict[str, Any]) -> RunProgress:
        done = int(meta["epoch"]) * self.iterations_per_epoch
        history = list(meta.get("loss_history", []))
        self.loss_history, self.val_loss_history = history[:done], list(meta.get("val_loss_history", []))
        return RunProgress(epochs_done=int(meta["epoch"]), epoch_losses=history[done:])


def train_captioner(*, cell: str, data: dict[str, Any], data_spec: dict[str, Any], epochs: int,
                    batch_size: int = 100, lr: float = 5e-3, lr_decay: float = 0.95, update_rule: str = "adam",
                    clip_norm: float | None = None, hidden_dim: int = 128, wordvec_dim: int = 128,
                    checkpoint_dir: Path | None = None, seed: int = 0, verbose: bool = True,
                    devices: int | None = None, checkpoint_every: int | None = None, resume: bool = True,
                    overwrite: bool = False, log_dir: Path | None = None,
                    log_every: int = DEFAULT_LOG_EVERY) -> CaptioningSolver:
    """Build a `CaptioningRNN` (`cell` "rnn" or "lstm", sizes W, H) for `data` and train it with
    the `CaptioningSolver` (print_every 0: a line per epoch). `data_spec` (see
    `jaxseq.data.caption_sources`) goes into the checkpoints, so the run's data can be
    rebuilt. `log_dir`, `log_every`: the run log (None: `<checkpoint_dir>/logs`). Every option is checked
    before the checkpoint folder is touched. Returns the trained solver."""
    from jaxseq.models.captioning import CaptioningRNN

    model = CaptioningRNN(vocab_size=len(data["idx_to_word"]), wordvec_dim=wordvec_dim, hidden_dim=hidden_dim,
                          cell_type=cell)
    solver = CaptioningSolver(model, data, update_rule=update_rule, optim_config={"learning_rate": lr},
                              lr_decay=lr_decay, num_epochs=epochs, batch_size=batch_size, print_every=0,
                              verbose=verbose, seed=seed, checkpoint_dir=checkpoint_dir, clip_norm=clip_norm,
                              metadata={"data": data_spec}, devices=devices, checkpoint_every=checkpoint_every,
                              resume=resume, overwrite=overwrite, log_dir=log_dir,
                              log_every=log_every)
    return solver.train()
