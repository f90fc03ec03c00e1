"""CoLA quality run of the Transformer classifier (issue 4): configurations x seeds.

For every configuration and seed: build the vocabulary on the 7,000 training sentences of
the course split (split seed 0), train, keep the epoch with the best validation MCC, and
score it on validation (1,551 in-domain sentences) and on the out-of-domain dev set (516,
held out as test). Writes `results/cola_quality.md` (a table of means and per-seed values)
and `results/cola_quality.json` (every run's history), and prints the table.

    python benchmarks/quality/cola_quality.py [--configs seed best ...] [--seeds 0 1 2] [--data-dir DIR]

Targets (issue 4, seed architecture, mean over 3 seeds): val MCC >= 0.15, dev MCC >= 0.10,
val acc >= 0.71, dev acc >= 0.68. This is a long run (minutes per configuration), not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

SEED_ARCHITECTURE = dict(hidden_dim=128, num_heads=2, dim_k=96, dim_q=96, dim_v=96, dim_feedforward=2048)

from jaxseq.cola_recipes import COLA_RECIPE, RECURRENT_COLA_RECIPE  # noqa: E402  (numbers only, no JAX work)

# name -> (description, min_count, model fields ("architecture": lstm/gru, else the transformer),
#          ClassifierTrainConfig fields)
CONFIGS = {
    "plain": ("Adam 1e-3, batch 32, 10 epochs, min count 5, no regularization (course-like)",
              5, dict(SEED_ARCHITECTURE), dict(epochs=10, learning_rate=1e-3)),
    "seed": ("COLA_RECIPE (CLI defaults): AdamW 1e-4 (wd 0.01), batch 16, dropout 0.1, label smoothing 0.1, "
             "warm-up 1 epoch + cosine over 30, patience 10, min count 3",
             COLA_RECIPE["min_count"], dict(SEED_ARCHITECTURE, **COLA_RECIPE["model"]), dict(COLA_RECIPE["train"])),
    "best": ("as seed, but a constant AdamW 3e-5 (no warm-up) for up to 80 epochs, patience 15",
             COLA_RECIPE["min_count"], dict(SEED_ARCHITECTURE, **COLA_RECIPE["model"]),
             dict(COLA_RECIPE["train"], learning_rate=3e-5, schedule="constant", warmup_epochs=0.0,
                  epochs=80, patience=15)),
    "lstm": ("RECURRENT_COLA_RECIPE (`--model lstm` defaults): bidirectional LSTM, embed 128, hidden 128, "
             "1 layer, max pooling, dropout 0.3, word dropout 0.2; AdamW 1e-3 (wd 0.01), batch 32, "
             "label smoothing 0.1, warm-up 0.5 epoch + cosine over 10, patience 5, min count 1",
             RECURRENT_COLA_RECIPE["min_count"], dict(RECURRENT_COLA_RECIPE["model"], architecture="lstm"),
             dict(RECURRENT_COLA_RECIPE["train"])),
    "gru": ("as lstm, with a GRU (`--model gru` defaults)",
            RECURRENT_COLA_RECIPE["min_count"], dict(RECURRENT_COLA_RECIPE["model"], architecture="gru"),
            dict(RECURRENT_COLA_RECIPE["train"])),
}
TARGETS = {"val_mcc": 0.15, "dev_mcc": 0.10, "val_accuracy": 0.71, "dev_accuracy": 0.68}


def run_one(splits, name: str, seed: int) -> dict:
    from jaxseq.train import ClassifierTrainConfig, fit_sentence_classifier

    _, min_count, model_kwargs, train = CONFIGS[name]
    model_kwargs = dict(model_kwargs)
    architecture = model_kwargs.pop("architecture", "transformer")
    start = time.perf_counter()
    run = fit_sentence_classifier(splits, min_count=min_count, max_length=43, architecture=architecture,
                                  model_kwargs=model_kwargs,
                                  config=ClassifierTrainConfig(seed=seed, **train), progress=False, log=None)
    history = run.result.history
    later = [h["seconds"] for h in history[1:]] or [history[0]["seconds"]]  # epoch 1 includes compiling
    row = {
        "config": name, "seed": seed, "best_epoch": run.result.best_epoch, "epochs_run": len(history),
        "val_accuracy": run.val_scores["accuracy"], "val_mcc": run.val_scores["mcc"],
        "dev_accuracy": run.test_scores["accuracy"], "dev_mcc": run.test_scores["mcc"],
        "seconds_per_epoch": statistics.median(later), "first_epoch_seconds": history[0]["seconds"],
        "total_seconds": time.perf_counter() - start, "vocab_size": len(run.vocab), "history": history,
    }
    print(f"  {name} seed {seed}: best epoch {row['best_epoch']}/{row['epochs_run']}  "
          f"val acc {row['val_accuracy']:.4f} MCC {row['val_mcc']:+.4f}  "
          f"dev acc {row['dev_accuracy']:.4f} MCC {row['dev_mcc']:+.4f}  {row['seconds_per_epoch']:.2f} s/epoch",
          flush=True)
    return row


def summarize(rows: list[dict]) -> dict:
    keys = ("val_accuracy", "val_mcc", "dev_accuracy", "dev_mcc", "seconds_per_epoch")
    out = {}
    for key in keys:
        values = [row[key] for row in rows]
        out[key] = statistics.mean(values)
        out[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def markdown(rows: list[dict], splits, meta: dict) -> str:
    """The report of `rows`; `splits=None` (the docs site, built without CoLA) leaves out the
    majority-class row, which needs the labels."""
    lines = [
        "# CoLA quality: single-layer Transformer classifier",
        "",
        f"Course split (split seed 0): 7,000 train / 1,551 validation; dev (516, out-of-domain) as test. "
        f"Checkpoint = epoch with the best validation MCC. {meta['machine']}; {meta['date']}. "
        "s/epoch: median training time of epochs 2+ (evaluation excluded).",
        "",
        "| config | seeds | val acc | val MCC | dev acc | dev MCC | s/epoch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    if splits is not None:
        majority_val = max(splits.val.labels.mean(), 1 - splits.val.labels.mean())
        majority_dev = max(splits.test.labels.mean(), 1 - splits.test.labels.mean())
        lines.append(f"| majority class (always acceptable) | – | {majority_val:.3f} | 0.000 | "
                     f"{majority_dev:.3f} | 0.000 | – |")
    for name in dict.fromkeys(row["config"] for row in rows):
        group = [row for row in rows if row["config"] == name]
        s = summarize(group)
        fmt = lambda key: f"{s[key]:.3f} ± {s[key + '_std']:.3f}"
        lines.append(f"| {name}: {CONFIGS[name][0]} | {', '.join(str(r['seed']) for r in group)} | "
                     f"{fmt('val_accuracy')} | {fmt('val_mcc')} | {fmt('dev_accuracy')} | {fmt('dev_mcc')} | "
                     f"{s['seconds_per_epoch']:.2f} |")
    lines += ["", "Mean ± standard deviation over seeds. Per run:", "",
              "| config | seed | best epoch | val acc | val MCC | dev acc | dev MCC | s/epoch |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['config']} | {row['seed']} | {row['best_epoch']}/{row['epochs_run']} | "
                     f"{row['val_accuracy']:.3f} | {row['val_mcc']:+.3f} | {row['dev_accuracy']:.3f} | "
                     f"{row['dev_mcc']:+.3f} | {row['seconds_per_epoch']:.2f} |")
    lines += ["", "Targets (seed architecture, mean of 3 seeds): " +
              ", ".join(f"{key.replace('_', ' ')} >= {value}" for key, value in TARGETS.items()), ""]
    for name in dict.fromkeys(row["config"] for row in rows):
        s = summarize([row for row in rows if row["config"] == name])
        status = ", ".join(f"{key.replace('_', ' ')} {s[key]:.3f} {'met' if s[key] >= value else 'MISSED'}"
                           for key, value in TARGETS.items())
        lines.append(f"- {name}: {status}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["plain", "seed", "best"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=None, help="CoLA folder (default: as `jaxseq cola train`)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results", help="output folder")
    parser.add_argument("--stem", default="cola_quality", help="output file name stem")
    args = parser.parse_args(argv)

    import platform

    from jaxseq.data.cola import default_cola_dir, load_cola

    data_dir = args.data_dir or default_cola_dir()
    if data_dir is None:
        print("CoLA not found: pass --data-dir or set JAXSEQ_DATA", file=sys.stderr)
        return 2
    splits = load_cola(data_dir)
    load_before = os.getloadavg()
    rows = []
    for name in args.configs:
        print(f"{name}: {CONFIGS[name][0]}", flush=True)
        rows += [run_one(splits, name, seed) for seed in args.seeds]
    load = f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    meta = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores ({load})",
            "date": time.strftime("%Y-%m-%d"), "data": str(data_dir),
            "configs": {name: CONFIGS[name] for name in args.configs}}
    table = markdown(rows, splits, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.md").write_text(table, encoding="utf-8")
    (args.out / f"{args.stem}.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1), encoding="utf-8")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
