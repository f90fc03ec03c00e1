"""MkDocs hook: the Results pages (`results/speed.md`, `results/quality.md`), generated at
build time from the recorded runs in `benchmarks/results/*.json`, never hand-copied.

Each table is rendered by the same function that wrote the run's own Markdown report (the
speed harness's `format_table`, `cola_quality.markdown`, `lm_quality.markdown`), so the site
and `benchmarks/results/*.md` cannot disagree. Each run's section starts with one line saying
the file, the machine, the date and the mode it was measured in (from the JSON's `meta`).
A JSON file that no table reads, or a table whose file is gone, fails the build (strict).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"

# (JSON file under benchmarks/results, section title): the order of the pages
SPEED_RUNS = [
    ("latest-1core.json", "Layers, captioning and the classifier: one core (CPU time)"),
    ("latest.json", "Layers, captioning and the classifier: two cores (wall clock)"),
    ("recurrent/latest-1core.json", "GRU, lengths, stacked modules and the T sweep: one core (CPU time)"),
    ("xeon-kernels/latest-1core.json",
     "Layers, an Intel Xeon, the LSTM's loops compiled: one core (CPU time)"),
    ("recurrent/stacked-2cores.json", "Stacked bidirectional LSTM and GRU: two cores (wall clock)"),
    ("lm_speed-xeon-rows.json",
     "Language model training step, an Intel Xeon, the kernels' workspace on huge pages and their gate buffers as "
     "rows: PyTorch busy-wait"),
    ("lm_speed-xeon-rows-malloc.json",
     "Language model training step, an Intel Xeon, the kernels' workspace on huge pages and their gate buffers as "
     "rows: malloc keeping freed memory, every contender"),
    ("lm_speed-xeon-rows-passive.json",
     "Language model training step, an Intel Xeon, the kernels' workspace on huge pages and their gate buffers as "
     "rows: PyTorch passive"),
    ("lm_speed-xeon-hugepages.json",
     "Language model training step, an Intel Xeon, the kernels' workspace on huge pages: PyTorch busy-wait"),
    ("lm_speed-xeon-hugepages-malloc.json",
     "Language model training step, an Intel Xeon, the kernels' workspace on huge pages: malloc keeping freed "
     "memory, every contender"),
    ("lm_speed-xeon-hugepages-passive.json",
     "Language model training step, an Intel Xeon, the kernels' workspace on huge pages: PyTorch passive"),
    ("lm_speed-xeon-before-hugepages.json",
     "Language model training step, the same Intel Xeon that morning, before the huge pages: PyTorch busy-wait"),
    ("lm_speed-xeon-before-hugepages-malloc.json",
     "Language model training step, the same Intel Xeon that morning, before the huge pages: malloc keeping freed "
     "memory, every contender"),
    ("lm_speed-xeon-decoder-kernel.json",
     "Language model training step, an Intel Xeon under another tenant's load, the word model's decoder and loss "
     "compiled: PyTorch busy-wait"),
    ("lm_speed-xeon-decoder-kernel-malloc.json",
     "Language model training step, an Intel Xeon under another tenant's load, the word model's decoder and loss "
     "compiled: malloc keeping freed memory, every contender"),
    ("lm_speed-xeon-decoder-kernel-passive.json",
     "Language model training step, an Intel Xeon under another tenant's load, the word model's decoder and loss "
     "compiled: PyTorch passive"),
    ("lm_speed-xeon-small-steps.json",
     "Language model training step, a quiet Intel Xeon, the word step on the XLA loops: PyTorch busy-wait"),
    ("lm_speed-xeon-small-steps-malloc.json",
     "Language model training step, a quiet Intel Xeon, the word step on the XLA loops: malloc keeping freed "
     "memory, every contender"),
    ("lm_speed-xeon-final.json",
     "Language model training step, a quiet Intel Xeon, one product for dWx and dWh: PyTorch busy-wait"),
    ("lm_speed-xeon-final-passive.json",
     "Language model training step, a quiet Intel Xeon, one product for dWx and dWh: PyTorch passive"),
    ("lm_speed-xeon-final-malloc.json",
     "Language model training step, a quiet Intel Xeon, one product for dWx and dWh: malloc keeping freed "
     "memory, every contender"),
    ("lm_speed-xeon-kernels.json",
     "Language model training step, a quiet Intel Xeon, the LSTM loops compiled: PyTorch busy-wait"),
    ("lm_speed-xeon-kernels-passive.json",
     "Language model training step, a quiet Intel Xeon, the LSTM loops compiled: PyTorch passive"),
    ("lm_speed-xeon-kernels-malloc.json",
     "Language model training step, a quiet Intel Xeon, the LSTM loops compiled: malloc keeping freed memory, "
     "every contender"),
    ("lm_speed-xeon-lookup.json",
     "Language model training step, a quiet Intel Xeon, the char model's first layer a lookup: PyTorch busy-wait"),
    ("lm_speed-xeon-lookup-passive.json",
     "Language model training step, a quiet Intel Xeon, the char model's first layer a lookup: PyTorch passive"),
    ("lm_speed-xeon.json", "Language model training step, a quiet Intel Xeon: PyTorch's default busy-wait"),
    ("lm_speed-xeon-passive.json", "Language model training step, a quiet Intel Xeon: PyTorch's threads passive"),
    ("lm_speed-quiet.json", "Language model training step, a quiet AMD EPYC: PyTorch's default busy-wait"),
    ("lm_speed-quiet-passive.json", "Language model training step, a quiet AMD EPYC: PyTorch's threads passive"),
    ("lm_speed.json", "Language model training step and generation"),
    ("lm_speed-passive.json", "Language model, PyTorch's OpenMP threads passive"),
    ("lm_speed-load8.json", "Language model, the run at load 8-10"),
    ("lm_speed-gen-1core.json", "Language model generation at batch 1: one core (CPU time), with the roofline"),
    ("lm_speed-gen-passive.json", "Language model generation: two cores, PyTorch's OpenMP threads passive"),
    ("lm_speed-gen.json", "Language model generation: two cores, PyTorch's default busy-wait"),
    ("recurrent/relu-proj-2cores.json", "The relu RNN and the LSTM with projections: two cores (wall clock)"),
    ("recurrent/nnx-vs-linen.json", "jaxseq.nnx against jaxseq.nn (Linen), stacked: two cores (wall clock)"),
]
QUALITY_RUNS = [
    ("cola_quality.json", "CoLA: the Transformer classifier", "cola"),
    ("cola_quality_recurrent.json", "CoLA: the recurrent classifiers", "cola"),
    ("lm_quality.json", "Language model: Tiny Shakespeare, seed 0", "lm"),
    ("lm_quality_seed1.json", "Language model: Tiny Shakespeare, seed 1", "lm"),
    ("lm_quality_seed0-quiet.json", "Language model: Tiny Shakespeare, seed 0 again, a quiet machine", "lm"),
    ("lm_quality_seed1-quiet.json", "Language model: Tiny Shakespeare, seed 1 again, a quiet machine", "lm"),
    ("lm_quality_seed2.json", "Language model: Tiny Shakespeare, seed 2, a quiet machine", "lm"),
    ("lm_quality_best-60min.json", "Language model: Tiny Shakespeare, the best recipe for 60 minutes", "lm"),
    ("lm_quality_best-dropout02.json", "Language model: Tiny Shakespeare, the best recipe with dropout 0.2, 60 minutes", "lm"),
    ("lm_quality_ts512-seed0.json", "Language model: 10 minutes, 16-step segments (ts-lstm512), seed 0", "lm"),
    ("lm_quality_ts512-seeds12.json", "Language model: 10 minutes, 16-step segments (ts-lstm512), seeds 1 and 2", "lm"),
    ("lm_quality_best-bptt16.json", "Language model: 16-step segments, dropout 0.25, 10 epochs (not better)", "lm"),
    ("lm_quality_best-embdrop6.json", "Language model: the jaxseq recipe with embedding dropout 0.1, 6 epochs (worse)", "lm"),
    ("lm_quality_best-embdrop12.json", "Language model: the jaxseq recipe with embedding dropout 0.1, 12 epochs (the same)", "lm"),
    ("lm_quality_best-3layers.json", "Language model: the jaxseq recipe with 3 layers, 6 epochs (worse)", "lm"),
    ("lm_quality_best-wd01.json", "Language model: weight decay 0.1, 6 epochs", "lm"),
    ("lm_quality_best-wd03.json", "Language model: weight decay 0.3, 6 epochs", "lm"),
    ("lm_quality_best-wd03-9ep.json", "Language model: the jaxseq recipe (weight decay 0.3, 9 epochs): the best for 60 minutes", "lm"),
    ("lm_quality_best-wd03-9ep-seed1.json", "Language model: the jaxseq recipe (weight decay 0.3, 9 epochs), seed 1", "lm"),
    ("lm_quality_word.json", "Language model: word level, PyTorch's example recipe, 3 epochs", "lm"),
    ("lm_regularisers.json", "Language model regularisers, each alone: a short run", "regularisers"),
    ("lm_regularisers-overfit.json", "Language model regularisers, each alone: a run that overfits", "regularisers"),
]
# recorded without a JSON file: their Markdown reports, written by their scripts, are shown as written
QUALITY_REPORTS = [
    ("captioning_quality.md", "Captioning: BLEU-1 on the built-in scenes, overfitting, speed"),
    ("cola_subwords.md", "CoLA: character n-gram subwords (a study)"),
]


def _module(relative: str):
    """A benchmark script imported by path (benchmarks/ is not a package the site installs)."""
    path = ROOT / relative
    for folder in (str(ROOT), str(path.parent)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name: str) -> dict:
    path = RESULTS / name
    if not path.is_file():
        raise PluginError(f"results page: benchmarks/results/{name} is listed in docs/hooks/results_pages.py "
                          "but does not exist")
    return json.loads(path.read_text(encoding="utf-8"))


def _demote(markdown: str, levels: int = 1) -> str:
    """Every heading `levels` deeper, so a report's own `# title` sits under the page's sections."""
    return re.sub(r"^(#{1,5}) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", markdown, flags=re.M)


def _drop_title(markdown: str) -> str:
    return re.sub(r"\A# [^\n]*\n+", "", markdown)


def provenance(name: str, meta: dict) -> str:
    """One line: the file, machine, date and mode a run was measured in."""
    machine = meta.get("machine") or (f"{meta.get('host_cpu')}, {meta.get('cpu_count')} cores"
                                      if meta.get("host_cpu") else "not recorded")
    mode = meta.get("timing_mode")
    if mode:
        mode = f"{mode}, {meta.get('mode', 'full')} run"
        if meta.get("torch_setting"):
            mode += f"; {meta['torch_setting']}"
    else:
        settings = meta.get("omp_wait_policy")
        mode = f"quality run (PyTorch OMP_WAIT_POLICY={settings})" if settings else "quality run"
    return (f"**Recorded run** `benchmarks/results/{name}` — machine: {machine}; "
            f"date: {meta.get('date', 'not recorded')}; mode: {mode}.")


def speed_page() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.speed.harness.report import format_table  # the function that wrote each run's .md

    listed = {name for name, _ in SPEED_RUNS}
    lines = ["# Speed results", "",
             "Generated when the site is built from the recorded runs in `benchmarks/results/` "
             "(`jaxseq bench --out benchmarks/results`; see [Benchmarks](../guides/benchmarks.md) for what each "
             "case measures). Ratio = contender time / jaxseq time: above 1, jaxseq is faster.", ""]
    for name, title in SPEED_RUNS:
        run = _read(name)
        lines += [f"## {title}", "", provenance(name, run["meta"]), "",
                  _demote(format_table(run["results"], title=None, meta=run["meta"]), 2), ""]
    return _checked_all_listed(listed | {name for name, _, _ in QUALITY_RUNS}, "\n".join(lines))


def quality_page() -> str:
    cola = _module("benchmarks/quality/cola_quality.py")
    lm = _module("benchmarks/quality/lm_quality.py")
    regularisers = _module("benchmarks/quality/lm_regularisers.py")
    lines = ["# Quality results", "",
             "Generated when the site is built from the recorded runs in `benchmarks/results/` "
             "(`make quality`). Each section is the report its script writes, from its JSON file.", ""]
    for name, title, kind in QUALITY_RUNS:
        run = _read(name)
        if kind == "cola":
            report, meta = cola.markdown(run["runs"], None, run["meta"]), run["meta"]
        elif kind == "lm":
            report, meta = lm.markdown(run), run["meta"]
        else:  # the regulariser ablation records its machine and date at the top level
            report, meta = regularisers.markdown(run), run
        lines += [f"## {title}", "", provenance(name, meta), "", _demote(_drop_title(report), 1), ""]
    for name, title in QUALITY_REPORTS:
        path = RESULTS / name
        if not path.is_file():
            raise PluginError(f"results page: benchmarks/results/{name} does not exist")
        lines += [f"## {title}", "",
                  f"**Recorded run** `benchmarks/results/{name}`: its script's report as written "
                  "(no JSON file was recorded); the machine, date and mode are in its first lines.", "",
                  _demote(_drop_title(path.read_text(encoding="utf-8")), 1), ""]
    return "\n".join(lines)


def _checked_all_listed(listed: set[str], page: str) -> str:
    recorded = {str(p.relative_to(RESULTS)) for p in RESULTS.rglob("*.json")}
    unlisted = sorted(recorded - listed)
    if unlisted:
        raise PluginError(f"results page: {', '.join(unlisted)} in benchmarks/results/ is shown on no page; "
                          "list it in docs/hooks/results_pages.py")
    return page


def on_files(files, config):
    """Adds the two generated pages to the site's files."""
    for uri, render in (("results/speed.md", speed_page), ("results/quality.md", quality_page)):
        files.append(File.generated(config, uri, content=render()))
    return files
