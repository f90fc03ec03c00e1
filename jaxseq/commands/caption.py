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
from typing import Any

from jaxseq.commands._options import (
    add_checkpoint_args,
    add_parallel_args,
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
                       help="COCO folder (default: $JAXSEQ_DATA/coco_captioning or ~/.cache/jaxseq/coco_captioning)")
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
    add_parallel_args(train)
    train.set_defaults(func=run_train)

    sample = actions.add_parser("sample", help="print generated and true captions of a few images")
    _add_checkpoint_args(sample)
    sample.add_argument("--beam", type=beam_width, default=1, help="beam width (default: 1, greedy)")
    sample.add_argument("--num", type=positive_int, default=5, help="how many images (default: 5)")
    sample.add_argument("--seed", type=random_seed, default=0, help="which images, by seed (default: 0)")
    sample.set_defaults(func=run_sample)

    evaluate = actions.add_parser("eval", help="BLEU-1 of greedy and beam-search captions")
    _add_checkpoint_args(evaluate)
    evaluate.add_argument("--beam", type=beam_width, default=5, help="beam width (default: 5)")
    evaluate.add_argument("--num-samples", type=positive_int, default=1000,
                          help="captions to score (default: 1000)")
    evaluate.add_argument("--seed", type=random_seed, default=0, help="which captions, by seed (default: 0)")
    evaluate.set_defaults(func=run_eval)


def _add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a checkpoint folder, or a run folder (its latest checkpoint is used)")
    parser.add_argument("--split", choices=("train", "val"), default="val", help="split (default: val)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="COCO folder, if it moved since training")


def _data_spec(spec: Any, key: str) -> None:
    """A `jaxseq.data.json_fields` spec of the `data` entry `caption train` writes into its
    checkpoints: {"source": "builtin", "options": {load_scene_captions' keywords}} or
    {"source": "coco", "base_dir": ..., "max_train": ..., "seed": ...}, bounded so that no
    entry can ask for more data than `jaxseq.limits` allows."""
    from jaxseq.data.json_fields import FieldError, choice, fields, integer, nullable, number, string
    from jaxseq.limits import MAX_BUILTIN_FEATURE_VALUES, MAX_SEED, MAX_TRAIN_CAPTIONS, MAX_WIDTH

    source = {"source": choice("builtin", "coco")}
    fields(required=source)(spec, key)
    if spec["source"] == "coco":
        fields(source, {"base_dir": nullable(string()), "max_train": nullable(integer(1, MAX_TRAIN_CAPTIONS)),
                        "seed": integer(0, MAX_SEED)}, unknown=False)(spec, key)
        return
    options = fields(optional={"num_train": integer(1, MAX_TRAIN_CAPTIONS), "num_val": integer(0, MAX_TRAIN_CAPTIONS),
                               "feature_dim": integer(1, MAX_WIDTH), "noise": number(0), "single_fraction": number(0, 1),
                               "seed": integer(0, MAX_SEED)}, unknown=False)
    fields(source, {"options": options}, unknown=False)(spec, key)
    chosen = spec.get("options", {})
    values = (chosen.get("num_train", 4000) + chosen.get("num_val", 500)) * chosen.get("feature_dim", 128)
    if values > MAX_BUILTIN_FEATURE_VALUES:
        raise FieldError(f"{key}.options" if key else "options",
                         f"asks for {values} feature values ((num_train + num_val) x feature_dim), more than "
                         f"the {MAX_BUILTIN_FEATURE_VALUES} allowed")


def load_data(spec: dict[str, Any], data_dir: Path | None = None) -> dict[str, Any]:
    """The captioning data a run used, from its `data` metadata entry (checked first: a
    ValueError naming the key for a wrong type, an unknown option or a size beyond the limits)."""
    from jaxseq.data.json_fields import check_fields

    check_fields(spec, _data_spec, "captioning data", "data")
    if spec["source"] == "builtin":
        from jaxseq.data.synthetic_captions import load_scene_captions

        return load_scene_captions(**spec.get("options", {}))
    from jaxseq.data.coco import load_coco_data

    base_dir = data_dir if data_dir is not None else spec.get("base_dir")
    return load_coco_data(base_dir, max_train=spec.get("max_train"), seed=spec.get("seed", 0))


def _clean(caption: str) -> str:
    return " ".join(word for word in caption.split() if word not in ("<START>", "<END>"))


def print_examples(references: list[str], hypotheses: list[str], urls=None, label: str = "generated") -> None:
    for index, (reference, hypothesis) in enumerate(zip(references, hypotheses)):
        where = f" ({urls[index]})" if urls is not None else ""
        print(f"  image {index + 1}{where}")
        print(f"    {label:>9}: {_clean(hypothesis)}")
        print(f"    {'true':>9}: {_clean(reference)}")


def train_captioner(*, cell: str, data: dict[str, Any], data_spec: dict[str, Any], epochs: int,
                    batch_size: int = 100, lr: float = 5e-3, lr_decay: float = 0.95, update_rule: str = "adam",
                    clip_norm: float | None = None, hidden_dim: int = 128, wordvec_dim: int = 128,
                    checkpoint_dir: Path | None = None, seed: int = 0, verbose: bool = True,
                    devices: int | None = None, checkpoint_every: int | None = None):
    """Build a CaptioningRNN for `data` and train it with the CaptioningSolver; returns the solver."""
    from jaxseq.models import CaptioningRNN
    from jaxseq.train.captioning import CaptioningSolver

    model = CaptioningRNN(vocab_size=len(data["idx_to_word"]), wordvec_dim=wordvec_dim, hidden_dim=hidden_dim,
                          cell_type=cell)
    solver = CaptioningSolver(model, data, update_rule=update_rule, optim_config={"learning_rate": lr},
                              lr_decay=lr_decay, num_epochs=epochs, batch_size=batch_size, print_every=0,
                              verbose=verbose, seed=seed, checkpoint_dir=checkpoint_dir, clip_norm=clip_norm,
                              metadata={"data": data_spec}, devices=devices, checkpoint_every=checkpoint_every)
    return solver.train()


def run_train(args: argparse.Namespace) -> int:
    devices = setup_parallel(args)  # first: a multi-process run must join before JAX starts
    from jaxseq.metrics import evaluate_captions
    from jaxseq.train.checkpoint import prepare_checkpoint_dir

    if args.data == "builtin":
        spec: dict[str, Any] = {"source": "builtin", "options": {}}
    else:
        from jaxseq.data.coco import default_coco_dir

        base_dir = args.data_dir if args.data_dir is not None else default_coco_dir()
        spec = {"source": "coco", "base_dir": str(base_dir.resolve()), "max_train": args.max_train,
                "seed": args.seed}
    if args.max_train is not None and args.data == "builtin":
        spec["options"]["num_train"] = args.max_train
    data = load_data(spec)
    checkpoint_dir = args.checkpoint_dir or Path("checkpoints") / f"caption-{args.cell}-{args.data}"
    prepare_checkpoint_dir(checkpoint_dir, overwrite=args.overwrite, resume=args.resume)
    print(f"training an {args.cell.upper()} captioner on {args.data} data: "
          f"{data['train_captions'].shape[0]} training captions, {args.epochs} epochs; "
          f"checkpoints in {checkpoint_dir}", flush=True)
    solver = train_captioner(
        cell=args.cell, data=data, data_spec=spec, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_decay=args.lr_decay, update_rule=args.update_rule, clip_norm=args.clip_norm,
        hidden_dim=args.hidden_dim, wordvec_dim=args.wordvec_dim, checkpoint_dir=checkpoint_dir,
        seed=args.seed, verbose=not args.quiet, devices=devices, checkpoint_every=args.checkpoint_every)
    variables = {"params": solver.params}
    print(f"final training loss {solver.loss_history[-1]:.4f}", end="")
    if solver.val_loss_history:
        bleu = evaluate_captions(solver.model, variables, data, "val")
        print(f", val loss {solver.val_loss_history[-1]:.4f}, val BLEU-1 (greedy) {bleu:.4f}", end="")
    rate = f"{solver.steps_per_second:.1f}" if solver.steps_per_second else "n/a"
    print(f"; {rate} steps/s\nsample with: jaxseq caption sample --checkpoint {checkpoint_dir}")
    return 0


def _restore(args: argparse.Namespace):
    from jaxseq.train.captioning import load_captioning_checkpoint

    from jaxseq.data.json_fields import fields

    model, params, meta = load_captioning_checkpoint(args.checkpoint, fields=fields(optional={"data": _data_spec}))
    if "data" not in meta:
        raise ValueError(f"checkpoint {args.checkpoint}: no 'data' entry in its metadata; "
                         "it was not written by `jaxseq caption train`")
    try:
        data = load_data(meta["data"], args.data_dir)
    except ValueError as error:
        raise ValueError(f"the data of checkpoint {args.checkpoint} cannot be loaded: {error}") from None
    if data["idx_to_word"] != meta["idx_to_word"]:
        raise ValueError(f"the data's vocabulary differs from the one checkpoint {args.checkpoint} was trained with")
    return model, {"params": params}, data


def run_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from jaxseq.metrics import generate_captions

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
    from jaxseq.metrics import evaluate_captions

    model, variables, data = _restore(args)
    size = min(args.num_samples, data[f"{args.split}_captions"].shape[0])
    common = dict(num_samples=args.num_samples, seed=args.seed)
    greedy = evaluate_captions(model, variables, data, args.split, decode="greedy", **common)
    beam = evaluate_captions(model, variables, data, args.split, decode="beam", beam_size=args.beam, **common)
    print(f"BLEU-1 on {size} {args.split} captions: greedy {greedy:.4f}, beam search (width {args.beam}) {beam:.4f}")
    return 0


DEMO_EPOCHS = 15


def demo_step(args: argparse.Namespace) -> None:
    """`make demo`: train the LSTM captioner on the built-in set, show val scenes, BLEU-1, loss curve."""
    import numpy as np

    from jaxseq.data.synthetic_captions import load_scene_captions
    from jaxseq.metrics import evaluate_captions, generate_captions
    from jaxseq.train.progress import save_loss_curve

    data = load_scene_captions(seed=args.seed)
    print(f"built-in scenes: {data['train_captions'].shape[0]} train, {data['val_captions'].shape[0]} val "
          f"(different scenes), {len(data['idx_to_word'])} words, features D={data['train_features'].shape[1]}")
    solver = train_captioner(cell="lstm", data=data, data_spec={"source": "builtin", "options": {"seed": args.seed}},
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
        print(f"    greedy: {_clean(by_greedy)}\n      beam: {_clean(by_beam)}\n      true: {_clean(reference)}\n")
    scores = {decode: evaluate_captions(solver.model, variables, data, "val", decode=decode)
              for decode in ("greedy", "beam")}
    print(f"val BLEU-1 ({data['val_captions'].shape[0]} scenes): greedy {scores['greedy']:.4f}, "
          f"beam search {scores['beam']:.4f}")
    path = save_loss_curve(solver.loss_history, args.output_dir / "captioning_lstm_loss.png",
                           title="LSTM captioner on the built-in scenes", smooth=20)
    print(f"loss curve: {path}")
