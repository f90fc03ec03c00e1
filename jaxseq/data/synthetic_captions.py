"""Generated captioning data in the captioning data layout of `jaxseq.data.coco`.

Two generators, both seeded and download-free, returning the same dict as
`load_coco_data`, so everything that takes COCO takes them:

`load_scene_captions` — the built-in captioning set. A scene is one or two groups of
objects; a group has a count (a, two, three), a size (small, large), a colour and a shape,
and two groups stand in a relation (left of, right of, above, below). Each scene gets a
feature vector, a fixed random linear projection of the scene's attribute one-hots plus
Gaussian noise, and one caption that describes it:

    <START> two large red squares above a small blue circle <END>

Train and val hold different scenes (no val scene appears in train), so a model that
describes val scenes well has learned the attributes, not memorized the captions.

`random_captioning_data` — COCO-shaped random data for speed and overfitting checks:
512-d Gaussian features, 17-token captions over a 1,004-word vocabulary drawn from a
random sparse Markov chain, one caption per image. There is nothing to generalize; a model
can only memorize.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxseq.data.coco import END_ID, NULL_ID, SPECIAL_TOKENS, START_ID, check_captioning_data

COUNTS = ("a", "two", "three")
SIZES = ("small", "large")
COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
SHAPES = ("circle", "square", "triangle", "star", "cube")
RELATIONS = ("left of", "right of", "above", "below")

_GROUP_WIDTH = len(COUNTS) + len(SIZES) + len(COLOURS) + len(SHAPES)
# group 1 one-hots, relation one-hot (last slot: no second group), group 2 one-hots
_ENCODING_WIDTH = 2 * _GROUP_WIDTH + len(RELATIONS) + 1
_GROUP_SLOTS = (len(COUNTS), len(SIZES), len(COLOURS), len(SHAPES))


def scene_vocabulary() -> list[str]:
    """idx_to_word of the built-in set: the four special tokens, then the words sorted."""
    words = set(COUNTS) | set(SIZES) | set(COLOURS) | set(SHAPES)
    words |= {shape + "s" for shape in SHAPES}
    for relation in RELATIONS:
        words |= set(relation.split())
    return list(SPECIAL_TOKENS) + sorted(words)


def describe_scene(scene: tuple[int, ...]) -> str:
    """The caption words of a scene `(count, size, colour, shape, relation, count2, ...)`.

    A scene is 9 attribute indices; `relation == len(RELATIONS)` means there is no second
    group (its 4 indices are then ignored).
    """
    def group(count, size, colour, shape):
        noun = SHAPES[shape] + ("s" if count > 0 else "")
        return f"{COUNTS[count]} {SIZES[size]} {COLOURS[colour]} {noun}"

    text = group(*scene[:4])
    if scene[4] < len(RELATIONS):
        text += f" {RELATIONS[scene[4]]} {group(*scene[5:9])}"
    return text


def _encode_scene(scene: tuple[int, ...]) -> np.ndarray:
    code = np.zeros(_ENCODING_WIDTH, dtype=np.float64)
    groups = [scene[:4]] + ([scene[5:9]] if scene[4] < len(RELATIONS) else [])
    for index, attributes in enumerate(groups):
        offset = index * (_GROUP_WIDTH + len(RELATIONS) + 1)
        for value, width in zip(attributes, _GROUP_SLOTS):
            code[offset + value] = 1.0
            offset += width
    code[_GROUP_WIDTH + scene[4]] = 1.0
    return code


def _draw_scenes(rng: np.random.Generator, count: int, single_fraction: float) -> list[tuple[int, ...]]:
    """`count` distinct random scenes in random order (no scene twice)."""
    limits = (*_GROUP_SLOTS, len(RELATIONS), *_GROUP_SLOTS)
    single = int(np.prod(_GROUP_SLOTS))
    possible = single + single * single * len(RELATIONS)
    if count > possible // 2:
        raise ValueError(f"asked for {count} scenes; the built-in set has {possible} distinct scenes")
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < count:
        scene = [int(rng.integers(limit)) for limit in limits]
        if rng.random() < single_fraction:
            scene[4:] = [len(RELATIONS), 0, 0, 0, 0]
        seen.setdefault(tuple(scene), None)
    scenes = list(seen)
    return [scenes[i] for i in rng.permutation(count)]


def _encode_captions(texts: list[str], word_to_idx: dict[str, int], length: int) -> np.ndarray:
    captions = np.full((len(texts), length), NULL_ID, dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [START_ID] + [word_to_idx[word] for word in text.split()] + [END_ID]
        captions[row, : len(ids)] = ids
    return captions


def load_scene_captions(
    num_train: int = 4000,
    num_val: int = 500,
    *,
    feature_dim: int = 128,
    noise: float = 0.7,
    single_fraction: float = 0.25,
    seed: int = 0,
) -> dict[str, Any]:
    """The built-in scene-captioning set (one caption per scene), seeded and reproducible.

    Inputs:
      num_train, num_val: number of distinct scenes per split (train and val share none).
      feature_dim: D, the size of each scene's feature vector.
      noise: standard deviation of the Gaussian noise added to the projected features.
      single_fraction: probability that a scene has only one group of objects.
    Returns: the captioning data layout: captions (N, 12) int32 (at most 10 words),
      image_idxs (N,) int32, features (N, D) float32, urls `builtin://scenes/<split>/<i>`,
      idx_to_word, word_to_idx.
    """
    if num_train < 1 or num_val < 0:
        raise ValueError(f"need num_train >= 1 and num_val >= 0, got {num_train} and {num_val}")
    if feature_dim < 1:
        raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    idx_to_word = scene_vocabulary()
    word_to_idx = {word: index for index, word in enumerate(idx_to_word)}
    # Signal ~ unit variance per feature: a scene sets at most 9 of the one-hot slots.
    projection = rng.standard_normal((_ENCODING_WIDTH, feature_dim)) / 3.0
    scenes = _draw_scenes(rng, num_train + num_val, single_fraction)
    caption_length = 12  # <START> + 10 words + <END>

    data: dict[str, Any] = {"idx_to_word": idx_to_word, "word_to_idx": word_to_idx}
    for split, chosen in (("train", scenes[:num_train]), ("val", scenes[num_train:])):
        codes = np.stack([_encode_scene(s) for s in chosen]) if chosen else np.zeros((0, _ENCODING_WIDTH))
        features = codes @ projection + noise * rng.standard_normal((len(chosen), feature_dim))
        data[f"{split}_features"] = features.astype(np.float32)
        data[f"{split}_captions"] = _encode_captions([describe_scene(s) for s in chosen], word_to_idx,
                                                     caption_length)
        data[f"{split}_image_idxs"] = np.arange(len(chosen), dtype=np.int32)
        data[f"{split}_urls"] = np.asarray([f"builtin://scenes/{split}/{i}" for i in range(len(chosen))])
    return check_captioning_data(data)


def random_captioning_data(
    num_train: int = 100,
    num_val: int = 0,
    *,
    feature_dim: int = 512,
    caption_length: int = 17,
    vocab_size: int = 1004,
    min_words: int = 8,
    branching: int = 8,
    zipf_exponent: float = 0.75,
    seed: int = 0,
) -> dict[str, Any]:
    """COCO-shaped random captioning data: one caption per image, nothing to generalize.

    Captions are walks on a fixed random sparse Markov chain over the words, with word
    frequencies roughly like text: every word has `branching` possible successors (chosen
    with probabilities proportional to 1/rank), and the successors and first words are drawn
    from a Zipf law p(word of rank r) ~ 1/r**zipf_exponent. So captions have short-range
    structure and shared frequent words, as real ones do, but no meaning.

    Inputs: number of images per split; D = feature_dim; T + 1 = caption_length tokens
      per caption; V = vocab_size words (4 special); each caption has between `min_words`
      and caption_length - 2 words (COCO's captions mostly have 8 to 15).
    Returns: the captioning data layout; features (N, D) float32 standard normal.
    """
    max_words = caption_length - 2
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= caption_length - 2, got {min_words} and {caption_length}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    if branching < 1:
        raise ValueError(f"branching must be >= 1, got {branching}")
    rng = np.random.default_rng(seed)
    first_word = len(SPECIAL_TOKENS)
    idx_to_word = list(SPECIAL_TOKENS) + [f"word{i}" for i in range(first_word, vocab_size)]
    zipf = 1.0 / np.arange(1, vocab_size - first_word + 1) ** zipf_exponent
    zipf /= zipf.sum()
    successors = first_word + rng.choice(vocab_size - first_word, size=(vocab_size, branching), p=zipf)
    successor_probs = 1.0 / np.arange(1, branching + 1)
    successor_probs /= successor_probs.sum()

    data: dict[str, Any] = {"idx_to_word": idx_to_word,
                            "word_to_idx": {word: i for i, word in enumerate(idx_to_word)}}
    for split, count in (("train", num_train), ("val", num_val)):
        captions = np.full((count, caption_length), NULL_ID, dtype=np.int32)
        for row in range(count):
            words = [first_word + int(rng.choice(len(zipf), p=zipf))]
            for _ in range(int(rng.integers(min_words, max_words + 1)) - 1):
                words.append(int(successors[words[-1], rng.choice(branching, p=successor_probs)]))
            captions[row, : len(words) + 2] = [START_ID, *words, END_ID]
        data[f"{split}_captions"] = captions
        data[f"{split}_image_idxs"] = np.arange(count, dtype=np.int32)
        data[f"{split}_features"] = rng.standard_normal((count, feature_dim)).astype(np.float32)
        data[f"{split}_urls"] = np.asarray([f"random://{split}/{i}" for i in range(count)])
    return check_captioning_data(data)
