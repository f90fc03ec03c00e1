"""The built-in scene-captioning set and the COCO-shaped random set."""

from __future__ import annotations

import numpy as np
import pytest

from jaxseq.data.coco import check_captioning_data, decode_captions
from jaxseq.data.synthetic_captions import (
    COLOURS,
    COUNTS,
    RELATIONS,
    SHAPES,
    SIZES,
    describe_scene,
    load_scene_captions,
    random_captioning_data,
    scene_vocabulary,
)


@pytest.fixture(scope="module")
def scenes():
    return load_scene_captions(num_train=600, num_val=150, seed=4)


def _texts(data, split):
    return [" ".join(c.split()[1:-1]) for c in decode_captions(data[f"{split}_captions"], data["idx_to_word"])]


def test_same_layout_as_coco(scenes):
    checked = check_captioning_data(scenes)
    assert set(checked) == set(scenes)
    assert scenes["train_captions"].shape == (600, 12) and scenes["val_captions"].shape == (150, 12)
    assert scenes["train_features"].shape == (600, 128) and scenes["train_features"].dtype == np.float32
    assert scenes["train_urls"][0] == "builtin://scenes/train/0"
    assert scenes["idx_to_word"] == scene_vocabulary()
    assert scenes["idx_to_word"][:4] == ["<NULL>", "<START>", "<END>", "<UNK>"]


def test_captions_describe_scenes_in_words(scenes):
    for text in _texts(scenes, "train")[:50]:
        words = text.split()
        assert words[0] in COUNTS and words[1] in SIZES and words[2] in COLOURS
        plural = words[0] != "a"
        assert words[3] == next(s for s in SHAPES if words[3].startswith(s)) + ("s" if plural else "")
    assert describe_scene((1, 1, 0, 1, 2, 0, 0, 2, 0)) == "two large red squares above a small blue circle"
    assert describe_scene((0, 0, 3, 3, len(RELATIONS), 0, 0, 0, 0)) == "a small yellow star"
    rows = scenes["train_captions"]
    assert (rows[:, 0] == 1).all() and ((rows == 2).sum(1) == 1).all()


def test_train_and_val_hold_different_scenes(scenes):
    # The caption names every attribute of the scene, so equal scenes have equal captions.
    train, val = set(_texts(scenes, "train")), set(_texts(scenes, "val"))
    assert len(train) == 600 and len(val) == 150
    assert not train & val


def test_seeded_and_reproducible():
    a, b = load_scene_captions(50, 10, seed=1), load_scene_captions(50, 10, seed=1)
    c = load_scene_captions(50, 10, seed=2)
    np.testing.assert_array_equal(a["train_features"], b["train_features"])
    np.testing.assert_array_equal(a["val_captions"], b["val_captions"])
    assert not np.array_equal(a["train_captions"], c["train_captions"])


def test_features_carry_the_scene():
    """Same scene, independent noise: closer than different scenes (the projection is fixed)."""
    data = load_scene_captions(2000, 0, seed=0, noise=0.3)
    texts = _texts(data, "train")
    features = data["train_features"]
    words = [set(t.split()) for t in texts]
    near = [np.linalg.norm(features[i] - features[j]) for i in range(50) for j in range(i + 1, 200)
            if len(words[i] ^ words[j]) <= 1]
    far = [np.linalg.norm(features[i] - features[j]) for i in range(50) for j in range(i + 1, 200)
           if len(words[i] ^ words[j]) >= 6]
    assert near and far and np.mean(near) < np.mean(far)


def test_scene_arguments_are_checked():
    with pytest.raises(ValueError, match="num_train"):
        load_scene_captions(0, 1)
    with pytest.raises(ValueError, match="noise"):
        load_scene_captions(10, 1, noise=-1)
    with pytest.raises(ValueError, match="distinct scenes"):
        load_scene_captions(10**6, 0)


def test_random_data_has_coco_shapes():
    data = random_captioning_data(40, 10, seed=0)
    check_captioning_data(data)
    assert data["train_features"].shape == (40, 512) and data["train_captions"].shape == (40, 17)
    assert len(data["idx_to_word"]) == 1004 and data["val_captions"].shape == (10, 17)
    lengths = (data["train_captions"] != 0).sum(1) - 2
    assert lengths.min() >= 8 and lengths.max() <= 15
    assert (data["train_captions"][:, 0] == 1).all()
    assert (data["train_captions"][np.arange(40), lengths + 1] == 2).all()
    np.testing.assert_array_equal(random_captioning_data(40, 10, seed=0)["train_captions"], data["train_captions"])
    with pytest.raises(ValueError, match="min_words"):
        random_captioning_data(5, min_words=16)
