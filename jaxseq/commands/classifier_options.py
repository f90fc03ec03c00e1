"""What `jaxseq cola` and `jaxseq classify` share: the training options (model, training,
checkpoints, scaling out), their translation into `fit_sentence_classifier`'s keywords, the
report printed after training, and the commands that use a trained run, `predict` (both) and
`eval --test FILE` (`classify`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxseq.commands._options import (
    add_checkpoint_args,
    add_log_args,
    add_parallel_args,
    batch_size,
    bounded_int,
    check_folder_options,
    fraction,
    model_size,
    nonnegative_float,
    positive_float,
    positive_int,
    random_seed,
    setup_parallel,
)

MODELS = ("transformer", "lstm", "gru")  # jaxseq.models.classifiers.ARCHITECTURES, without importing JAX
POOLINGS = ("max", "final", "max+final")  # jaxseq.models.recurrent_classifier.POOLINGS
layers = bounded_int(1, 64, "a positive integer")  # run_metadata.MAX_LAYERS
SCHEDULES = ("constant", "cosine", "linear")  # jaxseq.train.classifier.SCHEDULES

# The training options whose defaults come from the --model's recipe: (flag, the
# ClassifierTrainConfig field and recipe key, argparse type (None: one of SCHEDULES), help).
RECIPE_TRAINING_OPTIONS = (
    ("--epochs", "epochs", positive_int, "training epochs"),
    ("--batch-size", "batch_size", batch_size, "batch size"),
    ("--lr", "learning_rate", positive_float, "peak learning rate"),
    ("--weight-decay", "weight_decay", nonnegative_float, "AdamW decoupled weight decay; 0 uses Adam"),
    ("--schedule", "schedule", None, "learning-rate decay after the warm-up, to 0 at the last epoch"),
    ("--warmup-epochs", "warmup_epochs", nonnegative_float, "linear warm-up length in epochs"),
    ("--label-smoothing", "label_smoothing", fraction, "label smoothing"),
    ("--patience", "patience", positive_int, "stop after this many epochs without a better validation MCC"),
)


def _recipe_default(key: str, section: str | None = "train") -> str:
    """The help text's default of option `key`: the transformer's and the recurrent recipe's."""
    from jaxseq.cola_recipes import COLA_RECIPE, RECURRENT_COLA_RECIPE

    pick = (lambda recipe: recipe[key]) if section is None else (lambda recipe: recipe[section][key])
    a, b = pick(COLA_RECIPE), pick(RECURRENT_COLA_RECIPE)
    return f"default: {a}" if a == b else f"default: {a} for the transformer, {b} for lstm/gru"


def add_training_options(parser: argparse.ArgumentParser, default_checkpoint_dir: str) -> None:
    """Options whose defaults (None here) come from the --model's recipe, `COLA_RECIPE` or
    `RECURRENT_COLA_RECIPE`, measured in benchmarks/quality/cola_quality.py."""
    from jaxseq.cola_recipes import RECURRENT_COLA_RECIPE  # plain data: building the parser loads no JAX

    group = parser.add_argument_group("training")
    for flag, field, kind, what in RECIPE_TRAINING_OPTIONS:
        typed = {"choices": SCHEDULES} if kind is None else {"type": kind}
        group.add_argument(flag, **typed, default=None, help=f"{what} ({_recipe_default(field)})")
    group.add_argument("--seed", type=random_seed, default=0,
                       help="random seed for init, dropout, shuffling (default: 0)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model and data")
    model.add_argument("--model", choices=MODELS, default="transformer",
                       help="transformer (one encoder layer), or a bidirectional lstm / gru with pooling "
                            "(default: %(default)s)")
    model.add_argument("--dropout", type=fraction, default=None,
                       help=f"dropout rate ({_recipe_default('dropout', 'model')})")
    model.add_argument("--hidden-dim", type=model_size, default=128,
                       help="model width H; lstm/gru: hidden size per direction (default: 128)")
    model.add_argument("--num-heads", type=model_size, default=2, help="transformer: attention heads (default: 2)")
    model.add_argument("--dim-k", type=model_size, default=96, help="transformer: query/key size per head (default: 96)")
    model.add_argument("--dim-v", type=model_size, default=96, help="transformer: value size per head (default: 96)")
    model.add_argument("--dim-feedforward", type=model_size, default=2048,
                       help="transformer: feed-forward width (default: 2048)")
    recurrent = RECURRENT_COLA_RECIPE["model"]
    model.add_argument("--embed-dim", type=model_size, default=recurrent["embed_dim"],
                       help="lstm/gru: embedding size (default: %(default)s)")
    model.add_argument("--num-layers", type=layers, default=recurrent["num_layers"],
                       help="lstm/gru: stacked bidirectional layers (default: %(default)s)")
    model.add_argument("--embed-dropout", type=fraction, default=None,
                       help="lstm/gru: dropout rate on the embedded tokens (default: %s)" % recurrent["embed_dropout"])
    model.add_argument("--word-dropout", type=fraction, default=None,
                       help="lstm/gru: probability of replacing each training word by [UNK] (default: %s)"
                            % recurrent["word_dropout"])
    model.add_argument("--pooling", choices=POOLINGS, default=recurrent["pooling"],
                       help="lstm/gru: max over the valid steps, the last layer's final states of both "
                            "directions, or both concatenated (default: %(default)s)")
    model.add_argument("--max-length", type=model_size, default=43,
                       help="tokens per sentence, [CLS] included; longer ones are truncated (default: 43)")
    model.add_argument("--min-count", type=positive_int, default=None,
                       help=f"keep training words seen at least this often ({_recipe_default('min_count', None)})")
    model.add_argument("--no-pad-mask", action="store_true",
                       help="transformer: let attention see [PAD] tokens (the course's unmasked model)")
    add_checkpoint_args(parser, "the checkpoints (every epoch's full state; the last two and the best are kept) "
                        "and vocab.json", default=default_checkpoint_dir)
    add_log_args(parser)
    add_parallel_args(parser)


def train_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of `fit_sentence_classifier` from parsed training options.

    Joins a multi-process run first when the options ask for one (before JAX starts).
    """
    devices = setup_parallel(args)
    check_folder_options(args.checkpoint_dir, args.log_dir)
    from jaxseq.cola_recipes import cola_recipe
    from jaxseq.train.classifier import ClassifierTrainConfig

    recipe = cola_recipe(args.model)
    train = recipe["train"]
    given = lambda value, default: default if value is None else value
    if args.model != "transformer" and args.no_pad_mask:
        raise ValueError("--no-pad-mask is for the transformer: an lstm/gru always stops at each sentence's length")
    if args.model == "transformer" and args.embed_dropout is not None:
        raise ValueError("--embed-dropout is for lstm/gru (the transformer's --dropout covers its embeddings)")
    if args.model == "transformer" and args.word_dropout is not None:
        raise ValueError("--word-dropout is for lstm/gru")
    config = ClassifierTrainConfig(
        **{field: given(getattr(args, flag[2:].replace("-", "_")), train[field])
           for flag, field, _, _ in RECIPE_TRAINING_OPTIONS},
        use_pad_mask=not args.no_pad_mask, seed=args.seed,
    )
    dropout = given(args.dropout, recipe["model"]["dropout"])
    if args.model == "transformer":
        model_kwargs = dict(hidden_dim=args.hidden_dim, num_heads=args.num_heads, dim_k=args.dim_k,
                            dim_q=args.dim_k, dim_v=args.dim_v, dim_feedforward=args.dim_feedforward,
                            dropout=dropout)
    else:
        model_kwargs = dict(embed_dim=args.embed_dim, hidden_size=args.hidden_dim, num_layers=args.num_layers,
                            pooling=args.pooling, dropout=dropout,
                            embed_dropout=given(args.embed_dropout, recipe["model"]["embed_dropout"]),
                            word_dropout=given(args.word_dropout, recipe["model"]["word_dropout"]))
    return dict(min_count=given(args.min_count, recipe["min_count"]), max_length=args.max_length,
                architecture=args.model, model_kwargs=model_kwargs,
                config=config, checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite, resume=args.resume,
                checkpoint_every=args.checkpoint_every, log_dir=args.log_dir, log_every=args.log_every,
                progress=not args.no_progress, devices=devices)


def scores_line(scores: dict) -> str:
    """`acc 0.8125  MCC +0.6250  confusion [[tn, fp], [fn, tp]] = [[..]]` of `classification_metrics`."""
    return (f"acc {scores['accuracy']:.4f}  MCC {scores['mcc']:+.4f}  "
            f"confusion [[tn, fp], [fn, tp]] = {scores['confusion']}")


def report(run, test_name: str = "test") -> None:
    """Print the best epoch and its validation / test scores."""
    result = run.result
    print(f"best epoch {result.best_epoch}: val acc {run.val_scores['accuracy']:.4f}  "
          f"val MCC {run.val_scores['mcc']:+.4f}")
    if run.test_scores is not None:
        print(f"{test_name} (best checkpoint): {scores_line(run.test_scores)}")
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}")


CHECKPOINT_HELP = ("a training run's --checkpoint-dir (its best checkpoint by validation MCC, or the next "
                   "one that checks out) or one ckpt-* folder")


def add_predict_command(actions, help: str, labels: tuple[str, str]) -> None:
    """Add `predict --checkpoint DIR SENTENCE ...` to a command's actions; `labels`: the words
    printed for class 0 and class 1."""
    predict = actions.add_parser("predict", help=help)
    predict.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    predict.add_argument("sentences", nargs="+", help="sentences as plain text")
    predict.set_defaults(func=run_predict, labels=labels)


def add_eval_command(actions) -> None:
    """Add `eval --checkpoint DIR --test FILE [--format F]` to a command's actions."""
    evaluate = actions.add_parser("eval", help="accuracy, MCC and confusion of a trained run on a labelled file")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    evaluate.add_argument("--test", type=Path, required=True,
                          help="sentence<TAB>label file to score (the formats of `classify train`)")
    evaluate.add_argument("--format", choices=("auto", "raw", "glue", "tokenized"), default="auto",
                          help="file format (default: detect)")
    evaluate.set_defaults(func=run_eval)


def run_predict(args: argparse.Namespace) -> int:
    """Print `probability<TAB>label<TAB>sentence` for each sentence (probability of class 1)."""
    from jaxseq.data.sentence_files import sentence_tokens
    from jaxseq.inference import load_sentence_classifier, predict_probabilities, uses_pad_mask

    # The files' rules (not empty, not over 5,000 characters), before the checkpoint is loaded.
    sentences = [sentence_tokens(text, f"sentence {number} ({text[:40]!r})")
                 for number, text in enumerate(args.sentences, 1)]
    model, params, vocab, metadata = load_sentence_classifier(args.checkpoint)
    probabilities = predict_probabilities(model, params, vocab, sentences, use_pad_mask=uses_pad_mask(metadata))
    negative, positive = getattr(args, "labels", ("0", "1"))
    for text, probability in zip(args.sentences, probabilities):
        print(f"{probability:.4f}\t{positive if probability >= 0.5 else negative}\t{text}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Print the size of `args.test` and the run's scores on it."""
    from jaxseq.data.sentence_files import read_sentences
    from jaxseq.inference import evaluate_classifier, load_sentence_classifier, uses_pad_mask

    model, params, vocab, metadata = load_sentence_classifier(args.checkpoint)
    data, truncated = vocab.encode_labelled(read_sentences(args.test, args.format), model.max_length)
    scores = evaluate_classifier(model, params, data, use_pad_mask=uses_pad_mask(metadata), name=str(args.test))
    print(f"{args.test}: {len(data.ids)} sentences ({truncated} truncated to {model.max_length} tokens)")
    print(f"{scores_line(scores)}  loss {scores['loss']:.4f}")
    return 0
