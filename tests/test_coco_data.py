"""COCO captioning loader: the course's file format, minibatches, decoding, and every error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from tests.cli_process import assert_one_line_error, run_jaxseq
from tests.coco_files import NUM_IMAGES, WORDS, course_arrays, write_course_files

from jaxseq.data import locations
from jaxseq.data.coco import (
    MAX_FEATURE_DIM,
    check_captioning_data,
    decode_captions,
    default_coco_dir,
    load_coco_data,
    sample_coco_minibatch,
)

CAPTIONS = "coco2014_captions.h5"

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
    monkeypatch.setattr(locations, "candidate_dirs", lambda name: [coco_dir.parent / "elsewhere" / name])
    assert default_coco_dir() is None


@pytest.mark.parametrize("name", ["coco2014_captions.h5", "train2014_vgg16_fc7_pca.h5", "val2014_vgg16_fc7_pca.h5",
                                  "coco2014_vocab.json", "train2014_urls.txt", "val2014_urls.txt"])
def test_missing_file_is_named(coco_dir, name):
    (coco_dir / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{name}.*jaxseq data download coco"):
        load_coco_data(coco_dir)


def _rewrite_h5(path: Path, key: str, value, **create) -> None:
    """Replace dataset `key` by `value` (None: delete it), or by an empty dataset declared
    with h5py's `create_dataset` options (shape, dtype, chunks, maxshape, external, ...)."""
    with h5py.File(path, "a") as f:
        del f[key]
        if value is not None or create:
            f.create_dataset(key, data=value, **create)


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


# --------------------------------------------------------------------------------------
# Hostile HDF5 files: huge declared shapes, data kept in other files, ids that wrap
# --------------------------------------------------------------------------------------

HUGE = (10**7, 4096)  # 164 GB of float32, declared by a file of a few kilobytes


@pytest.mark.parametrize("create", [
    dict(shape=HUGE, dtype=np.float32, chunks=(1, 4096), maxshape=(None, 4096)),
    dict(shape=HUGE, dtype=np.float32, chunks=(64, 4096), compression="gzip", fillvalue=0.5),
], ids=["resizable", "compressed-fill-value"])
def test_features_declaring_a_huge_shape_are_refused_before_reading(coco_dir, create):
    path = coco_dir / "train2014_vgg16_fc7_pca.h5"
    _rewrite_h5(path, "features", None, **create)
    assert path.stat().st_size < 64_000
    with pytest.raises(ValueError) as info:
        load_coco_data(coco_dir)
    assert str(info.value) == (
        f"{path}: key 'features' declares shape (10000000, 4096) float32 (163,840,000,000 bytes) "
        "but stores only 0 bytes; refusing data that expands more than 100 times its stored size")


def test_compressed_features_of_one_value_are_refused(coco_dir):
    path = coco_dir / "val2014_vgg16_fc7_pca.h5"
    _rewrite_h5(path, "features", np.zeros((4, 2**18), np.float32), chunks=(1, 2**18), compression="gzip")
    with pytest.raises(ValueError, match=r"val2014_vgg16_fc7_pca.h5: key 'features' declares shape "
                                         r"\(4, 262144\) float32 \(4,194,304 bytes\) but stores only "
                                         r"[\d,]+ bytes; refusing"):
        load_coco_data(coco_dir)


def test_captions_declaring_a_huge_shape_are_refused_before_reading(coco_dir):
    path = coco_dir / CAPTIONS
    _rewrite_h5(path, "train_captions", None, shape=(10**9, 7), dtype=np.int32, chunks=(1024, 7),
                maxshape=(None, 7))
    with pytest.raises(ValueError, match=re.escape(f"{path}: key 'train_captions' declares shape "
                                                   "(1000000000, 7) int32 (28,000,000,000 bytes)")):
        load_coco_data(coco_dir)


def test_declared_feature_rows_must_match_the_urls_before_reading(coco_dir):
    path = coco_dir / "train2014_vgg16_fc7_pca.h5"
    _rewrite_h5(path, "features", np.zeros((7, 8), np.float32))
    with pytest.raises(ValueError, match=re.escape(
            f"{coco_dir / 'train2014_urls.txt'}: expected one URL per feature row (7 in {path}:features), got 6")):
        load_coco_data(coco_dir)


def test_zero_width_features_are_refused(tmp_path):
    write_course_files(tmp_path, course_arrays(pca_dim=0))
    with pytest.raises(ValueError) as info:
        load_coco_data(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'train2014_vgg16_fc7_pca.h5'}:features: features of width 0, "
                               "expected a width D of at least 1")
    data = load_coco_data(write_course_files(tmp_path / "good"))
    data["val_features"] = np.zeros((4, 0), np.float32)
    with pytest.raises(ValueError, match=r"^val_features: features of width 0, expected a width D of at least 1$"):
        check_captioning_data(data)


def test_feature_size_must_be_sane(tmp_path):
    write_course_files(tmp_path, course_arrays(pca_dim=MAX_FEATURE_DIM + 1))
    with pytest.raises(ValueError) as info:
        load_coco_data(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'train2014_vgg16_fc7_pca.h5'}:features: feature size "
                               f"16,385 is larger than the limit of 16,384")


def test_external_storage_is_refused(coco_dir, tmp_path):
    secret = tmp_path / "secret.txt"  # stands for /etc/services or ~/.ssh/id_rsa
    secret.write_bytes(b"password=hunter2\n" * 20)
    path = coco_dir / "val2014_vgg16_fc7_pca.h5"
    _rewrite_h5(path, "features", None, shape=(4, 8), dtype=np.float32, external=[(str(secret), 0, 128)])
    with pytest.raises(ValueError) as info:
        load_coco_data(coco_dir)
    assert str(info.value) == (f"{path}: key 'features' keeps its data in another file ({secret}; "
                               "HDF5 external storage); refusing to read it")


def test_virtual_datasets_are_refused(coco_dir, tmp_path):
    source = tmp_path / "elsewhere.h5"
    with h5py.File(source, "w") as f:
        f["x"] = np.ones((4, 8), np.float32)
    layout = h5py.VirtualLayout(shape=(4, 8), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(source), "x", shape=(4, 8))
    path = coco_dir / "val2014_vgg16_fc7_pca.h5"
    with h5py.File(path, "a") as f:
        del f["features"]
        f.create_virtual_dataset("features", layout)
    with pytest.raises(ValueError) as info:
        load_coco_data(coco_dir)
    assert str(info.value) == (f"{path}: key 'features' is an HDF5 virtual dataset (its data comes "
                               "from other files); refusing to read it")


def test_external_links_are_refused(coco_dir, tmp_path):
    other = tmp_path / "other.h5"  # well-formed features the user never named
    with h5py.File(other, "w") as f:
        f["features"] = np.ones((6, 8), np.float32)
    path = coco_dir / "train2014_vgg16_fc7_pca.h5"
    with h5py.File(path, "a") as f:
        del f["features"]
        f["features"] = h5py.ExternalLink(str(other), "/features")
    with pytest.raises(ValueError) as info:
        load_coco_data(coco_dir)
    assert str(info.value) == (f"{path}: key 'features' is a link to {other}:/features (an HDF5 external "
                               "link, data from another file); refusing to read it")


def test_a_soft_link_through_to_an_external_link_is_refused(coco_dir, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones((6, 8), np.float32)
    path = coco_dir / "train2014_vgg16_fc7_pca.h5"
    with h5py.File(path, "a") as f:
        del f["features"]
        f["elsewhere"] = h5py.ExternalLink(str(other), "/x")
        f["features"] = h5py.SoftLink("/elsewhere")
    with pytest.raises(ValueError, match=re.escape(f"{path}: key 'features' is a link to {other}:/x (an HDF5 "
                                                   "external link")):
        load_coco_data(coco_dir)


def test_soft_links_inside_the_file_are_followed(coco_dir):
    path = coco_dir / "train2014_vgg16_fc7_pca.h5"
    with h5py.File(path, "a") as f:
        f.move("features", "stored/features")
        f["features"] = h5py.SoftLink("/stored/features")
        f["dangling"] = h5py.SoftLink("/nowhere")
    expected = load_coco_data(coco_dir)["train_features"]
    assert expected.shape == (6, 8)
    with h5py.File(path, "a") as f:
        del f["features"]
        f["features"] = h5py.SoftLink("/dangling")
    with pytest.raises(ValueError) as info:
        load_coco_data(coco_dir)
    assert str(info.value) == f"{path}: key 'features' is a link to /nowhere, which is not in the file"


@pytest.mark.parametrize("key, dtype, value, message", [
    ("train_captions", np.int64, 2**32 + 5, r"train_captions: token id 4294967301 is outside \[0, 9\)"),
    ("train_image_idxs", np.int64, 2**32 + 3, r"train_image_idxs: image index 4294967299 is outside \[0, 6\)"),
    ("val_captions", np.uint32, 2**32 - 1, r"val_captions: token id 4294967295 is outside \[0, 9\)"),
    ("val_image_idxs", np.uint64, 2**64 - 1, r"val_image_idxs: image index 18446744073709551615 is outside"),
    ("val_image_idxs", np.int64, -(2**32) + 1, r"val_image_idxs: image index -4294967295 is outside"),
])
def test_large_ids_do_not_wrap_into_valid_ones(coco_dir, key, dtype, value, message):
    array = course_arrays()[key].astype(dtype)
    array.flat[1] = value
    _rewrite_h5(coco_dir / CAPTIONS, key, array)
    with pytest.raises(ValueError, match=f"{CAPTIONS}:{message}"):
        load_coco_data(coco_dir)


@pytest.mark.parametrize("key, value, dtype", [
    ("train_captions", np.ones((9, 7), np.float64), "float64"),
    ("val_image_idxs", np.zeros(5, bool), "bool"),
    ("train_image_idxs", np.array([b"0"] * 9), "|S1"),
    ("val_captions", np.ones((5, 7), np.complex64), "complex64"),
])
def test_non_integer_ids_are_refused_by_key(coco_dir, key, value, dtype):
    _rewrite_h5(coco_dir / CAPTIONS, key, value)
    with pytest.raises(ValueError, match=re.escape(f"{CAPTIONS}:{key}: expected an integer array, got dtype {dtype}")):
        load_coco_data(coco_dir)


def test_check_captioning_data_range_checks_before_casting(coco_dir):
    data = load_coco_data(coco_dir)
    data["train_captions"] = data["train_captions"].astype(np.int64) + 2**32
    largest = int(data["train_captions"].max())  # 2**32 + 8: 8 after a cast to int32
    with pytest.raises(ValueError, match=rf"train_captions: token id {largest} is outside \[0, 9\)"):
        check_captioning_data(data)


@pytest.mark.parametrize("hostile", ["huge-features", "wrapping-id"])
def test_caption_train_refuses_hostile_files_in_one_line(coco_dir, tmp_path, hostile):
    if hostile == "huge-features":
        _rewrite_h5(coco_dir / "train2014_vgg16_fc7_pca.h5", "features", None, shape=HUGE,
                    dtype=np.float32, chunks=(1, 4096), maxshape=(None, 4096))
        expected = "train2014_vgg16_fc7_pca.h5: key 'features' declares shape (10000000, 4096)"
    else:
        ids = course_arrays()["train_image_idxs"].astype(np.int64)
        ids[0] = 2**32 + 3
        _rewrite_h5(coco_dir / CAPTIONS, "train_image_idxs", ids)
        expected = "train_image_idxs: image index 4294967299 is outside [0, 6)"
    result = run_jaxseq("caption", "train", "--data", "coco", "--data-dir", str(coco_dir), "--epochs", "1",
                        "--hidden-dim", "8", "--wordvec-dim", "8", "--checkpoint-dir", str(tmp_path / "run"),
                        "--quiet")
    assert result.returncode == 2
    assert_one_line_error(result, "jaxseq caption: error: ", expected)
    assert not (tmp_path / "run").exists()


def test_feature_table_too_small_for_the_image_indices(tmp_path):
    arrays = course_arrays()
    arrays["train_image_idxs"][3] = 5
    arrays["train_features_pca"] = arrays["train_features_pca"][:5]
    write_course_files(tmp_path, arrays, urls={"train": [str(i) for i in range(5)], "val": list("abcd")})
    with pytest.raises(ValueError, match=r"train_image_idxs: image index 5 is outside \[0, 5\)"):
        load_coco_data(tmp_path)


def test_url_count_must_match_the_features(tmp_path):
    write_course_files(tmp_path, urls={"train": ["x"] * 5, "val": ["y"] * 4})
    with pytest.raises(ValueError, match=r"train2014_urls.txt: expected one URL per feature row "
                                         r"\(6 in .*train2014_vgg16_fc7_pca.h5:features\), got 5"):
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
