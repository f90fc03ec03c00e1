"""Language-model training recipes, as plain data (importable without JAX, so the command
line shows them as option defaults): each a model and a training config for
`jaxseq lm train --recipe NAME`.

- "pytorch-example": PyTorch's word_language_model example's defaults (`main.py`): a 2-layer
  LSTM of 200 units on 200-wide embeddings, dropout 0.2 (on the embeddings, between the
  layers and on the output), untied; 20 streams, bptt 35, plain SGD at 20 with gradients
  clipped to 0.25, the rate divided by 4 after each epoch without a better validation loss;
  40 epochs. Word level.
- "char-rnn": Karpathy's char-rnn defaults (`train.lua`): a 2-layer LSTM of 128 units, no
  dropout, 50 streams of 50 characters, rate 2e-3, gradients clipped to 5, 50 epochs. char-rnn
  uses RMSprop with a decay after epoch 10 and one-hot inputs; here Adam (AdamW without decay)
  at a constant rate and a 128-wide embedding (the one-hot input times a learned matrix is an
  embedding). Character level.
- "jaxseq": the best character recipe measured here: a 2-layer LSTM of 512 on 128-wide
  embeddings, 64 streams of 16-character segments, AdamW at 2e-3 with decoupled weight decay
  0.3, a 240-step warm-up and cosine decay over 9 epochs, clipped to 1.0, dropout 0.1 on the
  embeddings, between the layers and on the output (standard, as PyTorch's example has it).
  Character level. On Tiny Shakespeare (nanoGPT's split) it reaches 1.3996 / 1.3968 validation
  nats per character (seeds 0, 1) in about 14 minutes of training on 2 CPU cores (an Intel
  Xeon; benchmarks/results/lm_quality_best-wd03-9ep.md, -seed1.md). Weight decay is what
  lowered the loss: the same recipe without it over 6 epochs (the quality script's
  `ts-lstm512`, 10 minutes) gives 1.421 / 1.433 / 1.435 (three seeds,
  lm_quality_ts512-seed0.md, -seeds12.md), with 0.1 1.406 and with 0.3 1.408 (6 epochs, seed
  0, lm_quality_best-wd01.md, -wd03.md). Short segments because an epoch costs the same at
  every segment length while 16 characters give 8x the updates of 128, and at these budgets
  the model is short of updates (the pilots: benchmarks/quality/lm_quality.py). What did not
  help without weight decay: dropout 0.25 over 10 epochs (1.427, lm_quality_best-bptt16.md),
  locked dropout 0.2 (overfit), embedding dropout 0.1 (1.422 over 12 epochs), a third layer
  (1.445), a width of 768 (overfit): lm_quality_best-embdrop12.md, -3layers.md. Until
  2026-12-07 it used 128-character segments, 12 epochs and locked dropout 0.1 between the
  layers: 1.431 after 55 minutes on a 2-core AMD EPYC (lm_quality_best-60min.md).
"""

from __future__ import annotations

from typing import Any, TypedDict


class LMRecipe(TypedDict):
    """A recipe: its level ("char" or "word"), `LanguageModel` fields, `LMTrainConfig` fields."""

    level: str
    model: dict[str, Any]
    train: dict[str, Any]


LM_RECIPES: dict[str, LMRecipe] = {
    "pytorch-example": dict(
        level="word",
        model=dict(cell="lstm", embed_size=200, hidden_size=200, num_layers=2, tie_weights=False,
                   input_dropout=0.2, hidden_dropout=0.2, output_dropout=0.2, locked_dropout=False,
                   embedding_dropout=0.0, weight_drop=0.0),
        train=dict(epochs=40, batch_size=20, bptt=35, optimizer="sgd", learning_rate=20.0, schedule="plateau",
                   plateau_factor=4.0, warmup_steps=0, clip_norm=0.25, weight_decay=0.0, eval_batch_size=10),
    ),
    "char-rnn": dict(
        level="char",
        model=dict(cell="lstm", embed_size=128, hidden_size=128, num_layers=2, tie_weights=False,
                   input_dropout=0.0, hidden_dropout=0.0, output_dropout=0.0, locked_dropout=False,
                   embedding_dropout=0.0, weight_drop=0.0),
        train=dict(epochs=50, batch_size=50, bptt=50, optimizer="adamw", learning_rate=2e-3, schedule="constant",
                   plateau_factor=4.0, warmup_steps=0, clip_norm=5.0, weight_decay=0.0, eval_batch_size=10),
    ),
    "jaxseq": dict(
        level="char",
        model=dict(cell="lstm", embed_size=128, hidden_size=512, num_layers=2, tie_weights=False,
                   input_dropout=0.1, hidden_dropout=0.1, output_dropout=0.1, locked_dropout=False,
                   embedding_dropout=0.0, weight_drop=0.0),
        train=dict(epochs=9, batch_size=64, bptt=16, optimizer="adamw", learning_rate=2e-3, schedule="cosine",
                   plateau_factor=4.0, warmup_steps=240, clip_norm=1.0, weight_decay=0.3, eval_batch_size=10),
    ),
}
DEFAULT_RECIPE = {"char": "char-rnn", "word": "pytorch-example"}  # by --level, when --recipe is not given
