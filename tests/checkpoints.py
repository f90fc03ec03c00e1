"""Checkpoint folders in the tests: comparisons of training runs (the resume tests), and
small runs of both trainers with helpers to break their files (the hostile-input tests)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from jaxseq.train.checkpoint import META_FILE, STATE_FILE, latest_checkpoint, read_metadata

TIMING_KEYS = ("seconds", "eval_seconds")


def without_timing(value):
    """Metadata with the wall-clock entries (which differ between any two runs) left out."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def saved_state(path: Path):
    """The raw arrays of checkpoint folder `path` (as nested dicts, no template) and its metadata."""
    return serialization.msgpack_restore((Path(path) / STATE_FILE).read_bytes()), read_metadata(path)


def assert_same_run(folder_a: Path, folder_b: Path) -> dict:
    """The latest checkpoints of two run folders hold bit-identical arrays and the same
    metadata (histories included, timings excluded), and a user gets the same from both:
    the loaders of `jaxseq.inference` read them and predict alike (`same_use`). Returns
    that metadata."""
    state_a, meta_a = saved_state(latest_checkpoint(folder_a))
    state_b, meta_b = saved_state(latest_checkpoint(folder_b))
    assert jax.tree.structure(state_a) == jax.tree.structure(state_b)
    jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
    assert without_timing(meta_a) == without_timing(meta_b)
    assert_same_use(folder_a, folder_b)
    return meta_a


PREDICT_SENTENCES = ["( [ ] )", ") ( ] [", "( ( ) )"]


def _command_output(argv: list[str], folder: Path) -> str:
    """stdout of `jaxseq ARGV` run in this process (exit 0 asserted), the folder's path
    replaced by a placeholder so that two runs' outputs compare."""
    from jaxseq import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0, argv
    return out.getvalue().replace(str(folder), "<run>")


def _classifier_outputs(folder: Path) -> np.ndarray:
    """Logits of the best checkpoint of a classifier run written without a vocabulary file,
    loaded as `jaxseq.inference` loads one: against the whole training state the metadata
    describes (what `cola predict` does, short of the vocabulary)."""
    from jaxseq.models.classifiers import classifier_from_config, make_logits_fn, predict_logits
    from jaxseq.train.checkpoint import best_checkpoint, load_checkpoint
    from jaxseq.train.classifier import ClassifierTrainConfig, classifier_checkpoint_template, recorded_steps_per_epoch

    path = best_checkpoint(folder) or latest_checkpoint(folder)
    meta = read_metadata(path)
    model = classifier_from_config(meta["model"])
    template = classifier_checkpoint_template(model, ClassifierTrainConfig(**meta["train_config"]),
                                              recorded_steps_per_epoch(meta))
    params = load_checkpoint(path, template)[0]["params"]
    ids = np.random.default_rng(0).integers(1, model.vocab_size, (8, model.max_length))
    return np.asarray(predict_logits(make_logits_fn(model), params, ids))


def assert_same_use(folder_a: Path, folder_b: Path) -> None:
    """What a user does with both runs gives the same: `lm generate` of a language model,
    `caption sample` of a captioner, `cola predict` of a classifier with its vocab.json, or the logits of a classifier loaded as the
    inference loader does (a run of `train_classifier` without a vocabulary)."""
    from jaxseq.train.classifier import VOCAB_FILE
    from jaxseq.train.run_metadata import run_kind

    kind = run_kind(read_metadata(latest_checkpoint(folder_a)))
    if kind == "language_model":
        outputs = [_command_output(["lm", "generate", "--checkpoint", str(folder), "--prompt", "the", "--length", "60",
                                    "--top-k", "5", "--seed", "3"], folder) for folder in (folder_a, folder_b)]
        assert len(outputs[0]) > 60
    elif kind == "captioner":
        outputs = [_command_output(["caption", "sample", "--checkpoint", str(folder), "--num", "3"], folder)
                   for folder in (folder_a, folder_b)]
        assert outputs[0].count("generated:") == 3
    elif (Path(folder_a) / VOCAB_FILE).is_file():
        outputs = [_command_output(["cola", "predict", "--checkpoint", str(folder), *PREDICT_SENTENCES], folder)
                   for folder in (folder_a, folder_b)]
        assert len(outputs[0].strip().splitlines()) == len(PREDICT_SENTENCES)
    else:
        outputs = [_classifier_outputs(folder) for folder in (folder_a, folder_b)]
        np.testing.assert_array_equal(*outputs)
        return
    assert outputs[0] == outputs[1]


# -- small runs to break: both kinds of checkpoints, made by the command lines ---------------

CAPTIONER_ARGV = ["caption", "train", "--cell", "lstm", "--max-train", "100", "--epochs", "2", "--batch-size", "50",
                  "--hidden-dim", "8", "--wordvec-dim", "8", "--quiet"]
CLASSIFIER_MODEL_ARGV = ["--hidden-dim", "8", "--num-heads", "2", "--dim-k", "4", "--dim-v", "4",
                         "--dim-feedforward", "8", "--min-count", "1", "--max-length", "16", "--no-progress"]


def run_quietly(argv) -> int:
    """`jaxseq argv` in this process with its stdout swallowed; its exit status."""
    from jaxseq import cli

    with contextlib.redirect_stdout(io.StringIO()):
        return cli.main([str(arg) for arg in argv])


def train_tiny_captioner(folder: Path) -> list:
    """`jaxseq caption train` of a tiny LSTM on 100 built-in scenes for 2 epochs into `folder`
    (checkpoints after steps 2 and 4; the last one is the best). Returns the argv used."""
    argv = [*CAPTIONER_ARGV, "--checkpoint-dir", folder]
    assert run_quietly(argv) == 0
    return argv


def train_tiny_classifier(folder: Path) -> list:
    """`jaxseq classify train` of a tiny transformer on bracket sentences for 2 epochs into
    `folder` (two checkpoints, vocab.json). Returns the argv used."""
    from tests.bracket_task import write_tsv

    folder.mkdir(parents=True, exist_ok=True)
    argv = ["classify", "train", "--train", write_tsv(folder.parent / f"{folder.name}-train.tsv", 120, 1),
            "--dev", write_tsv(folder.parent / f"{folder.name}-dev.tsv", 40, 2), "--epochs", "2",
            *CLASSIFIER_MODEL_ARGV, "--checkpoint-dir", folder]
    assert run_quietly(argv) == 0
    return argv


_TINY_RUNS: dict[str, tuple[Path, list]] = {}


def tiny_runs(tmp_path_factory) -> dict[str, tuple[Path, list]]:
    """{"captioner": (run folder, train argv), "classifier": (...)}: made once per test session
    (by `train_tiny_captioner` / `train_tiny_classifier`) and shared by the modules that
    break checkpoints, which must copy a run before changing anything in it."""
    if not _TINY_RUNS:
        base = tmp_path_factory.mktemp("tiny-runs")
        for kind, train in (("captioner", train_tiny_captioner), ("classifier", train_tiny_classifier)):
            _TINY_RUNS[kind] = (base / kind, train(base / kind))
    return _TINY_RUNS


def rewrite_metadata(checkpoint: Path, change) -> None:
    """Replace checkpoint `checkpoint`'s meta.json by `change(meta)` (it may edit in place)."""
    meta_file = Path(checkpoint) / META_FILE
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    changed = change(meta)
    meta_file.write_text(json.dumps(meta if changed is None else changed), encoding="utf-8")


def rewrite_state(checkpoint: Path, change) -> None:
    """Replace checkpoint `checkpoint`'s arrays (nested dicts, as saved) by `change(state)`."""
    state_file = Path(checkpoint) / STATE_FILE
    state = serialization.msgpack_restore(state_file.read_bytes())
    changed = change(state)
    state_file.write_bytes(serialization.msgpack_serialize(state if changed is None else changed))


def first_float_entry(tree: dict, prefix=()) -> tuple:
    """The key path of the first floating-point array in a nested dict of arrays."""
    for key in sorted(tree):
        value = tree[key]
        if isinstance(value, dict):
            found = first_float_entry(value, (*prefix, key))
            if found:
                return found
        elif np.issubdtype(np.asarray(value).dtype, np.floating):
            return (*prefix, key)
    return ()


def replace_entry(tree: dict, path: tuple, make) -> None:
    """tree[path] = make(tree[path]) for a key path into nested dicts."""
    *parents, last = path
    for key in parents:
        tree = tree[key]
    tree[last] = make(tree[last])
