"""A trained captioner: rebuilt from its checkpoint, with the data it was trained on; its
captions decoded greedily or by beam search and scored with the course's BLEU-1, or with
the COCO caption evaluation (one caption per image against all of the image's references).

    model, params, meta = load_captioning_checkpoint("checkpoints/caption-lstm-builtin")
    model, variables, data = load_captioner_and_data("checkpoints/caption-lstm-builtin")
    references, hypotheses = generate_captions(model, variables, data, "val", rows=[0, 1])
    bleu = evaluate_captions(model, variables, data, "val", decode="beam", beam_size=5)
    coco = evaluate_coco_metrics(model, variables, data, "val", decode="beam", beam_size=5)
    coco["scores"]["CIDEr"], coco["images"], coco["skipped"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.data.caption_sources import caption_features_source, caption_source_spec, load_caption_source
from jaxseq.data.json_fields import check_fields
from jaxseq.data.json_fields import fields as field_spec
from jaxseq.metrics import bleu1, coco_caption_scores, require_coco_eval
from jaxseq.train.captioning import build_optimizer
from jaxseq.train.checkpoint import load_checkpoint, load_run_checkpoint, notice_on_stderr
from jaxseq.train.run_metadata import read_run_metadata
from jaxseq.train.steps import checkpoint_template

def _load_one(path: Path, extra_fields=None) -> tuple[Any, Any, dict[str, Any]]:
    """(model, params, metadata) of one checkpoint folder; ValueError naming the file and
    the entry for anything that does not check out (`extra_fields`: a further spec the
    metadata must meet)."""
    from jaxseq.models.captioning import CaptioningRNN

    meta = read_run_metadata(path, "captioner")
    if extra_fields is not None:
        check_fields(meta, extra_fields, f"checkpoint {path / 'meta.json'}")
    try:  # sizes and settings that do not fit together
        model = CaptioningRNN.from_config(meta["model"])
        optimizer = build_optimizer(meta["update_rule"], meta["optim_config"], meta["lr_decay"],
                                    meta["iterations_per_epoch"], meta.get("clip_norm"))
    except ValueError as error:
        raise ValueError(f"checkpoint {path / 'meta.json'}: {error}") from None

    features = jax.ShapeDtypeStruct((1, meta["feature_dim"]), model.param_dtype)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), features, jax.ShapeDtypeStruct((1, 1), jnp.int32))
    state, meta = load_checkpoint(path, checkpoint_template(params["params"], optimizer))
    return model, jax.device_put(state.params), meta


def load_captioning_checkpoint(path: str | Path, *, fields=None,
                               log=notice_on_stderr) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild the model and its parameters from a checkpoint written by `CaptioningSolver`.

    Inputs: path, a checkpoint folder (`ckpt-<step>`) or a run folder holding them (which
      one: see `jaxseq.inference`; one that cannot be used is skipped, saying on `log`
      (default: stderr) which and why).
      fields: a `jaxseq.data.json_fields` spec the metadata must also meet (the entries a
        caller added through `CaptioningSolver(metadata=...)`).
    Returns: (model: CaptioningRNN, params, metadata) — metadata holds `idx_to_word`,
      `epoch`, the loss histories and the run settings.
    Raises: FileNotFoundError without a checkpoint; ValueError naming the file and entry
      for anything that does not check out (`jaxseq.train.run_metadata`, dtypes, shapes,
      finite values); RunKindError for a classifier's checkpoint.
    """
    path = Path(path)
    load = lambda checkpoint: _load_one(checkpoint, fields)  # noqa: E731
    loaded = load_run_checkpoint(path, load, log=log) if path.exists() else None
    if loaded is None:
        raise FileNotFoundError(f"no captioning checkpoint found at {path}")
    return loaded


def load_captioner_and_data(path: str | Path, data_dir: Path | None = None, *, argument: str = "data_dir"):
    """(model, variables, data) of a `jaxseq caption train` run: the checkpoint (as
    `load_captioning_checkpoint`) and the data its `data` entry names (`data_dir`: where
    the COCO files are now, if they moved; `argument`: how the caller's user gives it, named
    when they are not found). ValueError when the entry is missing, does not check out, or
    the data's vocabulary or feature width is not the one the model was trained with."""
    model, params, meta = load_captioning_checkpoint(path, fields=field_spec(optional={"data": caption_source_spec}))
    if "data" not in meta:
        raise ValueError(f"checkpoint {path}: no 'data' entry in its metadata; it was not written by "
                         "`jaxseq caption train`")
    try:
        data = load_caption_source(meta["data"], data_dir, argument=argument)
    except ValueError as error:
        raise ValueError(f"the data of checkpoint {path} cannot be loaded: {error}") from None
    if data["idx_to_word"] != meta["idx_to_word"]:
        raise ValueError(f"the data's vocabulary differs from the one checkpoint {path} was trained with")
    width = data["train_features"].shape[1]  # the same in both splits (check_captioning_data)
    if width != meta["feature_dim"]:
        raise ValueError(f"{caption_features_source(meta['data'], data_dir)}: features of width {width}, but "
                         f"checkpoint {path} was trained on features of width {meta['feature_dim']}")
    return model, {"params": params}, data


DECODERS = ("greedy", "beam")
DECODE_BATCH = 500  # images per decoding call: bounds the memory of a whole split's decoding


def generate_captions(model, variables, data, split: str = "val", rows=None, decode: str = "greedy", *,
                      beam_size: int = 5, max_length: int | None = None,
                      progress: bool = True) -> tuple[list[str], list[str]]:
    """Decode captions for chosen rows of a split; returns (references, hypotheses) as text.

    Inputs: a captioning model and its variables; data in the captioning data layout
      (`jaxseq.data.coco`); rows: caption indices of the split (default: all); decode
      "greedy" (`jaxseq.models.sample`) or "beam" (`jaxseq.models.beam_search`);
      max_length: words to generate at most (default: the data's T, `<END>` included).
      progress: a progress bar over the images when there are more than DECODE_BATCH
        (decoded DECODE_BATCH at a time, the last batch padded: one compilation), shown on
        a terminal only (`jaxseq.progress`).
    Returns: two lists of strings in the course's decoded form (`<START> ... <END>` for
      the references, `... <END>` for the hypotheses).
    """
    from jaxseq.data.coco import decode_caption_rows
    from jaxseq.models.decoding import beam_search, sample

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
    captions = np.asarray(data[f"{split}_captions"])
    rows = np.arange(captions.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError(f"no captions to decode in the {split} split")
    features = np.asarray(data[f"{split}_features"])[np.asarray(data[f"{split}_image_idxs"])[rows]]
    length = max_length if max_length is not None else captions.shape[1] - 1

    def decoded(batch):
        if decode == "greedy":
            return np.asarray(sample(model, variables, batch, max_length=length))
        return np.asarray(beam_search(model, variables, batch, beam_size=beam_size, max_length=length)[0])

    if len(features) <= DECODE_BATCH:
        generated = decoded(features)
    else:
        from jaxseq.progress import progress_bar

        parts = []
        with progress_bar(len(features), description=f"decoding ({decode})", enabled=progress, unit="image") as bar:
            for start in range(0, len(features), DECODE_BATCH):
                batch = features[start:start + DECODE_BATCH]
                padded = np.concatenate([batch, np.repeat(batch[-1:], DECODE_BATCH - len(batch), 0)])
                parts.append(decoded(padded)[:len(batch)])
                bar.update(len(batch))
        generated = np.concatenate(parts)
    idx_to_word = data["idx_to_word"]
    return decode_caption_rows(captions[rows], idx_to_word), decode_caption_rows(np.asarray(generated), idx_to_word)


def evaluate_captions(model, variables, data, split: str = "val", num_samples: int = 1000,
                      decode: str = "greedy", *, beam_size: int = 5, max_length: int | None = None,
                      seed: int = 0, progress: bool = True) -> float:
    """Mean BLEU-1 of generated captions against the ground truth, as the course scored it.

    Uses `num_samples` captions of the split: all of them when the split is that small,
    else a random subset drawn with `seed` (without replacement; the course drew with
    replacement). Each image is decoded (`decode` "greedy" or "beam" with `beam_size`) and
    scored with `bleu1` against the caption it was drawn with; `progress`: a bar while a
    large split decodes (`generate_captions`).

    Returns: float in [0, 1].
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    size = np.asarray(data[f"{split}_captions"]).shape[0] if f"{split}_captions" in data else 0
    if size == 0:
        raise ValueError(f"the {split} split has no captions to evaluate")
    rows = None if num_samples >= size else np.sort(
        np.random.default_rng(seed).choice(size, num_samples, replace=False))
    references, hypotheses = generate_captions(model, variables, data, split, rows, decode,
                                               beam_size=beam_size, max_length=max_length, progress=progress)
    return float(np.mean([bleu1(ref, hyp) for ref, hyp in zip(references, hypotheses)]))


def evaluate_coco_metrics(model, variables, data, split: str = "val", decode: str = "greedy", *,
                          beam_size: int = 5, max_images: int | None = 1000, max_length: int | None = None,
                          seed: int = 0, java: bool | None = None) -> dict[str, Any]:
    """The COCO caption evaluation of a split: one caption per image, against all of its references.

    The split's caption rows are grouped by image (`data[f"{split}_image_idxs"]`); each of
    `max_images` images (all of them when the split has that few or `max_images` is None,
    else a random subset drawn with `seed`, without replacement) is decoded once (`decode`
    "greedy" or "beam" with `beam_size`) and scored with `jaxseq.metrics.coco_caption_scores`
    against every caption of the image (markers dropped, tokenized in Python). CIDEr-D's
    document frequencies come from the references of the images scored, so a subset's
    CIDEr is not the whole split's.

    Returns: `{"scores": {"BLEU-1".."BLEU-4", "ROUGE-L", "CIDEr"[, "METEOR"][, "SPICE"]: float},
      "skipped": {metric: why it was left out}, "images": int, "references": int,
      "split", "decode", "beam_size" (None for greedy)}`.
    Raises: ValueError for an empty split or bad arguments; MissingPackageError
      (`jaxseq.metrics`) without pycocoevalcap.
    """
    require_coco_eval()  # before any decoding
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    size = np.asarray(data[f"{split}_captions"]).shape[0] if f"{split}_captions" in data else 0
    if size == 0:
        raise ValueError(f"the {split} split has no captions to evaluate")
    image_of_row = np.asarray(data[f"{split}_image_idxs"])
    images, first_rows = np.unique(image_of_row, return_index=True)
    if max_images is not None and max_images < images.size:
        chosen = np.sort(np.random.default_rng(seed).choice(images.size, max_images, replace=False))
        images, first_rows = images[chosen], first_rows[chosen]
    # one decode per image (through its first caption row), then every caption row of it
    _, generated = generate_captions(model, variables, data, split, first_rows, decode, beam_size=beam_size,
                                     max_length=max_length)
    rows_of: dict[Hashable, list[int]] = {int(image): [] for image in images}
    for row in np.flatnonzero(np.isin(image_of_row, images)):
        rows_of[int(image_of_row[row])].append(int(row))
    from jaxseq.data.coco import decode_caption_rows

    captions = np.asarray(data[f"{split}_captions"])
    references: dict[Hashable, list[str]] = {image: decode_caption_rows(captions[rows], data["idx_to_word"])
                                              for image, rows in rows_of.items()}
    hypotheses: dict[Hashable, str] = {int(image): caption for image, caption in zip(images, generated)}
    scores = coco_caption_scores(references, hypotheses, java=java)
    return {"scores": dict(scores), "skipped": scores.skipped, "images": int(images.size),
            "references": sum(len(rows) for rows in rows_of.values()), "split": split, "decode": decode,
            "beam_size": beam_size if decode == "beam" else None}
