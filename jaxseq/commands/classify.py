"""`jaxseq classify train|predict|eval`: a sentence classifier on any `sentence<TAB>label` files
(the formats of `jaxseq.data.sentence_files`), selected by validation MCC.

    jaxseq classify train --train A.tsv --dev B.tsv [--test C.tsv] [--model lstm]
    jaxseq classify predict --checkpoint DIR "Sentence one." "Sentence two."
    jaxseq classify eval --checkpoint DIR --test C.tsv

`predict` and `eval` are `jaxseq.commands.classifier_options`' (`cola predict` is the same
command): a run folder gives its best checkpoint by validation MCC.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxseq.commands.classifier_options import (
    add_eval_command,
    add_predict_command,
    add_training_options,
    report,
    train_options,
)


def register(subparsers) -> None:
    classify = subparsers.add_parser("classify", help="sentence classifier on any sentence<TAB>label data (train, predict, eval)")
    classify_commands = classify.add_subparsers(dest="classify_command", required=True, metavar="ACTION")
    ctrain = classify_commands.add_parser("train", help="train on a TSV, select by a validation TSV")
    ctrain.add_argument("--train", type=Path, required=True, help="training file")
    ctrain.add_argument("--dev", type=Path, required=True, help="validation file (checkpoint selection)")
    ctrain.add_argument("--test", type=Path, default=None, help="optional held-out test file")
    ctrain.add_argument("--format", choices=("auto", "raw", "glue", "tokenized"), default="auto",
                        help="file format (default: detect)")
    add_training_options(ctrain, "checkpoints/classify")
    ctrain.set_defaults(func=run_classify_train)
    add_predict_command(classify_commands, "probability of class 1 for sentences", labels=("0", "1"))
    add_eval_command(classify_commands)


def run_classify_train(args: argparse.Namespace) -> int:
    from jaxseq.data.sentence_files import read_sentences
    from jaxseq.data.sentences import SentenceSplits
    from jaxseq.train.classifier import fit_sentence_classifier

    options = train_options(args)
    splits = SentenceSplits(
        read_sentences(args.train, args.format), read_sentences(args.dev, args.format),
        read_sentences(args.test, args.format) if args.test else None,
    )
    metadata = {"data": {"train": str(args.train), "dev": str(args.dev), "test": str(args.test or "")}}
    run = fit_sentence_classifier(splits, metadata=metadata, **options)
    report(run)
    return 0
