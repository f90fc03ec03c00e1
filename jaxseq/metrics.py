"""Evaluation metrics: BLEU-1 for captions as the course scored it; the COCO caption
evaluation (corpus BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE) as papers report it;
accuracy, Matthews correlation and the confusion matrix for binary classification.

All functions take plain Python/NumPy values and return Python floats or NumPy arrays; they
run on the host, after decoding, never inside `jit`.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping

import numpy as np

SPECIAL_TOKENS_IGNORED_BY_BLEU = ("<START>", "<END>", "<UNK>")


def _bleu_tokens(caption: str) -> list[str]:
    # The course drops every whitespace token that *contains* a special marker.
    return [
        token
        for token in caption.split(" ")
        if token and not any(marker in token for marker in SPECIAL_TOKENS_IGNORED_BY_BLEU)
    ]


def bleu1(reference: str, hypothesis: str) -> float:
    """Unigram BLEU of one hypothesis caption against one reference, as the course scored it.

    Both captions are split on single spaces; tokens containing `<START>`, `<END>` or
    `<UNK>` are removed; then `nltk.translate.bleu_score.sentence_bleu([ref], hyp,
    weights=[1])` (clipped unigram precision times the brevity penalty).

    Inputs: reference, hypothesis: str (space-separated words).
    Returns: float in [0, 1].
    """
    from nltk.translate.bleu_score import sentence_bleu

    return float(sentence_bleu([_bleu_tokens(reference)], _bleu_tokens(hypothesis), weights=[1]))


# ------------------------------------------------------------------ COCO caption evaluation

COCO_EVAL_PACKAGE = "pycocoevalcap==1.2"
COCO_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")  # papers' order
COCO_EVAL_INSTALL = "pip install 'jaxseq[coco-eval]' (or pip install pycocoevalcap==1.2)"
COCO_MARKERS = ("<START>", "<END>", "<NULL>", "<UNK>")
# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS, the tokens coco-caption removes after its
# Java PTB tokenizer (tests check the two lists are the same).
PTB_PUNCTUATIONS = ("''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                    ".", "?", "!", ",", ":", "-", "--", "...", ";")
# What the PTB tokenizer makes of brackets; lowercased by its -lowerCase flag, so they no
# longer match the uppercase entries above and coco-caption keeps them as words.
_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_PTB_CLITIC = re.compile(r"^(.*[a-z0-9])(n't|'s|'m|'re|'ll|'d|'ve)$")
_EDGE_PUNCTUATION = ".?!,:;'`\"-"


class CocoScores(dict):
    """A dict of COCO metric name -> score, and `.skipped`: metric name -> why it was left out."""

    def __init__(self, scores: Mapping[str, float], skipped: Mapping[str, str] | None = None):
        super().__init__(scores)
        self.skipped = dict(skipped or {})

    def __repr__(self) -> str:
        return f"CocoScores({dict(self)!r}, skipped={self.skipped!r})"


class MissingPackageError(ImportError):
    """An optional package a function needs is not installed; the message says what to install."""


def require_coco_eval():
    """The `pycocoevalcap` module; MissingPackageError, saying what to install, without it."""
    try:
        import pycocoevalcap
    except ImportError:
        raise MissingPackageError(f"the COCO caption metrics need pycocoevalcap: {COCO_EVAL_INSTALL}") from None
    return pycocoevalcap


def coco_tokenize(caption: str) -> str:
    """A caption as coco-caption scores it, tokenized in Python.

    coco-caption runs Stanford's Java PTBTokenizer (`-preserveLines -lowerCase`) and then
    removes the tokens of `PTB_PUNCTUATIONS`. This does the same without Java, for every
    machine alike:
      1. the course's markers `<START>`, `<END>`, `<NULL>`, `<UNK>` (whole words) are dropped;
      2. lowercase; whitespace (any run) separates words;
      3. brackets become the PTB's words `-lrb-`, `-rrb-`, `-lsb-`, `-rsb-`, `-lcb-`, `-rcb-`
         (which coco-caption keeps: its list has them in upper case); `"` is dropped;
      4. punctuation `. ? ! , : ; ' ` " -` is cut off both ends of each word and dropped
         (inside a word it stays: "t-shirt", "3.5", "u.s"), as are words made only of it
         ("-", "--", "...");
      5. the clitics `n't 's 'm 're 'll 'd 've` are split off as their own words
         ("man's" -> "man 's", "don't" -> "do n't"), as the PTB tokenizer does.
    On captions of plain words and markers (the built-in scenes', the course's decoded ones)
    this equals the Java path. Where the PTB tokenizer knows better — abbreviations that keep their final
    period ("etc.", "u.s."), "cannot" -> "can not", "gonna" -> "gon na", "$3" -> "$ 3",
    "50%" -> "50 %" — the two differ (tests/test_coco_caption_metrics.py compares them
    where Java is present).

    Inputs: caption: str. Returns: the words joined by single spaces ("" when none are left).
    """
    words = []
    for raw in caption.split():
        if raw in COCO_MARKERS:
            continue
        word = raw.lower().replace('"', " ")
        for bracket, name in _PTB_BRACKETS.items():
            word = word.replace(bracket, f" {name} ")
        for piece in word.split():
            if piece in _PTB_BRACKETS.values():
                words.append(piece)
                continue
            piece = piece.strip(_EDGE_PUNCTUATION)
            if not piece:
                continue
            clitic = _PTB_CLITIC.match(piece)
            words.extend(clitic.groups() if clitic else (piece,))
    return " ".join(words)


def _check_coco_inputs(references, hypotheses) -> list:
    if not isinstance(references, Mapping):
        raise ValueError(f"references must be a dict of image id -> list of captions, got {type(references).__name__}")
    if not isinstance(hypotheses, Mapping):
        raise ValueError(f"hypotheses must be a dict of image id -> caption, got {type(hypotheses).__name__}")
    if not references:
        raise ValueError("references is empty: there are no images to score")
    missing = [key for key in references if key not in hypotheses]
    extra = [key for key in hypotheses if key not in references]
    if missing or extra:
        parts = ([f"no hypothesis for image id(s) {missing[:5]}"] if missing else []) + (
            [f"no references for image id(s) {extra[:5]}"] if extra else [])
        raise ValueError("references and hypotheses must have the same image ids: " + "; ".join(parts))
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, (list, tuple)):
            raise ValueError(f"references[{key!r}] must be a list of caption strings, got {type(refs).__name__}")
        if not refs:
            raise ValueError(f"references[{key!r}] is an empty list: each image needs at least one reference")
        for index, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise ValueError(f"references[{key!r}][{index}] must be a string, got {type(ref).__name__}")
            if not ref.strip():
                raise ValueError(f"references[{key!r}][{index}] is an empty caption")
        if not isinstance(hypotheses[key], str):
            raise ValueError(f"hypotheses[{key!r}] must be a string, got {type(hypotheses[key]).__name__}")
    return list(references)


SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def coco_unavailable_metrics(java: bool | None = None) -> dict[str, str]:
    """The COCO metrics `coco_caption_scores` will leave out here, each with the reason.

    METEOR and SPICE are Java programs: both are left out where `java` is not on the PATH
    (`java=None` looks; False leaves them out). SPICE also needs the Stanford CoreNLP 3.6.0
    jars, which pycocoevalcap downloads (~1 GB) on first use; they are never downloaded
    here, so SPICE runs only where they were put in place beforehand
    (`python -m pycocoevalcap.spice.get_stanford_models`).
    """
    if java is False or (java is None and shutil.which("java") is None):
        reason = ("no Java on the PATH (METEOR and SPICE are Java programs)" if java is None
                  else "left out (java=False)")
        return {"METEOR": reason, "SPICE": reason}
    lib = Path(next(iter(require_coco_eval().__path__))) / "spice" / "lib"  # a namespace package
    absent = [name for name in SPICE_JARS if not (lib / name).exists()]
    if absent:
        return {"SPICE": "the Stanford CoreNLP 3.6.0 jars are not in pycocoevalcap/spice/lib; "
                         "python -m pycocoevalcap.spice.get_stanford_models downloads them (~1 GB)"}
    return {}


def coco_caption_scores(references: Mapping[Hashable, list[str]], hypotheses: Mapping[Hashable, str], *,
                        java: bool | None = None) -> CocoScores:
    """The COCO caption evaluation of one caption per image against all of its references.

    The scorers are pycocoevalcap's (the packaged coco-caption code, `jaxseq[coco-eval]`):
      BLEU-1..4: corpus BLEU — clipped n-gram counts (each n-gram counted at most as often
        as in the reference that has most of it) summed over all images, divided by all the
        hypotheses' n-grams; the geometric mean of precisions 1..n times one brevity penalty
        exp(1 - r/c) when c < r, c the hypotheses' total length, r the sum over images of the
        reference length closest to the hypothesis (the shorter on a tie).
      ROUGE-L: per image the LCS F-measure with beta = 1.2, from the best precision
        LCS/len(hyp) and the best recall LCS/len(ref) over the references; mean over images.
      CIDEr: CIDEr-D. N-gram (n = 1..4) tf-idf vectors, tf the n-gram's count in a
        sentence and idf = log(I / df), I the number of images scored and df the number of
        images whose references hold the n-gram: document frequencies come from the
        references of the evaluated set, so a score depends on which images are scored (and
        is 0 for one image). Per n, the clipped cosine sum(min(h, r) * r) / (|h| |r|) times
        the length penalty exp(-(len(h) - len(r))^2 / (2 * 6^2)), averaged over the
        references and over n, times 10; mean over images.
      METEOR (METEOR 1.5, `-l en -norm`) and SPICE: only where Java is on the PATH (`java`
        None: look; False: leave them out), see `coco_unavailable_metrics`. METEOR's Java
        program starts once per process and serves every later call (`jaxseq.meteor`).
    Hypotheses and references are tokenized alike with `coco_tokenize` (in Python, the
    course's markers dropped), never with coco-caption's Java tokenizer.

    Inputs: references: image id -> non-empty list of caption strings; hypotheses: image
      id -> one caption string (may be empty); the same image ids on both sides.
    Returns: a dict (`CocoScores`) {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"[, "METEOR"],
      "ROUGE-L", "CIDEr"[, "SPICE"]} -> float, in that order (`COCO_METRICS`; BLEU,
      ROUGE-L, METEOR, SPICE in [0, 1], CIDEr in [0, 10]); its `.skipped` says which of METEOR/SPICE were left out and why
      (no Java, no CoreNLP jars, or the Java program failed: never an error).
    Raises: ValueError naming what is wrong with the inputs; MissingPackageError without
      pycocoevalcap.
    """
    image_ids = _check_coco_inputs(references, hypotheses)
    require_coco_eval()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {key: [coco_tokenize(ref) for ref in references[key]] for key in image_ids}
    res = {key: [coco_tokenize(hypotheses[key])] for key in image_ids}
    scores: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its counts
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n + 1}": float(value) for n, value in enumerate(bleu)})
        scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    skipped = coco_unavailable_metrics(java)
    for name in ("METEOR", "SPICE"):
        if name not in skipped:
            try:
                scores[name] = _java_metric(name, gts, res)
            except (OSError, ValueError, TypeError, subprocess.SubprocessError) as error:  # optional: never fail
                skipped[name] = f"{name} failed ({type(error).__name__}: {str(error).strip()[:200]})"
    return CocoScores({name: scores[name] for name in COCO_METRICS if name in scores}, skipped=skipped)


def _java_metric(name: str, gts, res) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        if name == "METEOR":  # one Java program for every call in this process (its start is ~10 s)
            from jaxseq.meteor import meteor_score

            return meteor_score(gts, res)
        from pycocoevalcap.spice.spice import Spice

        return float(Spice().compute_score(gts, res)[0])


def _binary_labels(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of 0/1 labels, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1, False, True)).all():
        bad = array[~np.isin(array, (0, 1, False, True))][0]
        raise ValueError(f"{name} must hold only 0/1 labels, found {bad.item()!r}")
    return array.astype(np.int64)


def confusion_matrix(y_true: Iterable[int], y_pred: Iterable[int]) -> np.ndarray:
    """2x2 confusion matrix of binary labels: `[[tn, fp], [fn, tp]]` (rows = truth).

    Inputs: y_true, y_pred: (N,) of 0/1.
    Returns: (2, 2) int64.
    """
    truth = _binary_labels(y_true, "y_true")
    pred = _binary_labels(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has shape {truth.shape} but y_pred has {pred.shape}")
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (truth, pred), 1)
    return matrix


def accuracy(y_true: Iterable[int], y_pred: Iterable[int]) -> float:
    """Fraction of positions where the prediction equals the truth. Inputs: (N,) of 0/1."""
    matrix = confusion_matrix(y_true, y_pred)
    total = matrix.sum()
    if total == 0:
        raise ValueError("accuracy of an empty set of labels is undefined")
    return float(np.trace(matrix) / total)


def matthews_corrcoef(y_true: Iterable[int], y_pred: Iterable[int]) -> float:
    """Matthews correlation coefficient of binary predictions.

    MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)), in [-1, 1]; 0 when any
    factor of the denominator is 0 (a constant predictor or a single-class truth), the
    convention of scikit-learn and of GLUE's CoLA scoring.

    Inputs: y_true, y_pred: (N,) of 0/1.

    >>> round(matthews_corrcoef([0, 1, 1, 0], [0, 1, 0, 0]), 6)  # (1*2 - 0*1) / sqrt(1*2*2*3)
    0.57735
    >>> matthews_corrcoef([1, 1, 0], [1, 1, 1])  # a constant predictor
    0.0
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).astype(float)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    if denominator == 0.0:
        return 0.0
    return float((tp * tn - fp * fn) / denominator)


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """loss (mean binary cross-entropy), accuracy, mcc and confusion matrix of logits (N,)
    thresholded at 0 (probability 0.5) against labels (N,) of 0/1."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    predictions = (logits >= 0).astype(np.int64)
    loss = float(np.mean(np.logaddexp(0.0, logits) - labels * logits))
    return {
        "loss": loss,
        "accuracy": accuracy(labels, predictions),
        "mcc": matthews_corrcoef(labels, predictions),
        "confusion": confusion_matrix(labels, predictions).tolist(),
    }
