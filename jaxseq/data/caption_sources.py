"""Where a captioning run's data came from: the `data` entry `jaxseq caption train` writes into
its checkpoints, so `caption sample` / `caption eval` rebuild the very same data.

    {"source": "builtin", "options": {load_scene_captions' keywords}}   generated scenes
    {"source": "coco", "base_dir": ..., "max_train": ..., "seed": ...}     the course's files

`load_caption_source(spec)` checks a spec (it comes from a file: every entry is typed and
bounded by `jaxseq.limits`, so no entry can ask for more data than allowed) and loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxseq.data.json_fields import FieldError, check_fields, choice, fields, integer, nullable, number, string
from jaxseq.limits import MAX_BUILTIN_FEATURE_VALUES, MAX_SEED, MAX_TRAIN_CAPTIONS, MAX_WIDTH

BUILTIN_DEFAULTS = {"num_train": 4000, "num_val": 500, "feature_dim": 128}  # load_scene_captions' defaults


def builtin_source(**options: Any) -> dict[str, Any]:
    """The spec of the built-in scenes with `load_scene_captions` keywords `options`."""
    return {"source": "builtin", "options": dict(options)}


def coco_source(base_dir: Path, max_train: int | None, seed: int) -> dict[str, Any]:
    """The spec of the course's COCO files in `base_dir` (at most `max_train` training captions)."""
    return {"source": "coco", "base_dir": str(Path(base_dir).resolve()), "max_train": max_train, "seed": seed}


def caption_source_spec(spec: Any, key: str) -> None:
    """A `jaxseq.data.json_fields` spec of the `data` entry (FieldError naming the key)."""
    source = {"source": choice("builtin", "coco")}
    fields(required=source)(spec, key)
    if spec["source"] == "coco":
        fields(source, {"base_dir": nullable(string()), "max_train": nullable(integer(1, MAX_TRAIN_CAPTIONS)),
                        "seed": integer(0, MAX_SEED)}, unknown=False)(spec, key)
        return
    options = fields(optional={"num_train": integer(1, MAX_TRAIN_CAPTIONS), "num_val": integer(0, MAX_TRAIN_CAPTIONS),
                               "feature_dim": integer(1, MAX_WIDTH), "noise": number(0), "single_fraction": number(0, 1),
                               "seed": integer(0, MAX_SEED)}, unknown=False)
    fields(source, {"options": options}, unknown=False)(spec, key)
    chosen = {**BUILTIN_DEFAULTS, **spec.get("options", {})}
    values = (chosen["num_train"] + chosen["num_val"]) * chosen["feature_dim"]
    if values > MAX_BUILTIN_FEATURE_VALUES:
        raise FieldError(f"{key}.options" if key else "options",
                         f"asks for {values} feature values ((num_train + num_val) x feature_dim), more than "
                         f"the {MAX_BUILTIN_FEATURE_VALUES} allowed")


def caption_features_source(spec: dict[str, Any], data_dir: Path | None = None) -> str:
    """Where the training features of a checked `spec` come from, for messages: the COCO
    feature file and key (in `data_dir` if given), or the built-in scenes."""
    if spec["source"] == "builtin":
        return "the built-in scenes' train_features"
    from jaxseq.data.coco import default_coco_dir, feature_file_name

    base_dir = data_dir if data_dir is not None else spec.get("base_dir")
    base = Path(base_dir) if base_dir is not None else default_coco_dir()
    name = feature_file_name("train", pca_features=True)
    return f"{name if base is None else base / name}:features"  # base None: no COCO folder found


def load_caption_source(spec: dict[str, Any], data_dir: Path | None = None, *,
                        argument: str = "data_dir") -> dict[str, Any]:
    """The captioning data of `spec` (checked first: a ValueError naming the key for a wrong
    type, an unknown option or a size beyond the limits); `data_dir` replaces a COCO spec's
    base_dir (the files moved since training). `argument`: how the caller's user gives
    `data_dir` ("--data-dir" on the command line), named when the COCO files are not found."""
    check_fields(spec, caption_source_spec, "captioning data", "data")
    if spec["source"] == "builtin":
        from jaxseq.data.synthetic_captions import load_scene_captions

        return load_scene_captions(**spec.get("options", {}))
    from jaxseq.data.coco import load_coco_data

    base_dir = data_dir if data_dir is not None else spec.get("base_dir")
    return load_coco_data(base_dir, max_train=spec.get("max_train"), seed=spec.get("seed", 0), argument=argument)
