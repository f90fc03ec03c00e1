"""Captioning quality and training speed (issue 3), written to results/captioning_quality.md.

    python benchmarks/quality/captioning_quality.py [--seeds 0 1 2] [--epochs 15] [--quick]

1. Built-in scene set (`jaxseq.data.synthetic_captions.load_scene_captions`, 4,000 train
   and 500 val scenes, data and model seeded alike): the LSTM and the RNN captioner
   (W = H = 128; adam 5e-3, lr_decay 0.95, batch 100), BLEU-1 on all val scenes with greedy
   decoding and beam search (width 5), and on 1,000 train captions. Targets: LSTM val
   greedy >= 0.9, RNN >= 0.8. And the COCO caption evaluation of the same models on all
   500 val scenes (`jaxseq.inference.evaluate_coco_metrics`, pycocoevalcap: corpus
   BLEU-1..4, METEOR where Java is present, ROUGE-L, CIDEr-D), greedy and beam 5; a scene
   has one reference caption, where a COCO image has about five.
2. The course's overfitting runs on COCO-shaped random data (512-d features, 17 tokens,
   V = 1,004; H = 512, W = 256; batch 25, 50 epochs): RNN on 100 examples, lr_decay 0.95,
   final loss < 0.1; LSTM on 50 examples, lr_decay 0.995, final loss < 0.5.
3. Training steps per second of the whole jitted step (sample batch, forward, loss, hand
   backward, adam update), compilation excluded, at the overfit shapes and at COCO's full
   batch (100).

The test suite runs smaller versions of 1 and 2 (tests/test_captioning_solver.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402

from jaxseq.data.synthetic_captions import load_scene_captions, random_captioning_data  # noqa: E402
from jaxseq.inference import evaluate_captions, evaluate_coco_metrics  # noqa: E402
from jaxseq.metrics import COCO_METRICS  # noqa: E402
from jaxseq.models import CaptioningRNN  # noqa: E402
from jaxseq.train import CaptioningSolver  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results" / "captioning_quality.md"
TARGETS = {"lstm": 0.9, "rnn": 0.8}
OVERFIT = {  # cell: (examples, lr_decay, epochs, target)
    "rnn": (100, 0.95, 50, 0.1),
    "lstm": (50, 0.995, 50, 0.5),
}


def builtin_run(cell: str, seed: int, epochs: int) -> dict:
    data = load_scene_captions(seed=seed)
    model = CaptioningRNN(len(data["idx_to_word"]), cell_type=cell)
    start = time.perf_counter()
    solver = CaptioningSolver(model, data, optim_config={"learning_rate": 5e-3}, lr_decay=0.95,
                              num_epochs=epochs, batch_size=100, verbose=False, seed=seed).train()
    seconds = time.perf_counter() - start
    variables = {"params": solver.params}
    return {
        "cell": cell, "seed": seed, "steps": len(solver.loss_history), "seconds": seconds,
        "steps_per_second": solver.steps_per_second, "train_loss": solver.loss_history[-1],
        "val_loss": solver.val_loss_history[-1],
        "val_greedy": evaluate_captions(model, variables, data, "val", decode="greedy"),
        "val_beam": evaluate_captions(model, variables, data, "val", decode="beam", beam_size=5),
        "train_greedy": evaluate_captions(model, variables, data, "train", num_samples=1000, seed=seed),
        "coco": {decode: evaluate_coco_metrics(model, variables, data, "val", decode, beam_size=5, max_images=None)
                 for decode in ("greedy", "beam")},
    }


def overfit_run(cell: str, seed: int) -> dict:
    examples, lr_decay, epochs, target = OVERFIT[cell]
    data = random_captioning_data(examples, seed=seed)
    model = CaptioningRNN(len(data["idx_to_word"]), wordvec_dim=256, hidden_dim=512, cell_type=cell)
    solver = CaptioningSolver(model, data, optim_config={"learning_rate": 5e-3}, lr_decay=lr_decay,
                              num_epochs=epochs, batch_size=25, verbose=False, seed=seed).train()
    return {"cell": cell, "seed": seed, "examples": examples, "final_loss": solver.loss_history[-1],
            "target": target, "steps_per_second": solver.steps_per_second}


def throughput_run(cell: str, batch_size: int, steps: int = 60) -> dict:
    data = random_captioning_data(batch_size * steps // 2, seed=0)
    model = CaptioningRNN(len(data["idx_to_word"]), wordvec_dim=256, hidden_dim=512, cell_type=cell)
    solver = CaptioningSolver(model, data, optim_config={"learning_rate": 5e-3}, num_epochs=2,
                              batch_size=batch_size, verbose=False).train()
    return {"cell": cell, "batch_size": batch_size, "steps": len(solver.loss_history),
            "steps_per_second": solver.steps_per_second}


def _mean_sd(values) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def coco_lines(builtin: list[dict], epochs: int) -> list[str]:
    """The COCO caption evaluation of the built-in runs: per run, then mean ± sd per cell."""
    first = builtin[0]["coco"]["greedy"]
    names = [name for name in COCO_METRICS if name in first["scores"]]
    skipped = "; ".join(f"{name} skipped: {reason}" for name, reason in first["skipped"].items())
    lines = ["", f"## Built-in scene set: the COCO caption evaluation (all {first['images']} val scenes, "
             f"{first['references']} reference captions, {epochs} epochs)", "",
             "`jaxseq.inference.evaluate_coco_metrics` (pycocoevalcap 1.2's scorers, captions tokenized in Python "
             "by `jaxseq.metrics.coco_tokenize`): corpus BLEU, ROUGE-L and CIDEr-D of one caption per scene. A scene "
             "has one reference, a COCO image about five, and the scenes' vocabulary is 26 words, so these "
             "numbers are far above COCO's (Show and Tell: BLEU-4 0.277, CIDEr 0.855) and not comparable to them."
             + (f" {skipped}." if skipped else ""), "",
             "| cell | seed | decoding | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for r in builtin:
        for decode, label in (("greedy", "greedy"), ("beam", "beam 5")):
            scores = r["coco"][decode]["scores"]
            lines.append(f"| {r['cell']} | {r['seed']} | {label} | " + " | ".join(f"{scores[n]:.4f}" for n in names)
                         + " |")
    lines += ["", "| cell | decoding | " + " | ".join(f"{n} (mean ± sd)" for n in names) + " |",
              "|---|---|" + "---|" * len(names)]
    for cell in ("lstm", "rnn"):
        runs = [r for r in builtin if r["cell"] == cell]
        for decode, label in (("greedy", "greedy"), ("beam", "beam 5")):
            if runs:
                lines.append(f"| {cell} | {label} | " + " | ".join(
                    _mean_sd(r["coco"][decode]["scores"][n] for r in runs) for n in names) + " |")
    return lines


def write_report(builtin: list[dict], overfit: list[dict], speed: list[dict], epochs: int, path: Path) -> str:
    lines = [
        "# Captioning quality and training speed",
        "",
        f"Written by `benchmarks/quality/captioning_quality.py` on {dt.datetime.now().isoformat(timespec='minutes')}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} "
        f"({jax.default_backend()}), load average {os.getloadavg()[0]:.1f} at the end "
        "(the machine is shared: speeds are indicative).",
        "",
        f"## Built-in scene set: BLEU-1 (4,000 train / 500 val scenes, {epochs} epochs, W = H = 128)",
        "",
        "| cell | seed | steps | train loss | val loss | val BLEU-1 greedy | val BLEU-1 beam 5 | "
        "train BLEU-1 greedy | steps/s | train time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in builtin:
        lines.append(f"| {r['cell']} | {r['seed']} | {r['steps']} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
                     f"{r['val_greedy']:.4f} | {r['val_beam']:.4f} | {r['train_greedy']:.4f} | "
                     f"{r['steps_per_second']:.0f} | {r['seconds']:.1f} |")
    lines += ["", "| cell | val BLEU-1 greedy (mean ± sd over seeds) | beam 5 | target (greedy) | met |",
              "|---|---|---|---|---|"]
    for cell in ("lstm", "rnn"):
        runs = [r for r in builtin if r["cell"] == cell]
        if runs:
            met = all(r["val_greedy"] >= TARGETS[cell] for r in runs)
            lines.append(f"| {cell} | {_mean_sd(r['val_greedy'] for r in runs)} | "
                         f"{_mean_sd(r['val_beam'] for r in runs)} | >= {TARGETS[cell]} | "
                         f"{'yes' if met else 'NO'} |")
    lines += coco_lines(builtin, epochs)
    lines += ["", "## The course's overfitting runs (COCO-shaped random data, H = 512, W = 256, batch 25, "
              "50 epochs, adam 5e-3)", "", "| cell | examples | seed | final loss | target | met |",
              "|---|---|---|---|---|---|"]
    for r in overfit:
        lines.append(f"| {r['cell']} | {r['examples']} | {r['seed']} | {r['final_loss']:.4f} | < {r['target']} | "
                     f"{'yes' if r['final_loss'] < r['target'] else 'NO'} |")
    lines += ["", "## Training steps per second (one jitted step; H = 512, W = 256, T = 16, V = 1,004, D = 512)",
              "", "| cell | batch | steps/s |", "|---|---|---|"]
    for r in speed:
        lines.append(f"| {r['cell']} | {r['batch_size']} | {r['steps_per_second']:.1f} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="one seed, 3 epochs, no overfit runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds, epochs = ([args.seeds[0]], 3) if args.quick else (args.seeds, args.epochs)

    builtin = []
    for cell in ("lstm", "rnn"):
        for seed in seeds:
            builtin.append(builtin_run(cell, seed, epochs))
            print({key: value for key, value in builtin[-1].items() if key != "coco"},
                  {decode: result["scores"] for decode, result in builtin[-1]["coco"].items()}, flush=True)
    overfit = [] if args.quick else [overfit_run(cell, seed) for cell in ("rnn", "lstm") for seed in seeds]
    for r in overfit:
        print(r, flush=True)
    speed = [throughput_run(cell, batch) for cell in ("rnn", "lstm") for batch in ((25, 100) if not args.quick else (25,))]
    print(write_report(builtin, overfit, speed, epochs, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
