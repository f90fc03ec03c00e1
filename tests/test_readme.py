"""Every Python block of the README runs on its own, each in a fresh namespace, as a reader
pasting it would run it (issue 21: two blocks used names defined in earlier ones).

A block runs verbatim in a temporary working folder; what it reads is put where it says:
a captioner run in `checkpoints/caption-lstm-builtin` (the tiny one of `tests/checkpoints.py`),
a small CoLA stand-in found through `$JAXSEQ_DATA` (the data-location rule), a classifier
run's `metrics.jsonl` in `checkpoints/cola/logs`. Two blocks are shortened, for time only:
the captioner trains 1 epoch (not 15, a change this test checks is there) on 400 scenes, and
the CoLA recipe 1 epoch (not 30) at a small width.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.bracket_task import write_tsv
from tests.checkpoints import tiny_runs

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)  # also the indented ones, inside lists
SHORTER_CAPTIONER = ("num_epochs=15, batch_size=100)", "num_epochs=1, batch_size=100)")


def python_blocks() -> list[str]:
    return [textwrap.dedent(body) for _, body in BLOCK.findall(README.read_text(encoding="utf-8"))]


BLOCKS = python_blocks()


def block_with(marker: str) -> int:
    (index,) = [i for i, block in enumerate(BLOCKS) if marker in block]
    return index


def run_alone(block: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}  # fresh: nothing from the blocks before it
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    return namespace


def test_the_blocks_are_found():
    fences = sum(line.strip() == "```python" for line in README.read_text(encoding="utf-8").splitlines())
    assert len(BLOCKS) == fences >= 8, [block.splitlines()[0] for block in BLOCKS]
    assert sum(block.count(SHORTER_CAPTIONER[0]) for block in BLOCKS) == 1  # what the captioner test shortens


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


NEEDS_SETUP = ("torch", "load_scene_captions()", "load_captioner_and_data", "load_cola", "metrics.jsonl")


@pytest.mark.parametrize("index", [i for i, block in enumerate(BLOCKS)
                                   if not any(marker in block for marker in NEEDS_SETUP)])
def test_a_block_that_needs_nothing_runs_alone(index, workdir):
    """The layer examples, and any block added later that needs no files: it runs here as it is."""
    run_alone(BLOCKS[index])


def test_the_torch_porting_block_runs_alone_and_agrees(workdir):
    namespace = run_alone(BLOCKS[block_with("pack_padded_sequence")])
    as_numpy = lambda a: np.asarray(a.detach() if hasattr(a, "detach") else a)  # noqa: E731
    out, torch_out, h_n, torch_h = (as_numpy(namespace[k]) for k in ("out", "torch_out", "h_n", "torch_h"))
    assert np.abs(out - torch_out).max() < 1e-5 and np.abs(h_n - torch_h).max() < 1e-5


def test_the_module_block_gives_torch_names_for_every_gradient(workdir):
    namespace = run_alone(BLOCKS[block_with("params_to_torch(m, jax.jit")])
    assert {name for name in namespace["grads"]} == {f"{kind}_l{layer}{direction}" for kind in
                                                     ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                                                     for layer in (0, 1) for direction in ("", "_reverse")}


def test_the_captioning_block_runs_alone(workdir, capsys, monkeypatch):
    import jaxseq.data

    full = jaxseq.data.load_scene_captions
    monkeypatch.setattr(jaxseq.data, "load_scene_captions", lambda: full(num_train=400, num_val=50))  # the time
    block = BLOCKS[block_with("load_scene_captions()")]
    run_alone(block.replace(*SHORTER_CAPTIONER))
    assert "<END>" in capsys.readouterr().out


def test_the_coco_evaluation_block_runs_alone_on_a_caption_train_run(workdir, tmp_path_factory, monkeypatch):
    java = shutil.which("java")  # METEOR's Java start takes longer than the rest: its score is
    if java:  # pinned in test_coco_caption_metrics.py; here it is skipped, as the block's output says
        monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                   if not (Path(p) / "java").exists()))
    shutil.copytree(tiny_runs(tmp_path_factory)["captioner"][0], workdir / "checkpoints" / "caption-lstm-builtin")
    namespace = run_alone(BLOCKS[block_with("load_captioner_and_data")])
    assert 0 <= namespace["result"]["scores"]["BLEU-1"] <= 1 and namespace["result"]["images"] > 0
    assert "METEOR" in namespace["result"]["skipped"] or not java


def test_the_cola_block_finds_cola_by_the_rule_and_trains(workdir, monkeypatch):
    from jaxseq.cola_recipes import COLA_RECIPE

    (workdir / "data" / "cola").mkdir(parents=True)
    write_tsv(workdir / "data" / "cola" / "train.tsv", 1_551 + 100, 1)  # the course's 1,551 validation sentences
    write_tsv(workdir / "data" / "cola" / "dev.tsv", 50, 2)
    monkeypatch.setenv("JAXSEQ_DATA", str(workdir / "data"))
    monkeypatch.setitem(COLA_RECIPE, "train", {**COLA_RECIPE["train"], "epochs": 1})
    monkeypatch.setitem(COLA_RECIPE, "model", {**COLA_RECIPE["model"], "hidden_dim": 16, "dim_feedforward": 32})
    namespace = run_alone(BLOCKS[block_with("load_cola()")])
    assert len(namespace["splits"].train) == 100 and len(namespace["run"].result.history) == 1


def test_the_metrics_jsonl_block_runs_alone_on_a_run_log(workdir, tmp_path_factory):
    logs = tiny_runs(tmp_path_factory)["classifier"][0] / "logs"
    shutil.copytree(logs, workdir / "checkpoints" / "cola" / "logs")
    namespace = run_alone(BLOCKS[block_with("metrics.jsonl")])
    assert len(namespace["wide"]["val/mcc"].dropna()) == 2  # the tiny run's two epochs
