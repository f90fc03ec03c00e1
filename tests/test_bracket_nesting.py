"""The built-in bracket acceptability task."""

from __future__ import annotations

import numpy as np
import pytest

from jaxseq.data.bracket_nesting import bracket_nesting_task, bracket_sentences, is_well_nested


def test_is_well_nested():
    assert is_well_nested(list("([])[]"))
    assert is_well_nested([])
    for bad in ("(]", "([)]", ")(", "((", "]"):
        assert not is_well_nested(list(bad))


def test_labels_match_well_nestedness_and_are_balanced():
    data = bracket_sentences(400, seed=3, max_pairs=6)
    assert len(data) == 400 and data.labels.dtype == np.int32
    assert data.labels.sum() == 200
    assert all(is_well_nested(s) == bool(y) for s, y in zip(data.sentences, data.labels))
    assert max(len(s) for s in data.sentences) <= 2 * 6 + 1
    assert all(len(s) > 0 for s in data.sentences)


def test_seeded_and_independent_splits():
    a, b = bracket_nesting_task(50, 20, 20, seed=1), bracket_nesting_task(50, 20, 20, seed=1)
    assert a.train.sentences == b.train.sentences and a.test.sentences == b.test.sentences
    assert a.train.sentences != bracket_nesting_task(50, 20, 20, seed=2).train.sentences
    assert a.val.sentences != a.test.sentences
    assert (len(a.train), len(a.val), len(a.test)) == (50, 20, 20)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_examples"):
        bracket_sentences(0, seed=0)
    with pytest.raises(ValueError, match="max_pairs"):
        bracket_sentences(5, seed=0, max_pairs=0)
