"""The demo's training steps (`jaxseq demo`, `make demo`): each `step(args) -> None` prints its
own section, importing what it needs only when it runs.

- captioning: the LSTM captioner on the built-in scenes: val scenes (greedy and beam search),
  BLEU-1 and the loss curve;
- classifier: the transformer sentence classifier on CoLA when it is found
  (`jaxseq.data.locations`: $JAXSEQ_DATA/cola, ~/.cache/jaxseq/cola or ../shared/data/cola),
  otherwise on the built-in bracket-nesting task; validation and test accuracy and MCC;
- language_model: char-rnn's recipe on Tiny Shakespeare (found by the same rule) or on the
  built-in text; validation bits per character and samples at temperatures 0.5 and 1.0.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

DEMO_EPOCHS = 15


def captioning(args: argparse.Namespace) -> None:
    """`make demo`: train the LSTM captioner on the built-in set, show val scenes, BLEU-1, loss curve."""
    import numpy as np

    from jaxseq.commands.caption import readable
    from jaxseq.data.caption_sources import builtin_source
    from jaxseq.data.synthetic_captions import load_scene_captions
    from jaxseq.inference import evaluate_captions, generate_captions
    from jaxseq.train.captioning import train_captioner
    from jaxseq.train.progress import save_loss_curve

    data = load_scene_captions(seed=args.seed)
    print(f"built-in scenes: {data['train_captions'].shape[0]} train, {data['val_captions'].shape[0]} val "
          f"(different scenes), {len(data['idx_to_word'])} words, features D={data['train_features'].shape[1]}")
    solver = train_captioner(cell="lstm", data=data, data_spec=builtin_source(seed=args.seed),
                             epochs=DEMO_EPOCHS, seed=args.seed, verbose=False)
    print(f"trained {len(solver.loss_history)} steps ({DEMO_EPOCHS} epochs, batch 100, adam 5e-3, "
          f"lr_decay 0.95) at {solver.steps_per_second:.0f} steps/s: loss {solver.loss_history[0]:.2f} -> "
          f"{solver.loss_history[-1]:.3f}, val loss {solver.val_loss_history[-1]:.3f}")
    variables = {"params": solver.params}
    rows = np.random.default_rng(args.seed).choice(data["val_captions"].shape[0], 5, replace=False)
    references, greedy = generate_captions(solver.model, variables, data, "val", rows, "greedy")
    _, beam = generate_captions(solver.model, variables, data, "val", rows, "beam")
    print("unseen val scenes (greedy / beam search width 5 / true):")
    for reference, by_greedy, by_beam in zip(references, greedy, beam):
        print(f"    greedy: {readable(by_greedy)}\n      beam: {readable(by_beam)}\n      true: {readable(reference)}\n")
    scores = {decode: evaluate_captions(solver.model, variables, data, "val", decode=decode)
              for decode in ("greedy", "beam")}
    print(f"val BLEU-1 ({data['val_captions'].shape[0]} scenes): greedy {scores['greedy']:.4f}, "
          f"beam search {scores['beam']:.4f}")
    path = save_loss_curve(solver.loss_history, args.output_dir / "captioning_lstm_loss.png",
                           title="LSTM captioner on the built-in scenes", smooth=20)
    print(f"loss curve: {path}")


# Small enough for about a minute on 2 CPU cores: CoLA with the library's recipe cut to 20
# epochs (its cosine schedule then ends at epoch 20), or a small model on the built-in task.
COLA_EPOCHS = 20
BUILTIN_SETTINGS: dict[str, Any] = dict(min_count=1, max_length=24,
                        model_kwargs=dict(hidden_dim=64, num_heads=2, dim_k=32, dim_q=32, dim_v=32,
                                          dim_feedforward=256),
                        train=dict(epochs=15, learning_rate=1e-3))


def run_demo(output_dir: Path, seed: int, cola_dir: Path | None, *, epochs: int | None = None):
    """Train the classifier on CoLA (`cola_dir`) or, when it is None, on the built-in task;
    print and write (`<output_dir>/classifier_metrics.json`) the scores. Returns the run."""
    from jaxseq.cola_recipes import COLA_RECIPE
    from jaxseq.data import bracket_nesting_task, load_cola
    from jaxseq.train import ClassifierTrainConfig, fit_sentence_classifier

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
    scores = {split: {key: found[key] for key in ("accuracy", "mcc")}
              for split, found in (("val", run.val_scores), ("test", run.test_scores)) if found is not None}
    summary = {"data": data_name, "best_epoch": run.result.best_epoch, **scores,
               "seconds_per_epoch": [round(entry["seconds"], 3) for entry in run.result.history]}
    print(f"best epoch {summary['best_epoch']}: " + "  |  ".join(
        f"{split} acc {found['accuracy']:.4f}  {split} MCC {found['mcc']:+.4f}" for split, found in scores.items()))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "classifier_metrics.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return run


def classifier(args: argparse.Namespace) -> None:
    """`make demo`: the transformer classifier on CoLA when found, else on the built-in task."""
    from jaxseq.data.cola import default_cola_dir

    run_demo(args.output_dir, args.seed, default_cola_dir())


# One epoch of char-rnn's recipe: about 400 steps on Tiny Shakespeare (when found), or two
# epochs (160 steps) on the built-in text.
LM_SAMPLE_LENGTH = 300


def language_model(args: argparse.Namespace, *, epochs: int | None = None) -> dict:
    """`make demo`: char-rnn's recipe (a 2-layer LSTM of 128) on Tiny Shakespeare when found,
    else on the built-in text; prints the validation bits per character and samples at two
    temperatures, writes `<output_dir>/language_model.json`. Returns that summary."""
    from jaxseq.data.builtin_text import load_builtin_text
    from jaxseq.data.tiny_shakespeare import load_tiny_shakespeare, tiny_shakespeare_file
    from jaxseq.inference.language_model import generate_text
    from jaxseq.lm_recipes import LM_RECIPES
    from jaxseq.models.language_model import LanguageModel
    from jaxseq.train.language_model import LMTrainConfig, train_language_model

    recipe = LM_RECIPES["char-rnn"]
    found = tiny_shakespeare_file()
    corpus = load_tiny_shakespeare(found) if found is not None else load_builtin_text(seed=args.seed)
    prompt = "ROMEO:" if found is not None else "the "
    print(f"data: {corpus.summary()}")
    config = LMTrainConfig(**{**recipe["train"], "epochs": epochs or (1 if found is not None else 2)},
                           seed=args.seed)
    model = LanguageModel(vocab_size=len(corpus.vocab), **recipe["model"])
    result = train_language_model(model, corpus, config, checkpoint_dir=Path(args.output_dir) / "language_model",
                                  overwrite=True, progress=False)
    summary: dict[str, Any] = {"data": corpus.source, "epochs": config.epochs, "val_loss": result.best_val_loss,
               "val_bits_per_character": result.best_val_loss / math.log(2), "samples": {}}
    for temperature in (0.5, 1.0):
        text = prompt + "".join(generate_text(model, result.params, corpus.vocab, prompt, LM_SAMPLE_LENGTH,
                                              temperature=temperature, seed=args.seed))
        summary["samples"][str(temperature)] = text
        print(f"\n--- sample at temperature {temperature} ---\n{text}")
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "language_model.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
