"""Which of the language model's regularisers help (issue 22: "say which ones helped, measured"):
a short ablation on Tiny Shakespeare at character level, each regulariser alone against none.

The setting is small-data on purpose: regularisers only help a model that overfits, and a
10-minute run on the whole of Tiny Shakespeare underfits (`lm_quality.md`). So the model trains
on the first `--train-chars` characters of nanoGPT's training split (default 50,000) for a
fixed number of epochs and is scored on the
first `--val-chars` of the validation split (default 30,000): the best validation loss over the
epochs (what a run selecting by validation loss keeps) and the last one, in nats per character.

Every configuration starts from the same initial weights (the same seed) and sees the same
segments in the same order; only the model's regulariser differs:

    none                 no dropout
    input (locked)       variational dropout on the embedded characters (`input_dropout`)
    hidden (locked)      variational dropout between the two layers (`hidden_dropout`)
    output (locked)      variational dropout on the last layer's output (`output_dropout`)
    weight drop          DropConnect on every weight_hh (`weight_drop`)
    embedding dropout    whole characters dropped from the embedding matrix (`embedding_dropout`)

(rates: `RATES`, AWD-LSTM's character-level values where it has them). The defaults (10
epochs, 240 steps, ~20 minutes on the loaded 2-core machine) did NOT reach overfitting: the
unregularised model was still improving at its last epoch (results/lm_regularisers.md), so they
measure each regulariser's cost to a model still fitting; raise --epochs (or lower
--train-chars) until the unregularised validation loss turns up to measure their benefit
(`--epochs 40 --train-chars 20000 --val-chars 10000`: results/lm_regularisers-overfit.md). Writes
`results/lm_regularisers.json` and `.md` (machine, date, load averages, every curve).

    python benchmarks/quality/lm_regularisers.py [--epochs 10] [--train-chars 50000] [--only none hidden]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from lm_quality import load_now, machine, say  # noqa: E402  (this folder's helpers)

MODEL = dict(cell="lstm", embed_size=64, hidden_size=256, num_layers=2, tie_weights=False)
TRAIN = dict(batch_size=32, bptt=64, optimizer="adamw", learning_rate=2e-3, schedule="constant", warmup_steps=20,
             clip_norm=1.0, weight_decay=0.0, eval_batch_size=10, seed=0)
RATES = {  # AWD-LSTM's char-level (PTB-char) rates: dropouti 0.1, dropouth 0.25, dropout 0.1, wdrop 0.5
    "none": {},
    "input (locked)": dict(input_dropout=0.1, locked_dropout=True),
    "hidden (locked)": dict(hidden_dropout=0.25, locked_dropout=True),
    "output (locked)": dict(output_dropout=0.1, locked_dropout=True),
    "weight drop": dict(weight_drop=0.5),
    "embedding dropout": dict(embedding_dropout=0.1),
}
KEYS = {"none": "none", "input": "input (locked)", "hidden": "hidden (locked)", "output": "output (locked)",
        "weight": "weight drop", "embedding": "embedding dropout"}


def corpus_subset(train_chars: int, val_chars: int):
    from jaxseq.data.text_corpus import TextCorpus
    from jaxseq.data.tiny_shakespeare import load_tiny_shakespeare, tiny_shakespeare_file

    path = tiny_shakespeare_file()
    if path is None:
        raise SystemExit("Tiny Shakespeare not found: set JAXSEQ_DATA (a folder with tinyshakespeare/input.txt)")
    full = load_tiny_shakespeare(path)
    source = f"{path}: the first {train_chars:,} training and {val_chars:,} validation characters of nanoGPT's split"
    return TextCorpus(full.vocab, full.train[:train_chars], full.val[:val_chars], None, {}, source)


def run_one(name: str, corpus, epochs: int) -> dict:
    from jaxseq.models import LanguageModel
    from jaxseq.train.language_model import LMTrainConfig, train_language_model

    model = LanguageModel(vocab_size=len(corpus.vocab), **MODEL, **RATES[name])
    config = LMTrainConfig(**TRAIN, epochs=epochs)
    load_before, start = load_now(), time.perf_counter()
    run = train_language_model(model, corpus, config, progress=False, log=None)
    curve = [{"epoch": r["epoch"], "train_loss": round(r["train_loss"], 4), "val_loss": round(r["val_loss"], 4),
              "seconds": round(r["seconds"], 1)} for r in run.history]
    result = {"name": name, "rates": RATES[name], "best_val_loss": round(run.best_val_loss, 4),
              "best_epoch": run.best_epoch, "final_val_loss": curve[-1]["val_loss"],
              "final_train_loss": curve[-1]["train_loss"], "curve": curve,
              "wall_seconds": round(time.perf_counter() - start, 1), "load_before": load_before, "load_after": load_now()}
    say(f"{name:18s} best val {result['best_val_loss']:.4f} (epoch {run.best_epoch}), final val "
        f"{result['final_val_loss']:.4f}, final train {result['final_train_loss']:.4f}, {result['wall_seconds']:.0f} s, "
        f"load {load_before} -> {result['load_after']}")
    return result


def markdown(results: dict) -> str:
    runs = results["runs"]
    base = next((r for r in runs if r["name"] == "none"), None)
    lines = ["# Language-model regularisers, measured (issue 22)", "",
             f"{results['machine']}; {results['date']}; {results['software']}. Data: {results['data']}. "
             f"Model {json.dumps(MODEL)}, training {json.dumps(dict(TRAIN, epochs=results['epochs']))}, "
             f"{results['steps_per_epoch']} steps per epoch. Each configuration: the same initial weights and "
             "segments, one regulariser (rates below). Loss: validation cross-entropy, nats per character (the "
             "state carried over the validation text). One run per configuration (seed 0), one training process at "
             "a time on a shared 2-core machine: the load averages are beside each run; the losses do not depend "
             "on the load, only the seconds do.", "",
             "| regulariser (rate) | best val loss (epoch) | vs none | final val loss | final train loss | s | load |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        rates = ", ".join(f"{k} {v}" for k, v in r["rates"].items() if k != "locked_dropout") or "-"
        delta = f"{r['best_val_loss'] - base['best_val_loss']:+.4f}" if base else ""
        lines.append(f"| {r['name']} ({rates}) | {r['best_val_loss']:.4f} ({r['best_epoch']}) | {delta} | "
                     f"{r['final_val_loss']:.4f} | {r['final_train_loss']:.4f} | {r['wall_seconds']:.0f} | "
                     f"{r['load_before']} / {r['load_after']} |")
    lines += ["", "## Curves (validation loss per epoch)", "",
              "| regulariser | " + " | ".join(str(i + 1) for i in range(results["epochs"])) + " |",
              "|---|" + "---:|" * results["epochs"]]
    for r in runs:
        lines.append(f"| {r['name']} | " + " | ".join(f"{c['val_loss']:.4f}" for c in r["curve"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-chars", type=int, default=50_000)
    parser.add_argument("--val-chars", type=int, default=30_000)
    parser.add_argument("--only", nargs="+", choices=sorted(KEYS), default=None, help="run only these")
    parser.add_argument("--out", default=str(HERE.parent / "results"), help="folder for lm_regularisers.md/.json")
    args = parser.parse_args(argv)
    import jax
    import jaxlib

    corpus = corpus_subset(args.train_chars, args.val_chars)
    names = [KEYS[k] for k in args.only] if args.only else list(RATES)
    from jaxseq.data.text_streams import batchify

    steps = len(range(0, batchify(corpus.train, TRAIN["batch_size"]).shape[1] - 1, TRAIN["bptt"]))
    results = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "software": f"jax {jax.__version__} (jaxlib {jaxlib.__version__})", "data": corpus.source,
               "epochs": args.epochs, "steps_per_epoch": steps, "runs": []}
    for name in names:
        results["runs"].append(run_one(name, corpus, args.epochs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm_regularisers.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "lm_regularisers.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
