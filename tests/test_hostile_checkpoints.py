"""Checkpoints that lie, through the command lines that read them: arrays of the right shapes
but the wrong dtype or not finite, metadata fields of the wrong type or size, a run of the
other kind, a corrupt checkpoint among good ones. Each gives one line naming the file and
the entry (exit status 2) — or, for a corrupt checkpoint in a run folder, a notice on stderr
and the next good checkpoint. (Every field against every JSON type: test_fuzz_checkpoints.py.)"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from jaxseq import cli
from jaxseq.train.checkpoint import best_checkpoint, list_checkpoints, read_metadata, save_checkpoint
from tests.checkpoints import (
    first_float_entry,
    replace_entry,
    rewrite_metadata,
    rewrite_state,
    tiny_runs,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"captioner": (run folder, train argv), "classifier": (...)}: made once, copied per test."""
    return tiny_runs(tmp_path_factory)


@pytest.fixture
def copy_of(runs, tmp_path):
    """copy_of(kind) -> (a fresh copy of that run's folder, its train argv pointed at the copy)."""

    def make(kind):
        folder, argv = runs[kind]
        copy = tmp_path / kind
        shutil.copytree(folder, copy)
        return copy, [str(copy) if str(arg) == str(folder) else arg for arg in argv]

    return make


def use_command(kind: str, folder) -> list[str]:
    """The command that reads a run of `kind`: prediction or sampling."""
    if kind == "classifier":
        return ["cola", "predict", "--checkpoint", str(folder), "( [ ] )"]
    return ["caption", "sample", "--checkpoint", str(folder), "--num", "2"]


def run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def one_line_error(argv, capsys, *fragments) -> str:
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


# -- item 7: arrays of the right shape but the wrong dtype, or not finite -------------------------

BAD_ARRAYS = {
    "int8": lambda a: np.zeros(a.shape, np.int8),
    "bool": lambda a: np.ones(a.shape, bool),
    "complex64": lambda a: a.astype(np.complex64),
    "float64": lambda a: a.astype(np.float64),
    "NaN": lambda a: np.full(a.shape, np.nan, a.dtype),
    "inf": lambda a: np.full(a.shape, -np.inf, a.dtype),
}


def break_params(checkpoint, bad: str) -> str:
    """Replace the first floating-point parameter of `checkpoint` by a BAD_ARRAYS array;
    returns the end of the entry's name in the error (`['params']['W1']['bias']` or
    `.params['W1']['bias']`, by the template's tree)."""
    entry = []

    def change(state):
        path = first_float_entry(state["params"])
        replace_entry(state["params"], path, BAD_ARRAYS[bad])
        entry.append("params']" + "".join(f"['{key}']" for key in path))

    rewrite_state(checkpoint, change)
    return entry[0]


@pytest.mark.parametrize("bad", sorted(BAD_ARRAYS))
@pytest.mark.parametrize("kind", ["classifier", "captioner"])
def test_parameters_of_the_wrong_dtype_or_not_finite_are_refused(copy_of, capsys, kind, bad):
    folder, _ = copy_of(kind)
    checkpoint = list_checkpoints(folder)[-1]
    for other in list_checkpoints(folder)[:-1]:
        shutil.rmtree(other)  # no good checkpoint to fall back on
    entry = break_params(checkpoint, bad)
    expected = "NaN or infinite" if bad in ("NaN", "inf") else f"has dtype {np.dtype(bad.lower())}, expected float32"
    err = one_line_error(use_command(kind, folder), capsys, f"checkpoint {checkpoint / 'state.msgpack'}: ", expected)
    assert entry in err.replace(".params[", "['params']["), err


@pytest.mark.parametrize("kind", ["classifier", "captioner"])
def test_resume_refuses_an_optimizer_state_that_is_not_finite(copy_of, capsys, kind):
    folder, argv = copy_of(kind)
    checkpoint = list_checkpoints(folder)[-1]

    def change(state):
        (slot,) = [key for key in state["opt_state"] if first_float_entry(state["opt_state"][key])]
        path = first_float_entry(state["opt_state"][slot])
        replace_entry(state["opt_state"][slot], path, BAD_ARRAYS["NaN"])

    rewrite_state(checkpoint, change)
    err = one_line_error([*argv, "--resume"], capsys, f"checkpoint {checkpoint / 'state.msgpack'}: ", "NaN or infinite")
    assert "opt_state" in err


def test_a_state_with_other_entries_or_non_arrays_is_refused(copy_of, capsys):
    folder, _ = copy_of("classifier")
    checkpoint = list_checkpoints(folder)[-1]
    shutil.rmtree(list_checkpoints(folder)[0])
    rewrite_state(checkpoint, lambda state: replace_entry(state["params"], first_float_entry(state["params"]),
                                                          lambda a: {"hidden": a}))
    one_line_error(use_command("classifier", folder), capsys, "state.msgpack: does not match the expected structure: "
                   "['params']['W1']['bias'] is missing (found ['params']['W1']['bias']['hidden'])")
    rewrite_state(checkpoint, lambda state: replace_entry(state["params"], ("W1", "bias"), lambda a: "text"))
    one_line_error(use_command("classifier", folder), capsys, "is a str, expected an array")


def test_a_state_file_far_larger_than_the_model_is_refused_unread(copy_of, capsys):
    folder, _ = copy_of("captioner")
    for checkpoint in list_checkpoints(folder):
        with open(checkpoint / "state.msgpack", "ab") as handle:
            handle.truncate(3 * 2**20)  # sparse: no disk used
    one_line_error(use_command("captioner", folder), capsys, "state.msgpack: 3145728 bytes, more than the")


# -- item 8: metadata fields of the wrong type, unknown keys, sizes beyond the limits ----------

def set_field(path, value):
    def change(meta):
        *parents, last = path
        for key in parents:
            meta = meta[key]
        meta[last] = value

    return change


META_CASES = [
    ("classifier", ("model", "hidden_dim"), [8], "model.hidden_dim must be an integer in [1, 65536], got a list"),
    ("classifier", ("model", "num_heads"), None, "model.num_heads must be an integer in [1, 65536], got null"),
    ("classifier", ("model", "dropout"), "0.1", "model.dropout must be a number in [0, 1), got '0.1'"),
    ("classifier", ("model", "param_dtype"), "float99", "model.param_dtype must be one of 'float16'"),
    ("classifier", ("model", "dtype"), "int8", "model.dtype must be null or one of 'float16'"),
    ("classifier", ("model", "vocab_size"), 10**10, "model.vocab_size must be an integer in [1, 1000000]"),
    ("classifier", ("model", "cell_type"), "lstm", "model has unknown keys 'cell_type'"),
    ("classifier", ("model", "num_heads"), 3, "model: ClassificationTransformer: hidden_dim (8) must be divisible"),
    ("classifier", ("train_config",), [1, 2], "train_config must be an object, got a list of 2 items"),
    ("classifier", ("train_config", "use_pad_mask"), "yes", "train_config.use_pad_mask must be true or false"),
    ("classifier", ("metric",), "0.5", "metric must be null or a number"),
    ("classifier", ("step",), -3, "step must be an integer in [0, 2147483647], got -3"),
    ("captioner", ("model", "hidden_dim"), None, "model.hidden_dim must be an integer in [1, 65536], got null"),
    ("captioner", ("model", "cell_type"), ["lstm"], "model.cell_type must be one of 'rnn', 'lstm', got a list"),
    ("captioner", ("model", "param_dtype"), "float99", "model.param_dtype must be one of 'float16'"),
    ("captioner", ("feature_dim",), 10**10, "feature_dim must be an integer in [1, 65536], got 10000000000"),
    ("captioner", ("lr_decay",), "0.95", "lr_decay must be a number > 0, got '0.95'"),
    ("captioner", ("optim_config",), {"learning_rate": 0.1, "momentum": 0.9}, "unknown optim_config keys"),
    ("captioner", ("idx_to_word",), ["<NULL>", "<START>"], "idx_to_word has 2 words but model.vocab_size is"),
    ("captioner", ("metric",), [31.5], "metric must be null or a number"),
    ("captioner", ("data", "options", "bogus"), 1, "data.options has unknown keys 'bogus'"),
    ("captioner", ("data", "options", "feature_dim"), 10**10, "data.options.feature_dim must be an integer in"),
    ("captioner", ("data", "options"), {"num_train": 10**5, "feature_dim": 4096},
     "data.options asks for 411648000 feature values ((num_train + num_val) x feature_dim), more than the"),
    ("captioner", ("data", "source"), "imagenet", "data.source must be one of 'builtin', 'coco'"),
]


@pytest.mark.parametrize("kind, path, value, message", META_CASES,
                         ids=[f"{kind}-{'.'.join(path)}-{str(value)[:12]}" for kind, path, value, _ in META_CASES])
def test_metadata_of_the_wrong_type_or_size_names_file_and_key(copy_of, capsys, kind, path, value, message):
    folder, _ = copy_of(kind)
    for checkpoint in list_checkpoints(folder):
        rewrite_metadata(checkpoint, set_field(path, value))
    err = one_line_error(use_command(kind, folder), capsys, f"checkpoint {folder}/ckpt-", "/meta.json: ", message)
    if len(list_checkpoints(folder)) > 1:
        assert err.strip().endswith(f"(and the other checkpoint in {folder} cannot be used either)")


RESUME_CASES = [
    ("captioner", ("loss_history",), [], "loss_history holds 0 losses, one per step of 4 expected"),
    ("captioner", ("epoch",), 3, "step 4 does not follow epoch 3 of 2 iterations"),
    ("classifier", ("epoch",), 1, "epoch is 1 but history holds 2 records"),
    ("classifier", ("epoch_losses",), [0.5], "is not 2 epochs of 8 steps and the 1 losses of epoch_losses"),
    ("classifier", ("best_step",), 3, "best_step 3 is not the end of best_epoch"),
    ("classifier", ("history", 0, "val_mcc"), "0.0", "history[0].val_mcc must be a number in [-1, 1], got '0.0'"),
    ("classifier", ("best_val_mcc",), None, "best_val_mcc is null although best_epoch is"),
    ("classifier", ("best_val_mcc",), 1e19, "best_val_mcc must be null or a number in [-1, 1], got 1e+19"),
    ("classifier", ("best_val_mcc",), -1, "best_val_mcc -1 is not the val_mcc of best_epoch 1 in history (0.0)"),
    ("classifier", ("history", 1, "val_mcc"), -1.5, "history[1].val_mcc must be a number in [-1, 1], got -1.5"),
]


@pytest.mark.parametrize("kind, path, value, message", RESUME_CASES,
                         ids=[f"{kind}-{'.'.join(map(str, path))}" for kind, path, _, _ in RESUME_CASES])
def test_resume_refuses_progress_that_does_not_add_up(copy_of, capsys, kind, path, value, message):
    folder, argv = copy_of(kind)
    latest = list_checkpoints(folder)[-1]
    rewrite_metadata(latest, set_field(path, value))
    one_line_error([*argv, "--resume"], capsys, f"checkpoint {latest}", message)


@pytest.mark.parametrize("kind", ["classifier", "captioner"])
def test_resume_refuses_a_state_at_another_step_than_its_metadata(copy_of, capsys, kind):
    folder, argv = copy_of(kind)
    latest = list_checkpoints(folder)[-1]
    step = read_metadata(latest)["step"]
    rewrite_state(latest, lambda state: state.update(step=np.asarray(step + 1, np.int32)))
    one_line_error([*argv, "--resume"], capsys, f"checkpoint {latest}: its state is at step {step + 1} but "
                   f"meta.json says step {step}")


NESTED = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("content, message", [
    (NESTED, "nested more than 64 deep"),
    ('{"step": %s}' % ("7" * 100_000), "holds a number 100000 characters long"),
    ('{"step": 1, "metric": ' + "[" * 200_000, "nested more than 64 deep"),
])
@pytest.mark.parametrize("kind", ["classifier", "captioner"])
def test_metadata_nested_deep_or_with_huge_numbers_names_the_file(copy_of, capsys, kind, content, message):
    folder, _ = copy_of(kind)
    for checkpoint in list_checkpoints(folder):
        (checkpoint / "meta.json").write_text(content)
    newest = list_checkpoints(folder)[-1]  # none can be read: the error is the newest one's
    one_line_error(use_command(kind, folder), capsys, f"checkpoint {newest / 'meta.json'}: ", message)


@pytest.mark.parametrize("content, message", [
    (NESTED, "nested more than 64 deep"),
    ('{"tokens": ["[PAD]", "[UNK]", "[CLS]"], "min_count": %s}' % ("1" * 100_000), "holds a number 100000"),
    ('{"tokens": ["[PAD]", "[UNK]", "[CLS]"], "min_count": [1]}', "min_count must be an integer in [1, "),
    ('{"tokens": ["[PAD]", "[UNK]", "[CLS]"], "min_count": null}', "min_count must be an integer in [1, "),
    ('{"tokens": ["[PAD]", "[UNK]", "[CLS]", 7]}', "tokens[3] must be a string, got 7"),
])
def test_a_hostile_vocab_json_names_the_file(copy_of, capsys, content, message):
    folder, _ = copy_of("classifier")
    (folder / "vocab.json").write_text(content)
    one_line_error(use_command("classifier", folder), capsys, f"vocabulary file {folder / 'vocab.json'}: ", message)


def test_a_checkpoint_of_the_other_kind_says_what_the_folder_holds(runs, capsys):
    captioner, classifier = runs["captioner"][0], runs["classifier"][0]
    one_line_error(use_command("classifier", captioner), capsys, "is not a sentence-classifier checkpoint: it holds "
                   "an image-captioning run", "use it with `jaxseq caption sample` or `jaxseq caption eval`")
    for action in ("sample", "eval"):
        one_line_error(["caption", action, "--checkpoint", classifier], capsys, "is not an image-captioning "
                       "checkpoint: it holds a sentence-classifier run", "use it with `jaxseq cola predict`")
    one_line_error([*runs["classifier"][1][:-1], captioner, "--resume"], capsys,
                   "is not a sentence-classifier checkpoint")


# -- item 9: a corrupt checkpoint in a run folder does not block it ---------------------------

def test_predict_falls_back_from_a_corrupt_checkpoint_and_says_so(copy_of, capsys):
    folder, _ = copy_of("classifier")
    best, other = best_checkpoint(folder), [p for p in list_checkpoints(folder) if p != best_checkpoint(folder)][0]
    code, out, err = run(use_command("classifier", folder), capsys)
    assert code == 0 and err == ""
    expected = out

    (other / "meta.json").write_text('{"step": 1, "metric": "high"}')  # a corrupt non-best checkpoint
    code, out, err = run(use_command("classifier", folder), capsys)
    assert code == 0 and out == expected
    assert err.strip() == (f"skipped checkpoint {other.name} (checkpoint {other / 'meta.json'}: metric must be null "
                           f"or a number (NaN and infinities included), got 'high'); using {best}")

    shutil.rmtree(other)
    shutil.copytree(best, other)  # two good ones again, then break the best one's arrays
    rewrite_metadata(other, set_field(("metric",), -1.0))
    break_params(best, "NaN")
    code, out, err = run(use_command("classifier", folder), capsys)
    assert code == 0 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"skipped checkpoint {best.name} (checkpoint {best / 'state.msgpack'}: ['params']")
    assert err.strip().endswith(f"NaN or infinite values; a checkpoint's arrays must be finite); using {other}")


def test_sample_falls_back_to_the_checkpoint_before_a_corrupt_latest(copy_of, capsys):
    folder, _ = copy_of("captioner")
    earlier, latest = list_checkpoints(folder)
    (latest / "meta.json").write_bytes(b"\x00\x01")
    code, out, err = run(use_command("captioner", folder), capsys)
    assert code == 0 and "generated:" in out
    assert err.startswith(f"skipped checkpoint {latest.name} (checkpoint {latest / 'meta.json'}: not valid JSON")
    assert err.strip().endswith(f"; using {earlier}")


def test_saving_keeps_checkpoints_it_cannot_read(tmp_path):
    state = {"w": np.zeros(3, np.float32)}
    save_checkpoint(tmp_path, 1, state, metric=0.9, keep=1)
    save_checkpoint(tmp_path, 2, state, metric=0.1, keep=1)  # kept: 2 (the last) and 1 (the best)
    (tmp_path / "ckpt-00000001" / "meta.json").write_text("{")
    save_checkpoint(tmp_path, 3, state, metric=0.2, keep=1)  # 1 may be the best: it stays
    assert [path.name for path in list_checkpoints(tmp_path)] == ["ckpt-00000001", "ckpt-00000003"]
    assert best_checkpoint(tmp_path).name == "ckpt-00000003" and read_metadata(tmp_path / "ckpt-00000003")["step"] == 3


def test_a_checkpoint_too_large_to_read_back_is_not_written(tmp_path, monkeypatch):
    from jaxseq.train import checkpoint

    state = {"w": np.zeros(3, np.float32)}
    save_checkpoint(tmp_path, 1, state, metadata={"loss_history": [0.5] * 10})
    monkeypatch.setattr(checkpoint, "MAX_META_BYTES", 200)
    with pytest.raises(ValueError, match=r"ckpt-00000002: its metadata takes \d+ bytes, more than the 200 a "
                                         r"meta.json may hold; not written \(the checkpoints before it are kept\)"):
        save_checkpoint(tmp_path, 2, state, metadata={"loss_history": [0.5] * 20})
    assert [path.name for path in list_checkpoints(tmp_path)] == ["ckpt-00000001"]
