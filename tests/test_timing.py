"""jaxseq.timing: interleaved rounds, medians, ratios, time per step, the per-case tables.
No timing is asserted: only what is recorded."""

from __future__ import annotations

import statistics

import pytest

from jaxseq import timing
from tests.helpers import trivial_contenders


def test_interleaves_and_reports_medians_and_ratios():
    contenders, calls = trivial_contenders()
    results = timing.bench("trivial", contenders, variant="v", shape="s", flops=1e6, reference="a",
                            reps=7, warmup=2, verbose=False, gap_s=0.0)
    assert [r["contender"] for r in results] == ["a", "b"]
    assert calls == ["a", "b"] * (2 + 7)  # warm-up rounds then timed rounds, interleaved
    for r in results:
        assert r["order"] == ["a", "b"] * 7
        assert len(r["times_ms"]) == r["reps"] == 7
        assert r["median_ms"] == pytest.approx(statistics.median(r["times_ms"]))
        assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        assert r["gflops"] == pytest.approx(1e6 / (r["median_ms"] * 1e-3) / 1e9)
        assert len(r["load_before"]) == len(r["load_after"]) == 3
        assert (r["case"], r["variant"], r["shape"], r["reference"]) == ("trivial", "v", "s", "a")
        assert r["clock"] == "wall" and r["gap_s"] == 0.0 and r["page_faults"] >= 0
    ra, rb = results
    assert ra["ratio"] == pytest.approx(1.0)
    assert rb["ratio"] == pytest.approx(rb["median_ms"] / ra["median_ms"])
    assert [r["position"] for r in results] == [0, 1]

def test_rejects_duplicate_names_and_no_reference_gives_no_ratio():
    contenders, _ = trivial_contenders()
    with pytest.raises(ValueError, match="unique"):
        timing.time_interleaved(contenders + contenders[:1], reps=1, warmup=0)
    results = timing.bench("trivial", contenders, reference="missing", reps=1, warmup=0, verbose=False)
    assert all(r["ratio"] is None and r["reference"] is None for r in results)

def test_reports_time_per_step():
    contenders, _ = trivial_contenders()
    results = timing.bench("sweep", contenders, reference="a", steps={"a": 10, "b": 1000}, reps=3, warmup=0,
                            verbose=False, gap_s=0.0)
    for r, steps in zip(results, (10, 1000)):
        assert r["steps"] == steps and r["us_per_step"] == pytest.approx(r["median_ms"] * 1e3 / steps)
    table = timing.format_cases(results)
    assert "| steps | µs/step |" in table and "| 1000 |" in table
    plain = timing.bench("plain", contenders, reps=1, warmup=0, verbose=False)
    assert plain[0]["us_per_step"] is None and "µs/step" not in timing.format_cases(plain)


def test_quiet_thread_pools_sets_defaults_and_says_whether_they_work(monkeypatch):
    for key in timing.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    state = timing.quiet_thread_pools()
    assert {key: state[key] for key in timing.QUIET_ENV} == timing.QUIET_ENV
    assert state["effective"] is False  # NumPy is imported by now: too late for this process


def test_use_clock_changes_the_default_clock(monkeypatch):
    import time

    monkeypatch.setitem(timing.MODE, "clock", timing.MODE["clock"])
    monkeypatch.setitem(timing.MODE, "name", timing.MODE["name"])
    monkeypatch.setitem(timing.MODE, "torch_threads", timing.MODE["torch_threads"])
    timing.use_clock("process CPU time", time.process_time, torch_threads=1)
    contenders, _ = trivial_contenders()
    results = timing.bench("t", contenders, reference="a", reps=1, warmup=0, verbose=False, gap_s=0.0)
    assert {r["clock"] for r in results} == {"process CPU time"} and timing.MODE["torch_threads"] == 1
