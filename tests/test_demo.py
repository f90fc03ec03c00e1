"""`jaxseq demo` (what `make demo` runs): its steps in order, the summary, the outputs."""

from __future__ import annotations

import argparse

from jaxseq.commands import demo


def test_demo_runs_every_step_and_prints_a_summary(tmp_path, capsys, monkeypatch):
    ran = []

    def fake(title):
        def step(args):
            ran.append(title)
            (args.output_dir / f"{len(ran)}.txt").write_text(title)

        return step

    monkeypatch.setattr(demo, "DEMO_STEPS", [(title, fake(title)) for title, _ in demo.DEMO_STEPS])
    assert demo.run(argparse.Namespace(output_dir=tmp_path / "out", seed=0)) == 0
    out = capsys.readouterr().out
    assert ran == ["Layer gradient checks", "LSTM captioning on the built-in set",
                   "Transformer sentence classifier", "Short benchmark"]
    assert "=== Summary ===" in out and out.count(" s\n") >= 4
    assert "1.txt" in out and "4.txt" in out


def test_benchmark_thread_pools_are_quieted_before_the_first_step(tmp_path, monkeypatch):
    import os
    import sys

    sys.path.insert(0, "benchmarks/speed")
    import harness

    for key in harness.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    seen = {}
    monkeypatch.setattr(demo, "DEMO_STEPS", [("first", lambda args: seen.update(os.environ))])
    assert demo.run(argparse.Namespace(output_dir=tmp_path / "out", seed=0)) == 0
    assert {key: seen.get(key) for key in harness.QUIET_ENV} == harness.QUIET_ENV


def test_a_signal_stops_the_demo_without_suggesting_resume(tmp_path, capsys, monkeypatch):
    from jaxseq.train.interrupt import TrainingInterrupted

    def interrupted(args):
        raise TrainingInterrupted("SIGINT", 7, args.output_dir / "classifier" / "ckpt-00000007")

    def never(args):
        raise AssertionError("the demo goes on after a signal")

    monkeypatch.setattr(demo, "DEMO_STEPS", [("Transformer sentence classifier", interrupted), ("Next", never)])
    assert demo.run(argparse.Namespace(output_dir=tmp_path / "out", seed=0)) == 130
    err = capsys.readouterr().err
    assert "demo stopped by SIGINT in step 'Transformer sentence classifier'" in err and "--resume" not in err


def test_short_benchmark_step_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "BENCH_SHAPE", (2, 3, 4, 5))
    dict(demo.DEMO_STEPS)["Short benchmark"](argparse.Namespace(output_dir=tmp_path, seed=0))
    out = capsys.readouterr().out
    for contender in ("jaxseq", "autodiff-scan", "flax", "torch", "numpy"):
        assert f"| {contender} |" in out
    assert "ratio to jaxseq" in out
