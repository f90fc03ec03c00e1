"""Data loaders, vocabularies and built-in data sets (no JAX models imported here)."""

from jaxseq.data.coco import check_captioning_data, decode_captions, load_coco_data, sample_coco_minibatch
from jaxseq.data.synthetic_captions import load_scene_captions, random_captioning_data
from jaxseq.data.acceptability import acceptability_task
from jaxseq.data.cola import load_cola, read_sentences, tokenize
from jaxseq.data.vocabulary import Vocabulary
