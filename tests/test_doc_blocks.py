"""Every Python block of the README and of every documentation page (docs/**/*.md) runs on
its own, each in a fresh namespace, as a reader pasting it would run it (issue 21: two blocks
used names defined in earlier ones; issue 24: the docs' blocks by the same mechanism).

A block runs verbatim in a temporary working folder; what it reads is put where it says:
a captioner run in `checkpoints/caption-lstm-builtin` (the tiny one of `tests/checkpoints.py`),
a small CoLA stand-in found through `$JAXSEQ_DATA` (the data-location rule), a classifier
run's `metrics.jsonl` in `checkpoints/cola/logs`. Two blocks are shortened, for time only:
the captioner trains 1 epoch (not 15, a change this test checks is there) on 400 scenes, and
the CoLA recipe 1 epoch (not 30) at a small width. A block's test id is its file and line.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from tests.bracket_task import write_tsv
from tests.checkpoints import tiny_runs

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)  # also the indented ones, inside lists
SHORTER_CAPTIONER = ("num_epochs=15, batch_size=100)", "num_epochs=1, batch_size=100)")


class Block(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(paths=DOC_FILES) -> list[Block]:
    """Every ```python block of `paths`, dedented, with where it is."""
    blocks = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            blocks.append(Block(path, text.count("\n", 0, match.start()) + 1, textwrap.dedent(match.group(2))))
    return blocks


BLOCKS = python_blocks()


def blocks_with(marker: str) -> list[Block]:
    found = [block for block in BLOCKS if marker in block.code]
    assert found, f"no documentation block contains {marker!r}"
    return found


def run_alone(block: Block) -> dict:
    namespace: dict = {"__name__": "__docs__"}  # fresh: nothing from the blocks before it
    exec(compile(block.code, str(block.path), "exec"), namespace)  # noqa: S102
    return namespace


def by_name(blocks: list[Block]):
    return pytest.mark.parametrize("block", blocks, ids=[block.name for block in blocks])


def test_the_blocks_are_found():
    fences = sum(line.strip() == "```python" for path in DOC_FILES
                 for line in path.read_text(encoding="utf-8").splitlines())
    assert len(BLOCKS) == fences >= 10, [block.name for block in BLOCKS]
    assert {block.path.name for block in BLOCKS} >= {"README.md", "getting-started.md", "layers.md", "nn.md"}
    assert sum(block.code.count(SHORTER_CAPTIONER[0]) for block in BLOCKS) == 1  # what the captioner test shortens


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


NEEDS_SETUP = ("torch", "load_scene_captions()", "load_captioner_and_data", "load_cola", "metrics.jsonl")


@by_name([block for block in BLOCKS if not any(marker in block.code for marker in NEEDS_SETUP)])
def test_a_block_that_needs_nothing_runs_alone(block, workdir):
    """The layer examples, and any block added later that needs no files: it runs here as it is."""
    run_alone(block)


@by_name(blocks_with("pack_padded_sequence"))
def test_the_torch_porting_block_runs_alone_and_agrees(block, workdir):
    namespace = run_alone(block)
    as_numpy = lambda a: np.asarray(a.detach() if hasattr(a, "detach") else a)  # noqa: E731
    out, torch_out, h_n, torch_h = (as_numpy(namespace[k]) for k in ("out", "torch_out", "h_n", "torch_h"))
    assert np.abs(out - torch_out).max() < 1e-5 and np.abs(h_n - torch_h).max() < 1e-5


@by_name(blocks_with("params_to_torch(m, jax.jit"))
def test_the_module_block_gives_torch_names_for_every_gradient(block, workdir):
    namespace = run_alone(block)
    assert {name for name in namespace["grads"]} == {f"{kind}_l{layer}{direction}" for kind in
                                                     ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                                                     for layer in (0, 1) for direction in ("", "_reverse")}


@by_name(blocks_with("load_scene_captions()"))
def test_the_captioning_block_runs_alone(block, workdir, capsys, monkeypatch):
    import jaxseq.data

    full = jaxseq.data.load_scene_captions
    monkeypatch.setattr(jaxseq.data, "load_scene_captions", lambda: full(num_train=400, num_val=50))  # the time
    run_alone(block._replace(code=block.code.replace(*SHORTER_CAPTIONER)))
    assert "<END>" in capsys.readouterr().out


@by_name(blocks_with("load_captioner_and_data"))
def test_the_coco_evaluation_block_runs_alone_on_a_caption_train_run(block, workdir, tmp_path_factory, monkeypatch):
    java = shutil.which("java")  # METEOR's Java start takes longer than the rest: its score is
    if java:  # pinned in test_coco_caption_metrics.py; here it is skipped, as the block's output says
        monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                   if not (Path(p) / "java").exists()))
    shutil.copytree(tiny_runs(tmp_path_factory)["captioner"][0], workdir / "checkpoints" / "caption-lstm-builtin")
    namespace = run_alone(block)
    assert 0 <= namespace["result"]["scores"]["BLEU-1"] <= 1 and namespace["result"]["images"] > 0
    assert "METEOR" in namespace["result"]["skipped"] or not java


@by_name(blocks_with("load_cola()"))
def test_the_cola_block_finds_cola_by_the_rule_and_trains(block, workdir, monkeypatch):
    from jaxseq.cola_recipes import COLA_RECIPE

    (workdir / "data" / "cola").mkdir(parents=True)
    write_tsv(workdir / "data" / "cola" / "train.tsv", 1_551 + 100, 1)  # the course's 1,551 validation sentences
    write_tsv(workdir / "data" / "cola" / "dev.tsv", 50, 2)
    monkeypatch.setenv("JAXSEQ_DATA", str(workdir / "data"))
    monkeypatch.setitem(COLA_RECIPE, "train", {**COLA_RECIPE["train"], "epochs": 1})
    monkeypatch.setitem(COLA_RECIPE, "model", {**COLA_RECIPE["model"], "hidden_dim": 16, "dim_feedforward": 32})
    namespace = run_alone(block)
    assert len(namespace["splits"].train) == 100 and len(namespace["run"].result.history) == 1


@by_name(blocks_with("metrics.jsonl"))
def test_the_metrics_jsonl_block_runs_alone_on_a_run_log(block, workdir, tmp_path_factory):
    logs = tiny_runs(tmp_path_factory)["classifier"][0] / "logs"
    shutil.copytree(logs, workdir / "checkpoints" / "cola" / "logs")
    namespace = run_alone(block)
    assert len(namespace["wide"]["val/mcc"].dropna()) == 2  # the tiny run's two epochs


SHELL_BLOCK = re.compile(r"^( *)```(?:bash|sh|console)\n(.*?)^\1```", re.S | re.M)


def jaxseq_command_lines() -> list[tuple[str, list[str]]]:
    """Every `jaxseq ...` line of the README's and the docs' shell blocks, as (file:line, argv)."""
    import shlex

    found = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for match in SHELL_BLOCK.finditer(text):
            first = text.count("\n", 0, match.start()) + 2
            for offset, line in enumerate(textwrap.dedent(match.group(2)).splitlines()):
                words = shlex.split(line, comments=True)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the command
                    words = words[1:]
                if words and words[0] == "jaxseq":
                    found.append((f"{path.relative_to(ROOT)}:{first + offset}", words[1:]))
    return found


COMMAND_LINES = jaxseq_command_lines()


def test_every_jaxseq_command_in_the_docs_is_one_the_parser_takes(capsys):
    """The shell examples stay current: each `jaxseq ...` line parses (it is not run)."""
    from jaxseq import cli

    assert len(COMMAND_LINES) >= 15, COMMAND_LINES
    refused = []
    for where, argv in COMMAND_LINES:
        try:
            cli.build_parser().parse_args(argv)
        except SystemExit:
            refused.append(f"{where}: jaxseq {' '.join(argv)}: {capsys.readouterr().err.strip().splitlines()[-1]}")
    assert not refused, "\n".join(refused)
