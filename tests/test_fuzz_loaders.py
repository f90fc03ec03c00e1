"""Fuzzing the loaders: mutated and random bytes give only the documented errors.

For a bounded number of hypothesis examples, one file of a valid data set is replaced by
random bytes or by a corrupted copy of itself (bytes flipped, truncated, extended). Loading
must then either succeed (when the mutation happened to keep the file valid) or raise the
documented `ValueError` / `FileNotFoundError` naming the file — never another exception
and never a hang.
"""

from __future__ import annotations

import shutil

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
        assert str(error), "errors must say what is wrong"


VALID_TSV = {
    "tokenized": "the cat sat .\t1\ncat the sat\t0\n",
    "glue": "gj04\t1\t\tThe cat sat.\nsentence\tlabel\n",
    "raw": "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n",
}


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["auto", "raw", "glue", "tokenized"]), base=st.sampled_from(sorted(VALID_TSV)),
       mutation=mutations)
def test_sentence_reader_survives_corrupt_files(tmp_path_factory, fmt, base, mutation):
    from jaxseq.data.cola import read_sentences

    path = tmp_path_factory.mktemp("tsv") / "data.tsv"
    path.write_bytes(mutate(VALID_TSV[base].encode(), mutation))
    try:
        read_sentences(path, fmt)
    except ValueError as error:
        assert str(path) in str(error), f"the error must name the file: {error}"
