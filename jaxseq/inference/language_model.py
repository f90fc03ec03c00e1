"""A trained language model: rebuilt from its checkpoint and the `vocab.json` beside it, its
text generated (in chunks, as it is produced) and its loss on new text.

    model, params, vocab, meta = load_language_model("runs/lm")
    for piece in generate_text(model, params, vocab, "ROMEO:", 500, temperature=0.8, top_k=40, seed=0):
        print(piece, end="", flush=True)
    scores = evaluate_language_model(model, params, vocab.encode(text).ids, batch_size=1, bptt=128)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np

from jaxseq.data.token_vocabulary import TokenVocabulary
from jaxseq.limits import MAX_GENERATE_LENGTH
from jaxseq.models.language_model import LanguageModel
from jaxseq.models.text_sampling import check_sampling_options, generate_chunks
from jaxseq.train.checkpoint import load_checkpoint, load_trained_run, notice_on_stderr
from jaxseq.train.language_model import (  # noqa: F401  (evaluate_language_model: re-exported)
    VOCAB_FILE,
    LMTrainConfig,
    evaluate_language_model,
    lm_checkpoint_template,
)
from jaxseq.train.run_metadata import read_run_metadata
from jaxseq.train.vocabulary_file import read_run_vocabulary

GENERATE_CHUNK = 64  # tokens per compiled sampling call: what reaches the terminal at a time


def _load_one(checkpoint: Path):
    """(model, params, vocab, metadata) of one checkpoint folder; ValueError naming the file
    and the entry for anything that does not check out."""
    meta = read_run_metadata(checkpoint, "language_model")
    source = f"checkpoint {checkpoint / 'meta.json'}"
    try:
        model = LanguageModel.from_config(meta["model"])
    except ValueError as error:
        raise ValueError(f"{source}: model: {error}") from None
    try:
        config = LMTrainConfig(**meta["lm_train_config"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: lm_train_config: {error}") from None
    vocab = read_run_vocabulary(checkpoint, VOCAB_FILE, TokenVocabulary, model.vocab_size)
    # The file holds the whole training state (optimizer moments, the carried state): read it
    # against all of it, so that its size bound is what such a state takes.
    template = lm_checkpoint_template(model, config, config.epochs * meta["steps_per_epoch"])
    state, meta = load_checkpoint(checkpoint, template)
    return model, jax.device_put(state["params"]), vocab, meta


def load_language_model(path: str | os.PathLike, *, log: Callable[[str], None] | None = notice_on_stderr):
    """(model, params, vocab, metadata) of a checkpoint folder or a `jaxseq lm train` run folder.

    A run folder gives its best checkpoint (by validation loss; see `jaxseq.inference`), or
    the next usable one, saying on `log` which was skipped and why. Everything read is
    checked first: ValueError naming the file and entry; RunKindError for another kind of run.
    """
    return load_trained_run(path, _load_one, "`jaxseq lm train`", log=log)


def check_generate_length(length: Any) -> int:
    """`length` as an int in [1, MAX_GENERATE_LENGTH], else a one-line ValueError."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 1 <= length <= MAX_GENERATE_LENGTH:
        raise ValueError(f"length must be an integer in [1, {MAX_GENERATE_LENGTH:,}], got {length!r}")
    return int(length)


def generate_text(model: LanguageModel, params, vocab: TokenVocabulary, prompt: str, length: int, *,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                  chunk: int = GENERATE_CHUNK, notice: Callable[[str], None] | None = None) -> Iterator[str]:
    """The text `model` continues `prompt` with, `length` tokens, yielded in pieces of `chunk`
    tokens as they are sampled (`prompt + "".join(pieces)` is the whole text) (the prompt is read in one forward pass, then a jitted loop
    samples; the same seed gives the same text; temperature 0 is greedy).

    At character level a prompt character outside the vocabulary is a ValueError naming it;
    at word level an unknown word becomes `<unk>`, said on `notice` (default: nowhere). An
    empty prompt starts from the first token of the vocabulary's end-of-line (`<eos>`) at
    word level, or a newline at character level where the vocabulary has one.
    """
    length = check_generate_length(length)
    check_sampling_options(temperature, top_k, top_p)
    ids = _prompt_ids(vocab, prompt, notice)
    previous = int(ids[-1])  # the last token written: the prompt's, then each piece's
    for tokens in generate_chunks(model, {"params": params}, ids[None, :], length, jax.random.PRNGKey(seed),
                                  chunk=chunk, temperature=temperature, top_k=top_k, top_p=top_p):
        tokens = np.asarray(tokens)[0]
        text = vocab.decode(tokens)
        if vocab.level == "word" and vocab.eos_id not in (previous, int(tokens[0])):
            text = " " + text  # words of two pieces (or the prompt's and the first piece's) apart
        previous = int(tokens[-1])
        yield text


def _prompt_ids(vocab: TokenVocabulary, prompt: str, notice: Callable[[str], None] | None) -> np.ndarray:
    """The ids of `prompt` (at least one token); unknown words said on `notice`."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    if prompt == "":
        start = "<eos>" if vocab.level == "word" else "\n"
        if start not in vocab.tokens:
            raise ValueError("prompt is empty and the vocabulary has no line end to start from; give a prompt")
        return np.asarray([vocab.tokens.index(start)], np.int32)
    encoded = vocab.encode(prompt, "prompt")
    if encoded.num_unknown and notice is not None:
        notice(f"prompt: {encoded.num_unknown} word(s) outside the vocabulary read as <unk>")
    if len(encoded.ids) == 0:
        raise ValueError("prompt holds no token (only whitespace); give a prompt with a word")
    return np.asarray(encoded.ids, np.int32)
