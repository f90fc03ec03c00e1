"""COCO captioning loader: the course's file format, minibatches, decoding, and every error."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from tests.coco_files import NUM_IMAGES, WORDS, course_arrays, write_course_files

from jaxseq.data.coco import (
    check_captioning_data,
    decode_captions,
    default_coco_dir,
    load_coco_data,
    sample_coco_minibatch,
)

@pytest.fixture
def coco_dir(tmp_path) -> Path:
    return write_course_files(tmp_path / "coco_captioning")


def test_loads_the_course_files(coco_dir):
    arrays = course_arrays()
    data = load_coco_data(coco_dir)
    assert set(data) == {"train_captions", "train_image_idxs", "val_captions", "val_image_idxs", "train_features",
                         "val_features", "idx_to_word", "word_to_idx", "train_urls", "val_urls"}
    for split in ("train", "val"):
        np.testing.assert_array_equal(data[f"{split}_captions"], arrays[f"{split}_captions"])
        np.testing.assert_array_equal(data[f"{split}_image_idxs"], arrays[f"{split}_image_idxs"])
        np.testing.assert_array_equal(data[f"{split}_features"], arrays[f"{split}_features_pca"])
        assert data[f"{split}_captions"].dtype == np.int32 and data[f"{split}_features"].dtype == np.float32
        assert data[f"{split}_urls"].shape == (NUM_IMAGES[split],)
        assert data[f"{split}_urls"][0].endswith("/0.jpg")
    assert data["idx_to_word"] == WORDS and data["word_to_idx"]["dog"] == 5
    full = load_coco_data(coco_dir, pca_features=False)
    np.testing.assert_array_equal(full["train_features"], arrays["train_features_full"])


def test_max_train_is_a_seeded_subset(coco_dir):
    data = load_coco_data(coco_dir)
    small = load_coco_data(coco_dir, max_train=4, seed=1)
    assert small["train_captions"].shape == (4, 7)
    rows = [int(np.flatnonzero((data["train_captions"] == row).all(1) &
                               (data["train_image_idxs"] == idx))[0])
            for row, idx in zip(small["train_captions"], small["train_image_idxs"])]
    assert len(set(rows)) == 4  # without replacement
    again = load_coco_data(coco_dir, max_train=4, seed=1)
    np.testing.assert_array_equal(again["train_captions"], small["train_captions"])
    np.testing.assert_array_equal(small["val_captions"], data["val_captions"])


def test_default_folder_follows_jaxseq_data(coco_dir, monkeypatch):
    monkeypatch.setenv("JAXSEQ_DATA", str(coco_dir.parent))
    assert default_coco_dir() == coco_dir
    assert load_coco_data()["train_captions"].shape == (9, 7)
    monkeypatch.delenv("JAXSEQ_DATA")
    assert default_coco_dir() == Path.home() / ".cache" / "jaxseq" / "coco_captioning"


@pytest.mark.parametrize("name", ["coco2014_captions.h5", "train2014_vgg16_fc7_pca.h5", "val2014_vgg16_fc7_pca.h5",
                                  "coco2014_vocab.json", "train2014_urls.txt", "val2014_urls.txt"])
def test_missing_file_is_named(coco_dir, name):
    (coco_dir / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{name}.*jaxseq data download coco"):
        load_coco_data(coco_dir)


def _rewrite_h5(path: Path, key: str, value) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        if value is not None:
            f.create_dataset(key, data=value)


@pytest.mark.parametrize("key", ["train_captions", "train_image_idxs", "val_captions", "val_image_idxs"])
def test_missing_caption_key_is_named(coco_dir, key):
    _rewrite_h5(coco_dir / "coco2014_captions.h5", key, None)
    with pytest.raises(ValueError, match=f"coco2014_captions.h5: missing key '{key}'"):
        load_coco_data(coco_dir)


def test_missing_features_key_is_named(coco_dir):
    _rewrite_h5(coco_dir / "val2014_vgg16_fc7_pca.h5", "features", None)
    with pytest.raises(ValueError, match="val2014_vgg16_fc7_pca.h5: missing key 'features'"):
        load_coco_data(coco_dir)


@pytest.mark.parametrize("key, value, message", [
    ("train_captions", np.ones((9, 7), np.float32), r"coco2014_captions.h5:train_captions: expected an integer array"),
    ("val_captions", np.ones(5, np.int32), r"coco2014_captions.h5:val_captions: expected 2 dimensions"),
    ("train_image_idxs", np.zeros((9, 1), np.int32), r"train_image_idxs: expected 1 dimensions"),
    ("val_image_idxs", np.zeros(4, np.int32), r"val_image_idxs: 4 image indices for 5 captions"),
    ("train_captions", np.full((9, 7), 9, np.int32), r"train_captions: token id 9 is outside \[0, 9\)"),
    ("val_captions", np.full((5, 7), -1, np.int32), r"val_captions: token id -1 is outside"),
    ("train_image_idxs", np.full(9, 6, np.int32), r"train_image_idxs: image index 6 is outside \[0, 6\)"),
])
def test_bad_caption_arrays_are_named(coco_dir, key, value, message):
    _rewrite_h5(coco_dir / "coco2014_captions.h5", key, value)
    with pytest.raises(ValueError, match=message):
        load_coco_data(coco_dir)


@pytest.mark.parametrize("value, message", [
    (np.ones((4, 8), np.int32), "expected a floating-point array, got dtype int32"),
    (np.ones((4, 8, 1), np.float32), r"expected shape \(num_images, D\)"),
    (np.ones((4, 5), np.float32), "feature size 5 differs from train's 8"),
    (np.full((4, 8), np.nan, np.float32), "holds NaN or infinite values"),
])
def test_bad_features_are_named(coco_dir, value, message):
    _rewrite_h5(coco_dir / "val2014_vgg16_fc7_pca.h5", "features", value)
    with pytest.raises(ValueError, match=f"val2014_vgg16_fc7_pca.h5:features: {message}"):
        load_coco_data(coco_dir)


def test_feature_table_too_small_for_the_image_indices(tmp_path):
    arrays = course_arrays()
    arrays["train_image_idxs"][3] = 5
    arrays["train_features_pca"] = arrays["train_features_pca"][:5]
    write_course_files(tmp_path, arrays, urls={"train": [str(i) for i in range(5)], "val": list("abcd")})
    with pytest.raises(ValueError, match=r"train_image_idxs: image index 5 is outside \[0, 5\)"):
        load_coco_data(tmp_path)


def test_url_count_must_match_the_features(tmp_path):
    write_course_files(tmp_path, urls={"train": ["x"] * 5, "val": ["y"] * 4})
    with pytest.raises(ValueError, match=r"train2014_urls.txt: expected one URL per feature row \(6\), got 5"):
        load_coco_data(tmp_path)


def test_corrupt_hdf5_is_named(coco_dir):
    (coco_dir / "coco2014_captions.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="coco2014_captions.h5: not a readable HDF5 file"):
        load_coco_data(coco_dir)


@pytest.mark.parametrize("vocab, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"word_to_idx": {}}), "missing key 'idx_to_word'"),
    (json.dumps({"idx_to_word": ["a", "b"], "word_to_idx": {}}), "the first words must be"),
    (json.dumps({"idx_to_word": WORDS, "word_to_idx": {"dog": 4}}), "'dog' -> 4 does not match"),
])
def test_bad_vocabulary_is_named(coco_dir, vocab, message):
    (coco_dir / "coco2014_vocab.json").write_text(vocab)
    with pytest.raises(ValueError, match=f"coco2014_vocab.json.*{message}"):
        load_coco_data(coco_dir)


def test_empty_training_split_is_an_error(tmp_path):
    arrays = course_arrays()
    arrays["train_captions"] = arrays["train_captions"][:0]
    arrays["train_image_idxs"] = arrays["train_image_idxs"][:0]
    write_course_files(tmp_path, arrays)
    with pytest.raises(ValueError, match="training split is empty"):
        load_coco_data(tmp_path)


def test_check_captioning_data_names_missing_keys(coco_dir):
    data = load_coco_data(coco_dir)
    del data["val_urls"]
    with pytest.raises(ValueError, match=r"missing keys \['val_urls'\]"):
        check_captioning_data(data)


def test_sample_coco_minibatch(coco_dir):
    data = load_coco_data(coco_dir)
    captions, features, urls = sample_coco_minibatch(data, batch_size=20, split="val", rng=3)
    assert captions.shape == (20, 7) and features.shape == (20, 8) and urls.shape == (20,)
    for caption, feature, url in zip(captions, features, urls):
        row = int(np.flatnonzero((data["val_captions"] == caption).all(1))[0])
        image = data["val_image_idxs"][row]
        np.testing.assert_array_equal(feature, data["val_features"][image])
        assert url == data["val_urls"][image]
    again = sample_coco_minibatch(data, batch_size=20, split="val", rng=3)
    np.testing.assert_array_equal(again[0], captions)
    with pytest.raises(ValueError, match="split must be one of"):
        sample_coco_minibatch(data, split="test")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        sample_coco_minibatch(data, batch_size=0)


def test_decode_captions_as_the_course():
    captions = np.array([[1, 4, 5, 2, 0, 0], [1, 6, 0, 7, 2, 8], [0, 0, 0, 0, 0, 0]])
    assert decode_captions(captions, WORDS) == ["<START> a dog <END>", "<START> cat on <END>", ""]
    assert decode_captions(captions[0], WORDS) == "<START> a dog <END>"
    assert decode_captions(np.array([4, 5, 8]), WORDS) == "a dog mat"  # no <END>: all words
    with pytest.raises(ValueError, match="token id 9 is outside"):
        decode_captions(np.array([[1, 9]]), WORDS)
    with pytest.raises(ValueError, match=r"shape \(N, T\) or \(T,\)"):
        decode_captions(np.zeros((1, 1, 1), np.int32), WORDS)
