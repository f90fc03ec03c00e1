"""The COCO caption evaluation: `jaxseq.metrics.coco_caption_scores` (pycocoevalcap's
scorers) checked against values worked out by hand, its tokenization, its input checks;
`jaxseq.inference.evaluate_coco_metrics` and `jaxseq caption eval --metrics coco`."""

from __future__ import annotations

import builtins
import importlib.util
import io
import math
import shutil
import subprocess

import numpy as np
import pytest

from jaxseq import cli, meteor
from jaxseq.metrics import PTB_PUNCTUATIONS, MissingPackageError, coco_caption_scores, coco_tokenize

if importlib.util.find_spec("pycocoevalcap") is None:  # fail loudly: `make test` installs it, so its absence is a bug
    raise ImportError("tests/test_coco_caption_metrics.py needs pycocoevalcap, which `make test` installs "
                      "(the coco-eval extra): pip install 'jaxseq[coco-eval]'")

JAVA = shutil.which("java") is not None

# Two images. After tokenization (markers dropped, lowercased, punctuation removed):
#   image 7:  refs "a red ball" (3 words), "a big red ball" (4);  hyp "a big red ball" (4)
#   image 42: ref  "a blue ball on the grass" (6);                hyp "a blue blue ball" (4)
REFERENCES = {7: ["<START> a red ball <END>", "<START> A big red ball. <END>"],
              42: ["<START> a blue ball on the grass <END>"]}
HYPOTHESES = {7: "a big red ball <END>", 42: "A blue, blue ball! <END>"}


def hand_bleu() -> list[float]:
    # Clipped n-gram matches / hypothesis n-grams, per image, n = 1..4:
    #   image 7, "a big red ball" is the second reference: 4/4, 3/3, 2/2, 1/1.
    #   image 42, "a blue blue ball": 1-grams a, blue (2 in the hyp, at most 1 in a
    #   reference: clipped to 1), ball -> 3/4; 2-grams "a blue", "blue ball" match,
    #   "blue blue" not -> 2/3; 3-grams "a blue blue", "blue blue ball" -> 0/2; 4-gram 0/1.
    # Corpus: 1: 7/8, 2: 5/6, 3: 2/4, 4: 1/2.
    precisions = [7 / 8, 5 / 6, 2 / 4, 1 / 2]
    # Brevity penalty: c = 4 + 4 = 8 hypothesis words; r = the closest reference length per
    # image, 4 (of 3 and 4) + 6 = 10; c < r, so BP = exp(1 - r / c) = exp(1 - 10/8).
    brevity = math.exp(1 - 10 / 8)
    return [brevity * math.prod(precisions[:n]) ** (1 / n) for n in (1, 2, 3, 4)]


def hand_cider() -> float:
    # Document frequencies from the references of the 2 images: "a" and "ball" are in both
    # images' references: idf = log(2/2) = 0; every other n-gram of a reference, and the
    # hypothesis n-grams no reference has ("blue blue", ...: df 0, taken as 1), has
    # idf = log(2/1) = L. So a vector is L * (the n-gram counts, "a" and "ball" left out).
    # Per n: clipped cosine sum(min(h, r) * r) / (|h| |r|); 0 where a vector is empty.
    # Length penalty g = exp(-delta^2 / (2 * 6^2)), delta = hypothesis minus reference length.
    #
    # Image 7, hyp "a big red ball"
    #   vs "a big red ball": the same vectors, cosine 1 for n = 1..4, delta 0            -> 1+1+1+1
    #   vs "a red ball": delta = 1
    #     n=1: h = L{big: 1, red: 1}, |h| = L√2; r = L{red: 1}, |r| = L; dot L^2       -> 1/√2
    #     n=2: h = L{a big, big red, red ball}, |h| = L√3; r = L{a red, red ball}, |r| = L√2;
    #          dot ("red ball") L^2                                                      -> 1/√6
    #     n=3: {a big red, big red ball} vs {a red ball}: no overlap                     -> 0
    #     n=4: {a big red ball} vs nothing                                               -> 0
    #   mean over n, over the 2 references, times 10:
    image_7 = 10 * ((1 + 1 + 1 + 1) + math.exp(-1 / 72) * (1 / math.sqrt(2) + 1 / math.sqrt(6))) / 4 / 2
    # Image 42, hyp "a blue blue ball" vs "a blue ball on the grass": delta = 4 - 6 = -2
    #   n=1: h = L{blue: 2}, |h| = 2L; r = L{blue, on, the, grass}, |r| = 2L;
    #        dot = min(2L, L) * L = L^2 (the clipping: without it 2L^2)                  -> 1/4
    #   n=2: h = L{a blue, blue blue, blue ball}, |h| = L√3;
    #        r = L{a blue, blue ball, ball on, on the, the grass}, |r| = L√5; dot 2L^2  -> 2/√15
    #   n=3, n=4: no common n-gram                                                       -> 0, 0
    image_42 = 10 * math.exp(-4 / 72) * (1 / 4 + 2 / math.sqrt(15)) / 4
    return (image_7 + image_42) / 2  # (6.374964 + 1.812453) / 2 = 4.093708


def hand_rouge_l() -> float:
    # Per image: the best LCS precision P and the best recall R over the references,
    # F = (1 + b^2) P R / (R + b^2 P), b = 1.2; mean over images.
    #   image 7: "a big red ball" is a reference: LCS 4 -> P = 4/4, R = 4/4 -> F = 1
    #   image 42: LCS("a blue blue ball", "a blue ball on the grass") = "a blue ball" = 3
    #             -> P = 3/4, R = 3/6
    beta2 = 1.2 ** 2
    p, r = 3 / 4, 3 / 6
    return (1.0 + (1 + beta2) * p * r / (r + beta2 * p)) / 2  # (1 + 0.579114) / 2 = 0.789557


def test_hand_computed_bleu_rouge_cider():
    scores = coco_caption_scores(REFERENCES, HYPOTHESES, java=False)
    assert set(scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}
    # pycocoevalcap adds 1e-15 / 1e-9 to numerators / denominators: relative 1e-9
    for n, expected in enumerate(hand_bleu(), start=1):
        assert scores[f"BLEU-{n}"] == pytest.approx(expected, rel=1e-8), n
    assert [round(scores[f"BLEU-{n}"], 6) for n in (1, 2, 3, 4)] == [0.681451, 0.665028, 0.556364, 0.508883]
    assert scores["ROUGE-L"] == pytest.approx(hand_rouge_l(), rel=1e-12)
    assert scores["ROUGE-L"] == pytest.approx(0.789557, abs=1e-6)
    assert scores["CIDEr"] == pytest.approx(hand_cider(), rel=1e-12)
    assert scores["CIDEr"] == pytest.approx(4.093708, abs=1e-6)
    assert scores.skipped == {"METEOR": "left out (java=False)", "SPICE": "left out (java=False)"}


def test_one_image_cider_is_zero_and_perfect_captions_score_one():
    # CIDEr-D's document frequencies come from the evaluated set: with one image every
    # idf is log(1/1) = 0.
    one = coco_caption_scores({1: ["a red ball"]}, {1: "a red ball"}, java=False)
    assert one["CIDEr"] == 0.0 and one["BLEU-3"] == pytest.approx(1.0) and one["ROUGE-L"] == 1.0
    empty = coco_caption_scores({1: ["a red ball"], 2: ["two stars"]}, {1: "<END>", 2: ""}, java=False)
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in empty.values()), empty


def test_without_java_meteor_and_spice_are_skipped(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    scores = coco_caption_scores(REFERENCES, HYPOTHESES)
    assert "METEOR" not in scores and "SPICE" not in scores
    assert scores.skipped["METEOR"] == "no Java on the PATH (METEOR and SPICE are Java programs)"


def test_a_failing_java_metric_is_skipped_not_raised(monkeypatch, tmp_path):
    meteor.close()  # a program an earlier test started would answer
    monkeypatch.setenv("PATH", str(tmp_path))  # java=True below, but no `java` to start
    scores = coco_caption_scores(REFERENCES, HYPOTHESES, java=True)
    assert "METEOR" not in scores and scores["CIDEr"] == pytest.approx(hand_cider(), rel=1e-12)
    assert scores.skipped["METEOR"] == "METEOR failed (FileNotFoundError: [Errno 2] No such file or directory: 'java')"


class EndingProgram:
    """A stand-in METEOR program: answers `answers` lines, then its output ends (a crash)."""

    def __init__(self, answers: int):
        self.stdin, self.stdout, self.left = io.BytesIO(), self, answers

    def readline(self) -> bytes:
        self.left -= 1
        return b"0.5\n" if self.left >= 0 else b""

    def poll(self):
        return 1 if self.left < 0 else None

    def close(self):
        pass

    kill = wait = close


def test_a_program_that_ends_mid_exchange_is_replaced_by_a_fresh_one(monkeypatch):
    started, popen = [], subprocess.Popen

    def fake_popen(command, **kwargs):
        if command != meteor.meteor_command()[0]:  # SPICE, where its jars are in place
            return popen(command, **kwargs)
        assert kwargs["stderr"] == subprocess.DEVNULL
        started.append(EndingProgram(answers=1))
        return started[-1]

    meteor.close()
    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    with pytest.raises(OSError, match=r"METEOR's Java program ended \(exit code 1\)"):
        meteor.meteor_score({1: ["a red ball"], 2: ["a cat"]}, {1: ["a ball"], 2: ["a cat"]})
    scores = coco_caption_scores(REFERENCES, HYPOTHESES, java=True)  # the next call starts another
    assert len(started) == 2 and scores.skipped["METEOR"].startswith("METEOR failed (OSError: METEOR's Java")
    assert meteor._process is None  # forgotten, not left half-answered


def hand_meteor() -> float:
    # METEOR 1.5 (`-l en -norm`): alpha 0.85, beta 0.2, gamma 0.6, delta 0.75 (content words
    # weigh delta, function words 1 - delta); corpus score from the summed statistics of each
    # image's best reference. "a", "on", "the" are function words; only exact matches here.
    alpha, beta, gamma, delta = 0.85, 0.2, 0.6, 0.75
    # image 7: "a big red ball" is a reference: 4 of 4 words matched (content 3, function 1),
    # both sides; an exact match counts no chunk (METEOR 1.5 gives it no fragmentation).
    # image 42: hyp "a blue blue ball" (content 3, function 1) vs "a blue ball on the grass"
    # (content 3, function 3): a, blue, ball matched (content 2, function 1), in 2 chunks
    # ("a blue" | "ball" or "a" | "blue ball": the extra "blue" splits them either way).
    weighted = lambda content, function: delta * content + (1 - delta) * function  # noqa: E731
    matched = weighted(3, 1) + weighted(2, 1)
    precision = matched / (weighted(3, 1) + weighted(3, 1))
    recall = matched / (weighted(3, 1) + weighted(3, 3))
    fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    fragmentation = (0 + 2) / (4 + 3)  # chunks / matches
    return fmean * (1 - gamma * fragmentation ** beta)  # 0.41754...


@pytest.mark.skipif(not JAVA, reason="METEOR is a Java program: its pinned value needs `java` on the PATH "
                                     "(without Java it is skipped by design, as the tests above check)")
def test_meteor_where_java_is_equals_the_hand_computed_value():
    scores = coco_caption_scores(REFERENCES, HYPOTHESES)
    assert scores["METEOR"] == pytest.approx(hand_meteor(), rel=1e-6)
    assert "METEOR" not in scores.skipped
    assert scores["CIDEr"] == pytest.approx(hand_cider(), rel=1e-12)


@pytest.mark.skipif(not JAVA, reason="METEOR is a Java program")
def test_one_meteor_program_serves_every_call_with_pycocoevalcaps_numbers():
    from pycocoevalcap.meteor.meteor import Meteor

    references = {i: ["a big red ball on the grass", "a red ball"] for i in range(5)}
    hypotheses = {i: [h] for i, h in enumerate(["a red ball", "a blue ball", "two cats on the grass",
                                                 "a red ||| ball", "ball"])}
    first = meteor.meteor_score(references, hypotheses)
    program = meteor._process
    assert meteor.meteor_score(references, hypotheses) == first
    assert meteor._process is program and program.poll() is None  # the same program answered
    theirs = Meteor()
    try:
        assert theirs.compute_score(references, hypotheses)[0] == first
    finally:
        del theirs
    meteor.close()
    assert program.poll() is not None and meteor._process is None


def test_tokenization_drops_markers_case_and_punctuation():
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    assert list(PTB_PUNCTUATIONS) == PUNCTUATIONS
    assert coco_tokenize("<START> A big, red ball. <END> <NULL>") == "a big red ball"
    assert coco_tokenize("a <UNK> man's t-shirt -- \"new\" (3.5)...") == "a man 's t-shirt new -lrb- 3.5 -rrb-"
    assert coco_tokenize("<END>") == ""


# captions where the Python tokenization and coco-caption's Java PTB tokenizer agree
PTB_CASES = ["<START> two large red squares above a small blue circle <END>", "A man riding a wave on a surfboard.",
             "a dog's toy, a cat's bed; and \"quotes\"!", "Is it a T-shirt? yes - it is...", "don't  stop\tnow",
             "a clock (on a tower) [big] {x}", "`single' ''double''"]


@pytest.mark.skipif(not JAVA, reason="the PTB tokenizer of coco-caption needs Java")
def test_python_tokenization_matches_the_java_ptb_tokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    java = PTBTokenizer().tokenize({i: [{"caption": caption}] for i, caption in enumerate(PTB_CASES)})
    for i, caption in enumerate(PTB_CASES):
        expected = " ".join(word for word in java[i][0].split() if word not in ("<start>", "<end>"))
        assert coco_tokenize(caption) == expected, caption


@pytest.mark.parametrize("references, hypotheses, message", [
    ({1: ["a"]}, {2: "a"}, "references and hypotheses must have the same image ids: no hypothesis for image id(s) [1]; "
                           "no references for image id(s) [2]"),
    ({}, {}, "references is empty"),
    ({1: []}, {1: "a"}, "references[1] is an empty list"),
    ({1: "a ball"}, {1: "a"}, "references[1] must be a list of caption strings, got str"),
    ({1: ["a", 3]}, {1: "a"}, "references[1][1] must be a string, got int"),
    ({1: ["a", "  "]}, {1: "a"}, "references[1][1] is an empty caption"),
    ({1: ["a"]}, {1: ["a"]}, "hypotheses[1] must be a string, got list"),
    ([["a"]], {1: "a"}, "references must be a dict of image id -> list of captions, got list"),
])
def test_bad_inputs_are_one_line_value_errors(references, hypotheses, message):
    with pytest.raises(ValueError) as info:
        coco_caption_scores(references, hypotheses, java=False)
    assert message in str(info.value) and "\n" not in str(info.value)


def hide_pycocoevalcap(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pycocoevalcap" or name.startswith("pycocoevalcap."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_package_says_what_to_install(monkeypatch, tmp_path, capsys):
    hide_pycocoevalcap(monkeypatch)
    with pytest.raises(MissingPackageError, match=r"pip install 'jaxseq\[coco-eval\]'"):
        coco_caption_scores({1: ["a"]}, {1: "a"})
    assert cli.main(["caption", "eval", "--checkpoint", str(tmp_path), "--metrics", "coco"]) == 2
    err = capsys.readouterr().err
    assert err == ("jaxseq caption eval: error: the COCO caption metrics need pycocoevalcap: "
                   "pip install 'jaxseq[coco-eval]' (or pip install pycocoevalcap==1.2)\n")


def test_evaluate_coco_metrics_groups_references_by_image():
    from jaxseq.inference import evaluate_coco_metrics
    from tests.test_metrics_bleu import WORDS, chain_model

    # 3 images, 5 caption rows: image 0 has rows 0, 3; image 2 has rows 1, 4; image 1 row 2
    ids = {word: i for i, word in enumerate(WORDS)}
    caption = lambda *words: [ids["<START>"], *(ids[w] for w in words), ids["<END>"], 0]  # noqa: E731
    data = {"idx_to_word": WORDS, "val_features": np.zeros((3, 3), np.float32),
            "val_image_idxs": np.array([0, 2, 1, 0, 2], np.int32),
            "val_captions": np.array([caption("w4", "w5"), caption("w6", "w7"), caption("w4", "w6"),
                                      caption("w5", "w5"), caption("w4", "w5")], np.int32)}
    model, variables = chain_model()  # says "w4 w5 <END>" whatever the image
    result = evaluate_coco_metrics(model, variables, data, "val", java=False)
    assert (result["images"], result["references"], result["decode"]) == (3, 5, "greedy")
    expected = coco_caption_scores({0: ["w4 w5", "w5 w5"], 1: ["w4 w6"], 2: ["w6 w7", "w4 w5"]},
                                   {0: "w4 w5", 1: "w4 w5", 2: "w4 w5"}, java=False)
    assert result["scores"] == dict(expected)
    assert result["scores"]["BLEU-1"] == pytest.approx(5 / 6)  # images 0 and 2 match, image 1 half
    fewer = evaluate_coco_metrics(model, variables, data, "val", "beam", beam_size=2, max_images=2, java=False)
    assert fewer["images"] == 2 and fewer["beam_size"] == 2
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        evaluate_coco_metrics(model, variables, data, "val", max_images=0)


def test_caption_eval_metrics_coco_on_a_trained_builtin_run(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    assert cli.main(["caption", "train", "--cell", "rnn", "--epochs", "1", "--max-train", "200",
                     "--checkpoint-dir", str(run_dir), "--hidden-dim", "16", "--wordvec-dim", "16", "--quiet"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(shutil, "which", lambda name: None)  # METEOR's Java start-up is seconds: see above
    assert cli.main(["caption", "eval", "--checkpoint", str(run_dir), "--metrics", "coco", "--max-images", "30",
                     "--beam", "1"]) == 0
    out = capsys.readouterr().out
    assert "COCO caption metrics on 30 val images (30 reference captions, 1.0 per image), greedy decoding:" in out
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert f"\n  {name:<8} " in out
    assert "METEOR   skipped: no Java on the PATH" in out and "SPICE    skipped: no Java on the PATH" in out
    assert cli.main(["caption", "eval", "--checkpoint", str(run_dir), "--num-samples", "10", "--beam", "2"]) == 0
    assert "BLEU-1 on 10 val captions: greedy 0." in capsys.readouterr().out  # the default is the course's
