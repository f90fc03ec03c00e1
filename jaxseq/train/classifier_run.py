"""What a classifier training run carries from epoch to epoch and across a restart.

`RunProgress` holds the per-epoch history, the best epoch so far (by validation MCC) and its
parameters, and the losses of an epoch stopped half way. A checkpoint of a run is the train
state plus the shuffling key (arrays, `state.msgpack`) and `RunProgress.metadata()` with the
run's settings (`meta.json`); `restore_run` reads one back after checking it belongs to the
same model, settings and data, so `train_classifier(..., resume=True)` continues exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxseq.data.sentences import ClassificationData
from jaxseq.models.classifiers import SentenceClassifier, classifier_config
from jaxseq.train.checkpoint import checkpoint_path, load_checkpoint, read_metadata, save_checkpoint
from jaxseq.train.run_metadata import check_classifier_progress, check_run_kind, check_run_metadata, check_state_step
from jaxseq.train.steps import TrainState

RESUMABLE_KEYS = ("epoch", "history", "best_epoch", "best_val_mcc", "best_step")


def data_fingerprint(data: ClassificationData) -> str:
    """A short hash of ids and labels: a resumed run must see the very same examples."""
    digest = hashlib.sha256()
    for array in (data.ids, data.labels):
        array = np.ascontiguousarray(array, dtype=np.int32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def run_settings(model: SentenceClassifier, config: Any,
                 train: ClassificationData, val: ClassificationData) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote the checkpoint (JSON-able);
    `config` is the ClassifierTrainConfig."""
    return {"model": classifier_config(model), "train_config": dataclasses.asdict(config),
            "train_data": data_fingerprint(train), "val_data": data_fingerprint(val)}


def check_resumable(path: Path, meta: dict[str, Any], settings: dict[str, Any], steps_per_epoch: int) -> None:
    """ValueError naming the settings that differ between checkpoint `path` and this run, or
    saying it holds no resumable state, or which of its fields is of the wrong type or does
    not fit `steps_per_epoch` (see `jaxseq.train.run_metadata`); RunKindError if it is a
    captioner's checkpoint."""
    check_run_kind(meta, path, "classifier")
    missing = [key for key in RESUMABLE_KEYS if key not in meta]
    if missing:
        raise ValueError(f"checkpoint {path}: no resumable training state (metadata lacks {missing}); "
                         "it was not written by train_classifier after every epoch")
    check_run_metadata(meta, path, "classifier")
    differ = sorted(key for key in settings if meta.get(key) != settings[key])
    if "train_config" in differ:
        saved = meta.get("train_config", {})
        differ += [f"train_config.{key}" for key in settings["train_config"]
                   if saved.get(key) != settings["train_config"][key]]
    if differ:
        raise ValueError(
            f"checkpoint {path} is from a different run ({', '.join(differ)} differ); resume with the "
            "same model, settings and data, or start afresh in a new folder"
        )
    check_classifier_progress(meta, path, steps_per_epoch)


@dataclass
class RunProgress:
    """history: one record per finished epoch; best_epoch (0: none yet), best_val_mcc,
    best_params (on the host) and best_path (its checkpoint, if any); epoch_losses: the
    losses of the steps of an epoch stopped half way (empty at epoch boundaries)."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_mcc: float = -math.inf
    best_params: Any = None
    best_path: Path | None = None
    epoch_losses: list[float] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def finish_epoch(self, record: dict, params: Any, path: Path | None) -> bool:
        """Append the epoch's `record`; if its val_mcc beats the best, keep `params` (copied to
        the host) and `path`, where this epoch's checkpoint goes. Returns whether it did."""
        self.history.append(record)
        self.epoch_losses = []
        if not record["val_mcc"] > self.best_val_mcc:
            return False
        self.best_epoch, self.best_val_mcc = record["epoch"], record["val_mcc"]
        self.best_params, self.best_path = jax.device_get(params), path
        return True

    def metadata(self, steps_per_epoch: int) -> dict[str, Any]:
        """The JSON entries a checkpoint needs to resume from this point (see RESUMABLE_KEYS)."""
        return {"epoch": self.epochs_done, "epoch_losses": list(self.epoch_losses), "history": self.history,
                "best_epoch": self.best_epoch,
                "best_val_mcc": self.best_val_mcc if self.best_epoch > 0 else None,
                "best_step": self.best_epoch * steps_per_epoch}


def save_run(checkpoint_dir: Path, state: TrainState, shuffle_key: jax.Array, metadata: dict[str, Any],
             metric: float | None, keep: int) -> Path:
    """Checkpoint `state` and the shuffling key as step `state.step` (see `save_checkpoint`)."""
    return save_checkpoint(checkpoint_dir, int(state.step), {**state._asdict(), "shuffle_key": shuffle_key},
                           metadata=metadata, metric=metric, keep=keep)


def restore_run(path: Path, state: TrainState, shuffle_key: jax.Array, settings: dict[str, Any],
                steps_per_epoch: int) -> tuple[TrainState, jax.Array, RunProgress]:
    """(train state, shuffling key, progress) of checkpoint `path`, read into the structure of
    a fresh `state` and `shuffle_key`; the best epoch's parameters come from its checkpoint
    beside `path`. ValueError if `path` is from another run or its files do not check out
    (see `check_resumable` and `load_checkpoint`)."""
    check_resumable(path, read_metadata(path), settings, steps_per_epoch)
    saved, meta = load_checkpoint(path, {**state._asdict(), "shuffle_key": shuffle_key})
    check_state_step(saved["step"], meta, path)
    shuffle_key = saved.pop("shuffle_key")
    state = TrainState(**saved)
    progress = RunProgress(history=list(meta["history"]), best_epoch=int(meta["best_epoch"]),
                           epoch_losses=list(meta.get("epoch_losses", [])))
    if progress.best_epoch > 0:  # else: stopped inside the first epoch, nothing scored yet
        progress.best_val_mcc = float(meta["best_val_mcc"])
        progress.best_path = checkpoint_path(path.parent, int(meta["best_step"]))
        progress.best_params = load_checkpoint(progress.best_path, {"params": state.params})[0]["params"]
    return state, shuffle_key, progress
