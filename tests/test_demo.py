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


def test_short_benchmark_step_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "BENCH_SHAPE", (2, 3, 4, 5))
    dict(demo.DEMO_STEPS)["Short benchmark"](argparse.Namespace(output_dir=tmp_path, seed=0))
    out = capsys.readouterr().out
    for contender in ("jaxseq", "autodiff-scan", "flax", "torch", "numpy"):
        assert f"| {contender} |" in out
    assert "ratio to jaxseq" in out
