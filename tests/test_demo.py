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
                   "Transformer sentence classifier", "Character language model", "Short benchmark"]
    assert "=== Summary ===" in out and out.count(" s\n") >= 4
    assert "1.txt" in out and "4.txt" in out


def test_benchmark_thread_pools_are_quieted_before_the_first_step(tmp_path, monkeypatch):
    import os

    from jaxseq import timing

    for key in timing.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    seen = {}
    monkeypatch.setattr(demo, "DEMO_STEPS", [("first", lambda args: seen.update(os.environ))])
    assert demo.run(argparse.Namespace(output_dir=tmp_path / "out", seed=0)) == 0
    assert {key: seen.get(key) for key in timing.QUIET_ENV} == timing.QUIET_ENV


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


def test_short_benchmark_step_prints_the_table_without_the_benchmarks_folder(tmp_path, capsys, monkeypatch):
    """The step times the package's contenders (jaxseq.contenders, jaxseq.timing): it runs
    outside a checkout, where benchmarks/ cannot be found."""
    from jaxseq.commands import bench

    def no_checkout(start=None):
        raise FileNotFoundError("benchmarks/ is not installed with the package")

    monkeypatch.setattr(bench, "find_runner", no_checkout)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "BENCH_SHAPE", (2, 3, 4, 5))
    dict(demo.DEMO_STEPS)["Short benchmark"](argparse.Namespace(output_dir=tmp_path, seed=0))
    out = capsys.readouterr().out
    for contender in ("jaxseq", "autodiff-scan", "flax", "torch", "numpy"):
        assert f"| {contender} |" in out
    assert "### lstm · fwd+bwd · (demo) N=2 T=3 D=4 H=5" in out and "ratio to jaxseq" in out
    assert "all contenders agree with jaxseq" in out and "make bench" in out


def test_short_benchmark_step_without_torch(tmp_path, capsys, monkeypatch):
    from jaxseq import contenders

    def no_torch(*args, **kwargs):
        raise ImportError("No module named 'torch' (hidden by the test)")

    monkeypatch.setattr(contenders, "torch_impl", no_torch)
    monkeypatch.setattr(demo, "BENCH_SHAPE", (2, 3, 4, 5))
    dict(demo.DEMO_STEPS)["Short benchmark"](argparse.Namespace(output_dir=tmp_path, seed=0))
    out = capsys.readouterr().out
    assert "| torch |" not in out and "PyTorch is not installed" in out
    for contender in ("jaxseq", "autodiff-scan", "flax", "numpy"):
        assert f"| {contender} |" in out
