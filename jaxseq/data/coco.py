"""COCO captioning in the course's format: loading, validation, minibatches, decoding.

The course's files, all in one folder (`base_dir`):

    coco2014_captions.h5         train_captions (N_train, T+1) int32, train_image_idxs (N_train,)
                                 int32, val_captions, val_image_idxs
    train2014_vgg16_fc7_pca.h5   features (num_train_images, 512) float32   (pca_features=True)
    train2014_vgg16_fc7.h5       features (num_train_images, 4096) float32  (pca_features=False)
    val2014_vgg16_fc7[_pca].h5   features (num_val_images, D) float32
    coco2014_vocab.json          {"idx_to_word": [...], "word_to_idx": {...}}
    train2014_urls.txt           one image URL per line, one line per feature row
    val2014_urls.txt

`load_coco_data` returns them as one dict of NumPy arrays (the *captioning data layout*):
`train_captions`, `train_image_idxs`, `val_captions`, `val_image_idxs`, `train_features`,
`val_features`, `idx_to_word` (list of str), `word_to_idx` (dict), `train_urls`, `val_urls`.
The built-in generated set (`jaxseq.data.synthetic_captions`) returns the same layout, and
`check_captioning_data` validates any dict in it: JAX clamps out-of-range gathers silently,
so token ids and image indices are checked here, before data reaches `jit`, in the dtype
they come in (an int64 id of 2**32 + 5 is out of range, not 5 after a cast to int32).

The files may lie, so `load_coco_data` checks what each HDF5 dataset declares before
reading it (`jaxseq.data.hdf5` refuses data kept in other files and shapes far beyond what
the file stores): ids must be integers, features 2-D floats of 1 to `MAX_FEATURE_DIM`
columns with one row per URL, and the image indices must fit the declared feature rows.

Caption ids 0..3 are `<NULL>`, `<START>`, `<END>`, `<UNK>`; a caption row is
`<START> w1 ... wk <END> <NULL> ... <NULL>`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxseq.data.hdf5 import hdf5_dataset, open_hdf5, read_dataset
from jaxseq.data.json_file import read_json_file
from jaxseq.data.locations import find_data_dir

NULL, START, END, UNK = "<NULL>", "<START>", "<END>", "<UNK>"
SPECIAL_TOKENS = (NULL, START, END, UNK)
NULL_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3

SPLITS = ("train", "val")
CAPTIONS_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"
MAX_FEATURE_DIM = 16_384  # four times VGG-16 fc7's 4,096
COCO_FOLDER = "coco_captioning"  # the data set's folder under a data root (`jaxseq.data.locations`)


def required_files(pca_features: bool = True) -> tuple[str, ...]:
    """The files `load_coco_data` reads (relative to the COCO folder)."""
    return (CAPTIONS_FILE, VOCAB_FILE, *(f"{split}2014_urls.txt" for split in SPLITS),
            *(feature_file_name(split, pca_features) for split in SPLITS))


def find_coco_dir(base_dir: str | os.PathLike | None = None, pca_features: bool = True, *,
                  argument: str = "base_dir") -> Path:
    """The COCO captioning folder by the data-location rule of `jaxseq.data.locations`:
    `base_dir` if given, else the first of `$JAXSEQ_DATA/coco_captioning`,
    `~/.cache/jaxseq/coco_captioning`, `../shared/data/coco_captioning` holding every file of
    `required_files`. FileNotFoundError naming the missing file, `argument` (how the caller's
    user gives the folder: "base_dir", or "--data-dir" on the command line) and the download."""
    return find_data_dir(COCO_FOLDER, required_files(pca_features), base_dir, title="COCO captioning",
                         argument=argument, download="coco")


def default_coco_dir() -> Path | None:
    """The first candidate folder that holds the course's COCO files, or None."""
    try:
        return find_coco_dir()
    except FileNotFoundError:
        return None


def feature_file_name(split: str, pca_features: bool) -> str:
    """The course's feature file of a split, e.g. `train2014_vgg16_fc7_pca.h5`."""
    return f"{split}2014_vgg16_fc7{'_pca' if pca_features else ''}.h5"


def _require_file(path: Path) -> Path:
    if not path.is_file():  # `find_coco_dir` checked it: the file went since
        raise FileNotFoundError(f"COCO captioning file {path} not found")
    return path


def _read_caption_arrays(path: Path) -> dict[str, np.ndarray]:
    """The four caption arrays of `coco2014_captions.h5`, their layout checked before reading."""
    _require_file(path)
    keys = tuple(f"{split}_{name}" for split in SPLITS for name in ("captions", "image_idxs"))
    with open_hdf5(path) as handle:
        datasets = {key: hdf5_dataset(handle, path, key) for key in keys}
        for split in SPLITS:
            captions, idxs = datasets[f"{split}_captions"], datasets[f"{split}_image_idxs"]
            _check_ids_layout(captions.dtype, captions.shape, f"{path}:{split}_captions", 2)
            _check_ids_layout(idxs.dtype, idxs.shape, f"{path}:{split}_image_idxs", 1)
            _check_index_count(idxs.shape[0], captions.shape[0], f"{path}:{split}_image_idxs")
        return {key: read_dataset(dataset, path, key) for key, dataset in datasets.items()}


def _read_features(path: Path, num_urls: int, url_source: str, image_idxs: np.ndarray,
                   idxs_source: str) -> np.ndarray:
    """`features` of a feature file, its declared shape checked first: 2-D floats, at most
    `MAX_FEATURE_DIM` columns, one row per URL, a row for every image index."""
    _require_file(path)
    where = f"{path}:features"
    with open_hdf5(path) as handle:
        dataset = hdf5_dataset(handle, path, "features")
        _check_features_layout(dataset.dtype, dataset.shape, where)
        _check_url_count(num_urls, dataset.shape[0], url_source, where)
        _check_range(image_idxs, dataset.shape[0], idxs_source, "image index")
        return read_dataset(dataset, path, "features")


def _read_vocab(path: Path) -> tuple[list[str], dict[str, int]]:
    _require_file(path)
    vocab = read_json_file(path, expect=None)  # bounded: size, nesting, numbers
    if not isinstance(vocab, dict):
        raise ValueError(f"{path}: expected a JSON object with idx_to_word and word_to_idx")
    for key in ("idx_to_word", "word_to_idx"):
        if key not in vocab:
            raise ValueError(f"{path}: missing key {key!r}")
    return vocab["idx_to_word"], vocab["word_to_idx"]


def _read_urls(path: Path) -> np.ndarray:
    _require_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
    return np.asarray([line.strip() for line in text.splitlines()])


def load_coco_data(
    base_dir: str | os.PathLike | None = None,
    max_train: int | None = None,
    pca_features: bool = True,
    *,
    seed: int = 0,
    argument: str = "base_dir",
) -> dict[str, Any]:
    """Read the course's COCO captioning files into the captioning data layout.

    Inputs:
      base_dir: folder with the files (default: the first folder of `find_coco_dir`'s rule
        that holds them: `$JAXSEQ_DATA`, `~/.cache/jaxseq`, `../shared/data`).
      max_train: keep this many training captions, a random subset drawn with `seed`
        (without replacement; the course drew with replacement).
      pca_features: the 512-d PCA features (True) or the 4096-d fc7 features.
      argument: how the caller's user gives the folder, named when files are missing.
    Returns: dict with train/val captions (N, T+1) int32, image_idxs (N,) int32,
      features (num_images, D) float32, urls (num_images,) str, idx_to_word, word_to_idx.
    Raises: FileNotFoundError for a missing file; ValueError naming the file and key for a
      missing key, a wrong dtype or shape (checked on the declared shape, before reading),
      data kept in other files or declared far beyond what the file stores, ids outside the
      vocabulary, or image indices outside the feature table.
    """
    base = find_coco_dir(base_dir, pca_features, argument=argument)
    caption_path = base / CAPTIONS_FILE
    data: dict[str, Any] = _read_caption_arrays(caption_path)
    sources = {key: f"{caption_path}:{key}" for key in data}
    for split in SPLITS:
        url_path = base / f"{split}2014_urls.txt"
        data[f"{split}_urls"] = _read_urls(url_path)
        sources[f"{split}_urls"] = str(url_path)
        feature_path = base / feature_file_name(split, pca_features)
        data[f"{split}_features"] = _read_features(
            feature_path, len(data[f"{split}_urls"]), str(url_path),
            data[f"{split}_image_idxs"], sources[f"{split}_image_idxs"])
        sources[f"{split}_features"] = f"{feature_path}:features"
    vocab_path = base / VOCAB_FILE
    data["idx_to_word"], data["word_to_idx"] = _read_vocab(vocab_path)
    sources["idx_to_word"] = f"{vocab_path}:idx_to_word"
    sources["word_to_idx"] = f"{vocab_path}:word_to_idx"

    data = check_captioning_data(data, sources=sources)
    if max_train is not None:
        data = subsample_train(data, max_train, seed=seed)
    return data


def subsample_train(data: dict[str, Any], max_train: int, *, seed: int = 0) -> dict[str, Any]:
    """A copy of `data` keeping `max_train` training captions chosen at random with `seed`."""
    if max_train < 1:
        raise ValueError(f"max_train must be >= 1, got {max_train}")
    num_train = data["train_captions"].shape[0]
    if max_train >= num_train:
        return dict(data)
    keep = np.sort(np.random.default_rng(seed).choice(num_train, size=max_train, replace=False))
    return {**data, "train_captions": data["train_captions"][keep],
            "train_image_idxs": data["train_image_idxs"][keep]}


def _check_ids_layout(dtype: np.dtype, shape: tuple[int, ...], source: str, ndim: int) -> None:
    """Ids (captions, image indices) are integers with `ndim` dimensions; for arrays and
    for the declared dtype and shape of HDF5 datasets alike."""
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{source}: expected an integer array, got dtype {dtype}")
    if len(shape) != ndim:
        raise ValueError(f"{source}: expected {ndim} dimensions, got shape {tuple(shape)}")


def _check_index_count(num_idxs: int, num_captions: int, source: str) -> None:
    if num_idxs != num_captions:
        raise ValueError(f"{source}: {num_idxs} image indices for {num_captions} captions")


def _check_features_layout(dtype: np.dtype, shape: tuple[int, ...], source: str) -> None:
    """Features are 2-D floats of 1 to MAX_FEATURE_DIM columns (arrays or declared)."""
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{source}: expected a floating-point array, got dtype {dtype}")
    if len(shape) != 2:
        raise ValueError(f"{source}: expected shape (num_images, D), got {tuple(shape)}")
    if shape[1] < 1:
        raise ValueError(f"{source}: features of width {shape[1]}, expected a width D of at least 1")
    if shape[1] > MAX_FEATURE_DIM:
        raise ValueError(f"{source}: feature size {shape[1]:,} is larger than the limit of "
                         f"{MAX_FEATURE_DIM:,}")


def _check_url_count(num_urls: int, num_rows: int, url_source: str, feature_source: str) -> None:
    if num_urls != num_rows:
        raise ValueError(f"{url_source}: expected one URL per feature row ({num_rows} in "
                         f"{feature_source}), got {num_urls}")


def _check_range(array: np.ndarray, size: int, source: str, what: str) -> None:
    """Every value of the integer `array` is in [0, size), compared in its own dtype (a cast
    first would wrap 2**32 + 5 into 5); the message shows the offending value as it is."""
    if array.size:
        low, high = array.min(), array.max()
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise ValueError(f"{source}: {what} {int(bad)} is outside [0, {size})")


def _check_vocab(idx_to_word: Any, word_to_idx: Any, sources: dict[str, str]) -> list[str]:
    where = sources.get("idx_to_word", "idx_to_word")
    if not isinstance(idx_to_word, (list, tuple)) or not all(isinstance(w, str) for w in idx_to_word):
        raise ValueError(f"{where}: expected a list of words (str)")
    if tuple(idx_to_word[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise ValueError(
            f"{where}: the first words must be {list(SPECIAL_TOKENS)}, got {list(idx_to_word[:4])}"
        )
    where = sources.get("word_to_idx", "word_to_idx")
    if not isinstance(word_to_idx, dict):
        raise ValueError(f"{where}: expected a mapping from word to index")
    for word, index in word_to_idx.items():
        if not isinstance(index, int) or not 0 <= index < len(idx_to_word) or idx_to_word[index] != word:
            raise ValueError(f"{where}: entry {word!r} -> {index!r} does not match idx_to_word")
    return list(idx_to_word)


def check_captioning_data(data: dict[str, Any], sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Validate a dict in the captioning data layout; returns it with canonical dtypes.

    Checks every key is present, captions are (N, T+1) integers with ids in [0, V), image
    indices are (N,) integers inside the split's feature table (both range-checked in
    their own dtype, before the cast to int32), features are 2-D finite floats with the
    same D (at most MAX_FEATURE_DIM) in both splits, there is one URL per feature row, the vocabulary
    starts with `<NULL> <START> <END> <UNK>`, and the training split is not empty.
    `sources` maps keys to the file (and HDF5 key) they came from, for the error messages.

    Returns: a new dict; captions and image indices int32, features float32 (float64 kept).
    """
    sources = dict(sources or {})
    required = [f"{split}_{name}" for split in SPLITS
                for name in ("captions", "image_idxs", "features", "urls")]
    missing = [key for key in required + ["idx_to_word", "word_to_idx"] if key not in data]
    if missing:
        raise ValueError(f"captioning data is missing keys {missing}")
    out = dict(data)
    idx_to_word = _check_vocab(data["idx_to_word"], data["word_to_idx"], sources)
    out["idx_to_word"] = idx_to_word
    vocab_size = len(idx_to_word)

    feature_dim = None
    for split in SPLITS:
        key = f"{split}_features"
        where = sources.get(key, key)
        features = np.asarray(data[key])
        _check_features_layout(features.dtype, features.shape, where)
        if feature_dim is not None and features.shape[1] != feature_dim:
            raise ValueError(f"{where}: feature size {features.shape[1]} differs from train's {feature_dim}")
        feature_dim = features.shape[1]
        if not np.isfinite(features).all():
            raise ValueError(f"{where}: holds NaN or infinite values")
        if features.dtype != np.float64:
            features = features.astype(np.float32, copy=False)
        out[key] = features

        key = f"{split}_urls"
        urls = np.asarray(data[key])
        if urls.ndim != 1:
            raise ValueError(f"{sources.get(key, key)}: expected a list of URLs, got shape {urls.shape}")
        _check_url_count(urls.shape[0], features.shape[0], sources.get(key, key), where)
        out[key] = urls

        key = f"{split}_captions"
        captions = np.asarray(data[key])
        _check_ids_layout(captions.dtype, captions.shape, sources.get(key, key), 2)
        if captions.shape[1] < 2:
            raise ValueError(f"{sources.get(key, key)}: captions need at least 2 tokens, got shape {captions.shape}")
        _check_range(captions, vocab_size, sources.get(key, key), "token id")
        out[key] = captions.astype(np.int32, copy=False)

        key = f"{split}_image_idxs"
        idxs = np.asarray(data[key])
        _check_ids_layout(idxs.dtype, idxs.shape, sources.get(key, key), 1)
        _check_index_count(idxs.shape[0], captions.shape[0], sources.get(key, key))
        _check_range(idxs, features.shape[0], sources.get(key, key), "image index")
        out[key] = idxs.astype(np.int32, copy=False)

    if out["train_captions"].shape[0] == 0:
        raise ValueError(f"{sources.get('train_captions', 'train_captions')}: the training split is empty")
    if out["train_captions"].shape[1] != out["val_captions"].shape[1]:
        raise ValueError(
            f"train_captions have {out['train_captions'].shape[1]} tokens per row but "
            f"val_captions have {out['val_captions'].shape[1]}"
        )
    return out


def sample_coco_minibatch(
    data: dict[str, Any],
    batch_size: int = 100,
    split: str = "train",
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random minibatch of captions (drawn with replacement, as the course did).

    Inputs: data in the captioning layout; split "train" or "val"; rng a NumPy Generator
      or a seed.
    Returns: (captions (B, T+1) int32, features (B, D), urls (B,)).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    size = data[f"{split}_captions"].shape[0]
    if size == 0:
        raise ValueError(f"the {split} split has no captions")
    rng = np.random.default_rng(rng)
    rows = rng.choice(size, batch_size)
    image_idxs = data[f"{split}_image_idxs"][rows]
    return (data[f"{split}_captions"][rows], data[f"{split}_features"][image_idxs],
            data[f"{split}_urls"][image_idxs])


def decode_captions(captions, idx_to_word) -> list[str] | str:
    """Token ids to strings, as the course: `<NULL>` dropped, stop after `<END>` (kept).

    Inputs: captions (N, T) or (T,) integer ids; idx_to_word a list of words.
    Returns: a list of N strings, or one string for a 1-D input.
    """
    captions = np.asarray(captions)
    if captions.ndim not in (1, 2):
        raise ValueError(f"captions must have shape (N, T) or (T,), got {captions.shape}")
    decoded = decode_caption_rows(captions[None] if captions.ndim == 1 else captions, idx_to_word)
    return decoded[0] if captions.ndim == 1 else decoded


def decode_caption_rows(captions, idx_to_word) -> list[str]:
    """`decode_captions` of captions (N, T): always a list of N strings."""
    captions = np.asarray(captions)
    if captions.ndim != 2:
        raise ValueError(f"captions must have shape (N, T), got {captions.shape}")
    _check_range(captions, len(idx_to_word), "captions", "token id")
    decoded = []
    for row in captions:
        words = []
        for index in row:
            word = idx_to_word[index]
            if word != NULL:
                words.append(word)
            if word == END:
                break
        decoded.append(" ".join(words))
    return decoded
