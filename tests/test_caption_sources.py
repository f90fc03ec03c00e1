"""jaxseq.data.caption_sources: where a captioning run's features come from, for messages."""

from __future__ import annotations

from pathlib import Path

from jaxseq.data import coco
from jaxseq.data.caption_sources import caption_features_source


def test_features_source_names_the_feature_file_even_when_no_coco_folder_is_found(monkeypatch):
    monkeypatch.setattr(coco, "default_coco_dir", lambda: None)  # no COCO files on this machine
    assert caption_features_source({"source": "coco"}) == "train2014_vgg16_fc7_pca.h5:features"
    assert caption_features_source({"source": "coco"}, Path("/data/coco")) == \
        "/data/coco/train2014_vgg16_fc7_pca.h5:features"
    assert caption_features_source({"source": "builtin"}) == "the built-in scenes' train_features"
