"""`jaxseq cola train|predict`: the sentence classifiers on CoLA (`--model transformer`, the
default, or a bidirectional `lstm` / `gru`).

    jaxseq cola train [--data-dir DIR] [--resume]   CoLA, course split (7,000 / 1,551 / dev as test)
    jaxseq cola predict --checkpoint DIR "Sentence one." "Sentence two."   (as `classify predict`)

Training prints per-epoch loss, validation accuracy and MCC, then the accuracy and MCC of
the best checkpoint (by validation MCC) on the test set. Every epoch is checkpointed in
full; `--resume` continues an interrupted run exactly. The options are
`jaxseq.commands.classifier_options`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxseq.commands._options import positive_int, random_seed
from jaxseq.commands.classifier_options import add_predict_command, add_training_options, report, train_options


def register(subparsers) -> None:
    cola = subparsers.add_parser("cola", help="sentence classifier on CoLA (train, predict)")
    cola_commands = cola.add_subparsers(dest="cola_command", required=True, metavar="ACTION")
    train = cola_commands.add_parser("train", help="train on CoLA with the course split")
    train.add_argument("--data-dir", type=Path, default=None,
                       help="CoLA folder (default: $JAXSEQ_DATA/cola, else ~/.cache/jaxseq/cola, "
                            "else ../shared/data/cola: the first that holds it)")
    train.add_argument("--val-size", type=positive_int, default=1551,
                       help="validation sentences split from training (default: 1551)")
    train.add_argument("--split-seed", type=random_seed, default=0,
                       help="seed of the train/validation split (default: 0)")
    add_training_options(train, "checkpoints/cola")
    train.set_defaults(func=run_cola_train)

    add_predict_command(cola_commands, "probability that sentences are acceptable",
                        labels=("unacceptable", "acceptable"))


def run_cola_train(args: argparse.Namespace) -> int:
    from jaxseq.data.cola import find_cola_dir, load_cola
    from jaxseq.train.classifier import fit_sentence_classifier

    options = train_options(args)  # every option checked first: it reads no file
    data_dir = find_cola_dir(args.data_dir, argument="--data-dir")
    splits = load_cola(data_dir, val_size=args.val_size, seed=args.split_seed)
    print(f"CoLA from {data_dir}")
    run = fit_sentence_classifier(splits, metadata={"data": str(data_dir)}, **options)
    report(run, "dev (out-of-domain test)")
    return 0

