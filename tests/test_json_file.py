"""jaxseq.data.json_file: the one bounded JSON reader (size, nesting, numbers, top-level type),
and jaxseq.data.json_fields: the field checks with one-line errors naming file and key."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.data.json_fields import (
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
from jaxseq.data.json_file import MAX_DEPTH, nesting_depth, read_json_file

DEEP = 200_000


def write(tmp_path, content, name="file.json"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def one_line_error_naming(path, call) -> str:
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert str(path) in message and "\n" not in message, message
    return message


def test_a_valid_file_reads_as_json(tmp_path):
    value = {"a": [1, 2.5, {"b": "[{\\\"]}"}], "c": None, "d": True, "e": -1e300, "f": 10**99}
    assert read_json_file(write(tmp_path, json.dumps(value))) == value


@pytest.mark.parametrize("content", ["[" * DEEP + "]" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP,
                                     '{"tokens": ' + "[" * DEEP])
def test_deep_nesting_is_refused_before_parsing(tmp_path, content):
    path = write(tmp_path, content)
    message = one_line_error_naming(path, lambda: read_json_file(path, expect=None))
    assert f"nested more than {MAX_DEPTH} deep" in message


def test_brackets_inside_strings_do_not_count(tmp_path):
    text = json.dumps({"words": ["[" * 1000, "{" * 1000, '\\"[[[', "\\"]})
    assert read_json_file(write(tmp_path, text))["words"][0] == "[" * 1000


@pytest.mark.parametrize("literal", ["1" * 100_000, "-" + "9" * 5000, "1." + "0" * 1000, "1" + "0" * 200 + "e5"])
def test_huge_numbers_name_the_file(tmp_path, literal):
    path = write(tmp_path, '{"step": %s}' % literal)
    assert "holds a number" in one_line_error_naming(path, lambda: read_json_file(path))


def test_size_limit_is_checked_before_reading(tmp_path):
    path = write(tmp_path, json.dumps({"tokens": ["a"] * 1000}))
    message = one_line_error_naming(path, lambda: read_json_file(path, max_bytes=100))
    assert "more than the 100 bytes allowed" in message


@pytest.mark.parametrize("content, expect, message", [
    (b"\xff\xfe{}", dict, "not valid JSON (not UTF-8 text"),
    ("{not json", dict, "not valid JSON (Expecting property name"),
    ("", dict, "not valid JSON"),
    ("[1, 2]", dict, "expected a JSON object, got list"),
    ('"text"', list, "expected a JSON list, got str"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, expect, message):
    path = write(tmp_path, content)
    assert message in one_line_error_naming(path, lambda: read_json_file(path, expect=expect))


def test_label_and_missing_file(tmp_path):
    path = write(tmp_path, "[]")
    assert one_line_error_naming(path, lambda: read_json_file(path, label="vocabulary file")).startswith(
        f"vocabulary file {path}: ")
    with pytest.raises(FileNotFoundError, match="checkpoint .*nothing.json not found"):
        read_json_file(tmp_path / "nothing.json", label="checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        read_json_file(tmp_path)  # a folder


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{}"\\\n', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='k[]"\\', max_size=3), inner,
                                                              max_size=3),
    max_leaves=20,
)


def reference_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_nesting_depth_equals_the_recursive_count(value):
    raw = json.dumps(value).encode()
    assert nesting_depth(raw, limit=10**6) == reference_depth(value)


SPEC = fields(
    required={"size": integer(1, 10), "rule": choice("adam", "sgd")},
    optional={"rate": number(0, 1, below=True), "flag": boolean(), "name": nullable(string(max_length=5)),
              "steps": list_of(integer(0), max_items=3), "config": mapping(number())},
    unknown=False,
)


@pytest.mark.parametrize("value, message", [
    ({"size": [1], "rule": "adam"}, "size must be an integer in [1, 10], got a list of 1 item"),
    ({"size": None, "rule": "adam"}, "size must be an integer in [1, 10], got null"),
    ({"size": True, "rule": "adam"}, "size must be an integer in [1, 10], got true"),
    ({"size": 10**30, "rule": "adam"}, "size must be an integer in [1, 10], got an integer of about 31 digits"),
    ({"size": 2, "rule": "rmsprop"}, "rule must be one of 'adam', 'sgd', got 'rmsprop'"),
    ({"size": 2, "rule": "adam", "rate": "0.1"}, "rate must be a number in [0, 1), got '0.1'"),
    ({"size": 2, "rule": "adam", "rate": 1.0}, "rate must be a number in [0, 1), got 1.0"),
    ({"size": 2, "rule": "adam", "rate": float("nan")}, "rate must be a number in [0, 1), got nan"),
    ({"size": 2, "rule": "adam", "flag": 1}, "flag must be true or false, got 1"),
    ({"size": 2, "rule": "adam", "name": "x" * 99}, "name must be null or a string of at most 5 characters"),
    ({"size": 2, "rule": "adam", "steps": [0, -1]}, "steps[1] must be an integer >= 0, got -1"),
    ({"size": 2, "rule": "adam", "steps": [0] * 4}, "steps must hold at most 3 items, got 4"),
    ({"size": 2, "rule": "adam", "config": {"beta": {}}}, "config.beta must be a number, got an object with 0 keys"),
    ({"size": 2, "rule": "adam", "other": 1}, "has unknown keys 'other'"),
    ({"rule": "adam"}, "lacks 'size'"),
    ([], "must be an object, got a list of 0 items"),
])
def test_field_checks_name_the_source_and_key(value, message):
    with pytest.raises(ValueError) as error:
        check_fields(value, SPEC, "file.json")
    assert str(error.value).startswith("file.json: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_field_checks_accept_what_the_spec_allows():
    check_fields({"size": 3, "rule": "sgd", "rate": 0, "flag": False, "name": None, "steps": [], "config": {}},
                 SPEC, "file.json")
    check_fields(float("inf"), number(finite=False), "file.json")


NESTED = "[" * DEEP + "]" * DEEP


@pytest.mark.parametrize("content, message", [(NESTED, "nested more than 64 deep"),
                                              ('{"step": %s}' % ("4" * 100_000), "holds a number 100000 characters")])
def test_every_json_file_the_project_reads_is_bounded(tmp_path, content, message):
    """meta.json, vocab.json and the COCO vocabulary: the same bounded reader, the file named."""
    from jaxseq.data.coco import load_coco_data
    from jaxseq.data.vocabulary import Vocabulary
    from jaxseq.train.checkpoint import read_metadata
    from tests.coco_files import write_course_files

    checkpoint = tmp_path / "ckpt-00000001"
    checkpoint.mkdir()
    coco = write_course_files(tmp_path / "coco")
    readers = {checkpoint / "meta.json": lambda: read_metadata(checkpoint),
               tmp_path / "vocab.json": lambda: Vocabulary.load(tmp_path / "vocab.json"),
               coco / "coco2014_vocab.json": lambda: load_coco_data(coco)}
    for path, read in readers.items():
        path.write_text(content)
        assert message in one_line_error_naming(path, read)


def test_no_other_json_parsing_in_the_package():
    """Every JSON file jaxseq reads goes through read_json_file (download.py's own download
    record is the data branch's part of issue 13)."""
    from tests.conftest import REPO_ROOT

    parsing = sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "jaxseq").rglob("*.py")
                     if "json.load" in path.read_text(encoding="utf-8"))
    assert parsing == ["jaxseq/data/download.py", "jaxseq/data/json_file.py"]
