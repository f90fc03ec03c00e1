"""The run log (jaxseq.train.run_log), written by the one loop for both trainers: metrics.jsonl
and TensorBoard event files that agree with the returned histories, resumed runs that log
exactly what an uninterrupted run logs, option errors before training, `jaxseq plot`, and
the progress bars' rule (jaxseq.progress)."""

from __future__ import annotations

import json
import shutil
import struct
import warnings

import numpy as np
import pytest

from jaxseq import cli
from jaxseq.data.synthetic_captions import random_captioning_data
from jaxseq.models.captioning import CaptioningRNN
from jaxseq.train.captioning import CaptioningSolver
from jaxseq.train.checkpoint import list_checkpoints, read_metadata
from jaxseq.train.classifier import ClassifierTrainConfig, learning_rate_schedule, train_classifier
from jaxseq.train.run_log import DEFAULT_LOG_EVERY, METRICS_FILE, RunLog, read_metrics
from tests.bracket_task import encoded_task

TIMING = {"train/steps_per_second", "epoch/seconds", "epoch/eval_seconds"}
CONFIG = ClassifierTrainConfig(epochs=3, batch_size=32, learning_rate=3e-3, schedule="cosine", warmup_epochs=0.5)
STEPS_PER_EPOCH = 7  # ceil(200 / 32)
LOG_EVERY = 3


def read_event_file(path):
    """(scalars [(step, tag, value)], purge steps (SessionLog START)) of one TensorBoard event
    file, read with tensorboardX's protobufs from the TFRecord framing (length, crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    scalars, purges = [], []
    raw, offset = path.read_bytes(), 0
    while offset < len(raw):
        (length,) = struct.unpack("<Q", raw[offset:offset + 8])
        event = Event.FromString(raw[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            purges.append(event.step)
        scalars += [(event.step, value.tag, value.simple_value) for value in event.summary.value]
    return scalars, purges


def event_files(folder):
    return sorted(folder.glob("events.out.tfevents.*"))  # the order TensorBoard reads them in


def event_scalars(folder):
    """The scalars and purge steps of all the folder's event files, in reading order."""
    scalars, purges = [], []
    for path in event_files(folder):
        more, purged = read_event_file(path)
        scalars, purges = scalars + more, purges + purged
    return scalars, purges


def tensorboard_view(folder):
    """What TensorBoard shows: per (tag, step) the last value, each file's purge applied first."""
    shown: dict[tuple[str, int], float] = {}
    for path in event_files(folder):
        scalars, purges = read_event_file(path)
        for purge in purges:
            shown = {key: value for key, value in shown.items() if key[1] < purge}
        shown.update({(tag, step): value for step, tag, value in scalars})
    return shown


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def untimed(entries):
    return [{k: v for k, v in e.items() if k != "wall_time"} for e in entries if e["name"] not in TIMING]


@pytest.fixture(scope="module")
def brackets():
    return encoded_task(200, 60, seed=0)


def classify(brackets, folder, **options):
    model, train, val = brackets
    options = {"progress": False, "log": None, "keep": 100, "log_every": LOG_EVERY, **options}
    return train_classifier(model, train, val, options.pop("config", CONFIG), checkpoint_dir=folder, **options)


@pytest.fixture(scope="module")
def classifier_run(brackets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    return folder, classify(brackets, folder, checkpoint_every=4)


def test_classifier_writes_metrics_and_events_matching_its_history(classifier_run):
    folder, result = classifier_run
    metrics = folder / "logs" / METRICS_FILE
    entries = lines(metrics)
    assert all(set(e) == {"step", "epoch", "name", "value", "wall_time"} for e in entries)
    loss_steps = [e["step"] for e in entries if e["name"] == "train/loss"]
    assert loss_steps == [3, 6, 7, 9, 12, 14, 15, 18, 21]  # every 3rd step and each epoch's last
    assert [e["epoch"] for e in entries if e["name"] == "train/loss"] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    steps = [e["step"] for e in entries]
    assert steps == sorted(steps)
    for name, key in (("val/mcc", "val_mcc"), ("val/loss", "val_loss"), ("val/accuracy", "val_accuracy"),
                      ("epoch/train_loss", "train_loss")):
        points = [e for e in entries if e["name"] == name]
        assert [(p["step"], p["epoch"]) for p in points] == [(7, 1), (14, 2), (21, 3)]
        assert [p["value"] for p in points] == pytest.approx([h[key] for h in result.history])
    schedule = learning_rate_schedule(CONFIG, STEPS_PER_EPOCH)
    rates = [(e["step"], e["value"]) for e in entries if e["name"] == "train/learning_rate"]
    assert rates == [(step, pytest.approx(float(schedule(step - 1)))) for step in loss_steps]
    assert all(e["value"] > 0 for e in entries if e["name"] == "train/steps_per_second")

    scalars, purges = event_scalars(folder / "logs")
    assert purges == [1]  # a fresh run: everything older is hidden
    logged = [(e["step"], e["name"], e["value"]) for e in entries if e["value"] is not None]
    assert [(s, t) for s, t, _ in scalars] == [(s, t) for s, t, _ in logged]
    np.testing.assert_allclose([v for *_, v in scalars], [v for *_, v in logged], rtol=1e-6)
    assert read_metrics(metrics)[0].name == "train/loss"


def test_pandas_reads_a_tidy_table(classifier_run):
    import pandas as pd
    frame = pd.read_json(classifier_run[0] / "logs" / METRICS_FILE, lines=True)
    assert list(frame.columns) == ["step", "epoch", "name", "value", "wall_time"]
    wide = frame.pivot_table(index="step", columns="name", values="value")
    assert wide["val/mcc"].dropna().index.tolist() == [7, 14, 21]


@pytest.mark.parametrize("resume_step", [4, 7])  # in the middle of epoch 1 / at its end
def test_a_resumed_classifier_logs_what_an_uninterrupted_one_logs(brackets, classifier_run, tmp_path, resume_step):
    straight_folder, _ = classifier_run
    # As a run killed after checkpoint `resume_step` leaves its folder, log included (lines
    # past the checkpoint, which the resumed run must drop, and a line cut short).
    for path in list_checkpoints(straight_folder):
        if read_metadata(path)["step"] <= resume_step:
            shutil.copytree(path, tmp_path / path.name)
    shutil.copytree(straight_folder / "logs", tmp_path / "logs")
    with open(tmp_path / "logs" / METRICS_FILE, "a") as handle:
        handle.write('{"step": 22, "epoch": 4, "na')
    classify(brackets, tmp_path, checkpoint_every=4, resume=True)

    resumed, straight = lines(tmp_path / "logs" / METRICS_FILE), lines(straight_folder / "logs" / METRICS_FILE)
    steps = [(e["step"], e["name"]) for e in resumed]
    assert len(steps) == len(set(steps))  # no step logged twice
    assert untimed(resumed) == untimed(straight)
    _, purges = event_scalars(tmp_path / "logs")
    assert purges == [1, resume_step + 1]
    shown = {key: value for key, value in tensorboard_view(tmp_path / "logs").items() if key[0] not in TIMING}
    expected = {key: value for key, value in tensorboard_view(straight_folder / "logs").items()
                if key[0] not in TIMING}
    assert shown.keys() == expected.keys()
    np.testing.assert_allclose([shown[k] for k in expected], list(expected.values()), rtol=1e-6)


def tiny_captioner(**options):
    data = random_captioning_data(60, 20, feature_dim=6, caption_length=7, vocab_size=15, min_words=2, seed=1)
    model = CaptioningRNN(15, wordvec_dim=4, hidden_dim=8, cell_type="rnn")
    settings = dict(optim_config={"learning_rate": 1e-2}, lr_decay=0.5, num_epochs=3, batch_size=20,
                    verbose=False, log_every=2)
    return CaptioningSolver(model, data, **{**settings, **options})


def test_captioner_logs_through_the_same_loop_and_resumes_without_duplicates(tmp_path):
    straight = tiny_captioner(log_dir=tmp_path / "straight").train()  # no checkpoints, a log all the same
    entries = lines(tmp_path / "straight" / METRICS_FILE)
    assert [e["step"] for e in entries if e["name"] == "train/loss"] == [2, 3, 4, 6, 8, 9]
    first = [e["value"] for e in entries if e["name"] == "train/loss"][0]
    assert first == pytest.approx(np.mean(straight.loss_history[:2]))
    assert [e["value"] for e in entries if e["name"] == "val/loss"] == pytest.approx(straight.val_loss_history)
    rates = {e["epoch"]: e["value"] for e in entries if e["name"] == "train/learning_rate"}
    assert rates == {1: pytest.approx(1e-2), 2: pytest.approx(5e-3), 3: pytest.approx(2.5e-3)}

    run = tmp_path / "run"
    tiny_captioner(checkpoint_dir=run, num_epochs=2).train()
    tiny_captioner(checkpoint_dir=run).train()
    resumed = lines(run / "logs" / METRICS_FILE)
    assert untimed(resumed) == untimed(entries)
    assert event_scalars(run / "logs")[1] == [1, 7]


def test_an_unusable_log_dir_is_an_option_error_before_training(brackets, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"log folder .*file.*exists and is a file, not a directory"):
        tiny_captioner(checkpoint_dir=tmp_path / "c1", log_dir=blocker)
    with pytest.raises(ValueError, match=r"log folder .*file/logs: lies under .*file"):
        classify(brackets, tmp_path / "c2", log_dir=blocker / "logs")
    with pytest.raises(ValueError, match="log_every must be a positive int"):
        classify(brackets, tmp_path / "c2", log_every=0)
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()

    rc = cli.main(["caption", "train", "--epochs", "1", "--max-train", "50", "--quiet",
                   "--checkpoint-dir", str(tmp_path / "c3"), "--log-dir", str(blocker)])
    err = capsys.readouterr().err
    assert rc == 2 and f"--log-dir {blocker}: exists and is a file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c3").exists()


def test_a_failing_write_never_stops_training(tmp_path):
    said = []
    log = RunLog(tmp_path / "logs", log=said.append)
    log.scalars(1, 1, {"train/loss": 1.0})
    log._jsonl.close()  # as a disk that went away
    log.scalars(2, 1, {"train/loss": 0.5})
    log.scalars(3, 1, {"train/loss": 0.25})
    log.flush()
    log.close()
    assert len(said) == 1 and "write failed" in said[0] and "training goes on" in said[0]
    assert not log.enabled


def test_plot_draws_the_run_and_refuses_bad_files_in_one_line(classifier_run, tmp_path, capsys):
    folder, _ = classifier_run
    png = tmp_path / "curves.png"
    assert cli.main(["plot", str(folder), "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000
    assert "wrote" in capsys.readouterr().out

    good = (folder / "logs" / METRICS_FILE).read_text().splitlines()
    for name, text, message in [
        ("corrupt", good[0] + "\n{not json\n", r"corrupt/metrics.jsonl, line 2: not valid JSON"),
        ("huge", good[0] + "\n" + "[" * 100_000 + "\n", r"huge/metrics.jsonl, line 2: longer than 65536 bytes"),
        ("typed", '{"step": "one", "epoch": 1, "name": "x", "value": 1}\n', r"typed/metrics.jsonl, line 1: \"step\""),
        ("empty", "", r"empty/metrics.jsonl: holds no points"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / METRICS_FILE).write_text(text)
        assert cli.main(["plot", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert __import__("re").search(message, err), err
    assert cli.main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no metrics.jsonl in" in capsys.readouterr().err


def test_plot_writes_where_the_user_said(classifier_run, tmp_path, capsys, monkeypatch):
    folder, _ = classifier_run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pictures").mkdir()
    for given, written in [("pictures", "pictures/curves.png"),  # a folder: a file inside it
                           ("pl/noext", "pl/noext"),  # no suffix: that very name
                           ("pl/run.png", "pl/run.png")]:
        assert cli.main(["plot", str(folder), "--output", given]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"wrote {written} ("), out
        assert (tmp_path / written).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["curves.png", "noext", "run.png"]


def test_plot_blames_the_title_or_the_key_in_one_line(classifier_run, tmp_path, capsys):
    folder, _ = classifier_run
    assert cli.main(["plot", str(folder), "--output", str(tmp_path / "a.png"), "--title", "$\\frac{$"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxseq plot: error: --title '$\\\\frac{$' is not valid matplotlib mathtext (")
    assert err.endswith("); write \\$ for a dollar sign\n") and err.count("\n") == 1, err
    assert not (tmp_path / "a.png").exists()
    assert cli.main(["plot", str(folder), "--output", str(tmp_path / "b.png"), "--title", "costs \\$5, $x^2$"]) == 0
    capsys.readouterr()

    (tmp_path / "huge").mkdir()
    (tmp_path / "huge" / METRICS_FILE).write_text('{"step": 1, "epoch": 1, "name": "train/loss", "value": 1}\n'
                                                  '{"step": 10000000000000000000000, "epoch": 1, "name": '
                                                  '"train/loss", "value": 1}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        assert cli.main(["plot", str(tmp_path / "huge")]) == 2
    assert capsys.readouterr().err == (f"jaxseq plot: error: {tmp_path / 'huge' / METRICS_FILE}, line 2: \"step\" "
                                       "must be an integer in [0, 2147483647], got 10000000000000000000000\n")


def test_cli_default_log_every_is_the_library_default():
    args = cli.build_parser().parse_args(["caption", "train"])
    assert args.log_every == DEFAULT_LOG_EVERY and args.log_dir is None
    args = cli.build_parser().parse_args(["classify", "train", "--train", "a", "--dev", "b", "--log-dir", "x"])
    assert args.log_every == DEFAULT_LOG_EVERY and str(args.log_dir) == "x"


def test_progress_bars_only_where_someone_sees_them(monkeypatch):
    import io

    from jaxseq.progress import bar_visible, progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delitem(__import__("sys").modules, "ipykernel", raising=False)
    assert not bar_visible(io.StringIO()) and bar_visible(Terminal())
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_bar(10, enabled=True).disable  # a pipe or a file: no bar
    monkeypatch.setattr("sys.stderr", Terminal())
    assert not progress_bar(10, enabled=True).disable and progress_bar(10, enabled=False).disable


def test_decoding_a_split_in_batches_gives_the_same_captions(monkeypatch):
    import jaxseq.inference.captioning as inference

    solver = tiny_captioner(num_epochs=1)
    variables = {"params": solver.params}
    whole = inference.generate_captions(solver.model, variables, solver.data, "train", decode="beam", beam_size=2)
    monkeypatch.setattr(inference, "DECODE_BATCH", 7)  # 60 captions: 9 batches, the last one padded
    batched = inference.generate_captions(solver.model, variables, solver.data, "train", decode="beam", beam_size=2)
    assert batched == whole
