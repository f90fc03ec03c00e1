"""What a checkpoint's `meta.json` must hold for each kind of training run, checked before
anything is built from it.

Three kinds of runs write checkpoints: the image captioner ("captioner": `CaptioningSolver`,
`jaxseq caption train`), the sentence classifier ("classifier": `train_classifier`,
`jaxseq cola train`, `jaxseq classify train`) and the language model ("language_model":
`train_language_model`, `jaxseq lm train`). `read_run_metadata(path, kind)` reads a
checkpoint's metadata, says so in a `RunKindError` when the checkpoint belongs to another
kind, and checks the fields the loaders and resuming use: types, the model's sizes
(bounded by `jaxseq.limits`, so no field can ask for terabytes), dtype names, choices and
cross-field agreement. Every refusal is one ValueError line naming the file and the key.
Fields a loader does not use are not checked (a user's own `metadata` entries included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxseq.data.json_fields import (
    FieldError,
    boolean,
    check_fields,
    choice,
    fields,
    integer,
    list_of,
    mapping,
    nullable,
    number,
    string,
)
from jaxseq.limits import MAX_COUNT, MAX_SEED, MAX_VOCAB_SIZE, MAX_WIDTH
from jaxseq.train.checkpoint import META_FILE, RunKindError, read_metadata
from jaxseq.train.optim import UPDATE_RULES

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
WIDTH = integer(1, MAX_WIDTH)
MAX_LAYERS = 64  # stacked recurrent layers of a classifier
COUNT = integer(0, MAX_COUNT)

KIND_NAMES = {"captioner": "an image-captioning", "classifier": "a sentence-classifier",
              "language_model": "a language-model"}
KIND_WRITERS = {"captioner": "`jaxseq caption train` or CaptioningSolver",
                "classifier": "`jaxseq cola train`, `jaxseq classify train` or train_classifier",
                "language_model": "`jaxseq lm train` or train_language_model"}
KIND_USES = {"captioner": "`jaxseq caption sample` or `jaxseq caption eval`", "classifier": "`jaxseq cola predict`",
             "language_model": "`jaxseq lm generate` or `jaxseq lm eval`"}

CAPTIONER_MODEL = fields(
    required={"vocab_size": integer(1, MAX_VOCAB_SIZE)},
    optional={"wordvec_dim": WIDTH, "hidden_dim": WIDTH, "cell_type": choice("rnn", "lstm"),
              "null_idx": integer(0, MAX_VOCAB_SIZE - 1), "dtype": choice(*FLOAT_DTYPES),
              "param_dtype": choice(*FLOAT_DTYPES)},
    unknown=False,
)
CAPTIONER = fields(
    required={"model": CAPTIONER_MODEL, "feature_dim": WIDTH, "update_rule": choice(*UPDATE_RULES),
              "optim_config": mapping(number(), max_items=16), "lr_decay": number(0, above=True),
              "iterations_per_epoch": integer(1, MAX_COUNT),
              "idx_to_word": list_of(string(), max_items=MAX_VOCAB_SIZE), "epoch": COUNT},
    optional={"clip_norm": nullable(number(0, above=True)), "batch_size": integer(1, MAX_COUNT),
              "seed": integer(0, MAX_SEED), "num_epochs": COUNT,
              "loss_history": list_of(number(finite=False)), "val_loss_history": list_of(number(finite=False))},
)

# The classifier's "model" entry: a transformer's (no "architecture", or "transformer": what
# checkpoints held before the recurrent models) or a recurrent classifier's ("lstm", "gru").
CLASSIFIER_ARCHITECTURES = ("transformer", "lstm", "gru")
CLASSIFIER_MODEL = fields(
    required={"vocab_size": integer(1, MAX_VOCAB_SIZE)},
    optional={"architecture": choice("transformer"), "hidden_dim": WIDTH, "num_heads": WIDTH, "dim_feedforward": WIDTH, "dim_k": WIDTH, "dim_v": WIDTH,
              "dim_q": WIDTH, "max_length": WIDTH, "dropout": number(0, 1, below=True),
              "dtype": nullable(choice(*FLOAT_DTYPES)), "param_dtype": choice(*FLOAT_DTYPES)},
    unknown=False,
)
RECURRENT_CLASSIFIER_MODEL = fields(
    required={"architecture": choice("lstm", "gru"), "vocab_size": integer(1, MAX_VOCAB_SIZE)},
    optional={"cell": choice("lstm", "gru"), "embed_dim": WIDTH, "hidden_size": WIDTH,
              "num_layers": integer(1, MAX_LAYERS), "dropout": number(0, 1, below=True),
              "embed_dropout": number(0, 1, below=True), "word_dropout": number(0, 1, below=True),
              "pooling": choice("max", "final", "max+final"), "max_length": WIDTH,
              "pad_id": integer(0, MAX_VOCAB_SIZE - 1), "unk_id": integer(0, MAX_VOCAB_SIZE - 1),
              "param_dtype": choice(*FLOAT_DTYPES)},
    unknown=False,
)


def classifier_model(value: Any, key: str) -> None:
    """The spec of a classifier's "model" entry: by its "architecture", a transformer's
    (CLASSIFIER_MODEL) or a recurrent classifier's (RECURRENT_CLASSIFIER_MODEL) fields."""
    architecture = value.get("architecture", "transformer") if isinstance(value, dict) else "transformer"
    if isinstance(value, dict) and "architecture" in value:
        choice(*CLASSIFIER_ARCHITECTURES)(architecture, f"{key}.architecture" if key else "architecture")
    (CLASSIFIER_MODEL if architecture == "transformer" else RECURRENT_CLASSIFIER_MODEL)(value, key)


CLASSIFIER_TRAIN_CONFIG = fields(optional={"use_pad_mask": boolean()})
CLASSIFIER = fields(required={"model": classifier_model},
                    optional={"train_config": CLASSIFIER_TRAIN_CONFIG, "steps_per_epoch": integer(1, MAX_COUNT),
                              "epoch": COUNT, "epoch_losses": list_of(number())})
# What resuming a classifier run reads on top (train_classifier writes it after every epoch).
MCC = number(-1, 1)  # a Matthews correlation
CLASSIFIER_PROGRESS = fields(
    required={"epoch": COUNT, "best_epoch": COUNT, "best_step": COUNT, "best_val_mcc": nullable(MCC),
              "history": list_of(fields(required={"epoch": integer(1, MAX_COUNT), "val_mcc": MCC})),
              "train_config": CLASSIFIER_TRAIN_CONFIG},
    optional={"epoch_losses": list_of(number())},
)

# A language model's "model" entry (jaxseq.models.language_model_config) and training config
# (jaxseq.train.LMTrainConfig, whose own checks run when the loader rebuilds it).
RATE = number(0, 1, below=True)
LANGUAGE_MODEL_MODEL = fields(
    required={"vocab_size": integer(1, MAX_VOCAB_SIZE)},
    optional={"cell": choice("lstm", "gru", "rnn"), "embed_size": WIDTH, "hidden_size": WIDTH,
              "num_layers": integer(1, MAX_LAYERS), "tie_weights": boolean(), "input_dropout": RATE,
              "hidden_dropout": RATE, "output_dropout": RATE, "locked_dropout": boolean(),
              "embedding_dropout": RATE, "weight_drop": RATE, "param_dtype": choice(*FLOAT_DTYPES)},
    unknown=False,
)
LM_TRAIN_CONFIG = fields(
    required={"batch_size": integer(1, MAX_COUNT), "bptt": integer(1, MAX_COUNT), "epochs": integer(1, MAX_COUNT)},
    optional={"optimizer": choice("sgd", "adamw"), "schedule": choice("plateau", "cosine", "constant"),
              "learning_rate": number(0, above=True), "weight_decay": number(0), "plateau_factor": number(1, above=True),
              "warmup_steps": COUNT, "clip_norm": nullable(number(0, above=True)),
              "patience": nullable(integer(1, MAX_COUNT)), "eval_batch_size": integer(1, MAX_COUNT),
              "seed": integer(0, MAX_SEED)},
)
LANGUAGE_MODEL = fields(required={"model": LANGUAGE_MODEL_MODEL, "lm_train_config": LM_TRAIN_CONFIG,
                                  "steps_per_epoch": integer(1, MAX_COUNT)},
                        optional={"level": choice("char", "word"), "epoch": COUNT, "epoch_losses": list_of(number())})
LANGUAGE_MODEL_PROGRESS = fields(
    required={"epoch": COUNT, "best_epoch": COUNT, "best_step": COUNT, "best_val_loss": nullable(number()),
              "history": list_of(fields(required={"epoch": integer(1, MAX_COUNT), "val_loss": number()}))},
    optional={"epoch_losses": list_of(number())},
)

SPECS = {"captioner": CAPTIONER, "classifier": CLASSIFIER, "language_model": LANGUAGE_MODEL}


def run_kind(meta: dict[str, Any]) -> str | None:
    """"language_model", "classifier", "captioner" or None (none of them), by the keys only
    each kind writes (a language model's first: it writes train_data and val_data too)."""
    if "lm_train_config" in meta:
        return "language_model"
    if any(key in meta for key in ("train_config", "train_data", "val_data")):
        return "classifier"
    if any(key in meta for key in ("feature_dim", "idx_to_word", "update_rule", "iterations_per_epoch")):
        return "captioner"
    return None


def _check_captioner(meta: dict[str, Any]) -> None:
    """The fields of a captioner's metadata agree with each other (FieldError if not)."""
    vocab_size, words = meta["model"]["vocab_size"], len(meta["idx_to_word"])
    if words != vocab_size:
        raise FieldError("idx_to_word", f"has {words} words but model.vocab_size is {vocab_size}")
    if meta["model"].get("null_idx", 0) >= vocab_size:
        raise FieldError("model.null_idx", f"must be below model.vocab_size ({vocab_size}), "
                                           f"got {meta['model']['null_idx']}")
    step, epoch, per_epoch = meta["step"], meta["epoch"], meta["iterations_per_epoch"]
    if not epoch * per_epoch <= step < (epoch + 1) * per_epoch:
        raise FieldError("step", f"{step} does not follow epoch {epoch} of {per_epoch} iterations")
    if "loss_history" in meta and len(meta["loss_history"]) != step:
        raise FieldError("loss_history", f"holds {len(meta['loss_history'])} losses, one per step of {step} expected")
    if len(meta.get("val_loss_history", ())) > epoch:
        raise FieldError("val_loss_history", f"holds more losses than the {epoch} epochs done")


def check_state_step(state_step: Any, meta: dict[str, Any], path: str | Path) -> None:
    """ValueError unless the step saved in checkpoint `path`'s arrays is the one its metadata
    says (what resuming continues from)."""
    if int(state_step) != meta["step"]:
        raise ValueError(f"checkpoint {path}: its state is at step {int(state_step)} but meta.json says "
                         f"step {meta['step']}")


def check_run_kind(meta: dict[str, Any], path: str | Path, kind: str) -> None:
    """RunKindError if checkpoint `path` (its metadata `meta`) belongs to the other kind of run."""
    found = run_kind(meta)
    if found is not None and found != kind:
        raise RunKindError(f"checkpoint {path} is not {KIND_NAMES[kind]} checkpoint: it holds "
                           f"{KIND_NAMES[found]} run (written by {KIND_WRITERS[found]}); use it with {KIND_USES[found]}")


def check_run_metadata(meta: dict[str, Any], path: str | Path, kind: str) -> None:
    """RunKindError if `meta`, the metadata of checkpoint `path`, is of the other kind of run;
    ValueError naming meta.json and the key for a field of the wrong type or range."""
    check_run_kind(meta, path, kind)
    source = f"checkpoint {Path(path) / META_FILE}"
    check_fields(meta, SPECS[kind], source)
    if kind == "captioner":
        try:
            _check_captioner(meta)
        except FieldError as error:
            raise ValueError(f"{source}: {error}") from None


def read_run_metadata(path: str | Path, kind: str) -> dict[str, Any]:
    """The metadata of checkpoint folder `path`, checked as a checkpoint of `kind`
    ("captioner" or "classifier"; see `check_run_metadata`)."""
    meta = read_metadata(path)
    check_run_metadata(meta, path, kind)
    return meta


def check_classifier_progress(meta: dict[str, Any], path: str | Path, steps_per_epoch: int) -> None:
    """ValueError naming meta.json unless the resumable fields of a classifier checkpoint
    (CLASSIFIER_PROGRESS) have their types and agree with each other and with
    `steps_per_epoch`, the run's steps per epoch."""
    _check_progress(meta, path, steps_per_epoch, CLASSIFIER_PROGRESS, "best_val_mcc")


def check_language_model_progress(meta: dict[str, Any], path: str | Path, steps_per_epoch: int) -> None:
    """`check_classifier_progress` for a language model's checkpoint (LANGUAGE_MODEL_PROGRESS,
    best_val_loss)."""
    _check_progress(meta, path, steps_per_epoch, LANGUAGE_MODEL_PROGRESS, "best_val_loss")


def _check_progress(meta: dict[str, Any], path: str | Path, steps_per_epoch: int, spec, best_key: str) -> None:
    """The resumable fields of a checkpoint (`spec`; the best metric under `best_key`) have
    their types and agree with each other and with `steps_per_epoch`."""
    source = f"checkpoint {Path(path) / META_FILE}"
    check_fields(meta, spec, source)
    epoch, best_epoch, partial = meta["epoch"], meta["best_epoch"], len(meta.get("epoch_losses", ()))
    if len(meta["history"]) != epoch:
        raise ValueError(f"{source}: epoch is {epoch} but history holds {len(meta['history'])} records")
    if best_epoch > epoch:
        raise ValueError(f"{source}: best_epoch {best_epoch} is after epoch {epoch}")
    if best_epoch > 0 and meta[best_key] is None:
        raise ValueError(f"{source}: {best_key} is null although best_epoch is {best_epoch}")
    recorded_key = best_key.removeprefix("best_")  # the epoch record's name of the best metric
    if best_epoch > 0 and meta[best_key] != meta["history"][best_epoch - 1][recorded_key]:
        recorded = meta["history"][best_epoch - 1][recorded_key]
        raise ValueError(f"{source}: {best_key} {meta[best_key]!r} is not the {recorded_key} of best_epoch "
                         f"{best_epoch} in history ({recorded!r})")
    if meta["best_step"] != best_epoch * steps_per_epoch:
        raise ValueError(f"{source}: best_step {meta['best_step']} is not the end of best_epoch {best_epoch} "
                         f"({steps_per_epoch} steps per epoch)")
    if partial >= steps_per_epoch or meta["step"] != epoch * steps_per_epoch + partial:
        raise ValueError(f"{source}: step {meta['step']} is not {epoch} epochs of {steps_per_epoch} steps and the "
                         f"{partial} losses of epoch_losses")
