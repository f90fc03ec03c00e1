"""Data: loaders of the real formats, built-in generated sets, vocabularies and the types the
trainers take (no JAX models imported here).

Captioning: `load_coco_data` (the course's HDF5 files), `load_scene_captions` (built-in
scenes), `random_captioning_data`, `check_captioning_data`, `decode_captions`,
`sample_coco_minibatch`. Sentence classification: `load_cola` (the course split),
`read_sentences` (any `sentence<TAB>label` file), `tokenize`, `bracket_nesting_task`
(built-in), `Vocabulary`, and the types `LabelledSentences`, `SentenceSplits`,
`ClassificationData`.
"""

from jaxseq.data.bracket_nesting import bracket_nesting_task
from jaxseq.data.coco import check_captioning_data, decode_captions, load_coco_data, sample_coco_minibatch
from jaxseq.data.cola import load_cola
from jaxseq.data.sentence_files import read_sentences
from jaxseq.data.sentences import ClassificationData, LabelledSentences, SentenceSplits, split_train_val
from jaxseq.data.synthetic_captions import load_scene_captions, random_captioning_data
from jaxseq.data.tokenizer import tokenize
from jaxseq.data.vocabulary import Vocabulary

__all__ = [
    "ClassificationData",
    "LabelledSentences",
    "SentenceSplits",
    "Vocabulary",
    "bracket_nesting_task",
    "check_captioning_data",
    "decode_captions",
    "load_coco_data",
    "load_cola",
    "load_scene_captions",
    "random_captioning_data",
    "read_sentences",
    "sample_coco_minibatch",
    "split_train_val",
    "tokenize",
]
