"""Fuzzing the loaders: mutated and random bytes give only the documented errors.

For a bounded number of hypothesis examples, one file of a valid data set is replaced by
random bytes or by a corrupted copy of itself (bytes flipped, truncated, extended, a byte
order mark in front, a run of thousands of bytes inserted). Loading must then either
succeed (when the mutation happened to keep the file valid) or raise the documented
`ValueError` / `FileNotFoundError` naming the file — never another exception and never a
hang. A second COCO fuzz writes well-formed HDF5 files that lie (h5py with random dtypes,
shapes, values, compression, declared-only and resizable shapes, external storage, external
links to another file, soft links inside the file) and expects the same.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxseq.data.coco import load_coco_data
from tests.coco_files import write_course_files

COCO_FILES = ["coco2014_captions.h5", "coco2014_vocab.json", "train2014_vgg16_fc7_pca.h5",
              "val2014_vgg16_fc7_pca.h5", "train2014_urls.txt", "val2014_urls.txt"]

mutations = st.one_of(
    st.tuples(st.just("random"), st.binary(max_size=2048)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("bom"), st.none()),
    st.tuples(st.just("long run"), st.tuples(st.floats(0.0, 1.0), st.integers(4_990, 70_000))),
)


def mutate(data: bytes, mutation) -> bytes:
    kind, arg = mutation
    if kind == "random":
        return arg
    if kind == "flip":
        out = bytearray(data)
        for position, value in arg:
            if out:
                out[position % len(out)] = value
        return bytes(out)
    if kind == "truncate":
        return data[: int(len(data) * arg)]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "long run":  # past the 5,000-character sentence and 64 KiB line bounds
        where, length = int(len(data) * arg[0]), arg[1]
        return data[:where] + b"a" * length + data[where:]
    return data + arg


@pytest.fixture(scope="module")
def valid_coco(tmp_path_factory):
    return write_course_files(tmp_path_factory.mktemp("coco") / "coco_captioning")


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(COCO_FILES), mutation=mutations)
def test_coco_loader_survives_corrupt_files(valid_coco, tmp_path_factory, name, mutation):
    base = tmp_path_factory.mktemp("fuzz") / "coco_captioning"
    shutil.copytree(valid_coco, base)
    (base / name).write_bytes(mutate((valid_coco / name).read_bytes(), mutation))
    try:
        load_coco_data(base)
    except (ValueError, FileNotFoundError) as error:
        # A vocabulary that lost words can surface as ids outside it, named in the captions file.
        assert name in str(error) or name == "coco2014_vocab.json", f"the error must name {name}: {error}"


H5_KEYS = [("coco2014_captions.h5", key) for key in
           ("train_captions", "train_image_idxs", "val_captions", "val_image_idxs")] + \
          [(f"{split}2014_vgg16_fc7_pca.h5", "features") for split in ("train", "val")]
H5_DTYPES = ["int8", "uint8", "int16", "uint32", "int32", "int64", "uint64", "float16", "float32",
             "float64", "bool", "S4", "complex64"]
H5_STORAGE = ["contiguous", "chunked-gzip", "declared-only", "huge-resizable", "external", "external-link",
              "soft-link"]


def lying_array(dtype: np.dtype, shape: tuple[int, ...], values: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        pool = [info.min, info.max, 0, 1, 8, 9, 2**31 - 1] if values == "extremes" else list(range(10))
        return rng.choice(np.array([v for v in pool if info.min <= v <= info.max], dtype), size=shape)
    if dtype.kind in "fc":
        pool = [np.inf, -np.inf, np.nan, 0.0, 1e30] if values == "extremes" else None
        data = rng.choice(pool, size=shape) if pool else rng.standard_normal(shape)
        with np.errstate(over="ignore"):  # 1e30 is inf in float16, as intended
            return data.astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    return np.full(shape, b"7", dtype)


def write_lying_dataset(path, key, dtype, shape, storage, values, seed, secret) -> str:
    """Replace `key` of the file at `path`; if what was written must be refused (data in
    another file, or 100 MB and more declared in a file of kilobytes), the words its error
    must hold (whatever else is wrong with it, this is checked first), else ""."""
    has_data = bool(shape) and 0 not in shape
    with h5py.File(path, "a") as f:
        del f[key]
        if storage == "huge-resizable" and shape:
            f.create_dataset(key, shape=(10**8, *shape[1:]), dtype=dtype, chunks=True,
                             maxshape=(None, *shape[1:]))
            return "declares shape" if 0 not in shape[1:] else ""
        if storage == "declared-only":
            f.create_dataset(key, shape=tuple(10**3 * n for n in shape), dtype=dtype)
        elif storage == "external" and has_data:
            f.create_dataset(key, shape=shape, dtype=dtype, external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
            return "HDF5 external storage"
        elif storage == "external-link":  # the dataset lives, well-formed, in another HDF5 file
            other = secret.with_name(f"other-{key}.h5")
            with h5py.File(other, "w") as elsewhere:
                elsewhere.create_dataset(key, data=lying_array(dtype, shape, values, seed))
            f[key] = h5py.ExternalLink(str(other), "/" + key)
            return f"is a link to {other}:/{key} (an HDF5 external link"
        elif storage == "soft-link":  # inside the file: followed, then checked as any dataset
            f.create_dataset("stored/" + key, data=lying_array(dtype, shape, values, seed))
            f[key] = h5py.SoftLink("/stored/" + key)
        elif storage == "chunked-gzip" and has_data:
            f.create_dataset(key, data=lying_array(dtype, shape, values, seed), chunks=True, compression="gzip")
        else:
            f.create_dataset(key, data=lying_array(dtype, shape, values, seed))
    return ""


@settings(max_examples=120, deadline=4000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file_key=st.sampled_from(H5_KEYS), dtype=st.sampled_from(H5_DTYPES),
       shape=st.lists(st.integers(0, 12), max_size=3).map(tuple), storage=st.sampled_from(H5_STORAGE),
       values=st.sampled_from(["small", "extremes"]), seed=st.integers(0, 2**32 - 1))
def test_coco_loader_survives_lying_hdf5_files(valid_coco, tmp_path_factory, file_key, dtype, shape,
                                               storage, values, seed):
    base = tmp_path_factory.mktemp("h5fuzz") / "coco_captioning"
    shutil.copytree(valid_coco, base)
    secret = base.parent / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 64)
    name, key = file_key
    must_refuse = write_lying_dataset(base / name, key, np.dtype(dtype), shape, storage, values, seed, secret)
    try:
        load_coco_data(base)
    except ValueError as error:
        assert name in str(error) and "\n" not in str(error), f"the error must name {name}: {error}"
        assert must_refuse in str(error), f"{name}:{key} ({storage}) was not refused for it: {error}"
    else:
        assert not must_refuse, f"{name}:{key} ({storage}) was loaded"


VALID_TSV = {
    "tokenized": "the cat sat .\t1\ncat the sat\t0\n",
    "glue": "gj04\t1\t\tThe cat sat.\nsentence\tlabel\n",
    "raw": "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n",
}


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["auto", "raw", "glue", "tokenized"]), base=st.sampled_from(sorted(VALID_TSV)),
       mutation=mutations)
def test_sentence_reader_survives_corrupt_files(tmp_path_factory, fmt, base, mutation):
    from jaxseq.data.sentence_files import read_sentences

    path = tmp_path_factory.mktemp("tsv") / "data.tsv"
    path.write_bytes(mutate(VALID_TSV[base].encode(), mutation))
    try:
        read_sentences(path, fmt)
    except ValueError as error:
        assert str(path) in str(error), f"the error must name the file: {error}"
