"""Small COCO captioning files in the course's exact format, written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from jaxseq.data.coco import SPECIAL_TOKENS

WORDS = list(SPECIAL_TOKENS) + ["a", "dog", "cat", "on", "mat"]
NUM_IMAGES = {"train": 6, "val": 4}
NUM_CAPTIONS = {"train": 9, "val": 5}


def course_arrays(seed=0, pca_dim=8, full_dim=16):
    """Arrays exactly as the course's files hold them (int32 captions, float32 features)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "val"):
        captions = np.zeros((NUM_CAPTIONS[split], 7), np.int32)
        for row in range(NUM_CAPTIONS[split]):
            words = rng.integers(4, len(WORDS), size=rng.integers(1, 6))
            captions[row, : len(words) + 2] = [1, *words, 2]
        arrays[f"{split}_captions"] = captions
        arrays[f"{split}_image_idxs"] = rng.integers(0, NUM_IMAGES[split], NUM_CAPTIONS[split]).astype(np.int32)
        arrays[f"{split}_features_pca"] = rng.standard_normal((NUM_IMAGES[split], pca_dim)).astype(np.float32)
        arrays[f"{split}_features_full"] = rng.standard_normal((NUM_IMAGES[split], full_dim)).astype(np.float32)
    return arrays


def write_course_files(base: Path, arrays=None, vocab=None, urls=None) -> Path:
    arrays = arrays or course_arrays()
    base.mkdir(parents=True, exist_ok=True)
    with h5py.File(base / "coco2014_captions.h5", "w") as f:
        for split in ("train", "val"):
            for name in ("captions", "image_idxs"):
                f.create_dataset(f"{split}_{name}", data=arrays[f"{split}_{name}"])
    for split in ("train", "val"):
        for suffix, key in (("_pca", "pca"), ("", "full")):
            with h5py.File(base / f"{split}2014_vgg16_fc7{suffix}.h5", "w") as f:
                f.create_dataset("features", data=arrays[f"{split}_features_{key}"])
        lines = urls[split] if urls else [f"http://images.cocodataset.org/{split}2014/{i}.jpg"
                                          for i in range(NUM_IMAGES[split])]
        (base / f"{split}2014_urls.txt").write_text("\n".join(lines) + "\n")
    vocab = vocab if vocab is not None else {"idx_to_word": WORDS, "word_to_idx": {w: i for i, w in enumerate(WORDS)}}
    (base / "coco2014_vocab.json").write_text(json.dumps(vocab))
    return base
