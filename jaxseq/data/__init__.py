"""Data: loaders of the real formats, built-in generated sets, vocabularies and the types the
trainers take (no JAX models imported here).

Captioning: `load_coco_data` (the course's HDF5 files), `load_scene_captions` (built-in
scenes), `random_captioning_data`, `check_captioning_data`, `decode_captions`,
`sample_coco_minibatch`. Sentence classification: `load_cola` (the course split),
`read_sentences` (any `sentence<TAB>label` file), `tokenize`, `bracket_nesting_task`
(built-in), `Vocabulary`, and the types `LabelledSentences`, `SentenceSplits`,
`ClassificationData`. Language models: `load_text_corpus` (one file split in order),
`load_text_files` (train/val[/test] files), `text_corpus_from_strings`, `load_builtin_text`
(built-in sentences with nested agreement), `agreement_sentences`, `load_tiny_shakespeare`,
`tiny_shakespeare_file`, `TextCorpus`, `TokenVocabulary` (char or word level),
`read_text_chunks`; batching as N parallel streams for truncated BPTT: `batchify`
((L_total,) -> (N, L)), `get_batch` ((N, L) -> x, y (N, T)), `segments` (an epoch as
(S, N, T) arrays of fixed T = bptt), `num_segments`, `segment_starts`, `Segments`.
"""

from jaxseq.data.bracket_nesting import bracket_nesting_task
from jaxseq.data.builtin_text import agreement_sentences, load_builtin_text
from jaxseq.data.coco import check_captioning_data, decode_captions, load_coco_data, sample_coco_minibatch
from jaxseq.data.cola import load_cola
from jaxseq.data.sentence_files import read_sentences
from jaxseq.data.sentences import ClassificationData, LabelledSentences, SentenceSplits, split_train_val
from jaxseq.data.synthetic_captions import load_scene_captions, random_captioning_data
from jaxseq.data.text_corpus import TextCorpus, load_text_corpus, load_text_files, text_corpus_from_strings
from jaxseq.data.text_files import read_text_chunks
from jaxseq.data.text_streams import Segments, batchify, get_batch, num_segments, segment_starts, segments
from jaxseq.data.tiny_shakespeare import load_tiny_shakespeare, tiny_shakespeare_file
from jaxseq.data.token_vocabulary import TokenVocabulary
from jaxseq.data.tokenizer import tokenize
from jaxseq.data.vocabulary import Vocabulary

__all__ = [
    "ClassificationData",
    "LabelledSentences",
    "Segments",
    "SentenceSplits",
    "TextCorpus",
    "TokenVocabulary",
    "Vocabulary",
    "agreement_sentences",
    "batchify",
    "bracket_nesting_task",
    "check_captioning_data",
    "decode_captions",
    "get_batch",
    "load_builtin_text",
    "load_coco_data",
    "load_cola",
    "load_scene_captions",
    "load_text_corpus",
    "load_text_files",
    "load_tiny_shakespeare",
    "num_segments",
    "random_captioning_data",
    "read_sentences",
    "read_text_chunks",
    "sample_coco_minibatch",
    "segment_starts",
    "segments",
    "split_train_val",
    "text_corpus_from_strings",
    "tiny_shakespeare_file",
    "tokenize",
]
