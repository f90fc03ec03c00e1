"""Language-model quality run (issue 22): Tiny Shakespeare, nanoGPT's 90/10 character split,
validation loss in nats per character, for a wall-clock training budget.

Three parts, each in this one script run (and process), one training process at a time:

- `char`: jaxseq (`jaxseq.train.train_language_model`) trained for a wall-clock budget
  (default 600 s) with a recipe; the validation loss of every epoch (computed by the trainer
  with `evaluate_language_model`, the state carried over the whole split) beside the elapsed
  training seconds, and the final one.
- `twin`: the PyTorch twin of the same model and recipe (`benchmarks/speed/torch_models.py`
  `LanguageModel`, started from jaxseq's initial weights of the same seed), the same streams,
  segments, optimizer, schedule and clipping, torch on `--torch-threads` threads, given the
  same budget; its validation loss computed as `evaluate_language_model` computes it.
- `word`: PyTorch's word_language_model recipe (`--recipe pytorch-example`: 2-layer LSTM 200,
  dropout 0.2, SGD 20, clip 0.25, lr / 4 on a plateau, bptt 35, 20 streams) on the same text at
  word level, jaxseq vs the twin (started from the same weights) after the same number of
  epochs: are the validation perplexities within 2%?

The trainer has no wall-clock stop (and validates once per epoch), so the budget is met by
sizing: a short calibration run of the same recipe (2 epochs of a few segments, through
`train_language_model`) gives the seconds per step, and the run gets the number of whole
epochs that fits the budget (at least one), the cosine schedule over exactly those steps.
The twin, whose loop is written here, is calibrated the same way, plans its schedule over the
steps that fit, and stops at the budget at the latest.

Writes `results/lm_quality.md` and `.json` (machine, date, load averages, settings, curves,
finals, published reference points); parts not run keep their previous results there.

    python benchmarks/quality/lm_quality.py [--parts char twin word] [--budget 600] [--seeds 0 1 2]
        [--recipe jaxseq] [--set model.hidden_size=768 ...] [--word-epochs 1] [--data FILE] [--smoke]

Environment: OMP_WAIT_POLICY defaults to PASSIVE here (set before torch loads): on this
shared 2-core machine, loaded to ~10, PyTorch's spinning OpenMP threads made its LSTM step
5x slower (16.1 s vs 3.2 s per step, 2x256 LSTM, 64 x 128 segments).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch (OpenMP) starts: see the docstring
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before NumPy: jaxseq.timing.QUIET_ENV

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent / "speed"))

from jaxseq.lm_recipes import LM_RECIPES  # noqa: E402  (plain data)

# The first budget recipe (the 10-minute runs of 2026-12-06/07 on a 2-core AMD EPYC used it):
# the issue's own PyTorch LSTM (2 x 256, embedding 64, 64 streams, bptt 128, Adam 2e-3, no
# dropout: 1.52 after 12 minutes at load ~4), with jaxseq's AdamW warm-up and a cosine decay to
# 0 over the steps the budget allows, clipped to 1.0. On that machine 10 minutes held 8-11 of
# its epochs (1.59-1.69, three seeds) and only 2 of the 2 x 512 model's at bptt 128.
BUDGET_RECIPES = {
    "ts-lstm256": dict(
        level="char",
        model=dict(cell="lstm", embed_size=64, hidden_size=256, num_layers=2, tie_weights=False,
                   input_dropout=0.0, hidden_dropout=0.0, output_dropout=0.0, locked_dropout=False,
                   embedding_dropout=0.0, weight_drop=0.0),
        train=dict(batch_size=64, bptt=128, optimizer="adamw", learning_rate=2e-3, schedule="cosine",
                   plateau_factor=4.0, warmup_steps=30, clip_norm=1.0, weight_decay=0.0, eval_batch_size=10),
    ),
    # The 10-minute runs of 2026-12-07 (three seeds beside the twin): the `jaxseq` recipe as it
    # was then, without weight decay, whose 6 epochs of the 2 x 512 model on 16-step segments fit
    # 10 minutes on a 2-core Intel Xeon (the run is sized to the budget here, not to the
    # recipe's epochs). The recipe has had weight decay 0.3 since (the default here). Pilots on
    # Tiny Shakespeare (that machine; 3 epochs of ts-lstm256, the cosine over them, seed 0;
    # validation nats per character): an epoch takes the same time at every segment length (24-28 s for bptt
    # 8..128), but shorter segments give more updates, and at these budgets updates are what the
    # model lacks: bptt 128 -> 2.097, 64 -> 1.833, 32 -> 1.652, 16 -> 1.552, 8 -> 1.517 (lr
    # 2e-3); lr 4e-3 at bptt 16 -> 1.497. The 2 x 512 model at bptt 16: 1.487 after 2 epochs.
    "ts-lstm512": dict(LM_RECIPES["jaxseq"], train=dict(LM_RECIPES["jaxseq"]["train"], weight_decay=0.0)),
}
RECIPES = {**BUDGET_RECIPES, **{name: r for name, r in LM_RECIPES.items() if r["level"] == "char"}}

# Smoke mode (the test): the built-in text and a tiny model, seconds.
SMOKE_MODEL = dict(cell="lstm", embed_size=16, hidden_size=32, num_layers=1)
SMOKE_TRAIN = dict(batch_size=8, bptt=16, warmup_steps=2, eval_batch_size=4)

REFERENCES = [
    ("nanoGPT shakespeare_char, 6-layer transformer (10.7M params), one A100, ~3 min (published)", 1.4697),
    ("nanoGPT CPU setting (4 layers, n_embd 128, 2,000 iterations), laptop CPU, ~3 min (published)", 1.88),
    ("nanoGPT CPU setting run on this 2-core machine at load ~4: 724 s (issue 22)", 1.886),
    ("PyTorch 2-layer LSTM H=256 E=64, 64 x 128, Adam 2e-3, this machine at load ~4, 2 min (issue 22)", 1.90),
    ("the same, 6 min (issue 22)", 1.61),
    ("the same, 12 min (issue 22)", 1.52),
]
TARGET_10MIN, TARGET_BEST, WORD_TOLERANCE = 1.47, 1.40, 0.02


def load_now() -> float:
    return round(os.getloadavg()[0], 2)


def say(line: str) -> None:
    print(line, flush=True)


# --- data ------------------------------------------------------------------------------------

def load_corpora(args):
    """(char corpus, word corpus, description) of Tiny Shakespeare, or of the built-in text (--smoke)."""
    from jaxseq.data.builtin_text import load_builtin_text
    from jaxseq.data.text_corpus import TextCorpus, load_text_corpus
    from jaxseq.data.tiny_shakespeare import load_tiny_shakespeare, tiny_shakespeare_file

    if args.smoke:  # whole segments only (one compiled step and one evaluation scan per model)
        N, T, eval_N = SMOKE_TRAIN["batch_size"], SMOKE_TRAIN["bptt"], SMOKE_TRAIN["eval_batch_size"]
        cut = lambda c: TextCorpus(c.vocab, c.train[:N * (8 * T + 1)], c.val[:eval_N * (2 * T + 1)],  # noqa: E731
                                   None, c.num_unknown, c.source)
        return (cut(load_builtin_text(num_train_chars=12_000, num_val_chars=1_500)),
                cut(load_builtin_text(level="word", num_train_chars=12_000, num_val_chars=1_500)),
                "builtin text (seed 0), cut to whole segments")
    path = args.data or tiny_shakespeare_file()
    if path is None:
        raise SystemExit("Tiny Shakespeare not found: pass --data or set JAXSEQ_DATA (tinyshakespeare/input.txt)")
    char = load_tiny_shakespeare(path) if "char" in args.parts or "twin" in args.parts else None
    word = load_text_corpus(path, level="word", train_fraction=0.9) if "word" in args.parts else None
    return char, word, str(path)


# --- recipes ---------------------------------------------------------------------------------

def recipe_parts(args, name: str, vocab_size: int, *, word: bool = False):
    """(model kwargs, LMTrainConfig kwargs) of recipe `name` (shrunk in smoke mode)."""
    recipe = LM_RECIPES[name] if word else RECIPES[name]
    model = dict(recipe["model"], vocab_size=vocab_size)
    train = dict(recipe["train"])
    train.pop("epochs", None)
    if not word:  # --set changes the character recipe of this run (both contenders), not the word one
        for section, key, value in getattr(args, "set", None) or ():
            (model if section == "model" else train)[key] = value
    if args.smoke:
        model.update(SMOKE_MODEL)
        train.update(SMOKE_TRAIN)
        if word:
            train.update(learning_rate=recipe["train"]["learning_rate"], warmup_steps=0)
    return model, train


def recipe_override(text: str) -> tuple[str, str, Any]:
    """`--set model.hidden_size=768` -> ("model", "hidden_size", 768): a field of the recipe's
    model or training config (every recipe has the same fields), the value read as JSON
    (numbers, true/false) or else kept as text ("gru"). A one-line error for anything else."""
    fields = {section: set(RECIPES["jaxseq"][section]) - {"epochs"} for section in ("model", "train")}
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or section not in fields or key not in fields[section]:
        known = ", ".join(f"{s}.{k}" for s in fields for k in sorted(fields[s]))
        raise argparse.ArgumentTypeError(f"expected SECTION.FIELD=VALUE with one of {known}; got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw.strip()
    if isinstance(value, (list, dict)) or value is None or value == "":
        raise argparse.ArgumentTypeError(f"{name}: expected a number, true/false or a word; got {raw!r}")
    return section, key, value


def check_overrides(parser: argparse.ArgumentParser, args) -> None:
    """The recipe with `--set` must make a model and a training config (their own checks), and
    one the PyTorch twin can follow when it runs; else a one-line usage error."""
    import torch_models

    from jaxseq.models import LanguageModel
    from jaxseq.train.language_model import LMTrainConfig

    model, train = recipe_parts(args, args.recipe, 2)
    try:
        LanguageModel(**model)
        LMTrainConfig(**train)
    except (TypeError, ValueError) as error:
        parser.error(f"--set: {error}")
    if "twin" in args.parts:
        try:
            torch_models.check_twin_config(model)
        except ValueError as error:
            parser.error(f"--set: {error} (run --parts char for jaxseq alone)")


def calibration_segments(args, bptt: int) -> int:
    """How many segments the calibrations time: --calibration-segments, or 768 characters'
    worth per stream (6 segments of 128, 48 of 16), at least 6. Six 16-step segments (half a
    second) had the twin at 0.091 s a step where it sustained 0.071 (it then used 471 of its 600
    seconds: lm_quality_ts512-seed0.md)."""
    return args.calibration_segments or max(6, math.ceil(768 / bptt))


def initial_params(model, seed: int):
    """jaxseq's initial parameters for `seed`, as `train_language_model` draws them
    (LanguageModelTask: the init key is the first half of PRNGKey(seed))."""
    import jax
    import jax.numpy as jnp

    init_key, _ = jax.random.split(jax.random.PRNGKey(seed))
    return jax.jit(model.init)(init_key, jnp.zeros((1, 2), jnp.int32))["params"]


# --- jaxseq ----------------------------------------------------------------------------------

def calibrate_jaxseq(model, corpus, train: dict, seed: int, segments: int) -> float:
    """Seconds per training step of the recipe: `train_language_model` on the first
    `segments` segments of the streams, 2 epochs; the second (compiled) epoch's time."""
    from jaxseq.data.text_corpus import TextCorpus
    from jaxseq.train.language_model import LMTrainConfig, train_language_model

    N, T = train["batch_size"], train["bptt"]
    L = N * (segments * T + 1)
    small = TextCorpus(corpus.vocab, corpus.train[:L], corpus.val[:max(2 * train["eval_batch_size"] * 2, 64)], None,
                       {}, "calibration")
    config = LMTrainConfig(**dict(train, epochs=2, warmup_steps=0, seed=seed))
    run = train_language_model(model, small, config, progress=False, log=None)
    step_seconds = run.history[1]["seconds"] / segments
    return step_seconds, max(run.history[0]["seconds"] - run.history[1]["seconds"], 0.0)


def run_jaxseq(args, corpus, recipe: str, seed: int, *, word: bool = False, epochs: int | None = None) -> dict:
    """Train jaxseq (`train_language_model`) with `recipe` for `epochs` or for the budget."""
    from jaxseq.data.text_streams import batchify
    from jaxseq.models import LanguageModel
    from jaxseq.train.language_model import LMTrainConfig, evaluate_language_model, train_language_model

    model_kwargs, train = recipe_parts(args, recipe, len(corpus.vocab), word=word)
    model = LanguageModel(**model_kwargs)
    L = batchify(corpus.train, train["batch_size"]).shape[1]
    steps_per_epoch = len(range(0, L - 1, train["bptt"]))
    planning = {}
    if epochs is None:
        load = load_now()
        start = time.perf_counter()
        step_seconds, compile_seconds = calibrate_jaxseq(model, corpus, train, seed,
                                                         calibration_segments(args, train["bptt"]))
        # The run compiles two steps (bptt and the shorter last segment): twice the calibration's.
        # Whole epochs within the budget (until 2026-12-07 up to 5% over it: a 7th epoch of 90 s
        # in 600 s would have trained 630 s where the twin stops at 600).
        epochs = max(1, int((args.budget - 2 * compile_seconds) // (step_seconds * steps_per_epoch)))
        planning = {"calibration_seconds_per_step": step_seconds, "calibration_compile_seconds": compile_seconds,
                    "calibration_wall_seconds":
                    time.perf_counter() - start, "calibration_load": load,
                    "fitted_epochs": (args.budget - 2 * compile_seconds) / (step_seconds * steps_per_epoch)}
        say(f"  jaxseq calibration: {step_seconds:.3f} s/step, {steps_per_epoch} steps/epoch -> {epochs} epoch(s) "
            f"in {args.budget:.0f} s (load {load})")
    config = LMTrainConfig(**dict(train, epochs=epochs, seed=seed))
    loads = []

    def log(line: str) -> None:
        if line.lstrip().startswith("epoch"):
            loads.append(load_now())
            say(f"  jaxseq {line}  (load {loads[-1]})")

    load_before, start = load_now(), time.perf_counter()
    run = train_language_model(model, corpus, config, progress=False, log=log)
    wall = time.perf_counter() - start
    final = evaluate_language_model(model, run.params, corpus.val, batch_size=config.eval_batch_size,
                                    bptt=config.bptt, name="val")
    elapsed, curve = 0.0, []
    for record, load in zip(run.history, loads + [None] * len(run.history)):
        elapsed += record["seconds"]
        curve.append({"epoch": record["epoch"], "step": record["epoch"] * steps_per_epoch,
                      "train_seconds": round(elapsed, 2), "train_loss": record["train_loss"],
                      "val_loss": record["val_loss"], "val_perplexity": record["val_perplexity"],
                      "learning_rate": record["learning_rate"], "eval_seconds": round(record["eval_seconds"], 2),
                      "load": load})
    return {"contender": "jaxseq", "recipe": recipe, "seed": seed, "model": model_kwargs,
            "train": dict(train, epochs=epochs), "steps_per_epoch": steps_per_epoch, "steps": epochs * steps_per_epoch,
            "planning": planning, "curve": curve, "final_val_loss": curve[-1]["val_loss"],
            "final_val_perplexity": curve[-1]["val_perplexity"], "best_epoch": run.best_epoch,
            "best_val_loss": run.best_val_loss, "best_params_val_loss": final["loss"],
            "train_seconds": round(elapsed, 2), "wall_seconds": round(wall, 2),
            "load_before": load_before, "load_after": load_now()}


# --- the PyTorch twin ------------------------------------------------------------------------

def torch_evaluate(net, ids, batch_size: int, bptt: int) -> float:
    """Mean cross-entropy per token of `ids` (nats), as `evaluate_language_model`: `batch_size`
    streams (jaxseq's batchify), segments of `bptt`, the state carried over the whole split."""
    import torch
    import torch.nn.functional as F

    from jaxseq.data.text_streams import batchify

    streams = torch.from_numpy(batchify(ids.astype("int64"), batch_size))
    N, L = streams.shape
    bptt = min(bptt, L - 1)
    net.eval()
    total, state = 0.0, net.init_state(N)
    with torch.no_grad():
        for i in range(0, L - 1, bptt):
            T = min(bptt, L - 1 - i)
            logits, state = net(streams[:, i:i + T], state)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           streams[:, i + 1:i + 1 + T].reshape(-1), reduction="sum"))
    net.train()
    return total / (N * (L - 1))


def twin_of(args, corpus, recipe: str, seed: int, word: bool):
    """(model kwargs, train kwargs, the twin started from jaxseq's initial weights of `seed`)."""
    import torch
    import torch_models

    from jaxseq.models import LanguageModel
    from jaxseq.models.language_model import language_model_config, lm_params_to_torch

    model_kwargs, train = recipe_parts(args, recipe, len(corpus.vocab), word=word)
    model = LanguageModel(**model_kwargs)
    params = initial_params(model, seed)
    net = torch_models.language_model_from_jax(language_model_config(model), lm_params_to_torch(model, {"params": params}))
    torch.manual_seed(seed)
    return model_kwargs, train, net


def run_twin(args, corpus, recipe: str, seed: int, *, word: bool = False, epochs: int | None = None) -> dict:
    """Train the twin for `epochs`, or for the budget (its schedule planned over the steps
    that fit at its calibrated speed, stopped at the budget at the latest)."""
    import torch
    import torch_models

    from jaxseq.data.text_streams import batchify

    torch.set_num_threads(args.torch_threads)
    model_kwargs, train, net = twin_of(args, corpus, recipe, seed, word)
    N, bptt = train["batch_size"], train["bptt"]
    streams = torch.from_numpy(batchify(corpus.train.astype("int64"), N))
    L = streams.shape[1]
    starts = list(range(0, L - 1, bptt))
    steps_per_epoch = len(starts)
    peak, clip = train["learning_rate"], train["clip_norm"]
    if train["optimizer"] == "adamw":
        optimizer = torch.optim.AdamW(net.parameters(), lr=peak, betas=(0.9, 0.999), eps=1e-8,
                                      weight_decay=train["weight_decay"])
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=peak)

    def train_step(i: int, state):
        T = min(bptt, L - 1 - i)
        optimizer.zero_grad(set_to_none=True)
        loss, state = net.loss(streams[:, i:i + T], streams[:, i + 1:i + 1 + T], state)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
        return float(loss.detach()), torch_models.detach_state(state)

    planning = {}
    budget = None
    if epochs is None:
        budget = args.budget
        load, state = load_now(), net.init_state(N)
        saved = ({k: v.clone() for k, v in net.state_dict().items()}, optimizer.state_dict(), torch.get_rng_state())
        timed = starts[1:1 + calibration_segments(args, bptt)] or starts[:1]  # the text may hold fewer
        train_step(starts[0], state)  # warm-up
        start = time.perf_counter()
        for i in timed:
            _, state = train_step(i, state)
        step_seconds = (time.perf_counter() - start) / len(timed)
        net.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])
        total_steps = max(1, int(budget // step_seconds))
        planning = {"calibration_seconds_per_step": step_seconds, "calibration_load": load,
                    "planned_steps": total_steps}
        say(f"  twin calibration: {step_seconds:.3f} s/step -> {total_steps} steps planned in {budget:.0f} s "
            f"(load {load})")
        epochs = math.ceil(total_steps / steps_per_epoch)
    else:
        total_steps = epochs * steps_per_epoch
    warmup = min(train["warmup_steps"], total_steps - 1)

    def rate(step: int) -> float:  # optax's warmup_cosine_decay_schedule / constant, update `step` (0-based)
        if train["optimizer"] != "adamw":
            return optimizer.param_groups[0]["lr"]
        if step < warmup:
            return peak * step / warmup
        if train["schedule"] == "cosine":
            return peak * 0.5 * (1 + math.cos(math.pi * min(step - warmup, total_steps - warmup) /
                                              max(total_steps - warmup, 1)))
        return peak

    curve, best, step, elapsed, stopped = [], math.inf, 0, 0.0, False
    load_before, wall_start = load_now(), time.perf_counter()
    lr = peak
    for epoch in range(1, epochs + 1):
        state, losses, lengths = net.init_state(N), [], []
        epoch_start = time.perf_counter()
        for i in starts:
            if step >= total_steps or (budget is not None and elapsed + time.perf_counter() - epoch_start >= budget):
                stopped = True
                break
            for group in optimizer.param_groups:
                group["lr"] = rate(step) if train["optimizer"] == "adamw" else lr
            loss, state = train_step(i, state)
            if not math.isfinite(loss):
                raise SystemExit(f"twin: non-finite loss at step {step + 1}")
            losses.append(loss)
            lengths.append(min(bptt, L - 1 - i))
            step += 1
        elapsed += time.perf_counter() - epoch_start
        eval_start = time.perf_counter()
        val = torch_evaluate(net, corpus.val, train["eval_batch_size"], bptt)
        record = {"epoch": epoch if not stopped else round(epoch - 1 + len(losses) / steps_per_epoch, 3),
                  "step": step, "train_seconds": round(elapsed, 2),
                  "train_loss": sum(a * b for a, b in zip(losses, lengths)) / max(sum(lengths), 1),
                  "val_loss": val, "val_perplexity": math.exp(min(val, 700)), "learning_rate": rate(step - 1)
                  if train["optimizer"] == "adamw" else lr, "eval_seconds": round(time.perf_counter() - eval_start, 2),
                  "load": load_now()}
        curve.append(record)
        say(f"  twin epoch {record['epoch']}: step {step}  loss {record['train_loss']:.4f}  val loss {val:.4f}  "
            f"val ppl {record['val_perplexity']:.2f}  {elapsed:.1f} s  (load {record['load']})")
        if train["optimizer"] == "sgd" and train["schedule"] == "plateau":
            if val < best:
                best = val
            else:
                lr /= train["plateau_factor"]  # the example: lr /= 4.0 without a better validation loss
        best = min(best, val)
        if stopped:
            break
    return {"contender": "pytorch twin", "recipe": recipe, "seed": seed, "model": model_kwargs,
            "train": dict(train, epochs=epochs), "steps_per_epoch": steps_per_epoch, "steps": step,
            "planning": planning, "curve": curve, "final_val_loss": curve[-1]["val_loss"],
            "final_val_perplexity": curve[-1]["val_perplexity"], "best_val_loss": best,
            "train_seconds": round(elapsed, 2), "wall_seconds": round(time.perf_counter() - wall_start, 2),
            "stopped_by_budget": stopped, "torch_threads": torch.get_num_threads(),
            "load_before": load_before, "load_after": load_now()}


# --- report ----------------------------------------------------------------------------------

def curve_table(run: dict) -> list[str]:
    lines = ["| epoch | step | training s | train loss | val loss | val ppl | lr | load |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in run["curve"]:
        lines.append(f"| {p['epoch']} | {p['step']} | {p['train_seconds']:.1f} | {p['train_loss']:.4f} | "
                     f"{p['val_loss']:.4f} | {p['val_perplexity']:.2f} | {p['learning_rate']:.3g} | {p['load']} |")
    return lines


def target_lines(char: list[dict], budget: float) -> list[str]:
    """The issue's two character-level targets, each judged only by the runs it is about: the
    10-minute one by a budget of at most 600 s, the best-recipe one (<= 60 minutes) by a budget
    of at most 3600 s. The planning fits whole epochs at a short calibration's speed, and runs
    have trained up to 18% longer than their budget (the sustained step is slower), so the
    lines quote the seconds trained."""
    finals = [r["final_val_loss"] for r in char]
    mean = sum(finals) / len(finals)
    lines = []
    if budget <= 600:
        lines.append(f"- jaxseq, {budget:.0f} s, mean of {len(finals)} seed(s): {mean:.4f} vs <= {TARGET_10MIN}: "
                     f"{'met' if mean <= TARGET_10MIN else 'MISSED'}" +
                     ("" if len(finals) >= 3 else f" (the issue asks for 3 seeds; {len(finals)} run)"))
    else:
        lines.append(f"- {TARGET_10MIN} in 10 minutes: not judged by this run (its budget is {budget:.0f} s)")
    if budget > 3600:
        lines.append(f"- best recipe <= {TARGET_BEST} in <= 60 min: not judged by this run "
                     f"(its budget is {budget:.0f} s)")
    else:
        best = min(char, key=lambda r: r["final_val_loss"])
        missed = "MISSED" if budget > 600 else "not shown by this run"
        verdict = "met" if best["final_val_loss"] <= TARGET_BEST else missed
        lines.append(f"- best recipe <= {TARGET_BEST} in <= 60 min: {best['final_val_loss']:.4f} "
                     f"(`{best['recipe']}`, {best['train_seconds']:.0f} s of training): {verdict}")
    return lines


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = ["# Language-model quality: Tiny Shakespeare (issue 22)", "",
             f"{meta['machine']}; {meta['date']}; jax {meta['versions']['jax']}, torch {meta['versions']['torch']} "
             f"({meta['torch_threads']} threads, OMP_WAIT_POLICY={meta['omp_wait_policy']}). Data: {meta['data']} "
             "(nanoGPT's split: first 90% of the characters train, the rest validation). Loss: validation mean "
             "cross-entropy in nats per character, the state carried over the whole split "
             "(`evaluate_language_model`; the twin's computed the same way in torch). One training process at a "
             "time; the machine is shared, so every number has the 1-minute load average beside it "
             "(2 cores: load 2 is a full machine, load 8 means about a quarter of it for us).", ""]
    char = results.get("char", [])
    twin = results.get("twin", [])
    if char or twin:
        budget = results["settings"].get("budget")
        lines += [f"## Character level, {budget:.0f} s of training", ""]
        recipe = (char or twin)[0]["recipe"]
        overrides = results["settings"].get("overrides") or {}
        changed = f" with {', '.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else ""
        lines += [f"Recipe `{recipe}`{changed}: model {json.dumps((char or twin)[0]['model'])}; "
                  f"training {json.dumps({k: v for k, v in (char or twin)[0]['train'].items() if k != 'epochs'})}. "
                  "jaxseq's trainer stops only at an epoch's end, so it gets the whole epochs that fit the budget at "
                  "its calibrated speed (the cosine schedule over exactly those steps); the twin plans its schedule "
                  "over the steps that fit at its calibrated speed and stops at the budget at the latest. "
                  "Training seconds include jaxseq's compilation, not evaluation.", "",
                  "| contender | seed | epochs | steps | training s | final val loss | best val loss | "
                  "load before / after |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for run in char + twin:
            lines.append(f"| {run['contender']} | {run['seed']} | {run['curve'][-1]['epoch']} | {run['steps']} | "
                         f"{run['train_seconds']:.0f} | **{run['final_val_loss']:.4f}** | {run['best_val_loss']:.4f} | "
                         f"{run['load_before']} / {run['load_after']} |")
        for label, value in REFERENCES:
            lines.append(f"| {label} | | | | | {value} | | |")
        lines.append("")
        for run in char + twin:
            plan = run.get("planning") or {}
            note = ", ".join(f"{k.replace('_', ' ')} {v:.3g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                             for k, v in plan.items())
            lines += [f"### Curve: {run['contender']}, seed {run['seed']}" + (f" ({note})" if note else ""), ""]
            lines += curve_table(run) + [""]
        lines += ["### Targets (issue 22)", ""]
        if char:
            lines += target_lines(char, budget)
        if char and twin:
            j = sum(r["final_val_loss"] for r in char) / len(char)
            t = sum(r["final_val_loss"] for r in twin) / len(twin)
            lines.append(f"- better than the PyTorch twin in the same budget: jaxseq {j:.4f} vs twin {t:.4f}: "
                         f"{'met' if j < t else 'MISSED'}")
        lines.append("")
    word = results.get("word")
    if word:
        j, t = word["jaxseq"], word["twin"]
        ratio = j["final_val_perplexity"] / t["final_val_perplexity"]
        lines += ["## Word level: PyTorch's example recipe, jaxseq vs the twin", "",
                  f"The same text at word level (PyTorch's `Corpus`: whitespace words, `<eos>` per line; 90/10 split "
                  f"of the tokens; V = {word['vocab_size']:,}, {word['val_unknown']:,} validation tokens `<unk>`). "
                  f"Recipe `pytorch-example`: {json.dumps(j['model'])}; {json.dumps(j['train'])}. "
                  "Both start from the same weights (jaxseq's initialisation, ported); their dropout masks differ.", "",
                  "| contender | epochs | training s | val loss | val perplexity | load before / after |",
                  "|---|---:|---:|---:|---:|---|"]
        for run in (j, t):
            lines.append(f"| {run['contender']} | {run['curve'][-1]['epoch']} | {run['train_seconds']:.0f} | "
                         f"{run['final_val_loss']:.4f} | {run['final_val_perplexity']:.2f} | "
                         f"{run['load_before']} / {run['load_after']} |")
        lines += ["", f"- perplexity ratio jaxseq / twin = {ratio:.4f} ({100 * (ratio - 1):+.2f}%): within "
                  f"{WORD_TOLERANCE:.0%}: {'met' if abs(ratio - 1) <= WORD_TOLERANCE else 'MISSED'}", ""]
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("char", "twin", "word"), default=["char", "twin", "word"])
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per character-level run")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="jaxseq")
    parser.add_argument("--set", action="append", type=recipe_override, default=[], metavar="SECTION.FIELD=VALUE",
                        help="change one field of the character recipe (both contenders), e.g. "
                             "model.hidden_size=768 or train.weight_decay=0.1; repeatable; the report shows the result")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--word-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None,
                        help="train the character runs this many epochs instead of sizing them to --budget")
    parser.add_argument("--calibration-segments", type=int, default=None,
                        help="segments timed to size a run (default: 768 characters' worth, at least 6)")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="Tiny Shakespeare's input.txt (default: as jaxseq)")
    parser.add_argument("--smoke", action="store_true", help="built-in text, tiny model, seconds (the test)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    parser.add_argument("--stem", default="lm_quality")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rewrite the report from the JSON (with --note lines, if given)")
    args = parser.parse_args(argv)
    if args.report_only:
        json_path, md_path = args.out / f"{args.stem}.json", args.out / f"{args.stem}.md"
        results = json.loads(json_path.read_text())
        if args.note:
            results["notes"] = args.note
        write(results, json_path, md_path)
        say(md_path.read_text())
        return 0
    if args.set:  # checked before any training: a bad value would otherwise stop the run after its data loaded
        check_overrides(parser, args)
    if args.smoke and args.epochs is None:
        args.epochs = 1  # jaxseq's calibration costs a compilation; the twin still runs for the budget
    import jax
    import torch

    char_corpus, word_corpus, data = load_corpora(args)
    json_path, md_path = args.out / f"{args.stem}.json", args.out / f"{args.stem}.md"
    results = json.loads(json_path.read_text()) if json_path.is_file() and not args.smoke else {}
    results["meta"] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "data": data, "versions": {"jax": jax.__version__, "torch": torch.__version__},
                       "torch_threads": args.torch_threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                       "load_at_start": load_now(), "references": REFERENCES,
                       "targets": {"10min": TARGET_10MIN, "best": TARGET_BEST, "word": WORD_TOLERANCE}}
    if "char" in args.parts or "twin" in args.parts:
        results["settings"] = {"budget": args.budget, "recipe": args.recipe, "seeds": args.seeds,
                               "overrides": {f"{section}.{key}": value for section, key, value in args.set}}
        say(f"{char_corpus.summary()}; budget {args.budget:.0f} s, recipe {args.recipe}")
    for part in ("char", "twin"):
        if part in args.parts:
            runner = run_jaxseq if part == "char" else run_twin
            results[part] = []
            for seed in args.seeds:
                say(f"{part}: seed {seed} (load {load_now()})")
                epochs = None if part == "twin" and args.smoke else args.epochs  # smoke: the twin's budget path
                results[part].append(runner(args, char_corpus, args.recipe, seed, epochs=epochs))
                write(results, json_path, md_path)
    if "word" in args.parts:
        say(f"word: {word_corpus.summary()} (load {load_now()})")
        seed = args.seeds[0]
        jx = run_jaxseq(args, word_corpus, "pytorch-example", seed, word=True, epochs=args.word_epochs)
        tw = run_twin(args, word_corpus, "pytorch-example", seed, word=True, epochs=args.word_epochs)
        results["word"] = {"vocab_size": len(word_corpus.vocab), "val_unknown": word_corpus.num_unknown.get("val", 0),
                           "jaxseq": jx, "twin": tw,
                           "ratio": jx["final_val_perplexity"] / tw["final_val_perplexity"]}
        say(f"word: jaxseq ppl {jx['final_val_perplexity']:.2f}, twin ppl {tw['final_val_perplexity']:.2f}, "
            f"ratio {results['word']['ratio']:.4f}")
    if args.note:
        results["notes"] = args.note
    results["meta"]["load_at_end"] = load_now()
    write(results, json_path, md_path)
    say("\n" + md_path.read_text())
    return 0


def write(results: dict, json_path: Path, md_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
