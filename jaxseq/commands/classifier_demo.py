"""Demo step "Transformer sentence classifier": trains on CoLA when it is found
($JAXSEQ_DATA/cola or ../shared/data/cola), otherwise on the built-in bracket acceptability
task, and prints validation and test accuracy and MCC (about a minute on 2 CPU cores)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Small enough for about a minute on 2 CPU cores: CoLA with the library's recipe cut to 20
# epochs (its cosine schedule then ends at epoch 20), or a small model on the built-in task.
COLA_EPOCHS = 20
BUILTIN_SETTINGS = dict(min_count=1, max_length=24,
                        model_kwargs=dict(hidden_dim=64, num_heads=2, dim_k=32, dim_q=32, dim_v=32,
                                          dim_feedforward=256),
                        train=dict(epochs=15, learning_rate=1e-3))


def run_demo(output_dir: Path, seed: int, cola_dir: Path | None, *, epochs: int | None = None):
    """Train the classifier on CoLA (`cola_dir`) or, when it is None, on the built-in task;
    print and write (`<output_dir>/classifier_metrics.json`) the scores. Returns the run."""
    from jaxseq.data.bracket_nesting import bracket_nesting_task
    from jaxseq.data.cola import load_cola
    from jaxseq.train.classifier import ClassifierTrainConfig
    from jaxseq.train.sentence_classifier import COLA_RECIPE, fit_sentence_classifier

    if cola_dir is not None:
        print(f"data: CoLA from {cola_dir} (7,000 train / 1,551 validation; dev as out-of-domain test)")
        settings = dict(min_count=COLA_RECIPE["min_count"], max_length=43, model_kwargs=COLA_RECIPE["model"],
                        train=dict(COLA_RECIPE["train"], epochs=COLA_EPOCHS))
        splits, data_name = load_cola(cola_dir), "cola"
    else:
        print("data: CoLA not found; built-in task (well-nested vs corrupted bracket sequences)")
        splits, settings, data_name = bracket_nesting_task(seed=seed), BUILTIN_SETTINGS, "brackets"
    train = dict(settings["train"], seed=seed)
    if epochs is not None:
        train["epochs"] = epochs
    run = fit_sentence_classifier(
        splits, min_count=settings["min_count"], max_length=settings["max_length"],
        model_kwargs=settings["model_kwargs"], config=ClassifierTrainConfig(**train),
        checkpoint_dir=Path(output_dir) / "classifier", overwrite=True, progress=False,
    )
    summary = {
        "data": data_name,
        "best_epoch": run.result.best_epoch,
        "val": {key: run.val_scores[key] for key in ("accuracy", "mcc")},
        "test": {key: run.test_scores[key] for key in ("accuracy", "mcc")},
        "seconds_per_epoch": [round(entry["seconds"], 3) for entry in run.result.history],
    }
    print(f"best epoch {summary['best_epoch']}: val acc {summary['val']['accuracy']:.4f}  "
          f"val MCC {summary['val']['mcc']:+.4f}  |  test acc {summary['test']['accuracy']:.4f}  "
          f"test MCC {summary['test']['mcc']:+.4f}")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "classifier_metrics.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return run


def demo_step(args: argparse.Namespace) -> None:
    from jaxseq.data.cola import default_cola_dir

    run_demo(args.output_dir, args.seed, default_cola_dir())
