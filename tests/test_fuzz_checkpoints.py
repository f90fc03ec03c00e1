"""Fuzzing the metadata: every JSON field of real checkpoints and vocabularies replaced by
each JSON type, nested 200,000 deep or a 100,000-digit number; only the documented errors.

For both kinds of checkpoints (the captioner's and the classifier's, written by their
command lines once per module) a hypothesis example picks one field of `meta.json` — any
key, at any depth, the first item of any list — and replaces it in every checkpoint of the
run (so no fallback hides it) by null, a boolean, an integer (small, negative, 2**31, 10**30),
a float (NaN and infinities included), a string, a list, an object, a 200,000-deep list or
a 100,000-digit integer. The command that uses the run (`cola predict`, `caption sample`,
and resuming the training) must then either work or raise a one-line ValueError naming the
run's folder; nothing else. What works is checked too: a prediction is one well-formed line,
and a resumed classifier run prints exactly what resuming the unchanged run prints. The classifier's `vocab.json` and the COCO `coco2014_vocab.json`
are fuzzed the same way through their loaders.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxseq import cli
from jaxseq.commands import caption, classifier_options
from jaxseq.data.coco import load_coco_data
from jaxseq.data.vocabulary import Vocabulary
from jaxseq.train.checkpoint import list_checkpoints
from tests.checkpoints import tiny_runs
from tests.coco_files import write_course_files

DEEP, HUGE = "@@deep@@", "@@huge@@"  # placeholders, written out as 200,000 brackets / 100,000 digits
REPLACEMENTS = [None, True, False, 0, -1, 3, 2**31, 10**30, 0.5, -2.5, 1e308, math.nan, math.inf, -math.inf,
                "", "x", "float32", "lstm", "builtin", [], [0], ["x"], [[]], {}, {"x": 1}, DEEP, HUGE]
WHOLE_FILES = ["[" * 200_000 + "]" * 200_000, '{"step": %s}' % ("9" * 100_000), "[]", "null", "", "{"]


def field_paths(value, prefix=()):
    """Key paths of every field in a JSON value: each key at any depth, and the first item
    of every list."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key in sorted(value):
            yield from field_paths(value[key], (*prefix, key))
    elif isinstance(value, list) and value:
        yield from field_paths(value[0], (*prefix, 0))


def replaced(document, path, value) -> str:
    """`document` as JSON text with the field at `path` replaced by `value`."""
    document = json.loads(json.dumps(document))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    text = json.dumps(document)
    return text.replace(json.dumps(DEEP), "[" * 200_000 + "]" * 200_000).replace(json.dumps(HUGE), "7" * 100_000)


def assert_works_or_names(call, folder) -> str | None:
    """`call()` succeeds or raises the documented one-line ValueError naming `folder`.
    Returns what a success printed (with `folder` written as RUN), None after an error."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            call()
    except ValueError as error:
        assert str(folder) in str(error) and "\n" not in str(error), repr(error)
        return None
    return out.getvalue().replace(str(folder), "RUN")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{kind: (run folder, train argv, [(path, meta) of its checkpoints])}, made once (shared)."""
    return {kind: (folder, argv, [(p, json.loads((p / "meta.json").read_text())) for p in list_checkpoints(folder)])
            for kind, (folder, argv) in tiny_runs(tmp_path_factory).items()}


def mutated_copy(runs, kind, tmp_path_factory, data):
    """A copy of run `kind` whose checkpoints all have one field (or the whole meta.json)
    replaced; returns (folder, train argv pointed at it)."""
    folder, argv, checkpoints = runs[kind]
    copy = tmp_path_factory.mktemp("fuzz") / kind
    shutil.copytree(folder, copy)
    whole = data.draw(st.integers(0, 9)) == 0
    if whole:
        text = data.draw(st.sampled_from(WHOLE_FILES))
    else:
        path = data.draw(st.sampled_from(sorted(set(field_paths(checkpoints[-1][1])), key=str)))
        value = data.draw(st.sampled_from(REPLACEMENTS))
    for checkpoint, meta in checkpoints:
        (copy / checkpoint.name / "meta.json").write_text(
            text if whole else replaced(meta, path, value) if _has(meta, path) else json.dumps(meta))
    return copy, [str(copy) if str(arg) == str(folder) else str(arg) for arg in argv]


def _has(document, path) -> bool:
    for key in path:
        if isinstance(document, dict) and key in document or isinstance(document, list) and key < len(document):
            document = document[key]
        else:
            return False
    return True


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=30, **FUZZ)
@given(data=st.data())
def test_predict_on_mutated_classifier_metadata(runs, tmp_path_factory, data):
    folder, _ = mutated_copy(runs, "classifier", tmp_path_factory, data)
    args = argparse.Namespace(checkpoint=folder, sentences=["( )"])
    out = assert_works_or_names(lambda: classifier_options.run_predict(args), folder)
    if out is not None:  # one line: the probability, the class it gives, the sentence
        probability, label, sentence = out.rstrip("\n").split("\t")
        assert 0.0 <= float(probability) <= 1.0 and label == ("1" if float(probability) >= 0.5 else "0")
        assert sentence == "( )" and out.count("\n") == 1


@settings(max_examples=60, **FUZZ)
@given(data=st.data())
def test_sample_on_mutated_captioner_metadata(runs, tmp_path_factory, data):
    folder, _ = mutated_copy(runs, "captioner", tmp_path_factory, data)
    args = argparse.Namespace(checkpoint=folder, split="val", data_dir=None, beam=1, num=1, seed=0)
    assert_works_or_names(lambda: caption.run_sample(args), folder)


def resume(argv):
    args = cli.build_parser().parse_args([*argv, "--resume"])
    return args.func(args)


@pytest.fixture(scope="module")
def unmutated_resume(runs, tmp_path_factory):
    """What resuming an unchanged copy of the (finished) classifier run prints."""
    folder, argv, _ = runs["classifier"]
    copy = tmp_path_factory.mktemp("unmutated") / "classifier"
    shutil.copytree(folder, copy)
    out = assert_works_or_names(lambda: resume([str(copy) if str(a) == str(folder) else str(a) for a in argv]), copy)
    assert "resuming from RUN/ckpt-" in out and "best epoch " in out and "checkpoint: RUN/ckpt-" in out
    return out


@settings(max_examples=25, **FUZZ)
@given(data=st.data())
def test_resume_on_mutated_classifier_metadata(runs, unmutated_resume, tmp_path_factory, data):
    """Refused with the documented error, or resumed exactly as the unchanged run: the same
    step and epoch, the same best checkpoint and scores (a changed field that is used must
    not be accepted silently)."""
    folder, argv = mutated_copy(runs, "classifier", tmp_path_factory, data)
    out = assert_works_or_names(lambda: resume(argv), folder)
    assert out is None or out == unmutated_resume, out


@settings(max_examples=8, **FUZZ)
@given(data=st.data())
def test_resume_refuses_an_mcc_it_could_not_have_recorded(runs, tmp_path_factory, data):
    """A Matthews correlation outside [-1, 1], or a best_val_mcc that is not its best
    epoch's val_mcc in the history, is refused (it would decide which epoch is kept)."""
    folder, argv, checkpoints = runs["classifier"]
    copy = tmp_path_factory.mktemp("mcc") / "classifier"
    shutil.copytree(folder, copy)
    latest, meta = checkpoints[-1]
    path = data.draw(st.sampled_from([("best_val_mcc",), ("history", 0, "val_mcc"), ("history", 1, "val_mcc")]))
    value = data.draw(st.one_of(st.floats(allow_nan=False).filter(lambda v: abs(v) > 1),
                                st.floats(-1, 1).filter(lambda v: path[0] == "best_val_mcc"
                                                        and v != meta["history"][meta["best_epoch"] - 1]["val_mcc"])))
    (copy / latest.name / "meta.json").write_text(replaced(meta, path, value))
    with pytest.raises(ValueError) as info, contextlib.redirect_stdout(io.StringIO()):
        resume([str(copy) if str(arg) == str(folder) else str(arg) for arg in argv])
    assert str(copy / latest.name / "meta.json") in str(info.value) and "mcc" in str(info.value)


@settings(max_examples=30, **FUZZ)
@given(data=st.data())
def test_resume_on_mutated_captioner_metadata(runs, tmp_path_factory, data):
    folder, argv = mutated_copy(runs, "captioner", tmp_path_factory, data)
    assert_works_or_names(lambda: resume(argv), folder)


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_mutated_vocab_json(runs, tmp_path_factory, data):
    folder = runs["classifier"][0]
    document = json.loads((folder / "vocab.json").read_text())
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    if data.draw(st.integers(0, 9)) == 0:
        path.write_text(data.draw(st.sampled_from(WHOLE_FILES)))
    else:
        where = data.draw(st.sampled_from([*field_paths(document), ("tokens", 3)]))
        path.write_text(replaced(document, where, data.draw(st.sampled_from(REPLACEMENTS))))
    assert_works_or_names(lambda: Vocabulary.load(path), path)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_course_files(tmp_path_factory.mktemp("coco") / "coco_captioning")


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_mutated_coco_vocabulary(coco, tmp_path_factory, data):
    base = tmp_path_factory.mktemp("fuzz") / "coco_captioning"
    shutil.copytree(coco, base)
    vocab_file = base / "coco2014_vocab.json"
    document = json.loads(vocab_file.read_text())
    if data.draw(st.integers(0, 9)) == 0:
        vocab_file.write_text(data.draw(st.sampled_from(WHOLE_FILES)))
    else:
        where = data.draw(st.sampled_from([*field_paths(document), ("idx_to_word", 5)]))
        vocab_file.write_text(replaced(document, where, data.draw(st.sampled_from(REPLACEMENTS))))
    assert_works_or_names(lambda: load_coco_data(base), vocab_file)
