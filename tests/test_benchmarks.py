"""The benchmark harness and the layer benchmarks' contenders (structure and agreement only).

No timing is asserted anywhere: these tests check that the harness records what it should
(interleaving order, medians, ratios, outputs), that the contenders of `bench_layers` compute
the same thing as jaxseq, at a tiny shape. The same for issue 11's
cases: the GRU's and the lengths cases' contenders (`bench_recurrent`) agree, the checks catch
a contender that does not follow the lengths, and `bench_recurrent` and `bench_t_sweep` run in
quick mode. And for issue 14's stacked case (`bench_stacked`, a 2-layer bidirectional LSTM and
GRU with lengths): its four contenders agree on the outputs, final states and every gradient,
the checks catch ignored lengths and a wrong Flax bias mapping, and it runs in quick mode.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "speed"
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
from jaxseq.contenders import assert_agree  # noqa: E402
from tests.helpers import trivial_contenders  # noqa: E402


def test_outputs_table_json_and_chart(tmp_path):
    contenders, _ = trivial_contenders()
    results = harness.bench("trivial", contenders, shape="s", flops=1e6, reference="a", reps=3, warmup=0,
                            verbose=False)
    results += harness.bench(harness.ROOFLINE_CASE, contenders, shape="mm", flops=2e6, reference="a",
                             reps=3, warmup=0, verbose=False)
    paths = harness.write_outputs(results, tmp_path, stem="t")
    assert set(paths) == {"md", "json", "png"}
    data = json.loads(paths["json"].read_text())
    assert data["meta"]["best_matmul_gflops"] == pytest.approx(max(r["gflops"] for r in results[2:]))
    assert "load_average" in data["meta"] and "load_average_end" in data["meta"]
    assert len(data["results"]) == 4
    for r in data["results"]:
        assert 0 < r["frac_best_matmul"] <= 1.0 + 1e-12 or r["case"] == "trivial"
    table = paths["md"].read_text()
    assert "| contender | median ms | min..max ms | ratio to a | GFLOP/s | % best mm | page faults/call |" in table
    assert "Load average" in table and "### trivial · s" in table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_assert_agree_names_the_contender_and_array():
    ref = {"h": np.ones(4)}
    assert assert_agree("x", {"h": np.ones(4) * (1 + 1e-6)}, ref)["h"] < 1e-5
    with pytest.raises(AssertionError, match="bad disagrees.*h: 1.00e-02"):
        assert_agree("bad", {"h": np.ones(4) * 1.01}, ref)
    with pytest.raises(AssertionError, match="outputs"):
        assert_agree("bad", {"g": np.ones(4)}, ref)


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_layer_contenders_agree_at_a_tiny_shape(kind):
    pytest.importorskip("torch")
    import bench_layers

    harness.setup()
    p = bench_layers.make_problem(3, 4, 5, 6, 4 if kind == "lstm" else 1, seed=1)
    impls = bench_layers.layer_impls(p, kind)
    errors = bench_layers.check_agreement(impls)
    assert set(impls) == {"jaxseq", "autodiff-scan", "flax", "torch", "numpy"}
    assert set(errors) == set(impls) - {"jaxseq"}
    for errs in errors.values():
        assert set(errs) == {"dx", "dh0", "dWx", "dWh", "db", "h"}
        assert max(errs.values()) < bench_layers.AGREEMENT_RTOL


def test_agreement_check_catches_a_different_computation():
    import bench_layers

    p = bench_layers.make_problem(2, 3, 4, 5, 1, seed=2)
    impls = bench_layers.layer_impls(p, "rnn")
    good = impls["numpy"]
    impls = {"jaxseq": impls["jaxseq"], "wrong": good._replace(out=lambda r: {"h": np.asarray(r) * 1.1})}
    with pytest.raises(AssertionError, match="wrong"):
        bench_layers.check_agreement(impls)


# ----------------------------------------------------------------------------- issue 11: GRU, lengths, T sweep


def test_gru_contenders_agree_at_a_tiny_shape():
    pytest.importorskip("torch")
    import bench_layers
    import bench_recurrent

    harness.setup()
    N, T, D, H = bench_layers.QUICK_SHAPES["q"]  # the quick mode's shape: the compilations are shared
    p = bench_recurrent.make_problem(N, T, D, H, "gru", seed=1)
    assert p["Wx"].shape == (D, 3 * H) and p["bh"].shape == (3 * H,)
    impls = bench_recurrent.gru_impls(p)
    errors = bench_layers.check_agreement(impls)
    assert set(impls) == {"jaxseq", "autodiff-scan", "flax", "torch", "numpy"}
    assert set(errors) == set(impls) - {"jaxseq"}
    for errs in errors.values():
        assert set(errs) == {"dx", "dh0", "dWx", "dWh", "db", "dbh", "h"}
        assert max(errs.values()) < bench_layers.AGREEMENT_RTOL


def test_make_lengths_is_seeded_and_within_half_to_full_length():
    import bench_recurrent

    lengths = bench_recurrent.make_lengths(1000, 16)
    assert lengths.dtype == np.int32 and lengths.min() == 8 and lengths.max() == 16
    assert np.array_equal(lengths, bench_recurrent.make_lengths(1000, 16))
    assert not np.array_equal(lengths, bench_recurrent.make_lengths(1000, 16, seed=1))


def _tiny_lengths_problem(kind):
    """At the quick mode's shape (N=8 T=4 D=16 H=32), so the compilations are shared."""
    import bench_layers
    import bench_recurrent

    N, T, D, H = bench_layers.QUICK_SHAPES["q"]
    p = bench_recurrent.lengths_problem(N, T, D, H, kind, seed=1)
    assert p["lengths"].min() < T  # some padding to check
    return p


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_contenders_agree_at_a_tiny_shape(kind):
    pytest.importorskip("torch")
    import bench_layers
    import bench_recurrent

    harness.setup()
    p = _tiny_lengths_problem(kind)
    impls = bench_recurrent.lengths_impls(p, kind)
    valid = bench_layers.valid_mask(p["lengths"], p["x"].shape[1])
    errors = bench_layers.check_agreement(impls, valid=valid)  # also: h and dx exactly 0 past the lengths
    assert list(impls)[:2] == ["jaxseq", bench_recurrent.NO_LENGTHS]
    assert set(impls) == {"jaxseq", bench_recurrent.NO_LENGTHS, "autodiff-scan", "flax", "torch", "numpy"}
    grads = {"dx", "dh0", "dWx", "dWh", "db"} | ({"dbh"} if kind == "gru" else set())
    for errs in errors.values():
        assert set(errs) == grads | {"h", "h_n"}
        assert max(errs.values()) < bench_layers.AGREEMENT_RTOL
    out = impls["jaxseq"].out(impls["jaxseq"].fwd())
    assert not np.any(out["h"][~valid[..., 0]]) and out["h_n"].shape == p["h0"].shape


def test_lengths_checks_catch_unmasked_outputs_and_a_state_that_runs_on():
    pytest.importorskip("torch")
    import bench_layers
    import bench_recurrent

    harness.setup()
    p = _tiny_lengths_problem("gru")
    valid = bench_layers.valid_mask(p["lengths"], p["x"].shape[1])
    impls = bench_recurrent.lengths_impls(p, "gru")
    without = {k: v for k, v in p.items() if k != "lengths"}  # NumPy that ignores the lengths
    ignores = bench_layers.numpy_impl(without, "gru", state=True)
    with pytest.raises(AssertionError, match="ignores: h is not 0 past the lengths"):
        bench_layers.check_agreement({"jaxseq": impls["jaxseq"], "ignores": ignores}, valid=valid)
    baseline = impls[bench_recurrent.NO_LENGTHS]  # masked outputs, but the state after step T

    def runs_on(r):
        return {"h": np.asarray(r) * valid, "h_n": np.asarray(r)[:, -1]}

    with pytest.raises(AssertionError, match=r"runs on \(fwd\) disagrees.*h_n"):
        bench_layers.check_agreement({"jaxseq": impls["jaxseq"], "runs on": baseline._replace(out=runs_on)},
                                     valid=valid)


@pytest.mark.parametrize("case", ["gru", "lstm lengths", "gru lengths"])
def test_recurrent_benchmarks_run_quick(case):
    pytest.importorskip("torch")
    import bench_recurrent

    results = bench_recurrent.run(quick=True, cases=(case,))
    variants = ["fwd+bwd", "fwd"] if case == "gru" else ["fwd+bwd"]
    assert sorted({r["variant"] for r in results}) == sorted(variants)
    assert {r["case"] for r in results} == {case}
    assert all(r["shape"].startswith("(q) N=8 T=4 D=16 H=32") and "agree with jaxseq" in r["notes"]
               for r in results)
    names = [r["contender"] for r in results if r["variant"] == "fwd+bwd"]
    extra = [bench_recurrent.NO_LENGTHS] if case != "gru" else []
    assert names == ["jaxseq", *extra, "autodiff-scan", "flax", "torch", "numpy"]
    if case != "gru":
        cost = bench_recurrent.lengths_cost(results)
        assert all(r["lengths_cost"] == cost and r["notes"].startswith("cost of lengths:") for r in results)


@pytest.mark.parametrize("case", ["rnn relu", "lstm proj"])
def test_relu_and_projection_benchmarks_run_quick(case):
    """Issue 25's cases: jaxseq, autodiff-scan and torch agree (checked before timing) and
    the notes state torch's threads and OpenMP wait policy."""
    pytest.importorskip("torch")
    import bench_recurrent

    results = bench_recurrent.run(quick=True, cases=(case,))
    assert sorted({r["variant"] for r in results}) == ["fwd", "fwd+bwd"] and {r["case"] for r in results} == {case}
    assert [r["contender"] for r in results if r["variant"] == "fwd+bwd"] == ["jaxseq", "autodiff-scan", "torch"]
    assert all("agree with jaxseq" in r["notes"] and "OMP_WAIT_POLICY" in r["notes"] for r in results)
    if case == "lstm proj":
        assert all(r["shape"].endswith("P=8") for r in results)


@pytest.mark.parametrize("layer", ["lstm", "gru", "rnn"])
def test_t_sweep_runs_quick(layer, capsys):
    import bench_t_sweep

    results = bench_t_sweep.run(quick=True, layers=(layer,))
    expected = [(name, T) for name, (_, Ts) in bench_t_sweep.QUICK_SWEEPS.items() for T in Ts]
    assert [(r["shape"].split()[0].strip("()"), r["steps"]) for r in results] == expected
    for r in results:
        assert r["case"] == bench_t_sweep.CASE and r["variant"] == f"{layer} fwd+bwd"
        assert r["contender"] == f"T={r['steps']}"
        assert r["us_per_step"] == pytest.approx(r["median_ms"] * 1e3 / r["steps"])
        assert r["reference"] == f"T={min(T for n, T in expected if n in r['shape'])}"
    assert f"| sweep | T | {layer} |" in capsys.readouterr().out


# ----------------------------------------------------------------------------- issue 14: stacked bidirectional


def _tiny_stacked(kind):
    """The stacked problem at the quick mode's shape (compilations shared) and its contenders."""
    import bench_stacked

    harness.setup()
    p = bench_stacked.make_problem(*bench_stacked.QUICK_SHAPE, kind, seed=1)
    assert p["lengths"].min() < p["x"].shape[1]  # some padding to check
    return p, bench_stacked.stacked_impls(p, kind)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_stacked_contenders_agree_at_a_tiny_shape(kind):
    torch = pytest.importorskip("torch")
    import bench_layers
    import bench_stacked

    N, T, D, H = bench_stacked.QUICK_SHAPE
    p, impls = _tiny_stacked(kind)
    twin = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](D, H, num_layers=2, bidirectional=True)
    names = [name for name, _ in twin.named_parameters()]
    assert list(p["params"]) == names and len(names) == 16  # PyTorch's names and order
    assert list(impls) == ["jaxseq", "autodiff-scan", "flax", "torch"]
    valid = bench_layers.valid_mask(p["lengths"], T)
    errors = bench_layers.check_agreement(impls, valid=valid)  # also: out and dx exactly 0 past the lengths
    states = {"h_n", "c_n"} if kind == "lstm" else {"h_n"}
    assert set(errors) == {"autodiff-scan", "flax", "torch"}
    for errs in errors.values():
        assert set(errs) == {"h", *states, "dx", *("d" + name for name in names)}
        assert max(errs.values()) < bench_layers.AGREEMENT_RTOL
    out = impls["jaxseq"].out(impls["jaxseq"].fwd())
    assert out["h"].shape == (N, T, 2 * H) and all(out[s].shape == (4, N, H) for s in states)
    assert not np.any(out["h"][~valid[..., 0]])


def test_stacked_checks_catch_ignored_lengths_and_an_unsummed_flax_gru_bias(monkeypatch):
    pytest.importorskip("torch")
    import bench_layers
    import bench_recurrent
    import bench_stacked

    p, impls = _tiny_stacked("gru")
    T = p["x"].shape[1]
    valid = bench_layers.valid_mask(p["lengths"], T)
    ignores = bench_stacked.scan_impl({**p, "lengths": np.full_like(p["lengths"], T)}, "gru")
    with pytest.raises(AssertionError, match="ignores: h is not 0 past the lengths"):
        bench_layers.check_agreement({"jaxseq": impls["jaxseq"], "ignores": ignores}, valid=valid)
    mapping = bench_recurrent.flax_gru_cell

    def unsummed(Wx, Wh, b, bh):  # ir's bias b_ir alone, not b_ir + b_hr
        cell = mapping(Wx, Wh, b, bh)
        cell["ir"]["bias"] = b[:Wh.shape[0]]
        return cell

    monkeypatch.setattr(bench_recurrent, "flax_gru_cell", unsummed)
    with pytest.raises(AssertionError, match="wrong flax .* disagrees with jaxseq"):
        bench_layers.check_agreement({"jaxseq": impls["jaxseq"], "wrong flax": bench_stacked.flax_impl(p, "gru")},
                                     valid=valid)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_stacked_benchmark_runs_quick(kind):
    pytest.importorskip("torch")
    import bench_stacked

    results = bench_stacked.run(quick=True, kinds=(kind,))
    assert [r["contender"] for r in results] == ["jaxseq", "autodiff-scan", "flax", "torch"]
    assert {(r["case"], r["variant"]) for r in results} == {(f"stacked {kind}", "fwd+bwd")}
    medians = {r["contender"]: r["median_ms"] for r in results}
    for r in results:
        assert r["shape"].startswith("N=8 T=4 D=16 H=32, 2 layers bidirectional")
        assert r["notes"].startswith("jaxseq speed-up:") and "agree with jaxseq" in r["notes"]
        assert "loss = sum(out * dout) + sum(h_n * dh_n)" in r["notes"]
        assert r["speedups"] == {name: m / medians["jaxseq"] for name, m in medians.items() if name != "jaxseq"}
    assert bench_stacked.speedup_summary({"torch": 1.6, "flax": 1.5}).endswith("and flax: met)")
    assert bench_stacked.speedup_summary({"torch": 1.6, "flax": 1.4}).endswith("not met)")


def test_flop_counts():
    import bench_layers

    N, T, D, H = 64, 16, 256, 512
    assert bench_layers.forward_flops(N, T, D, H, 4) == 2 * N * T * D * 4 * H + 2 * N * T * H * 4 * H
    assert bench_layers.fwd_bwd_flops(N, T, D, H, 1) == 3 * bench_layers.forward_flops(N, T, D, H, 1)


def test_bench_command_finds_the_runner_and_builds_the_command(tmp_path, monkeypatch):
    from jaxseq.commands import bench

    runner = bench.find_runner(BENCH_DIR.parent / "jaxseq")
    assert runner == BENCH_DIR / "run_all.py"
    args = argparse.Namespace(quick=True, only=["layers"], tune_malloc=False)
    assert bench.build_command(args, runner)[1:] == [str(runner), "--quick", "--only", "layers"]
    args.tune_malloc = True
    assert bench.build_command(args, runner)[-1] == "--tune-malloc"
    args.out = Path("benchmarks") / "results"  # relative to where the user runs it, not the runner's folder
    assert bench.build_command(args, runner)[-2:] == ["--out", str(Path.cwd() / "benchmarks" / "results")]
    monkeypatch.setattr(bench, "RUNNER", Path("benchmarks") / "no_such_runner.py")
    with pytest.raises(FileNotFoundError, match="not installed with the package"):
        bench.find_runner(tmp_path)


def test_cli_registers_bench():
    from jaxseq.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--only", "layers"])
    assert args.command == "bench" and args.quick and args.only == ["layers"]


def test_a_run_writes_outside_the_tracked_files_unless_told(tmp_path):
    """`make bench` must not dirty the checkout: by default the suite writes to bench-output/,
    which git ignores; the committed tables change only with `--out benchmarks/results`."""
    import run_all

    repo = BENCH_DIR.parents[1]
    assert run_all.parse_args([]).out == repo / "bench-output"
    assert "bench-output/" in (repo / ".gitignore").read_text().split()
    if shutil.which("git") and (repo / ".git").exists():
        ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "bench-output/latest.md"])
        assert ignored.returncode == 0
    assert run_all.parse_args(["--out", str(tmp_path)]).out == tmp_path


def test_run_all_lists_modules_and_rejects_unknown(capsys):
    import run_all

    assert {"layers", "recurrent", "t_sweep", "stacked", "lm"} <= set(run_all.available_modules())
    assert run_all.main(["--only", "no-such-module"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


# ----------------------------------------------------------------------------- PyTorch twins (cases 3, 4)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_captioning_torch_twin_agrees_at_a_tiny_shape(cell):
    pytest.importorskip("torch")
    import bench_captioning

    harness.setup()
    contenders, params = bench_captioning.make_contenders(cell, bench_captioning.QUICK_SHAPE, seed=1)
    assert list(contenders) == ["jaxseq", "torch"]
    errors = bench_captioning.check_agreement(contenders, params)["torch"]
    assert set(errors) == {"loss"} | {f"{kind}/{name}" for kind in ("m", "update") for name in params}
    assert max(errors.values()) < bench_captioning.AGREEMENT_RTOL
    # the weights survive the trip to PyTorch's layout and back
    from torch_models import captioning_from_jax

    back = captioning_from_jax(params, cell).jax_params()
    assert all(np.array_equal(back[name], params[name]) for name in params)
    _, loss = contenders["jaxseq"].step()  # the timed steps run: jaxseq's returns (state, loss)
    assert np.isfinite(float(loss)) and np.isfinite(contenders["torch"].step().item())


def test_captioning_agreement_catches_a_wrong_gate_order(monkeypatch):
    pytest.importorskip("torch")
    import bench_captioning
    import torch_models

    harness.setup()
    monkeypatch.setattr(torch_models, "to_torch_gates", lambda a, H: a)  # i, f, o, g read as i, f, g, o
    contenders, params = bench_captioning.make_contenders("lstm", bench_captioning.QUICK_SHAPE, seed=1)
    with pytest.raises(AssertionError, match="torch disagrees"):
        bench_captioning.check_agreement(contenders, params)


def test_captioning_flop_count():
    import bench_captioning

    N, L, V, W, H, D = 64, 17, 1004, 256, 512, 512
    T = L - 1
    expected = 2 * (2 * N * D * H) + 3 * (2 * N * T * (W + H) * 4 * H + 2 * N * T * H * V)
    assert bench_captioning.train_step_flops(N, L, V, W, H, D, "lstm") == expected
    assert bench_captioning.shape_label(**bench_captioning.SHAPE) == "N=64 T=16 V=1004 W=256 H=512 D=512"


def test_classifier_torch_twin_agrees_at_a_tiny_shape():
    pytest.importorskip("torch")
    import bench_classifier

    harness.setup()
    contenders = bench_classifier.make_contenders(quick=True, seed=1)
    assert list(contenders) == ["jaxseq", "full-staged", "torch"]
    errors = bench_classifier.check_agreement(contenders)
    assert set(errors) == {"full-staged", "torch"}
    for errs in errors.values():
        assert {"logits", "loss", "grad/q_proj/kernel", "grad/W1/kernel", "grad/norm_mh/scale"} <= set(errs)
        assert max(errs.values()) < bench_classifier.AGREEMENT_RTOL
    for contender in contenders.values():  # the timed callables run
        assert np.asarray(contender.fwd()).shape == (bench_classifier.QUICK["infer_batch"],)
        contender.step()


def test_classifier_agreement_catches_an_unmasked_torch_model(monkeypatch):
    pytest.importorskip("torch")
    import bench_classifier
    import torch_models

    harness.setup()
    forward = torch_models.ClassificationTransformer.forward
    monkeypatch.setattr(torch_models.ClassificationTransformer, "forward",
                        lambda self, ids, pad_mask=None: forward(self, ids, None))  # ignores the pad mask
    contenders = bench_classifier.make_contenders(quick=True, seed=1)
    with pytest.raises(AssertionError, match="torch disagrees"):
        bench_classifier.check_agreement(contenders)


def test_xla_flags_study_still_parses_its_command_line(capsys):
    """The finished study kept as code (benchmarks/studies/) must still run: its options parse
    and it finds the speed suite it times with."""
    sys.path.insert(0, str(BENCH_DIR.parent / "studies"))
    import xla_flags_scan

    assert Path(xla_flags_scan.HERE, "bench_layers.py").is_file()
    with pytest.raises(SystemExit) as exit_info:
        xla_flags_scan.main(["--help"])
    assert exit_info.value.code == 0 and "--rounds" in capsys.readouterr().out


# ----------------------------------------------------------------------------- issue 22: language models, GPU script


def test_lm_benchmark_contenders_agree_and_run_quick():
    """bench_lm's training contenders (jaxseq's trainer step, on the compiled LSTM loops and on
    the XLA loops, Flax, the PyTorch twin)
    agree on loss, final state, every gradient and the first steps' losses before timing (the
    run asserts it), the generation loop's logits agree, and the tables carry tokens/s."""
    pytest.importorskip("torch")
    import bench_lm

    results = bench_lm.run(quick=True, cases=("word", "gen"))
    train = [r for r in results if r["case"] == "lm train"]
    gen = [r for r in results if r["case"] == "lm generate"]
    assert [r["contender"] for r in train] == ["jaxseq", "jaxseq-xla-loops", "flax", "torch"]
    assert [r["contender"] for r in gen] == ["jaxseq", "jaxseq-apply", "torch", "torch-no-onednn"]
    roofline = gen[0]["roofline"]
    assert roofline["jaxseq_bytes_per_token"] < roofline["torch_bytes_per_token"]  # the folded table row
    assert all(roofline[k] > 0 for k in ("numpy_matvec_gbps_in_cache", "xla_matvecs_us", "torch_overhead_us"))
    c = bench_lm.QUICK_CASES["word"]
    for r in train:
        assert r["shape"] == bench_lm.shape_label(c) and r["tokens_per_step"] == c["N"] * c["T"]
        assert r["tokens_per_s"] == pytest.approx(c["N"] * c["T"] / (r["median_ms"] * 1e-3))
        assert "agree with jaxseq on loss, final state and every gradient, torch also on 3 steps" in r["notes"]
        assert "torch threads 2" in r["notes"] and "OMP_WAIT_POLICY" in r["notes"]
        assert r["notes"].startswith("jaxseq speed-up: jaxseq-xla-loops ") and "flax " in r["notes"]
        assert "(target >= 1.3x:" in r["notes"]
    assert "torch's per-step logits agree with jaxseq's model" in gen[0]["notes"]
    assert gen[0]["steps"] == bench_lm.QUICK_GEN_LENGTH
    table = bench_lm.throughput_table(results)
    assert table.count("\n") == 3 and "| lm train, word train step (" in table
    assert bench_lm.speedup_summary({"torch": 0.9}, {"torch": 1.0}) == \
        "jaxseq speed-up: torch 0.90x (target >= 1x: MISSED)"


def test_lm_flax_port_round_trips_the_weights():
    """The Flax twin's parameters come from PyTorch's names and its gradients go back to them
    (the bias of a gate is bias_ih + bias_hh, so both get its gradient)."""
    import bench_lm

    c = dict(bench_lm.QUICK_CASES["word"], V=7, E=3, H=4)
    p = bench_lm.make_problem(c)
    params = bench_lm.flax_params(p)
    assert set(params) == {"encoder", "decoder", "cell_0", "cell_1"}
    back = bench_lm.flax_grads_to_torch(params, c["S"], c["H"])
    sd = p["state_dict"]
    assert set(back) == set(sd)
    for name in sd:
        if "bias_" in name and name.startswith("rnn."):
            layer = name[-1]
            expected = sd[f"rnn.bias_ih_l{layer}"] + sd[f"rnn.bias_hh_l{layer}"]
        else:
            expected = sd[name]
        np.testing.assert_allclose(back[name], expected, rtol=0, atol=1e-7, err_msg=name)


def test_gpu_run_script_runs_on_cpu_in_quick_mode(tmp_path):
    """benchmarks/gpu/run.sh on the CPU: a tiny test selection and the GPU benchmarks' quick
    LSTM layer case, the CUDA contenders skipped and said so (the LM cases' quick mode is the
    test above and the GRU's contenders are bench_recurrent's: GPU_BENCH_ARGS keeps this short)."""
    import os
    import subprocess

    pytest.importorskip("torch")
    script = BENCH_DIR.parent / "gpu" / "run.sh"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_BENCH_ARGS": "--skip-lm --kind lstm", "OUT": str(tmp_path / "unused")}
    done = subprocess.run(["bash", str(script), "--quick", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    summary = (tmp_path / "summary.md").read_text()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + summary
    assert "- tests: passed" in summary and "- benchmarks: passed" in summary
    assert "no CUDA device: the CUDA contenders are skipped" in summary
    assert "jax.experimental.rnn.lstm (GPU only: no CPU lowering)" in summary
    assert "torch on cuDNN (no CUDA device: torch ran on the CPU)" in summary
    data = json.loads((tmp_path / "gpu-script-on-cpu-quick.json").read_text())
    cases = {(r["case"], r["contender"]) for r in data["results"]}
    assert cases == {("lstm layer", "jaxseq"), ("lstm layer", "torch-cpu")}
    assert all("agree with jaxseq" in r["notes"] for r in data["results"])
