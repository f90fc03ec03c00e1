"""`jaxseq cola train|predict` and `jaxseq classify train`: the Transformer sentence classifier.

    jaxseq cola train [--data-dir DIR]       CoLA, course split (7,000 / 1,551 / dev as test)
    jaxseq cola predict --checkpoint DIR "Sentence one." "Sentence two."
    jaxseq classify train --train A.tsv --dev B.tsv [--test C.tsv]

Training prints per-epoch loss, validation accuracy and MCC, then the accuracy and MCC of
the best checkpoint (by validation MCC) on the test set.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _number(kind, low: float, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number(int, 1, True, "an integer >= 1")
positive_float = _number(float, 0.0, False, "a number > 0")
nonnegative_float = _number(float, 0.0, True, "a number >= 0")


def fraction(text: str) -> float:
    value = nonnegative_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


# The defaults are the recipe that reached the CoLA targets with the seed architecture
# (benchmarks/cola_quality.py, config "seed").
def _add_training_options(parser: argparse.ArgumentParser, default_checkpoint_dir: str) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, default=30, help="training epochs (default: 30)")
    group.add_argument("--batch-size", type=positive_int, default=16, help="batch size (default: 16)")
    group.add_argument("--lr", type=positive_float, default=1e-4, help="peak learning rate (default: 1e-4)")
    group.add_argument("--weight-decay", type=nonnegative_float, default=0.01,
                       help="AdamW decoupled weight decay; 0 uses Adam (default: 0.01)")
    group.add_argument("--schedule", choices=("constant", "cosine", "linear"), default="constant",
                       help="learning-rate decay after the warm-up (default: constant)")
    group.add_argument("--warmup-epochs", type=nonnegative_float, default=0.0,
                       help="linear warm-up length in epochs (default: 0)")
    group.add_argument("--label-smoothing", type=fraction, default=0.1, help="label smoothing (default: 0.1)")
    group.add_argument("--patience", type=positive_int, default=10,
                       help="stop after this many epochs without a better validation MCC (default: 10)")
    group.add_argument("--seed", type=int, default=0, help="random seed for init, dropout, shuffling (default: 0)")
    group.add_argument("--checkpoint-dir", type=Path, default=Path(default_checkpoint_dir),
                       help=f"where the best checkpoint and vocab.json go (default: {default_checkpoint_dir})")
    group.add_argument("--overwrite", action="store_true", help="replace checkpoints already in --checkpoint-dir")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model and data")
    model.add_argument("--dropout", type=fraction, default=0.1, help="dropout rate (default: 0.1)")
    model.add_argument("--hidden-dim", type=positive_int, default=128, help="model width H (default: 128)")
    model.add_argument("--num-heads", type=positive_int, default=2, help="attention heads (default: 2)")
    model.add_argument("--dim-k", type=positive_int, default=96, help="query/key size per head (default: 96)")
    model.add_argument("--dim-v", type=positive_int, default=96, help="value size per head (default: 96)")
    model.add_argument("--dim-feedforward", type=positive_int, default=2048, help="feed-forward width (default: 2048)")
    model.add_argument("--max-length", type=positive_int, default=43,
                       help="tokens per sentence, [CLS] included; longer ones are truncated (default: 43)")
    model.add_argument("--min-count", type=positive_int, default=3,
                       help="keep training words seen at least this often (default: 3)")
    model.add_argument("--no-pad-mask", action="store_true",
                       help="let attention see [PAD] tokens (the course's unmasked model)")


def register(subparsers) -> None:
    cola = subparsers.add_parser("cola", help="Transformer classifier on CoLA (train, predict)")
    cola_commands = cola.add_subparsers(dest="cola_command", required=True, metavar="ACTION")
    train = cola_commands.add_parser("train", help="train on CoLA with the course split")
    train.add_argument("--data-dir", type=Path, default=None,
                       help="CoLA folder (default: $JAXSEQ_DATA/cola, else ../shared/data/cola)")
    train.add_argument("--val-size", type=positive_int, default=1551,
                       help="validation sentences split from training (default: 1551)")
    train.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split (default: 0)")
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
    """Keyword arguments of `fit_sentence_classifier` from parsed training options."""
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
                config=config, checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite,
                progress=not args.no_progress)


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
    splits = load_cola(data_dir, val_size=args.val_size, seed=args.split_seed)
    print(f"CoLA from {data_dir}")
    run = fit_sentence_classifier(splits, metadata={"data": str(data_dir)}, **train_options(args))
    report(run, "dev (out-of-domain test)")
    return 0


def run_classify_train(args: argparse.Namespace) -> int:
    from jaxseq.data.cola import read_sentences
    from jaxseq.data.sentences import SentenceSplits
    from jaxseq.train.sentence_classifier import fit_sentence_classifier

    splits = SentenceSplits(
        read_sentences(args.train, args.format), read_sentences(args.dev, args.format),
        read_sentences(args.test, args.format) if args.test else None,
    )
    metadata = {"data": {"train": str(args.train), "dev": str(args.dev), "test": str(args.test or "")}}
    run = fit_sentence_classifier(splits, metadata=metadata, **train_options(args))
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
