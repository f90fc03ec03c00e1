"""`jaxseq lm train|eval|generate`: recurrent language models with truncated BPTT.

    jaxseq lm train [--data builtin|shakespeare | --text FILE | --train F --val F [--test F]]
                    [--level char|word] [--recipe pytorch-example|char-rnn|jaxseq] [--resume]
    jaxseq lm eval --checkpoint RUN (--text FILE | --split val|test)
    jaxseq lm generate --checkpoint RUN --prompt "ROMEO:" --length 500 --temperature 0.8 --top-k 40

Training prints each epoch's training loss and the validation loss, perplexity and bits per
character (or token), keeps the best checkpoint by validation loss and resumes exactly
(`--resume`). The options' defaults come from the recipe (`jaxseq.lm_recipes`; by level when
none is named: char-rnn's for characters, PyTorch's example's for words).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxseq.commands._options import (
    _number,
    add_checkpoint_args,
    add_log_args,
    add_parallel_args,
    batch_size,
    bounded_int,
    fraction,
    model_size,
    nonnegative_float,
    positive_float,
    positive_int,
    random_seed,
    setup_parallel,
)
from jaxseq.limits import MAX_COUNT, MAX_GENERATE_LENGTH, MAX_VOCAB_SIZE

if TYPE_CHECKING:
    from jaxseq.lm_recipes import LMRecipe

layers = bounded_int(1, 64, "a positive integer")  # run_metadata.MAX_LAYERS
nonnegative_int = bounded_int(0, MAX_COUNT, "an integer >= 0")
generate_length = bounded_int(1, MAX_GENERATE_LENGTH, "a positive integer")
top_k = bounded_int(1, MAX_VOCAB_SIZE, "a positive integer")
temperature = _number(float, lambda value: 0 <= value < math.inf, "a number >= 0 (0: greedy)")
top_p = _number(float, lambda value: 0 < value <= 1, "a number in (0, 1]")
plateau_factor = _number(float, lambda value: 1 < value < math.inf, "a number > 1")

# The options whose defaults come from the recipe: (flag, section, key, argparse type or
# choices, help).
RECIPE_OPTIONS = (
    ("--cell", "model", "cell", ("lstm", "gru", "rnn"), "recurrent cell"),
    ("--embed-size", "model", "embed_size", model_size, "embedding size E"),
    ("--hidden-size", "model", "hidden_size", model_size, "hidden size H per layer"),
    ("--num-layers", "model", "num_layers", layers, "stacked layers"),
    ("--input-dropout", "model", "input_dropout", fraction, "dropout on the embedded tokens"),
    ("--hidden-dropout", "model", "hidden_dropout", fraction, "dropout between the layers"),
    ("--output-dropout", "model", "output_dropout", fraction, "dropout on the last layer's output"),
    ("--embedding-dropout", "model", "embedding_dropout", fraction, "whole-word dropout of the embedding matrix"),
    ("--weight-drop", "model", "weight_drop", fraction, "DropConnect on the hidden-to-hidden weights"),
    ("--epochs", "train", "epochs", positive_int, "training epochs"),
    ("--batch-size", "train", "batch_size", batch_size, "parallel streams N"),
    ("--bptt", "train", "bptt", positive_int, "steps per segment of truncated backpropagation"),
    ("--optimizer", "train", "optimizer", ("sgd", "adamw"), "optimizer"),
    ("--lr", "train", "learning_rate", positive_float, "(peak) learning rate"),
    ("--weight-decay", "train", "weight_decay", nonnegative_float, "AdamW's decoupled weight decay"),
    ("--schedule", "train", "schedule", ("plateau", "cosine", "constant"),
     "plateau: divide the rate by --plateau-factor after an epoch without a better validation loss; "
     "cosine / constant after the warm-up"),
    ("--plateau-factor", "train", "plateau_factor", plateau_factor, "the plateau schedule's divisor"),
    ("--warmup-steps", "train", "warmup_steps", nonnegative_int, "linear warm-up steps (cosine, constant)"),
    ("--clip", "train", "clip_norm", positive_float, "clip the gradients' global norm to this"),
    ("--eval-batch-size", "train", "eval_batch_size", batch_size, "streams of the evaluation"),
)


def _sections(recipe: LMRecipe) -> dict[str, dict[str, Any]]:
    """The recipe's option sections by RECIPE_OPTIONS' section names (copies)."""
    return {"model": dict(recipe["model"]), "train": dict(recipe["train"])}


def _default(flag_key: tuple[str, str]) -> str:
    from jaxseq.lm_recipes import LM_RECIPES

    section, key = flag_key
    values = {name: _sections(recipe)[section][key] for name, recipe in LM_RECIPES.items()}
    return "default: " + ", ".join(f"{value} ({name})" for name, value in values.items())


def register(subparsers) -> None:
    from jaxseq.lm_recipes import LM_RECIPES

    lm = subparsers.add_parser("lm", help="recurrent language models (train, eval, generate)")
    commands = lm.add_subparsers(dest="lm_command", required=True, metavar="ACTION")

    train = commands.add_parser("train", help="train a language model with truncated BPTT")
    data = train.add_argument_group("text")
    data.add_argument("--data", choices=("builtin", "shakespeare"), default=None,
                      help="builtin: generated sentences with nested agreement, no download (the default when no "
                           "file is given); shakespeare: Tiny Shakespeare, nanoGPT's 90/10 character split")
    data.add_argument("--text", type=Path, default=None, help="one text file, split 90/10 in order")
    data.add_argument("--train", type=Path, default=None, help="training text file (with --val)")
    data.add_argument("--val", type=Path, default=None, help="validation text file")
    data.add_argument("--test", type=Path, default=None, help="test text file (optional)")
    data.add_argument("--level", choices=("char", "word"), default=None,
                      help="tokens: characters, or words with <eos> at each line end (default: the recipe's)")
    train.add_argument("--recipe", choices=tuple(LM_RECIPES), default=None,
                       help="model and training defaults (default: char-rnn for characters, pytorch-example "
                            "for words)")
    model = train.add_argument_group("model and training (defaults: the recipe's)")
    for flag, section, key, kind, what in RECIPE_OPTIONS:
        typed = {"choices": kind} if isinstance(kind, tuple) else {"type": kind}
        model.add_argument(flag, **typed, default=None, help=f"{what} ({_default((section, key))})")
    model.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                       help="the decoder reuses the embedding matrix (needs --embed-size = --hidden-size)")
    model.add_argument("--locked-dropout", action=argparse.BooleanOptionalAction, default=None,
                       help="variational dropout: one mask per stream, shared over time (AWD-LSTM)")
    model.add_argument("--patience", type=positive_int, default=None,
                       help="stop after this many epochs without a better validation loss (default: never)")
    model.add_argument("--seed", type=random_seed, default=0, help="random seed (default: 0)")
    model.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_checkpoint_args(train, "the checkpoints (the whole state, carried state included; the last two and the "
                        "best are kept) and vocab.json", default="checkpoints/lm")
    add_log_args(train)
    train.add_argument("--eval-every", type=positive_int, default=None, metavar="STEPS",
                       help="also evaluate on the validation split every this many steps, into the run log "
                            "(long epochs; default: at epoch ends only)")
    add_parallel_args(train)
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser("eval", help="loss, perplexity and bits per character of a trained model")
    evaluate.add_argument("--checkpoint", type=Path, required=True,
                          help="a training run's --checkpoint-dir (its best checkpoint) or one ckpt-* folder")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", type=Path, help="a text file to score")
    source.add_argument("--split", choices=("train", "val", "test"), help="a split of the run's own text")
    evaluate.add_argument("--batch-size", type=batch_size, default=None,
                          help="streams (default: the run's evaluation streams; a text file: 1)")
    evaluate.add_argument("--bptt", type=positive_int, default=None, help="steps per segment (default: the run's)")
    evaluate.set_defaults(func=run_eval)

    generate = commands.add_parser("generate", help="sample text from a trained model")
    generate.add_argument("--checkpoint", type=Path, required=True,
                          help="a training run's --checkpoint-dir (its best checkpoint) or one ckpt-* folder")
    generate.add_argument("--prompt", default="", help="text to continue (default: none, from a line start)")
    generate.add_argument("--length", type=generate_length, default=500,
                          help=f"tokens to generate, at most {MAX_GENERATE_LENGTH:,} (default: 500)")
    generate.add_argument("--temperature", type=temperature, default=1.0,
                          help="softmax temperature; 0 is greedy (default: 1.0)")
    generate.add_argument("--top-k", type=top_k, default=None, help="sample among the k most probable tokens")
    generate.add_argument("--top-p", type=top_p, default=None,
                          help="sample among the most probable tokens whose probability reaches p (nucleus)")
    generate.add_argument("--seed", type=random_seed, default=0, help="random seed (default: 0)")
    generate.set_defaults(func=run_generate)


def lm_train_arguments(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """(text source spec, model fields, LMTrainConfig fields) of parsed `lm train` options:
    the recipe's, with every option given on the command line in their place."""
    from jaxseq.data.text_sources import text_source_spec
    from jaxseq.lm_recipes import DEFAULT_RECIPE, LM_RECIPES

    files = args.text is not None or args.train is not None or args.val is not None or args.test is not None
    data = args.data if args.data is not None or files else "builtin"
    recipe = LM_RECIPES[args.recipe or DEFAULT_RECIPE[args.level or "char"]]
    level = args.level or recipe["level"]
    if args.test is not None and args.train is None:
        raise ValueError("--test goes with --train and --val")
    spec = text_source_spec(text=args.text, train=args.train, val=args.val, test=args.test, data=data,
                            level=level)
    sections = _sections(recipe)
    for flag, section, key, _, _ in RECIPE_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            sections[section][key] = value
    for name in ("tie_weights", "locked_dropout"):
        if getattr(args, name) is not None:
            sections["model"][name] = getattr(args, name)
    sections["train"].update(patience=args.patience, seed=args.seed)
    return spec, sections["model"], sections["train"]


def run_train(args: argparse.Namespace) -> int:
    devices = setup_parallel(args)
    spec, model_fields, train_fields = lm_train_arguments(args)
    from jaxseq.data.text_sources import load_text_source
    from jaxseq.models.language_model import LanguageModel
    from jaxseq.train.language_model import LMTrainConfig, train_language_model

    config = LMTrainConfig(**train_fields)
    model = LanguageModel(vocab_size=1, **model_fields)  # every field checked before the text is read
    corpus = load_text_source(spec)
    model = model.clone(vocab_size=len(corpus.vocab))
    print(corpus.summary())
    result = train_language_model(model, corpus, config, checkpoint_dir=args.checkpoint_dir, metadata={"data": spec},
                                  overwrite=args.overwrite, resume=args.resume, checkpoint_every=args.checkpoint_every,
                                  progress=not args.no_progress, devices=devices, log_dir=args.log_dir,
                                  log_every=args.log_every, eval_every=args.eval_every)
    if result.best_epoch:
        unit = "bits per character" if corpus.vocab.level == "char" else "bits per token"
        print(f"best epoch {result.best_epoch}: val loss {result.best_val_loss:.4f}, perplexity "
              f"{math.exp(result.best_val_loss):.2f}, {result.best_val_loss / math.log(2):.4f} {unit}")
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}")
        print(f"generate with: jaxseq lm generate --checkpoint {args.checkpoint_dir}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from jaxseq.data.text_files import read_text_chunks
    from jaxseq.data.text_sources import load_text_source
    from jaxseq.inference.language_model import evaluate_language_model, load_language_model

    model, params, vocab, meta = load_language_model(args.checkpoint)
    config = meta["lm_train_config"]
    if args.text is not None:
        encoded = vocab.encode("".join(read_text_chunks(args.text)), f"text {args.text}")
        ids, what, streams = encoded.ids, str(args.text), args.batch_size or 1
        if encoded.num_unknown:
            print(f"{args.text}: {encoded.num_unknown} words outside the vocabulary read as <unk>", file=sys.stderr)
    else:
        if "data" not in meta:
            raise ValueError(f"checkpoint {args.checkpoint}: it does not record its text (no 'data' in meta.json); "
                             "pass --text FILE")
        corpus = load_text_source(meta["data"], f"checkpoint {args.checkpoint}: data")
        if corpus.vocab.to_json() != vocab.to_json():
            raise ValueError(f"the run's text ({corpus.source}) no longer gives the vocabulary it was trained with; "
                             "it changed since training: pass --text FILE")
        ids, what, streams = corpus.split(args.split), f"{args.split} split", args.batch_size or config["eval_batch_size"]
    scores = evaluate_language_model(model, params, ids, batch_size=streams, bptt=args.bptt or config["bptt"],
                                     name=what)
    unit = "bits per character" if vocab.level == "char" else "bits per token"
    print(f"{what}: {scores['tokens']:,} tokens, loss {scores['loss']:.4f} nats, perplexity "
          f"{scores['perplexity']:.3f}, {scores['bits_per_token']:.4f} {unit}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from jaxseq.inference.language_model import generate_text, load_language_model

    model, params, vocab, _ = load_language_model(args.checkpoint)
    pieces = generate_text(model, params, vocab, args.prompt, args.length, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                           notice=lambda line: print(line, file=sys.stderr))
    first = next(pieces)  # the prompt is checked before anything is printed
    sys.stdout.write(args.prompt + first)
    sys.stdout.flush()
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
