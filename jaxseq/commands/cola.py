"""`jaxseq cola train|predict` and `jaxseq classify train`: the Transformer sentence classifier.

    jaxseq cola train [--data-dir DIR] [--resume]   CoLA, course split (7,000 / 1,551 / dev as test)
    jaxseq cola predict --checkpoint DIR "Sentence one." "Sentence two."
    jaxseq classify train --train A.tsv --dev B.tsv [--test C.tsv]

Training prints per-epoch loss, validation accuracy and MCC, then the accuracy and MCC of
the best checkpoint (by validation MCC) on the test set. Every epoch is checkpointed in
full; `--resume` continues an interrupted run exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxseq.commands._options import (
    add_checkpoint_args,
    add_parallel_args,
    batch_size,
    fraction,
    model_size,
    nonnegative_float,
    positive_float,
    positive_int,
    random_seed,
    setup_parallel,
)


def _add_training_options(parser: argparse.ArgumentParser, default_checkpoint_dir: str) -> None:
    """Options whose defaults are `COLA_RECIPE`, the recipe measured in benchmarks/cola_quality.py."""
    from jaxseq.recipes import COLA_RECIPE  # plain data: building the parser loads no JAX

    train = COLA_RECIPE["train"]
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, default=train["epochs"],
                       help="training epochs (default: %(default)s)")
    group.add_argument("--batch-size", type=batch_size, default=train["batch_size"],
                       help="batch size (default: %(default)s)")
    group.add_argument("--lr", type=positive_float, default=train["learning_rate"],
                       help="peak learning rate (default: %(default)s)")
    group.add_argument("--weight-decay", type=nonnegative_float, default=train["weight_decay"],
                       help="AdamW decoupled weight decay; 0 uses Adam (default: %(default)s)")
    group.add_argument("--schedule", choices=("constant", "cosine", "linear"), default=train["schedule"],
                       help="learning-rate decay after the warm-up, to 0 at the last epoch (default: %(default)s)")
    group.add_argument("--warmup-epochs", type=nonnegative_float, default=train["warmup_epochs"],
                       help="linear warm-up length in epochs (default: %(default)s)")
    group.add_argument("--label-smoothing", type=fraction, default=train["label_smoothing"],
                       help="label smoothing (default: %(default)s)")
    group.add_argument("--patience", type=positive_int, default=train["patience"],
                       help="stop after this many epochs without a better validation MCC (default: %(default)s)")
    group.add_argument("--seed", type=random_seed, default=0,
                       help="random seed for init, dropout, shuffling (default: 0)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model and data")
    model.add_argument("--dropout", type=fraction, default=COLA_RECIPE["model"]["dropout"],
                       help="dropout rate (default: %(default)s)")
    model.add_argument("--hidden-dim", type=model_size, default=128, help="model width H (default: 128)")
    model.add_argument("--num-heads", type=model_size, default=2, help="attention heads (default: 2)")
    model.add_argument("--dim-k", type=model_size, default=96, help="query/key size per head (default: 96)")
    model.add_argument("--dim-v", type=model_size, default=96, help="value size per head (default: 96)")
    model.add_argument("--dim-feedforward", type=model_size, default=2048, help="feed-forward width (default: 2048)")
    model.add_argument("--max-length", type=model_size, default=43,
                       help="tokens per sentence, [CLS] included; longer ones are truncated (default: 43)")
    model.add_argument("--min-count", type=positive_int, default=COLA_RECIPE["min_count"],
                       help="keep training words seen at least this often (default: %(default)s)")
    model.add_argument("--no-pad-mask", action="store_true",
                       help="let attention see [PAD] tokens (the course's unmasked model)")
    add_checkpoint_args(parser, "the checkpoints (every epoch's full state; the last two and the best are kept) "
                        "and vocab.json", default=default_checkpoint_dir)
    add_parallel_args(parser)


def register(subparsers) -> None:
    cola = subparsers.add_parser("cola", help="Transformer classifier on CoLA (train, predict)")
    cola_commands = cola.add_subparsers(dest="cola_command", required=True, metavar="ACTION")
    train = cola_commands.add_parser("train", help="train on CoLA with the course split")
    train.add_argument("--data-dir", type=Path, default=None,
                       help="CoLA folder (default: $JAXSEQ_DATA/cola, else ../shared/data/cola)")
    train.add_argument("--val-size", type=positive_int, default=1551,
                       help="validation sentences split from training (default: 1551)")
    train.add_argument("--split-seed", type=random_seed, default=0,
                       help="seed of the train/validation split (default: 0)")
    _add_training_options(train, "checkpoints/cola")
    train.set_defaults(func=run_cola_train)

    predict = cola_commands.add_parser("predict", help="probability that sentences are acceptable")
    predict.add_argument("--checkpoint", type=Path, required=True,
                         help="a training run's --checkpoint-dir (its best checkpoint) or one ckpt-* folder")
    predict.add_argument("sentences", nargs="+", help="sentences as plain text")
    predict.set_defaults(func=run_cola_predict)

    classify = subparsers.add_parser("classify", help="Transformer classifier on any sentence<TAB>label data")
    classify_commands = classify.add_subparsers(dest="classify_command", required=True, metavar="ACTION")
    ctrain = classify_commands.add_parser("train", help="train on a TSV, select by a validation TSV")
    ctrain.add_argument("--train", type=Path, required=True, help="training file")
    ctrain.add_argument("--dev", type=Path, required=True, help="validation file (checkpoint selection)")
    ctrain.add_argument("--test", type=Path, default=None, help="optional held-out test file")
    ctrain.add_argument("--format", choices=("auto", "raw", "glue", "tokenized"), default="auto",
                        help="file format (default: detect)")
    _add_training_options(ctrain, "checkpoints/classify")
    ctrain.set_defaults(func=run_classify_train)


def train_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of `fit_sentence_classifier` from parsed training options.

    Joins a multi-process run first when the options ask for one (before JAX starts).
    """
    devices = setup_parallel(args)
    from jaxseq.train.classifier import ClassifierTrainConfig

    config = ClassifierTrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        weight_decay=args.weight_decay, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, patience=args.patience,
        use_pad_mask=not args.no_pad_mask, seed=args.seed,
    )
    model_kwargs = dict(hidden_dim=args.hidden_dim, num_heads=args.num_heads, dim_k=args.dim_k,
                        dim_q=args.dim_k, dim_v=args.dim_v, dim_feedforward=args.dim_feedforward,
                        dropout=args.dropout)
    return dict(min_count=args.min_count, max_length=args.max_length, model_kwargs=model_kwargs,
                config=config, checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite, resume=args.resume,
                checkpoint_every=args.checkpoint_every,
                progress=not args.no_progress, devices=devices)


def report(run, test_name: str = "test") -> None:
    """Print the best epoch and its validation / test scores."""
    result = run.result
    print(f"best epoch {result.best_epoch}: val acc {run.val_scores['accuracy']:.4f}  "
          f"val MCC {run.val_scores['mcc']:+.4f}")
    if run.test_scores is not None:
        print(f"{test_name} (best checkpoint): acc {run.test_scores['accuracy']:.4f}  "
              f"MCC {run.test_scores['mcc']:+.4f}  confusion [[tn, fp], [fn, tp]] = {run.test_scores['confusion']}")
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}")


def run_cola_train(args: argparse.Namespace) -> int:
    from jaxseq.data.cola import cola_dir_candidates, default_cola_dir, load_cola
    from jaxseq.train.sentence_classifier import fit_sentence_classifier

    data_dir = args.data_dir or default_cola_dir()
    if data_dir is None:
        tried = ", ".join(str(path) for path in cola_dir_candidates())
        raise FileNotFoundError(f"CoLA not found (looked in {tried}); pass --data-dir or set JAXSEQ_DATA")
    options = train_options(args)
    splits = load_cola(data_dir, val_size=args.val_size, seed=args.split_seed)
    print(f"CoLA from {data_dir}")
    run = fit_sentence_classifier(splits, metadata={"data": str(data_dir)}, **options)
    report(run, "dev (out-of-domain test)")
    return 0


def run_classify_train(args: argparse.Namespace) -> int:
    from jaxseq.data.cola import read_sentences
    from jaxseq.data.sentences import SentenceSplits
    from jaxseq.train.sentence_classifier import fit_sentence_classifier

    options = train_options(args)
    splits = SentenceSplits(
        read_sentences(args.train, args.format), read_sentences(args.dev, args.format),
        read_sentences(args.test, args.format) if args.test else None,
    )
    metadata = {"data": {"train": str(args.train), "dev": str(args.dev), "test": str(args.test or "")}}
    run = fit_sentence_classifier(splits, metadata=metadata, **options)
    report(run)
    return 0


def run_cola_predict(args: argparse.Namespace) -> int:
    from jaxseq.data.cola import tokenize
    from jaxseq.train.sentence_classifier import load_sentence_classifier, predict_probabilities

    model, params, vocab, metadata = load_sentence_classifier(args.checkpoint)
    use_pad_mask = metadata.get("train_config", {}).get("use_pad_mask", True)
    sentences = [tokenize(text) for text in args.sentences]
    probabilities = predict_probabilities(model, params, vocab, sentences, use_pad_mask=use_pad_mask)
    for text, probability in zip(args.sentences, probabilities):
        verdict = "acceptable" if probability >= 0.5 else "unacceptable"
        print(f"{probability:.4f}\t{verdict}\t{text}")
    return 0
