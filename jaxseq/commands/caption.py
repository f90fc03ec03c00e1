"""`jaxseq caption train|sample|eval`: the image captioner from the command line.

    jaxseq caption train --cell lstm [--data builtin|coco] [--epochs 15] [--batch-size 100]
                         [--lr 5e-3] [--checkpoint-dir DIR] [--resume | --overwrite]
    jaxseq caption sample --checkpoint DIR [--beam 5] [--num 5]
    jaxseq caption eval --checkpoint DIR [--beam 5] [--num-samples 1000]

`--data builtin` (the default) is the generated scene set of
`jaxseq.data.synthetic_captions`, so every command runs with no download; `--data coco`
reads the course's files (`jaxseq data download coco`). The checkpoint records which data
it was trained on, so `sample` and `eval` rebuild both model and data from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxseq.commands._options import (
    add_checkpoint_args,
    add_log_args,
    add_parallel_args,
    check_folder_options,
    batch_size,
    beam_width,
    model_size,
    positive_float,
    positive_int,
    random_seed,
    setup_parallel,
    train_captions,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("caption", help="train, sample and evaluate the RNN/LSTM image captioner")
    actions = parser.add_subparsers(dest="caption_command", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a captioner and checkpoint it after every epoch")
    train.add_argument("--cell", choices=("rnn", "lstm"), default="lstm", help="recurrent cell (default: lstm)")
    train.add_argument("--data", choices=("builtin", "coco"), default="builtin",
                       help="builtin: generated scenes, no download (default); coco: the course's files")
    train.add_argument("--data-dir", type=Path, default=None,
                       help="COCO folder (default: $JAXSEQ_DATA/coco_captioning, else ~/.cache/jaxseq/"
                            "coco_captioning, else ../shared/data/coco_captioning: the first that holds it)")
    train.add_argument("--max-train", type=train_captions, default=None, help="use at most this many training captions")
    train.add_argument("--epochs", type=positive_int, default=15, help="epochs (default: 15)")
    train.add_argument("--batch-size", type=batch_size, default=100, help="batch size (default: 100)")
    train.add_argument("--lr", type=positive_float, default=5e-3, help="learning rate (default: 5e-3)")
    train.add_argument("--lr-decay", type=positive_float, default=0.95,
                       help="learning-rate factor after every epoch (default: 0.95)")
    train.add_argument("--update-rule", choices=("sgd", "sgd_momentum", "adam", "adamw", "rmsprop"),
                       default="adam", help="optimizer (default: adam)")
    train.add_argument("--clip-norm", type=positive_float, default=None, help="clip the gradients' global norm")
    train.add_argument("--hidden-dim", type=model_size, default=128, help="H (default: 128)")
    train.add_argument("--wordvec-dim", type=model_size, default=128, help="W (default: 128)")
    train.add_argument("--seed", type=random_seed, default=0, help="random seed (default: 0)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_checkpoint_args(train, "the checkpoints (every epoch's full state; the last three and the best are kept)",
                        shown_default="checkpoints/caption-CELL-DATA")
    add_log_args(train)
    add_parallel_args(train)
    train.set_defaults(func=run_train)

    sample = actions.add_parser("sample", help="print generated and true captions of a few images")
    _add_checkpoint_args(sample)
    sample.add_argument("--beam", type=beam_width, default=1, help="beam width (default: 1, greedy)")
    sample.add_argument("--num", type=positive_int, default=5, help="how many images (default: 5)")
    sample.add_argument("--seed", type=random_seed, default=0, help="which images, by seed (default: 0)")
    sample.set_defaults(func=run_sample)

    evaluate = actions.add_parser("eval", help="BLEU-1 of greedy and beam-search captions, or the COCO metrics")
    _add_checkpoint_args(evaluate)
    evaluate.add_argument("--metrics", choices=("course", "coco"), default="course",
                          help="course: BLEU-1 against one reference, greedy and beam (default); coco: corpus "
                               "BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D), SPICE against all references of an image "
                               "(pycocoevalcap: pip install 'jaxseq[coco-eval]')")
    evaluate.add_argument("--beam", type=beam_width, default=5,
                          help="beam width (default: 5; with --metrics coco, 1 decodes greedily)")
    evaluate.add_argument("--num-samples", type=positive_int, default=1000,
                          help="captions to score (default: 1000)")
    evaluate.add_argument("--max-images", type=positive_int, default=1000,
                          help="with --metrics coco: images to score, each against all its captions (default: 1000)")
    evaluate.add_argument("--seed", type=random_seed, default=0,
                          help="which captions (or images), by seed (default: 0)")
    evaluate.set_defaults(func=run_eval)


def _add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a ckpt-* folder, or a run folder: its best checkpoint by validation "
                             "loss (the latest where none is scored; the next best if one cannot be used)")
    parser.add_argument("--split", choices=("train", "val"), default="val", help="split (default: val)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="COCO folder, if it moved since training")


def readable(caption: str) -> str:
    """A decoded caption without its <START> and <END> markers."""
    return " ".join(word for word in caption.split() if word not in ("<START>", "<END>"))


def print_examples(references: list[str], hypotheses: list[str], urls=None, label: str = "generated") -> None:
    for index, (reference, hypothesis) in enumerate(zip(references, hypotheses)):
        where = f" ({urls[index]})" if urls is not None else ""
        print(f"  image {index + 1}{where}")
        print(f"    {label:>9}: {readable(hypothesis)}")
        print(f"    {'true':>9}: {readable(reference)}")


def run_train(args: argparse.Namespace) -> int:
    devices = setup_parallel(args)  # first: a multi-process run must join before JAX starts
    from jaxseq.data.caption_sources import builtin_source, coco_source, load_caption_source
    from jaxseq.inference import evaluate_captions
    from jaxseq.train.captioning import train_captioner

    checkpoint_dir = args.checkpoint_dir or Path("checkpoints") / f"caption-{args.cell}-{args.data}"
    check_folder_options(checkpoint_dir, args.log_dir)
    if args.data == "builtin":
        spec = builtin_source(**({"num_train": args.max_train} if args.max_train is not None else {}))
    else:
        from jaxseq.data.coco import find_coco_dir

        spec = coco_source(find_coco_dir(args.data_dir, argument="--data-dir"), args.max_train, args.seed)
    data = load_caption_source(spec, argument="--data-dir")
    print(f"training an {args.cell.upper()} captioner on {args.data} data: "
          f"{data['train_captions'].shape[0]} training captions, {args.epochs} epochs; "
          f"checkpoints in {checkpoint_dir}", flush=True)
    solver = train_captioner(
        cell=args.cell, data=data, data_spec=spec, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_decay=args.lr_decay, update_rule=args.update_rule, clip_norm=args.clip_norm,
        hidden_dim=args.hidden_dim, wordvec_dim=args.wordvec_dim, checkpoint_dir=checkpoint_dir,
        seed=args.seed, verbose=not args.quiet, devices=devices, checkpoint_every=args.checkpoint_every,
        resume=args.resume, overwrite=args.overwrite, log_dir=args.log_dir, log_every=args.log_every)
    variables = {"params": solver.params}
    print(f"final training loss {solver.loss_history[-1]:.4f}", end="")
    if solver.val_loss_history:
        bleu = evaluate_captions(solver.model, variables, data, "val")
        print(f", val loss {solver.val_loss_history[-1]:.4f}, val BLEU-1 (greedy) {bleu:.4f}", end="")
    rate = f"{solver.steps_per_second:.1f}" if solver.steps_per_second else "n/a"
    print(f"; {rate} steps/s\nsample with: jaxseq caption sample --checkpoint {checkpoint_dir}")
    return 0


def _restore(args: argparse.Namespace):
    from jaxseq.inference import load_captioner_and_data

    return load_captioner_and_data(args.checkpoint, args.data_dir, argument="--data-dir")


def run_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from jaxseq.inference import generate_captions

    model, variables, data = _restore(args)
    size = data[f"{args.split}_captions"].shape[0]
    if size == 0:
        raise ValueError(f"the {args.split} split has no captions")
    rows = np.random.default_rng(args.seed).choice(size, min(args.num, size), replace=False)
    decode = "greedy" if args.beam == 1 else "beam"
    references, hypotheses = generate_captions(model, variables, data, args.split, rows, decode, beam_size=args.beam)
    urls = data[f"{args.split}_urls"][data[f"{args.split}_image_idxs"][rows]]
    print(f"{args.split} images, {'greedy' if args.beam == 1 else f'beam search (width {args.beam})'}:")
    print_examples(references, hypotheses, urls)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from jaxseq.inference import evaluate_captions

    if args.metrics == "coco":  # one caption per image against all of its references (pycocoevalcap)
        import sys

        from jaxseq.inference import evaluate_coco_metrics
        from jaxseq.metrics import MissingPackageError, require_coco_eval

        try:
            require_coco_eval()  # before loading and decoding anything
        except MissingPackageError as error:
            print(f"jaxseq caption eval: error: {error}", file=sys.stderr)
            return 2
        model, variables, data = _restore(args)
        decode = "greedy" if args.beam == 1 else "beam"
        result = evaluate_coco_metrics(model, variables, data, args.split, decode, beam_size=args.beam,
                                       max_images=args.max_images, seed=args.seed)
        how = "greedy decoding" if decode == "greedy" else f"beam search (width {args.beam})"
        print(f"COCO caption metrics on {result['images']} {args.split} images ({result['references']} reference "
              f"captions, {result['references'] / result['images']:.1f} per image), {how}:")
        for name, value in result["scores"].items():
            print(f"  {name:<8} {value:.4f}")
        for name, reason in result["skipped"].items():
            print(f"  {name:<8} skipped: {reason}")
        print("  (pycocoevalcap 1.2 scorers; captions lowercased and PTB punctuation removed in Python, "
              "see jaxseq.metrics.coco_tokenize)")
        return 0
    model, variables, data = _restore(args)
    size = min(args.num_samples, data[f"{args.split}_captions"].shape[0])
    common = dict(num_samples=args.num_samples, seed=args.seed)
    greedy = evaluate_captions(model, variables, data, args.split, decode="greedy", **common)
    beam = evaluate_captions(model, variables, data, args.split, decode="beam", beam_size=args.beam, **common)
    print(f"BLEU-1 on {size} {args.split} captions: greedy {greedy:.4f}, beam search (width {args.beam}) {beam:.4f}")
    return 0

